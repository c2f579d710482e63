"""`rapref demo`: the whole pipeline on the synthetic sorting world, on CPU, for several seeds.

    rapref demo                      # default world, 3 evaluation seeds, ~10 minutes on 2 cores
    rapref demo --quick              # one small seed, under a minute: a smoke run of every stage
    rapref demo --goal-style opaque --start-goal-fraction 0 --judge-noise 2   # probe where the effect goes

Per seed, stages hand files to each other in `OUT/seed-N/` and a finished stage is skipped when its output exists:
world/ (raw UltraFeedback-schema rows) -> data/<mode>/ (`rapref augment`) -> base/ (tiny model) -> sft/ (the start)
-> arms/<arm>/ (`rapref train`) -> gen/<arm>.jsonl (`rapref generate`) -> judge/<arm>/ (`rapref judge`, true reward)
-> probe.json (log-probabilities of held-out responses). `report.py` then aggregates the seeds.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rapref.demo.world import WorldConfig, build_world, corpus, judge_agreement
from rapref.goals import GoalSpec
from rapref.io import read_jsonl, write_json_atomic, write_jsonl_atomic
from rapref.outputs import claim_output, empty_output, mark_output

STAGE_DONE = ".done"  # written last into a stage folder: the stage counts as done only when it is there


def stage_done(folder: Path) -> bool:
    return (folder / STAGE_DONE).is_file()


def mark_stage_done(folder: Path) -> None:
    write_json_atomic(folder / STAGE_DONE, {"done": True})

ARMS = {  # arm -> (data mode, goal at evaluation)
    "sft": (None, None),
    "dpo": ("original", None),
    "dpo-dup": ("duplicated", None),
    "relabeled": ("relabeled", "top"),
    "half-relabeled": ("half", "top"),
    "goal-sft": (None, "top"),
}


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    seeds: tuple[int, ...] = (1, 2, 3)  # evaluation seeds; hyperparameters were chosen on validation seeds 101-102
    world: WorldConfig = field(default_factory=WorldConfig)
    goal_style: str = "digits"  # digits | thermometer | opaque
    start_goal_fraction: float = 0.75  # share of SFT examples that carry their judge score as a goal
    hidden_size: int = 96
    num_layers: int = 3
    sft_epochs: float = 4.0
    sft_lr: float = 3e-3
    beta: float = 0.5
    dpo_lr: float = 3e-4
    dpo_epochs: float = 1.0
    batch_size: int = 32
    temperature: float = 0.7
    sweep_goals: tuple[float, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    band: float = 5.0  # "high-quality" rejected responses: judged score >= band
    quick: bool = False
    arms: tuple[str, ...] = tuple(ARMS)  # a subset (e.g. sft, dpo) serves hyperparameter selection

    def goal_spec(self) -> GoalSpec:
        return GoalSpec(scale=(1, 10), placement="system", header="target {lo}-{hi}:", line="{score}",
                        style=self.goal_style)


def quick_config(cfg: DemoConfig) -> DemoConfig:
    world = replace(cfg.world, n_train_prompts=240, n_test_prompts=40)
    return replace(cfg, seeds=cfg.seeds[:1], world=world, hidden_size=48, num_layers=2, sft_epochs=1.0,
                   sweep_goals=(1, 5, 10), quick=True)


def run_seed(cfg: DemoConfig, seed: int, progress=None) -> dict:
    """Every stage for one seed; returns the seed's measurements (also saved as OUT/seed-N/results.json)."""
    root = Path(cfg.out) / f"seed-{seed}"
    done = root / "results.json"
    if done.is_file():
        return json.loads(done.read_text())
    timings: dict[str, float] = {}

    def stage(name):
        if progress:
            progress(f"seed {seed}: {name}")
        timings[name] = time.perf_counter()

    def finish(name):
        timings[name] = round(time.perf_counter() - timings[name], 2)

    spec = cfg.goal_spec()
    world_cfg = replace(cfg.world, seed=seed)
    stage("world")
    world = build_world(world_cfg)
    for split, rows in (("train", world.train_rows), ("test", world.test_rows)):
        path = root / "world" / f"{split}.jsonl"
        if not path.is_file():
            write_jsonl_atomic(path, rows)
    finish("world")

    stage("augment")
    for mode in ("relabeled", "original", "duplicated", "half"):
        _augment(root / "world" / "train.jsonl", root / "data" / mode, mode, spec, seed)
    _augment(root / "world" / "test.jsonl", root / "data" / "heldout", "original", spec, seed)
    finish("augment")

    stage("start model")
    base, sft = root / "base", root / "sft"
    if not stage_done(base):
        from rapref.tiny import build_tiny

        build_tiny(base, corpus(world), vocab_size=160, seed=seed, hidden_size=cfg.hidden_size,
                   num_layers=cfg.num_layers, max_length=256,
                   extra_tokens=[spec.render_score(s) for s in range(1, 11)] if spec.style == "opaque" else ())
        mark_stage_done(base)
    from rapref.demo.sft import run_sft, sft_examples

    if not stage_done(sft):
        run_sft(str(base), sft_examples(world.train_rows, spec, cfg.start_goal_fraction, seed), str(sft),
                epochs=cfg.sft_epochs, lr=cfg.sft_lr, batch_size=64, seed=seed)
        spec.save(sft)
        mark_stage_done(sft)
    finish("start model")

    stage("arms")
    arm_dirs = {"sft": sft}
    for arm, (mode, _) in ARMS.items():
        if mode is None or arm not in cfg.arms:
            continue
        arm_dirs[arm] = root / "arms" / arm
        if not stage_done(arm_dirs[arm]):
            _train_arm(cfg, sft, root / "data" / mode, arm_dirs[arm], seed)
            mark_stage_done(arm_dirs[arm])
    arm_dirs["goal-sft"] = root / "arms" / "goal-sft"
    if "goal-sft" in cfg.arms and not stage_done(arm_dirs["goal-sft"]):
        run_sft(str(sft), sft_examples(world.train_rows, spec, 1.0, seed + 1), str(arm_dirs["goal-sft"]),
                epochs=1.0, lr=cfg.sft_lr / 3, batch_size=64, seed=seed)
        spec.save(arm_dirs["goal-sft"])
        mark_stage_done(arm_dirs["goal-sft"])
    finish("arms")

    stage("generate + judge")
    rewards = {}
    for arm, (_, goal) in ARMS.items():
        if arm in cfg.arms:
            goals = [spec.top] if goal == "top" else None
            rewards[arm] = _generate_and_judge(cfg, arm_dirs[arm], root, arm, goals, seed)
    full = set(cfg.arms) == set(ARMS)
    sweep = _generate_and_judge(cfg, arm_dirs["relabeled"], root, "relabeled-sweep", list(cfg.sweep_goals), seed) \
        if full else None
    sft_sweep = _generate_and_judge(cfg, sft, root, "sft-sweep", list(cfg.sweep_goals), seed) \
        if full and cfg.start_goal_fraction > 0 else None
    finish("generate + judge")

    stage("probe")
    probe = _probe(cfg, root, arm_dirs, spec) if full else None
    finish("probe")

    results = {"seed": seed, "rewards": rewards, "sweep": sweep, "sft_sweep": sft_sweep, "probe": probe,
               "data": _data_stats(root, world), "timings_s": timings}
    write_json_atomic(done, results)
    return results


