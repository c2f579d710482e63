"""`rapref onpolicy`: the paper's on-policy setting as one command, composed of the stages a user runs by hand.

    rapref onpolicy --policy runs/tiny --prompts prompts.jsonl --scorer reward-model:runs/tiny-rm \
        --config recipes/tiny/relabeled-dpo.yaml --samples 4 --iterations 2 --out runs/onpolicy

Per iteration i, in OUT/iter-i/:
    samples.jsonl      `rapref generate`: K samples per prompt from the current policy (the top goal once it reads
                       goals, none before)
    judge/             `rapref judge`: one score per sample
    multi_sample.jsonl the samples of each prompt with their scores (the `multi-sample` schema)
    data/<mode>/       `rapref augment`: pairs (best-vs-worst, best-vs-random or all-pairs), relabeled or not; every
                       mode of one iteration pairs the same samples
    policy/            `rapref train` from the current policy on data/<--train-mode>/: the next iteration's policy
    policy-merged/     with LoRA (`lora.enabled=true`): the policy with its adapter merged in, which the next
                       iteration samples from and trains on, so iterations compound (base + adapter 1 + adapter 2 ...)
A stage counts as finished when its last file is written (generate and judge write atomically, augment writes
summary.json last, train rapref_train.json); a rerun reuses finished stages and redoes an interrupted one.

The start, the prompts (and a reward model scorer's folder), the recipe and the overrides are read and checked as the
stages read them before OUT is claimed: a mistake the train stage would find is refused at once and leaves nothing.

A rerun into the same OUT must define the same work (`rapref.runs.launches`): other samples, tokens, scorer (or a reward
model replaced in place), recipe (or its file edited), prompts or start are refused with one line; `--iterations`
may grow (later iterations are added) and `--workers` may change. `--overwrite` starts over. Every launch is
appended to OUT/launches.jsonl.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from rapref.data.augment import AugmentConfig
from rapref.data.augment import main as augment
from rapref.data.relabel import MODES, RelabelOptions
from rapref.data.schemas import SchemaOptions
from rapref.formats.prompts import load_prompts
from rapref.goals import GOAL_SETTINGS_FILE, GoalSpec
from rapref.inference.sampler import SamplingConfig
from rapref.io import InputError, read_jsonl, stat_fingerprint, write_json_atomic, write_jsonl_atomic
from rapref.judge.scorers import canonical_scorer, scorer_fingerprint
from rapref.models import check_model_folder, merge_lora, model_fingerprint
from rapref.progress import say
from rapref.settings import SettingError, at_least, check, comma_separated, each_in, like, nested, plain, setting
from rapref.studies.harness import Stages, Study, generate_and_judge
from rapref.train.config import load_config
from rapref.train.run import main as train

FREE_SETTINGS = ("iterations", "workers", "out", "overwrite")  # a rerun may change these (see the module docstring)


@dataclass
class OnPolicyConfig:
    policy: str = setting(help="the start: a model folder (later iterations start from the previous policy)")
    prompts: str = setting(help="prompt file, benchmark question file or `rapref augment` folder")
    scorer: str = setting(help="if-official:ifeval | if-official:ifbench | reward-model:PATH | constraints | "
                               "python:MODULE:FUNCTION (see rapref.judge.scorers)")
    out: str = setting(help="run folder (finished stages are reused)")
    recipe: str | None = setting(None, "`rapref train` recipe (model, data and output_dir are set per iteration); "
                                       "`--config RECIPE` still reads one", shown="rapref train's defaults")
    overrides: list[str] = setting(help="recipe overrides, as `rapref train`", factory=list, positional=True,
                                   metavar="SECTION.KEY=VALUE")
    iterations: int = setting(1, "sample-judge-pair-train rounds", rule=at_least(1))
    modes: tuple[str, ...] = setting(("relabeled", "original"), "augment modes written every iteration from the same "
                                     f"pairs ({', '.join(MODES)})", parse=comma_separated(), rule=each_in(MODES))
    train_mode: str = setting("relabeled", "the data the next policy trains on", choices=MODES)
    # K samples per prompt from the current policy; the seed is set per iteration (seed + iteration - 1)
    sampling: SamplingConfig = nested(SamplingConfig, flags={"num_samples": "samples", "max_new_tokens": None,
                                                             "temperature": None, "batch_size": None},
                                      num_samples=4, temperature=1.0)
    # samples -> pairs: a prompt's samples paired, scores put on the goal scale (none: verifier scores already are)
    schema: SchemaOptions = nested(SchemaOptions, flags={"pairing": None, "score_mapping": None, "scale": None},
                                   pairing="best-vs-worst", score_mapping="quantile", scale=(1.0, 10.0), test_size=0)
    # pairs -> goal-conditioned pairs; mode and seed are set per mode and iteration
    relabel: RelabelOptions = nested(RelabelOptions, flags={"ties": None})
    placement: str = like(GoalSpec, "placement")
    workers: int = setting(1, "generation processes, one thread each (see generate)", rule=at_least(1))
    serve: str | None = setting(
        None, "sample through a server rapref starts on each iteration's policy and stops after sampling, from this "
              "command template ({model}, {port}, {python}; NAME=value settings may lead), e.g. "
              "\"VLLM_CPU_KVCACHE_SPACE=2 .venv-vllm/bin/python -m vllm.entrypoints.openai.api_server --model {model} "
              "--port {port} --no-enable-chunked-prefill\" (see docs/evaluation.md)", metavar="COMMAND",
        shown="none: sample in rapref's own processes")
    seed: int = setting(0, "seed of iteration 1 (iteration i uses seed + i - 1)")
    split: str = setting("test", "the split read from an augment folder given as --prompts", flag=False)
    overwrite: bool = setting(False, "start over in --out (a rerun with other settings is refused otherwise)")

    def __post_init__(self):
        check(self)
        if self.sampling.num_samples < 2:
            raise SettingError("{} must be at least 2: pairs need two responses to a prompt", "sampling.num_samples")
        if self.serve and self.workers > 1:
            raise SettingError("{} is for sampling in rapref's own processes; with {} the server batches", "workers",
                               "serve")
        if self.train_mode not in self.modes:
            self.modes = (*self.modes, self.train_mode)


def defining_settings(cfg: OnPolicyConfig) -> dict:
    """The settings and the content of the inputs that define the loop's stages (see the module docstring)."""

    settings = {**plain(cfg), "scorer": canonical_scorer(cfg.scorer)}  # an old name compares equal to its new one
    return {**settings, "policy_fingerprint": model_fingerprint(cfg.policy),
            "prompts_fingerprint": stat_fingerprint(cfg.prompts),
            "recipe_fingerprint": stat_fingerprint(cfg.recipe) if cfg.recipe else None,
            "scorer_fingerprint": scorer_fingerprint(cfg.scorer)}


