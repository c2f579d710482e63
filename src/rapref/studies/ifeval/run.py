"""`rapref experiment ifeval`: a real instruct model through the whole loop, on verifiable instructions.

    rapref model smollm2 --out runs/smollm2
    rapref experiment ifeval --model runs/smollm2 --out runs/exp-ifeval --quick     # every stage, minutes
    rapref experiment ifeval --model runs/smollm2 --out runs/exp-ifeval             # the sized CPU run (hours)

Stages, each reused when finished (OUT/...):
    prompts/{train,test}.jsonl   `rapref prompts`: IFEval-style prompts from the official registry, disjoint topics
    pairs/                       `rapref onpolicy` stages from the start: K samples per training prompt, judged by
                                 the official checkers (score 1 + 9 x fraction met, used as it is), paired
                                 best-vs-worst, prompts whose samples all scored alike left out (a tie carries no
                                 preference, and plain DPO would learn an arbitrary order from it), written as
                                 original / duplicated / relabeled / half (the same pairs);
                                 a fifth of the prompts' pairs are held out for the unlearning probe
    arms/<arm>/                  `rapref train` from the start (LoRA): dpo, dpo-dup, relabeled, half
    eval/<arm>.jsonl + judge     every arm (and the start, with and without the goal) on the held-out test prompts,
                                 the same sampling seed for all
    sweep, probe, report.md      goal sweep 1..10 of the relabeled policy; log-probability changes of held-out pairs
The start, IFBench's prompts and the training overrides (as the train stage reads them) are checked before OUT is
claimed. `--quick` says in one line what it shrank, and `--show-config --quick` shows the settings that run.

The goal goes in the user turn: SmolLM2's chat template adds its default system prompt when a conversation has
none, so goal-conditioned and plain arms then see the same system text apart from the goal.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from rapref import dispatch
from rapref.data.relabel import RelabelOptions
from rapref.data.schemas import SchemaOptions
from rapref.formats.dataset import augment_splits, read_split
from rapref.formats.prompts import load_prompts
from rapref.goals import GOAL_SETTINGS_FILE, GoalSpec
from rapref.inference.logprobs import LogProbModel, unlearning_probe
from rapref.inference.sampler import SamplingConfig
from rapref.io import write_json_atomic, write_jsonl_atomic
from rapref.models import check_model_folder, merge_lora, model_fingerprint
from rapref.progress import say
from rapref.settings import at_least, check, like, read_yaml, setting
from rapref.studies.harness import Arm, Stages, Study, generate_and_judge, shrunk
from rapref.studies.ifeval.design import ARMS, BY_NAME, SCORER
from rapref.studies.ifeval.prompts import compose
from rapref.studies.ifeval.report import write_report
from rapref.studies.onpolicy import OnPolicyConfig, collect_pairs
from rapref.train.config import load_config
from rapref.train.run import main as train

# settings a rerun may change in a finished run folder: they change no finished stage's files (workers give the same
# texts; IFBench is an extra evaluation stage of its own)
FREE_SETTINGS = ("workers", "ifbench_prompts")


def _override(value) -> dict:
    """A training override `SECTION.KEY=VALUE` as {SECTION.KEY: VALUE} (the value read later, as YAML), or a mapping of
    them from a study file."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    key, sep, text = str(value).partition("=")
    if not sep or not key:
        raise ValueError(f"expected SECTION.KEY=VALUE, got {value!r}")
    return {key.strip(): text}


