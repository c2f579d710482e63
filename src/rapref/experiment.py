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
The goal goes in the user turn: SmolLM2's chat template adds its default system prompt when a conversation has
none, so goal-conditioned and plain arms then see the same system text apart from the goal.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rapref.io import read_jsonl, write_json_atomic
from rapref.outputs import claim_output, finish_output, output_lock, reopen_output
from rapref.progress import say

ARMS = {  # arm -> (augment mode of its training data or None for the start, asked for the top goal)
    "start": (None, False), "start@10": (None, True), "dpo": ("original", False), "dpo-dup": ("duplicated", False),
    "relabeled@10": ("relabeled", True), "half@10": ("half", True),
}
SCORER = "if-official:ifeval"
# settings a rerun may change in a finished run folder: they change no finished stage's files (workers give the same
# texts; IFBench is an extra evaluation stage of its own)
FREE_SETTINGS = ("workers", "ifbench_prompts")


@dataclass
class ExperimentConfig:
    model: str
    out: str
    train_prompts: int = 250
    test_prompts: int = 150
    samples: int = 4
    max_new_tokens: int = 128
    temperature: float = 0.7
    seed: int = 0
    sweep_prompts: int = 60
    sweep_goals: tuple[float, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    workers: int = 2  # generation processes, one thread each (measured faster than one two-thread process on CPU)
    band: float = 7.0  # unlearning probe: "high-quality" responses scored >= band
    ifbench_prompts: str | None = None  # `rapref prompts --split ifbench-test` output: a second held-out evaluation
    # untuned CPU defaults (LoRA keeps memory low); any `rapref train` recipe key can be overridden
    training: dict = field(default_factory=lambda: {
        "lora.enabled": True, "lora.r": 16, "algorithm.beta": 0.1, "training.learning_rate": 5e-5,
        "training.num_train_epochs": 1, "training.per_device_train_batch_size": 2,
        "training.gradient_accumulation_steps": 4, "training.max_length": 384, "data.max_prompt_length": 256,
        "training.lr_scheduler_type": "cosine", "training.warmup_steps": 0.1, "training.save_strategy": "no"})
    quick: bool = False


def quick_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """Every stage on a handful of prompts and two training steps: a smoke run whose numbers mean nothing."""
    training = {**cfg.training, "lora.r": 4, "training.max_steps": 2, "training.gradient_accumulation_steps": 1,
                "training.max_length": 256, "data.max_prompt_length": 160}
    return ExperimentConfig(model=cfg.model, out=cfg.out, train_prompts=10, test_prompts=6, samples=2,
                            max_new_tokens=24, temperature=cfg.temperature, seed=cfg.seed, sweep_prompts=3,
                            sweep_goals=(1, 10), band=cfg.band, workers=cfg.workers, training=training, quick=True,
                            ifbench_prompts=cfg.ifbench_prompts)


def main(cfg: ExperimentConfig) -> dict:
    if cfg.quick:
        cfg = quick_config(cfg)
        say("SMOKE RUN (--quick): every stage on a handful of prompts and two training steps; the numbers mean "
            "nothing and no verdict is drawn.")
    out = claim_output(cfg.out, "experiment ifeval", overwrite=False, reuse=True, inputs=(cfg.model,))
    with output_lock(out):
        return _run(cfg, out)


def _run(cfg: ExperimentConfig, out: Path) -> dict:
    from rapref.launches import record_launch
    from rapref.models import model_fingerprint

    saved = out / "config.json"
    now = json.loads(json.dumps({**asdict(cfg), "model_fingerprint": model_fingerprint(cfg.model)}))
    if saved.is_file():
        before = json.loads(saved.read_text())
        before.setdefault("model_fingerprint", now["model_fingerprint"])  # folders from before it was recorded
        changed = sorted(k for k in set(before) | set(now) if k not in FREE_SETTINGS and before.get(k) != now.get(k))
        if changed:
            from rapref.io import InputError

            raise InputError(f"{out}: holds an experiment with other settings ({', '.join(changed)}; see its "
                             "config.json); choose another --out")
    reopen_output(out, "experiment ifeval")  # unfinished until this launch ends
    record_launch(out, now, "experiment ifeval")
    write_json_atomic(saved, now)
    done = out / "timings.json"  # seconds per stage, summed over the runs that worked on it (a rerun adds ~0)
    timings: dict[str, float] = json.loads(done.read_text()) if done.is_file() else {}

    def stage(name, fn, *args):
        say(f"rapref experiment: {name}")
        start = time.perf_counter()
        result = fn(*args)
        timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - start, 1)
        write_json_atomic(out / "timings.json", timings)
        return result

    stage("prompts", _prompts, cfg, out)
    stage("on-policy pairs", _pairs, cfg, out)
    models = {}
    for arm, (mode, _) in ARMS.items():
        models[arm] = Path(cfg.model) if mode is None else stage(f"train {arm}", _train, cfg, out, arm, mode)
    evaluations = {arm: stage(f"evaluate {arm}", _evaluate, cfg, out, arm, models[arm], goal)
                   for arm, (_, goal) in ARMS.items()}
    sweep = stage("goal sweep", _sweep, cfg, out, models["relabeled@10"])
    probe = stage("unlearning probe", _probe, cfg, out, models)
    ifbench = {arm: stage(f"evaluate {arm} on IFBench", _evaluate, cfg, out, arm, models[arm], goal, "ifbench")
               for arm, (_, goal) in ARMS.items()} if cfg.ifbench_prompts else None
    from rapref.experiment_report import write_report

    report = write_report(cfg, out, evaluations, sweep, probe, timings, ifbench)
    finish_output(out, "experiment ifeval")
    return report