def _augment(source: Path, out: Path, mode: str, spec: GoalSpec, seed: int) -> None:
    if stage_done(out):
        return
    from rapref.augment import AugmentConfig, main
    from rapref.relabel import RelabelOptions
    from rapref.schemas import SchemaOptions

    main(AugmentConfig(source=str(source), out=str(out), schema="ultrafeedback", placement=spec.placement,
                       header=spec.header, line=spec.line, style=spec.style, relabel=RelabelOptions(mode=mode, seed=seed),
                       schema_options=SchemaOptions(seed=seed, test_size=0, exclude_sources=()), overwrite=True))
    mark_stage_done(out)


def _train_arm(cfg: DemoConfig, start: Path, data: Path, out: Path, seed: int) -> dict:
    from rapref.train.config import AlgorithmArgs, DataArgs, ModelArgs, TrainConfig
    from rapref.train.run import main

    return main(overwrite=True, cfg=TrainConfig(  # a stage left unfinished by a kill is trained again
        output_dir=str(out), seed=seed, model=ModelArgs(name_or_path=str(start)),
        data=DataArgs(path=str(data), max_prompt_length=96),
        algorithm=AlgorithmArgs(name="dpo", beta=cfg.beta),
        training={"learning_rate": cfg.dpo_lr, "num_train_epochs": cfg.dpo_epochs,
                  "per_device_train_batch_size": cfg.batch_size, "max_length": 128, "lr_scheduler_type": "cosine",
                  "warmup_steps": 0.1, "disable_tqdm": True, "logging_steps": 10},
    ))