@dataclass
class ExperimentConfig:
    model: str = setting(help="the start: a model folder (e.g. from `rapref model smollm2`)")
    out: str = setting(help="run folder (finished stages are reused)")
    train_prompts: int = setting(250, "training prompts", rule=at_least(1))
    test_prompts: int = setting(150, "held-out test prompts", rule=at_least(1))
    samples: int = setting(4, "on-policy samples per training prompt", rule=at_least(2))
    max_new_tokens: int = like(SamplingConfig, "max_new_tokens", 128)
    temperature: float = like(SamplingConfig, "temperature", flag=False)  # evaluation (0.7); pairs sample at 1.0
    seed: int = setting(0, "prompt, sampling and training seed")
    sweep_prompts: int = setting(60, "held-out prompts in the goal sweep (each asked at goals 1..10)", rule=at_least(1))
    sweep_goals: tuple[float, ...] = setting((1, 2, 3, 4, 5, 6, 7, 8, 9, 10), "goals of the sweep", flag=False)
    # generation processes, one thread each (measured faster than one two-thread process on CPU)
    workers: int = setting(2, "generation processes, one thread each", rule=at_least(1))
    band: float = setting(7.0, 'unlearning probe: "high-quality" responses scored >= band', flag=False)
    ifbench_prompts: str | None = setting(None, "also evaluate every arm on IFBench's test prompts (a file written by "
                                                "`rapref prompts --split ifbench-test`)")
    serve: str | None = setting(None, "sample through a server started on each policy from this command template "
                                      "(see `rapref onpolicy --serve`)", metavar="COMMAND",
                                shown="none: sample in rapref's own processes")
    # untuned CPU defaults (LoRA keeps memory low); any `rapref train` recipe key can be overridden
    training: dict = setting(help="training overrides, as `rapref train` (added to the experiment's own: see "
                                  "--show-config)", positional=True, metavar="SECTION.KEY=VALUE", parse=_override,
                             factory=lambda: {
        "lora.enabled": True, "lora.r": 16, "algorithm.beta": 0.1, "training.learning_rate": 5e-5,
        "training.num_train_epochs": 1, "training.per_device_train_batch_size": 2,
        "training.gradient_accumulation_steps": 4, "training.max_length": 384, "data.max_prompt_length": 256,
        "training.lr_scheduler_type": "cosine", "training.warmup_steps": 0.1, "training.save_strategy": "no"})
    quick: bool = setting(False, "every stage on a handful of prompts: a smoke run")
    kernels: str = dispatch.kernels_setting()

    def __post_init__(self):
        check(self)


def quick_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """Every stage on a handful of prompts and two training steps: a smoke run whose numbers mean nothing."""
    training = {**cfg.training, "lora.r": 4, "training.max_steps": 2, "training.gradient_accumulation_steps": 1,
                "training.max_length": 256, "data.max_prompt_length": 160}
    return ExperimentConfig(model=cfg.model, out=cfg.out, train_prompts=10, test_prompts=6, samples=2,
                            max_new_tokens=24, temperature=cfg.temperature, seed=cfg.seed, sweep_prompts=3,
                            sweep_goals=(1, 10), band=cfg.band, workers=cfg.workers, training=training, quick=True,
                            ifbench_prompts=cfg.ifbench_prompts, serve=cfg.serve, kernels=cfg.kernels)


def to_run(cfg: ExperimentConfig) -> ExperimentConfig:
    """The settings the experiment runs (--quick's, `quick_config`), their training config checked as the train
    stage checks it: a mistake in the overrides is refused before anything is written, not after the sampling."""
    run = quick_config(cfg) if cfg.quick else cfg
    train_config(run, Path(run.out), BY_NAME["dpo"])  # the arms' configs differ only in their data and folders
    return run


def check_inputs(cfg: ExperimentConfig) -> None:
    """The start and IFBench's prompts as the stages read them, before the run folder is claimed."""
    check_model_folder(cfg.model)
    if cfg.ifbench_prompts:
        load_prompts(cfg.ifbench_prompts)


def main(cfg: ExperimentConfig) -> dict:
    if "torch" not in sys.modules:  # the dispatch is read when torch loads; generation workers inherit it
        dispatch.apply(cfg.kernels)

    run = to_run(cfg)
    check_inputs(run)
    settings = json.loads(json.dumps({**asdict(run), "model_fingerprint": model_fingerprint(run.model)}))
    with Study(run.out, "experiment ifeval", settings, free=FREE_SETTINGS, inputs=(run.model,)) as study:
        if cfg.quick:  # after the folder is claimed: a refusal comes alone
            say("SMOKE RUN (--quick): every stage on a handful of prompts and two training steps; the numbers mean "
                "nothing and no verdict is drawn.")
            say("quick: " + "; ".join(shrunk(cfg, run)))
        write_json_atomic(study.out / "config.json", settings)
        write_json_atomic(study.out / "dispatch.json", {**dispatch.describe(run.kernels),
                                                        "in_effect": dispatch.in_effect(run.kernels)})
        report = _run(run, study.out)
        study.finish()
    return report