LOOP_SETS = {"model.name_or_path": "the policy of each iteration, from --policy", "data.path": "each iteration's "
             "pairs", "output_dir": "OUT/iter-N/policy", "seed": "--seed plus the iteration"}


def check_recipe(cfg: OnPolicyConfig) -> None:
    """The recipe and overrides read and checked as the train stage reads them, with the first and the last
    iteration's seed (the loop sets the rest): a mistake is refused before the run folder is claimed, not after an
    iteration's sampling."""
    for override in cfg.overrides:
        key = override.partition("=")[0].strip()
        if key in LOOP_SETS:  # kept working as before, said rather than silently replaced
            say(f"rapref onpolicy: note: override {override!r} is replaced: the loop sets {key} itself "
                f"({LOOP_SETS[key]})")
    root = Path(cfg.out) / "iter-1"
    for seed in sorted({cfg.seed, cfg.seed + cfg.iterations - 1}):
        train_config(cfg, cfg.policy, root / "data" / cfg.train_mode, root / "policy", seed)


def check_inputs(cfg: OnPolicyConfig) -> None:
    """The start, the prompts and a reward model as the stages read them, before the run folder is claimed."""
    check_model_folder(cfg.policy)
    load_prompts(cfg.prompts, cfg.split)
    kind, _, model = cfg.scorer.partition(":")
    if kind == "reward-model" and model:
        check_model_folder(model)


def main(cfg: OnPolicyConfig) -> dict:
    check_recipe(cfg)
    check_inputs(cfg)
    remedy = ("rerun with the same settings, pass --overwrite to start over, or branch from an iteration's policy "
              "into a new --out (--policy OUT/iter-N/policy)")
    with Study(cfg.out, "onpolicy", defining_settings(cfg), free=FREE_SETTINGS, overwrite=cfg.overwrite,
               inputs=(cfg.prompts, cfg.policy), legacy_settings=None, remedy=remedy) as study:
        out = study.out
        write_json_atomic(out / "onpolicy.json", {k: v for k, v in study.settings.items() if k != "overwrite"})
        policy, history = cfg.policy, []
        for iteration in range(1, cfg.iterations + 1):
            root = out / f"iter-{iteration}"
            say(f"rapref onpolicy: iteration {iteration}/{cfg.iterations} from {policy}")
            history.append(run_iteration(cfg, policy, root, iteration))
            policy = history[-1]["policy_out"]
        write_json_atomic(out / "history.json", history)
        study.finish()
    say(f"rapref onpolicy: {cfg.iterations} iteration(s); the last policy is {policy}")
    return {"policy": policy, "iterations": history}


def run_iteration(cfg: OnPolicyConfig, policy: str, root: Path, iteration: int) -> dict:
    seed = cfg.seed + iteration - 1
    stages = Stages(root, progress=lambda name: say(f"  {name}"))
    scores = collect_pairs(cfg, policy, root, seed, stages)
    trained = root / "policy"
    # what a finished train stage records, compared on a rerun (the same record as runs before typed configs)
    recorded = [*cfg.overrides, f"seed={seed}"]
    stages.run("train", {"policy": policy, "data": cfg.train_mode, "recipe": cfg.recipe, "overrides": recorded},
               lambda: _train(cfg, policy, root / "data" / cfg.train_mode, trained, seed))
    policy_out = full_policy(trained, root / "policy-merged", stages)
    rows = read_jsonl(scores)
    summary = json.loads((root / "data" / cfg.train_mode / "summary.json").read_text())
    return {"iteration": iteration, "policy_in": policy, "policy_out": str(policy_out), "samples": len(rows),
            "mean_score": sum(r["score"] for r in rows) / len(rows),
            "pairs": summary.get("rows_out", {}), "train": json.loads((trained / "rapref_train.json").read_text())
            ["result"]}