def _generate_and_judge(cfg: DemoConfig, model: Path, root: Path, name: str, goals, seed: int) -> dict:
    from rapref.evaluate.generate import GenerateConfig, SamplingConfig
    from rapref.evaluate.generate import main as generate
    from rapref.evaluate.judge import JudgeConfig
    from rapref.evaluate.judge import main as judge

    gen_path = root / "gen" / f"{name}.jsonl"
    if not gen_path.is_file():
        generate(GenerateConfig(model=str(model), prompts=str(root / "data" / "heldout"), split="train",
                                out=str(gen_path), goals=goals, no_goal=goals is None, backend="transformers",
                                sampling=SamplingConfig(max_new_tokens=16, temperature=cfg.temperature, seed=seed,
                                                        batch_size=128)))
    result = judge(JudgeConfig(generations=str(gen_path), scorer="python:rapref.demo.world:true_reward",
                               out=str(root / "judge" / name), overwrite=True))  # cached scores make this free
    scores = read_jsonl(root / "judge" / name / "scores.jsonl")
    result["per_prompt"] = {f"{s['prompt_id']}@{s['goal']}": s["score"] for s in scores}
    return result


def _probe(cfg: DemoConfig, root: Path, arm_dirs: dict, spec: GoalSpec) -> dict:
    """Change in log p of held-out chosen / rejected responses vs the SFT start (C2), by judged-score band."""
    from rapref.augment import read_split
    from rapref.evaluate.logprobs import LogProbModel, unlearning_probe

    pairs = read_split(root / "data" / "heldout", "train").to_pylist()
    reference = LogProbModel(str(arm_dirs["sft"]), batch_size=64)
    rows = []
    for arm, (mode, goal) in ARMS.items():
        if arm == "sft":
            continue
        conditions = ("own", "top", "none") if goal else ("none",)
        rows += unlearning_probe(pairs, LogProbModel(str(arm_dirs[arm]), batch_size=64), reference,
                                 spec if goal else None, conditions, cfg.band, arm)
    return {"rows": rows, "heldout_pairs": len(pairs)}


def _data_stats(root: Path, world) -> dict:
    from rapref.augment import read_split

    summary = json.loads((root / "data" / "relabeled" / "summary.json").read_text())
    original = read_split(root / "data" / "original", "train")
    chosen, rejected = original["score_chosen"].to_pylist(), original["score_rejected"].to_pylist()
    n = len(chosen)
    return {
        **judge_agreement(world),
        "pairs": n, "dropped_by_reason": summary["dropped_by_reason"],
        "tie_fraction": sum(a == b for a, b in zip(chosen, rejected)) / n,
        "rejected_high_quality_fraction": sum(r >= 5 for r in rejected) / n,
        "mean_score_chosen": sum(chosen) / n, "mean_score_rejected": sum(rejected) / n,
        "mean_gap": sum(a - b for a, b in zip(chosen, rejected)) / n,
    }