def _prompts(cfg: ExperimentConfig, out: Path) -> None:
    from rapref.evaluate.ifprompts import compose
    from rapref.io import write_jsonl_atomic

    for split, n in (("train", cfg.train_prompts), ("test", cfg.test_prompts)):
        path = out / "prompts" / f"{split}.jsonl"
        if not path.is_file():
            write_jsonl_atomic(path, compose(n, split, cfg.seed))


def _pairs(cfg: ExperimentConfig, out: Path) -> None:
    from rapref.onpolicy import OnPolicyConfig, collect_pairs

    collect_pairs(OnPolicyConfig(policy=cfg.model, prompts=str(out / "prompts" / "train.jsonl"), scorer=SCORER,
                                 recipe=None, out=str(out), samples=cfg.samples, pairing="best-vs-worst",
                                 modes=("original", "duplicated", "relabeled", "half"), score_mapping="none",
                                 ties="drop",  # all K samples alike: no preference, and noise for plain DPO
                                 placement="user", max_new_tokens=cfg.max_new_tokens, temperature=1.0,
                                 batch_size=16, workers=cfg.workers, seed=cfg.seed, test_size=0.2),
                  cfg.model, out / "pairs", cfg.seed)


def _train(cfg: ExperimentConfig, out: Path, arm: str, mode: str) -> Path:
    from rapref.train.config import load_config
    from rapref.train.run import main as train

    folder = out / "arms" / arm.split("@")[0]
    if not (folder / "rapref_train.json").is_file():
        data = out / "pairs" / "data" / mode
        overrides = [f"{key}={_yaml_value(value)}" for key, value in cfg.training.items()]
        train(load_config(None, [*overrides, f"model.name_or_path={cfg.model}", f"data.path={data}",
                                 f"output_dir={folder}", f"seed={cfg.seed}"]), overwrite=True)
    merged = out / "arms" / f"{arm.split('@')[0]}-merged"
    if (folder / "adapter_config.json").is_file() and not (merged / "config.json").is_file():
        from rapref.models import merge_lora

        merge_lora(folder, merged)  # generation and the probe load one full model
    return merged if (folder / "adapter_config.json").is_file() else folder


def _yaml_value(value) -> str:
    """An override value as YAML reads it back: strings quoted ("no" stays a string), the rest as JSON."""
    if isinstance(value, str):
        try:
            float(value)
            return value  # a number given as text on the command line
        except ValueError:
            return json.dumps(value)
    return json.dumps(value)