def full_policy(trained: Path, merged: Path, stages: Stages) -> Path:
    """The trained policy as one full model: a LoRA run merged into its base (which is the previous iteration's
    full policy), so that iterations compound; a full fine-tune as it is."""
    if not (trained / "adapter_config.json").is_file():
        return trained

    def merge():
        if merged.exists():
            import shutil

            shutil.rmtree(merged)
        merge_lora(trained, merged)

    stages.run("merge (the next iteration starts from the merged policy)", {"adapter": str(trained)}, merge)
    return merged


def collect_pairs(cfg: OnPolicyConfig, policy: str, root: Path, seed: int, stages: Stages | None = None) -> Path:
    """Sample, judge, group and augment (every mode) under `root`, each a stage; returns the judged scores file."""
    stages = stages or Stages(root, progress=lambda name: say(f"  {name}"))
    reads_goals = (Path(policy) / GOAL_SETTINGS_FILE).is_file()
    sampling = replace(cfg.sampling, seed=seed)
    rows = generate_and_judge(stages, "samples", model=policy, prompts=cfg.prompts, gen_path=root / "samples.jsonl",
                              judge_dir=root / "judge", goals=None, sampling=sampling,
                              scorer=canonical_scorer(cfg.scorer), workers=cfg.workers, split=cfg.split,
                              goal_from_model=reads_goals, serve=cfg.serve)
    refuse_equal_scores(rows, root / "judge" / "scores.jsonl", cfg.scorer)
    grouped = root / "multi_sample.jsonl"
    stages.run("group", {"scores": str(root / "judge" / "scores.jsonl")},
               lambda: write_jsonl_atomic(grouped, multi_sample_rows(rows)))
    for mode in cfg.modes:
        options = {"mode": mode, "seed": seed, "ties": cfg.relabel.ties, "pairing": cfg.schema.pairing,
                   "scale": cfg.schema.scale, "score_mapping": cfg.schema.score_mapping,
                   "test_size": cfg.schema.test_size, "placement": cfg.placement}
        stages.run(f"augment {mode}", options, lambda m=mode: _augment(cfg, grouped, root / "data" / m, m, seed))
    return root / "judge" / "scores.jsonl"


def refuse_equal_scores(rows: list[dict], scores: Path, scorer: str) -> None:
    """Samples that all score the same carry no preference: refused here, with the scores file to look at, rather
    than after pairing (where a score mapping cannot be fitted) or, worse, trained on as ties."""
    distinct = {row["score"] for row in rows if row.get("score") is not None}
    if len(distinct) == 1:
        raise InputError(f"{scores}: the scorer {scorer} gave all {len(rows)} samples the same score "
                         f"({format(distinct.pop(), 'g')}): they carry no preference to learn from; check the scorer "
                         "on a few samples (`rapref judge`) or sample more diverse answers (--temperature, --samples)")


def multi_sample_rows(scored: list[dict]) -> list[dict]:
    """Judged samples -> one `multi-sample` row per prompt (responses and scores in sample order)."""
    by_prompt: dict[str, dict] = {}
    for row in sorted(scored, key=lambda r: (str(r["prompt_id"]), r.get("sample", 0))):
        entry = by_prompt.setdefault(str(row["prompt_id"]), {"prompt_id": str(row["prompt_id"]),
                                                             "prompt": row["prompt"], "all_generated_responses": [],
                                                             "all_rm_scores": []})
        entry["all_generated_responses"].append(row["text"])
        entry["all_rm_scores"].append(row["score"])
    return list(by_prompt.values())


def _augment(cfg: OnPolicyConfig, source: Path, out: Path, mode: str, seed: int) -> None:
    say(f"  augment: {mode}")
    augment(AugmentConfig(source=str(source), out=str(out), schema="multi-sample", placement=cfg.placement,
                          relabel=replace(cfg.relabel, mode=mode, seed=seed), overwrite=True,
                          schema_options=replace(cfg.schema, seed=seed)))


def train_config(cfg: OnPolicyConfig, policy: str | Path, data: Path, out: Path, seed: int):
    """The `TrainConfig` of one iteration: the recipe and the user's overrides (text, read as `rapref train` reads
    them), then what the loop sets itself (the current policy, this iteration's pairs, its output folder and seed), set
    as typed values, never written out as text and read back."""

    return load_config(cfg.recipe, cfg.overrides, values={"model.name_or_path": str(policy), "data.path": str(data),
                                                          "output_dir": str(out), "seed": seed})


def _train(cfg: OnPolicyConfig, policy: str, data: Path, out: Path, seed: int) -> None:
    say(f"  train: {data.name} pairs from {policy}")
    train(train_config(cfg, policy, data, out, seed), overwrite=True)  # an interrupted run of this stage is redone