def _run(cfg: ExperimentConfig, out: Path) -> dict:
    stages = Stages(out, progress=lambda name: say(f"rapref experiment: {name}"))
    stages.run("prompts", {"train": cfg.train_prompts, "test": cfg.test_prompts, "seed": cfg.seed},
               lambda: _prompts(cfg, out))
    _pairs(cfg, out)
    models = {arm.name: Path(cfg.model) if arm.kind == "start" else _train(cfg, out, stages, arm) for arm in ARMS}
    evaluations = {arm.name: _evaluate(cfg, out, stages, arm, models[arm.name]) for arm in ARMS}
    sweep = _sweep(cfg, out, stages, models["relabeled@10"])
    stages.run("probe", {"band": cfg.band, "models": {k: str(v) for k, v in models.items()}},
               lambda: _probe(cfg, out, models), timing="unlearning probe")
    probe = json.loads((out / "probe.json").read_text())
    ifbench = {arm.name: _evaluate(cfg, out, stages, arm, models[arm.name], "ifbench")
               for arm in ARMS} if cfg.ifbench_prompts else None
    return write_report(cfg, out, evaluations, sweep, probe, stages.timings, ifbench)


def _prompts(cfg: ExperimentConfig, out: Path) -> None:
    for split, n in (("train", cfg.train_prompts), ("test", cfg.test_prompts)):
        write_jsonl_atomic(out / "prompts" / f"{split}.jsonl", compose(n, split, cfg.seed))


def _pairs(cfg: ExperimentConfig, out: Path) -> None:
    say("rapref experiment: on-policy pairs")
    collect_pairs(OnPolicyConfig(policy=cfg.model, prompts=str(out / "prompts" / "train.jsonl"), scorer=SCORER,
                                 recipe=None, out=str(out),
                                 sampling=SamplingConfig(max_new_tokens=cfg.max_new_tokens, temperature=1.0,
                                                         num_samples=cfg.samples, batch_size=16),
                                 schema=SchemaOptions(pairing="best-vs-worst", score_mapping="none", scale=(1.0, 10.0),
                                                      test_size=0.2),
                                 relabel=RelabelOptions(ties="drop"),  # all K alike: no preference, noise for DPO
                                 modes=("original", "duplicated", "relabeled", "half"), placement="user",
                                 workers=1 if cfg.serve else cfg.workers, seed=cfg.seed,  # a server batches itself
                                 serve=cfg.serve),
                  cfg.model, out / "pairs", cfg.seed)


def train_config(cfg: ExperimentConfig, out: Path, arm: Arm):
    """The `TrainConfig` of a trained arm: the `training` settings (the experiment's own and the user's), then the
    start, the arm's pairs, its folder and the seed. Every value is set as the typed value it is (the save
    strategy "no" stays the text "no"), never written out as text and read back; only a number the command line gave
    as text (`training.max_steps=3`) is read, once, as `rapref train` reads an override's value."""

    training = {key: read_yaml(value) if _number_text(value) else value for key, value in cfg.training.items()}
    name = arm.name.split("@")[0]
    return load_config(None, values={
        **training, "model.name_or_path": str(cfg.model), "data.path": str(out / "pairs" / "data" / arm.data),
        "output_dir": str(out / "arms" / name), "seed": cfg.seed})


def _train(cfg: ExperimentConfig, out: Path, stages: Stages, arm: Arm) -> Path:
    name = arm.name.split("@")[0]
    folder, merged = out / "arms" / name, out / "arms" / f"{name}-merged"
    settings = {"data": arm.data, "overrides": _recorded(cfg.training), "seed": cfg.seed}
    stages.run(f"train {name}", settings, lambda: train(train_config(cfg, out, arm), overwrite=True))
    if not (folder / "adapter_config.json").is_file():
        return folder

    def merge():
        merge_lora(folder, merged)  # generation and the probe load one full model

    stages.run(f"merge {name}", settings, merge, timing=f"train {name}")
    return merged