def select_hyperparameters(cfg: DemoConfig, grid: dict[str, list], seeds=(101, 102)) -> dict:
    """Pick shared hyperparameters on validation seeds by the DPO baseline's mean true reward.

    Only the SFT start and the plain-DPO arm are trained, so the choice cannot favour the relabeled arms.
    """
    import itertools

    scores = []
    for values in itertools.product(*grid.values()):
        setting = dict(zip(grid, values))
        name = "-".join(f"{k}{v:g}" for k, v in setting.items())
        trial = replace(cfg, out=str(Path(cfg.out) / name), seeds=tuple(seeds), arms=("sft", "dpo"), **setting)
        # the start does not depend on the DPO settings: share it across trials
        rewards = []
        for seed in seeds:
            shared = Path(cfg.out) / "shared" / f"seed-{seed}"
            target = Path(trial.out) / f"seed-{seed}"
            for stage_dir in ("world", "data", "base", "sft"):
                if (shared / stage_dir).is_dir() and not (target / stage_dir).exists():
                    target.mkdir(parents=True, exist_ok=True)
                    (target / stage_dir).symlink_to((shared / stage_dir).resolve())
            result = run_seed(trial, seed)
            for stage_dir in ("world", "data", "base", "sft"):
                if not (shared / stage_dir).exists() and (target / stage_dir).is_dir():
                    shared.mkdir(parents=True, exist_ok=True)
                    (shared / stage_dir).symlink_to((target / stage_dir).resolve())
            rewards.append(result["rewards"]["dpo"]["mean"])
        scores.append({**setting, "dpo_validation_reward": float(sum(rewards) / len(rewards)), "per_seed": rewards})
    best = max(scores, key=lambda s: s["dpo_validation_reward"])
    selection = {"criterion": "mean true reward of the plain-DPO arm on validation seeds", "seeds": list(seeds),
                 "trials": scores, "chosen": {k: best[k] for k in grid}}
    write_json_atomic(Path(cfg.out) / "selection.json", selection)
    return selection


def select_world(cfg: DemoConfig, fractions=(0.5, 0.75, 1.0), seed: int = 101) -> dict:
    """How faithfully each start mirrors the paper's instruct models, on a validation seed: does the start read goals
    (Spearman's rho of goal vs true reward over a sweep) and still answer without one? No preference arm is trained.
    """
    from rapref.demo.report import _spearman
    from rapref.demo.sft import run_sft, sft_examples
    from rapref.tiny import build_tiny

    trials = []
    for fraction in fractions:
        trial = replace(cfg, out=str(Path(cfg.out) / f"fraction-{fraction:g}"), start_goal_fraction=fraction)
        root, spec = Path(trial.out), trial.goal_spec()
        world = build_world(replace(cfg.world, seed=seed))
        write_jsonl_atomic(root / "world" / "test.jsonl", world.test_rows)
        _augment(root / "world" / "test.jsonl", root / "data" / "heldout", "original", spec, seed)
        if not stage_done(root / "sft"):
            build_tiny(root / "base", corpus(world), vocab_size=160, seed=seed, hidden_size=cfg.hidden_size,
                       num_layers=cfg.num_layers, max_length=256)
            run_sft(str(root / "base"), sft_examples(world.train_rows, spec, fraction, seed), str(root / "sft"),
                    epochs=cfg.sft_epochs, lr=cfg.sft_lr, batch_size=64, seed=seed)
            spec.save(root / "sft")
            mark_stage_done(root / "sft")
        sweep = _generate_and_judge(trial, root / "sft", root, "sweep", [1.0, 4.0, 7.0, 10.0], seed)
        plain = _generate_and_judge(trial, root / "sft", root, "none", None, seed)
        trials.append({"start_goal_fraction": fraction, "start_spearman_rho": _spearman(sweep),
                       "reward_by_goal": {g: v["mean"] for g, v in sweep["by_goal"].items()},
                       "reward_without_goal": plain["mean"]})
    selection = {"seed": seed, "rule": "the smallest fraction whose start reads goals (rho >= 0.3) and answers "
                                       "without a goal at least as well as the pool's mean true reward minus 0.2",
                 "trials": trials}
    write_json_atomic(Path(cfg.out) / "world-selection.json", selection)
    return selection


def main(cfg: DemoConfig, overwrite: bool = False) -> dict:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from rapref.demo.report import write_report

    if cfg.quick:
        cfg = quick_config(cfg)
    out = claim_output(cfg.out, "demo", overwrite=overwrite, reuse=True)  # finished stages of an earlier run are reused
    if overwrite and out.is_dir() and any(out.iterdir()):
        empty_output(out)
    mark_output(out, "demo")
    write_json_atomic(out / "config.json", asdict(cfg))
    start = time.perf_counter()
    results = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=False) as bar:
        task = bar.add_task("demo", total=None)
        for seed in cfg.seeds:
            results.append(run_seed(cfg, seed, progress=lambda text: bar.update(task, description=text)))
        bar.update(task, description="report")
    report = write_report(cfg, results, out, wall_seconds=time.perf_counter() - start)
    return report