def _generate(out: Path, model: Path, prompts: Path, name: str, goals, cfg: ExperimentConfig, limit=None,
              scorer: str = SCORER) -> list:
    from rapref.evaluate.generate import GenerateConfig, SamplingConfig
    from rapref.evaluate.generate import main as generate
    from rapref.evaluate.judge import JudgeConfig
    from rapref.evaluate.judge import main as judge

    gen = out / "eval" / f"{name}.jsonl"
    if not gen.is_file():
        generate(GenerateConfig(model=str(model), prompts=str(prompts), out=str(gen), goals=goals,
                                no_goal=goals is None, limit=limit, overwrite=True, workers=cfg.workers,
                                sampling=SamplingConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                                        seed=cfg.seed, batch_size=16)))
    scores = out / "eval" / f"{name}.judge" / "scores.jsonl"
    if not scores.is_file():
        judge(JudgeConfig(generations=str(gen), scorer=scorer, out=str(scores.parent), overwrite=True))
    return read_jsonl(scores)


def _goal_file(model: Path) -> Path:
    from rapref.goals import GOAL_SETTINGS_FILE

    return Path(model) / GOAL_SETTINGS_FILE


def _evaluate(cfg: ExperimentConfig, out: Path, arm: str, model: Path, goal: bool, benchmark: str = "ifeval") -> dict:
    """Every held-out prompt once, the same sampling seed for every arm; `ifbench`: IFBench's own test prompts."""
    goals = None
    if goal:
        if not _goal_file(model).is_file():  # the start asked for 10, in the relabeled data's wording
            model = _start_with_goal(cfg, out)
        goals = [10.0]
    prompts, name = (out / "prompts" / "test.jsonl", arm) if benchmark == "ifeval" else \
        (Path(cfg.ifbench_prompts), f"ifbench-{arm}")
    rows = _generate(out, model, prompts, name, goals, cfg, scorer=f"if-official:{benchmark}")
    aggregate = json.loads((out / "eval" / f"{name}.judge" / "aggregate.json").read_text())
    return {"per_prompt": {r["prompt_id"]: r["score"] for r in rows},
            "all_met": {r["prompt_id"]: float(r["score"] == 10.0) for r in rows},
            "checkers": aggregate.get("scorer_aggregate", {})}


def _start_with_goal(cfg: ExperimentConfig, out: Path) -> Path:
    """A view of the start folder with the goal settings beside it (links to its files, not copies)."""
    folder = out / "start-goal"
    if not (folder / "rapref_goal.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        for item in Path(cfg.model).iterdir():
            if not (folder / item.name).exists():
                (folder / item.name).symlink_to(item.resolve())
        (folder / "rapref_goal.json").write_text(_goal_file(out / "pairs" / "data" / "relabeled").read_text())
    return folder


def _sweep(cfg: ExperimentConfig, out: Path, model: Path) -> dict:
    rows = _generate(out, model, out / "prompts" / "test.jsonl", "relabeled-sweep", list(cfg.sweep_goals), cfg,
                     limit=cfg.sweep_prompts)
    by_goal: dict[str, list[float]] = {}
    for r in rows:
        by_goal.setdefault(str(r["goal"]), []).append(r["score"])
    return by_goal


def _probe(cfg: ExperimentConfig, out: Path, models: dict) -> dict:
    """Held-out pairs: change in log p, policy minus start, the start asked with the same goal as the policy."""
    from rapref.augment import read_split
    from rapref.evaluate.logprobs import LogProbModel, unlearning_probe
    from rapref.goals import GoalSpec

    done = out / "probe.json"
    if done.is_file():
        return json.loads(done.read_text())
    data = out / "pairs" / "data" / "original"
    try:
        pairs = read_split(data, "test").to_pylist()
    except Exception:  # noqa: BLE001 - no held-out pairs (tiny runs)
        pairs = []
    result = {"pairs": len(pairs), "rows": []}
    if pairs:
        spec = GoalSpec.load(out / "pairs" / "data" / "relabeled")
        reference = LogProbModel(str(cfg.model), batch_size=4)
        for arm in ("dpo", "relabeled@10"):
            goal = ARMS[arm][1]
            result["rows"] += unlearning_probe(pairs, LogProbModel(str(models[arm]), batch_size=4), reference,
                                               spec if goal else None, ("own",) if goal else ("none",), cfg.band, arm)
    write_json_atomic(done, result)
    return result