def _number_text(value) -> bool:
    """A number given as text (a command line's `training.learning_rate=1e-4`)."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _recorded(training: dict) -> list[str]:
    """The training settings as a finished train stage records them, compared on a rerun and never read back:
    `KEY=VALUE`, VALUE as JSON or, for a number given as text, as typed (the record of runs before typed configs)."""
    return [f"{key}={value if _number_text(value) else json.dumps(value)}" for key, value in training.items()]


def _generate(cfg: ExperimentConfig, out: Path, stages: Stages, model: Path, prompts: Path, name: str, goals,
              limit=None, scorer: str = SCORER, timing: str | None = None) -> list:
    sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=cfg.seed,
                              batch_size=16)
    return generate_and_judge(stages, name, model=model, prompts=prompts, gen_path=out / "eval" / f"{name}.jsonl",
                              judge_dir=out / "eval" / f"{name}.judge", goals=goals, sampling=sampling, scorer=scorer,
                              limit=limit, workers=cfg.workers, timing=timing, serve=cfg.serve)


def _goal_file(model: Path) -> Path:
    return Path(model) / GOAL_SETTINGS_FILE


def _evaluate(cfg: ExperimentConfig, out: Path, stages: Stages, arm: Arm, model: Path,
              benchmark: str = "ifeval") -> dict:
    """Every held-out prompt once, the same sampling seed for every arm; `ifbench`: IFBench's own test prompts."""
    goals = None
    if arm.goal:
        if not _goal_file(model).is_file():  # the start asked for 10, in the relabeled data's wording
            stages.run("start-goal", {"model": str(cfg.model)}, lambda: _start_with_goal(cfg, out))
            model = out / "start-goal"
        goals = [10.0]
    prompts, name = (out / "prompts" / "test.jsonl", arm.name) if benchmark == "ifeval" else \
        (Path(cfg.ifbench_prompts), f"ifbench-{arm.name}")
    timing = f"evaluate {arm.name}" + (" on IFBench" if benchmark == "ifbench" else "")
    rows = _generate(cfg, out, stages, model, prompts, name, goals, scorer=f"if-official:{benchmark}", timing=timing)
    aggregate = json.loads((out / "eval" / f"{name}.judge" / "aggregate.json").read_text())
    return {"per_prompt": {r["prompt_id"]: r["score"] for r in rows},
            "all_met": {r["prompt_id"]: float(r["score"] == 10.0) for r in rows},
            "checkers": aggregate.get("scorer_aggregate", {})}


def _start_with_goal(cfg: ExperimentConfig, out: Path) -> None:
    """A view of the start folder with the goal settings beside it (links to its files, not copies)."""
    folder = out / "start-goal"
    folder.mkdir(parents=True, exist_ok=True)
    for item in Path(cfg.model).iterdir():
        if not (folder / item.name).exists():
            (folder / item.name).symlink_to(item.resolve())
    (folder / "rapref_goal.json").write_text(_goal_file(out / "pairs" / "data" / "relabeled").read_text())


def _sweep(cfg: ExperimentConfig, out: Path, stages: Stages, model: Path) -> dict:
    rows = _generate(cfg, out, stages, model, out / "prompts" / "test.jsonl", "relabeled-sweep",
                     list(cfg.sweep_goals), limit=cfg.sweep_prompts, timing="goal sweep")
    by_goal: dict[str, list[float]] = {}
    for r in rows:
        by_goal.setdefault(str(r["goal"]), []).append(r["score"])
    return by_goal


def _probe(cfg: ExperimentConfig, out: Path, models: dict) -> None:
    """Held-out pairs: change in log p, policy minus start, the start asked with the same goal as the policy."""

    data = out / "pairs" / "data" / "original"
    pairs = read_split(data, "test").to_pylist() if "test" in augment_splits(data) else []  # tiny runs hold none
    result = {"pairs": len(pairs), "rows": []}
    if pairs:
        spec = GoalSpec.load(out / "pairs" / "data" / "relabeled")
        reference = LogProbModel(str(cfg.model), batch_size=4)
        for name in ("dpo", "relabeled@10"):
            goal = BY_NAME[name].goal
            result["rows"] += unlearning_probe(pairs, LogProbModel(str(models[name]), batch_size=4), reference,
                                               spec if goal else None, ("own",) if goal else ("none",), cfg.band, name)
    write_json_atomic(out / "probe.json", result)
