"""`rapref demo`: the whole pipeline on the synthetic sorting world, on CPU, for several evaluation seeds.

    rapref demo                      # 5 evaluation seeds, every arm, about 7 minutes on 2 cores
    rapref demo --quick              # a smoke run of every stage in under a minute (its numbers mean nothing)
    rapref demo --select-hparams     # how the learning rates were chosen: validation seeds 101-102
    rapref demo --judge-length-bias 0.5 --shared-mistake 0.3 --goal-style opaque   # probe where an effect goes

Per seed, stages hand files to each other in `OUT/seed-N/`, and a finished stage (marked `.done`) is skipped when the
run is repeated: world/ (raw UltraFeedback-schema rows, held-out prompts) -> data/<mode>/ (`rapref augment`) -> base/
(tiny model, tokenizer over the symbols that occur) -> start/ (SFT on the pool) -> arms/<arm>/ (`rapref train`, or one
more SFT epoch) -> gen/<arm>.<decoding>.jsonl (`rapref generate`) -> judge/ (`rapref judge`, true reward) ->
results.json. Seeds run in parallel worker processes, one thread each; `report.py` then pairs the arms seed by seed.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rapref import dispatch
from rapref.data.augment import AugmentConfig
from rapref.data.augment import main as augment_stage
from rapref.data.relabel import RelabelOptions
from rapref.data.schemas import SchemaOptions
from rapref.formats.dataset import read_split
from rapref.goals import STYLES, GoalSpec
from rapref.inference.logprobs import LogProbModel, unlearning_probe
from rapref.inference.sampler import SamplingConfig
from rapref.io import write_json_atomic, write_jsonl_atomic
from rapref.prompting import instruction_text, response_text
from rapref.provenance import git_hash
from rapref.settings import at_least, check, comma_separated, expect, finite, nested, setting
from rapref.studies.demo.arms import ARMS, BY_NAME, DECODINGS, FAMILIES, PRIMARY, SWEPT, Decoding
from rapref.studies.demo.arms import folder as arm_folder
from rapref.studies.demo.jobs import run_seeds
from rapref.studies.demo.report import write_report
from rapref.studies.demo.sft import run_sft, sft_examples
from rapref.studies.demo.world import (
    COUNT,
    SHARE,
    WorldConfig,
    build_world,
    corpus,
    judge_agreement,
    true_reward,
    well_formed,
)
from rapref.studies.harness import Arm, Stages, Study, generate_and_judge, shrunk
from rapref.tiny import tiny_model, train_symbol_tokenizer
from rapref.train.config import AlgorithmArgs, DataArgs, ModelArgs, TrainConfig
from rapref.train.run import main as train_stage

SCORER = "python:rapref.studies.demo.world:true_reward"
VALIDATION_SEEDS = (101, 102)
def _seed_list(seeds) -> str | None:
    """Seeds name their own folders and are run in parallel: at least one, none twice, none negative."""
    if not seeds:
        return "must name at least one seed"
    if len(set(seeds)) < len(seeds) or min(seeds) < 0:
        return f"must name distinct seeds of 0 or more, got {','.join(map(str, seeds))}"
    return None


FREE_SETTINGS = ("workers", "out")  # a rerun may change these: seeds run in parallel give the same numbers
QUICK_OUT = "runs/demo-quick"  # --quick's run folder when --out is not given (never a full run's folder)
WORLD = "the world (probe where an effect appears or vanishes)"  # --help sections
TRAINING = "training (defaults chosen by --select-hparams)"
POSITIVE = expect("a finite number above 0", lambda v: finite(v) and v > 0)
# the demo trains 1-4 epochs; more is a typo, not an over-fitting regime
EPOCHS = expect("a number above 0 and at most 100", lambda v: finite(v) and 0 < v <= 100)
SWEEP_GOALS = expect("at least two different goals from 1 to 10, each once",
                     lambda v: isinstance(v, (list, tuple)) and len(v) >= 2 and all(finite(g) and 1 <= g <= 10 for g in v)
                     and len(set(map(float, v))) == len(v))


@dataclass
class DemoConfig:
    out: str = setting("runs/demo", "run folder; finished stages of an earlier run are reused",
                       shown=f"runs/demo; {QUICK_OUT} with --quick, so a smoke run never meets a full run's folder")
    seeds: tuple[int, ...] = setting((1, 2, 3, 4, 5), "evaluation seeds, e.g. 1,2,3,4,5 (the learning rates were "
                                     "chosen on the validation seeds 101-102)", parse=comma_separated(int),
                                     rule=_seed_list)
    world: WorldConfig = nested(WorldConfig, group=WORLD)
    goal_style: str = setting("digits", "how the goal looks to the model", choices=STYLES, group=WORLD)
    start_goal_fraction: float = setting(0.75, "share of the start's SFT examples that carry their judge score as a "
                                               "goal (0: the start never saw goals)", group=WORLD, rule=SHARE)
    hidden_size: int = setting(96, "model width", flag=False, rule=COUNT)
    num_layers: int = setting(3, "transformer layers", flag=False, rule=COUNT)
    sft_epochs: float = setting(4.0, "epochs of the start's SFT", flag=False, rule=EPOCHS)
    sft_lr: float = setting(3e-3, "learning rate of the start's SFT", flag=False, rule=POSITIVE)
    # learning rates per family, chosen by `rapref demo --select-hparams` (docs/demo-hparam-selection.json)
    extra_sft_lr: float = setting(3e-3, "the +1 SFT epoch arms", group=TRAINING, rule=POSITIVE)
    dpo_lr: float = setting(1e-4, "DPO and DPO-duplicated arms", group=TRAINING, rule=POSITIVE)
    relabeled_lr: float = setting(3e-5, "relabeled, half-relabeled and positive-copies arms", group=TRAINING,
                                  rule=POSITIVE)
    beta: float = setting(0.1, "DPO beta of every preference arm (TRL's default)", group=TRAINING, rule=POSITIVE)
    batch_size: int = setting(32, "training batch size", flag=False, rule=COUNT)
    sweep_goals: tuple[float, ...] = setting((1, 2, 3, 4, 5, 6, 7, 8, 9, 10), "goals of the sweeps", flag=False,
                                             rule=SWEEP_GOALS)
    sweep_prompts: int = setting(200, "held-out prompts per goal in the sweeps (one sample each, T 0.7)", flag=False,
                                 rule=COUNT)
    band: float = setting(8.0, "\"high-quality\" responses: judged score >= band (unlearning probe)", flag=False,
                          rule=expect("a number from 1 to 10", lambda v: finite(v) and 1 <= v <= 10))
    workers: int = setting(2, "seeds trained in parallel, one thread each", rule=at_least(1))
    quick: bool = setting(False, "a smoke run of every stage in under a minute; its numbers mean nothing (no "
                                 "verdicts)")
    dpo_epochs: float = setting(1.0, "epochs of every DPO arm (the grid's over-fitting regime trains longer)",
                                flag=False, rule=EPOCHS)
    arms: tuple[str, ...] = setting((), "a subset of the arms table (names); empty: every arm", flag=False)
    decodings: tuple[str, ...] = setting((), "a subset of the decodings (names); empty: every decoding", flag=False)
    kernels: str = dispatch.kernels_setting()

    def __post_init__(self):
        check(self)

    def goal_spec(self) -> GoalSpec:
        return GoalSpec(scale=(1, 10), placement="system", header="target {lo}-{hi}:", line="{score}",
                        style=self.goal_style)

    def learning_rate(self, family: str) -> float:
        return {"sft": self.extra_sft_lr, "dpo": self.dpo_lr, "relabeled": self.relabeled_lr}[family]

    @property
    def arm_table(self) -> tuple[Arm, ...]:
        return tuple(arm for arm in ARMS if not self.arms or arm.name in self.arms)

    @property
    def decoding_table(self) -> tuple[Decoding, ...]:
        return tuple(d for d in DECODINGS if not self.decodings or d.name in self.decodings)


def quick_config(cfg: DemoConfig) -> DemoConfig:
    """A smoke run: every stage on a small world and model. The model is too small and short-trained to learn the
    task, so the numbers mean nothing and no verdict is printed."""
    world = replace(cfg.world, n_train_prompts=200, n_test_prompts=40)
    return replace(cfg, seeds=cfg.seeds[:1], world=world, hidden_size=32, num_layers=1, sft_epochs=1.0,
                   sweep_goals=(1, 10), sweep_prompts=20, quick=True)


class Seed:
    """One evaluation (or validation) seed: its world, data, start, arms and measurements under `root`."""

    def __init__(self, cfg: DemoConfig, seed: int, root: Path, progress=None):
        self.cfg, self.seed, self.root, self.spec = cfg, seed, root, cfg.goal_spec()
        self.progress = progress or (lambda text: None)
        self.stages = Stages(root, progress=lambda name: self.progress(f"seed {seed}: {name}"))

    @property
    def timings(self) -> dict[str, float]:
        return self.stages.timings

    def timed(self, name, fn, *args, detail: str = ""):
        """In-process work that writes no stage folder (aggregating judged files, the probe), timed like a stage."""
        self.progress(f"seed {self.seed}: {name}{' ' + detail if detail else ''}")
        start = time.perf_counter()
        result = fn(*args)
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 2)
        return result

    def _settings(self, **extra) -> dict:
        """What defines this seed's data and start: the world, the goal wording, the start's recipe."""
        c = self.cfg
        return {"seed": self.seed, "world": asdict(c.world), "goal_style": c.goal_style, **extra}

    # -- data and start ------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        self.world = self.timed("world", build_world, replace(self.cfg.world, seed=self.seed))
        self.stages.run("world", self._settings(), self._write_world, timing="world")
        for mode in sorted({arm.data for arm in ARMS if arm.kind == "dpo"}):
            self.stages.run(f"augment {mode}", self._settings(mode=mode), lambda m=mode: self._augment(
                self.root / "world" / "train.jsonl", self.root / "data" / m, m), timing="augment")
        self.stages.run("augment heldout", self._settings(mode="original"), lambda: self._augment(
            self.root / "world" / "test.jsonl", self.root / "data" / "heldout", "original"), timing="augment")
        c = self.cfg
        model = {"hidden_size": c.hidden_size, "num_layers": c.num_layers}
        self.stages.run("base", self._settings(**model), lambda: build_base(self.root / "base", self.world, self.spec,
                                                                            c, self.seed), timing="start")
        self.stages.run("start", self._settings(**model, fraction=c.start_goal_fraction, epochs=c.sft_epochs,
                                                lr=c.sft_lr), self._sft_start, timing="start")

    def _write_world(self) -> None:
        folder, world = self.root / "world", self.world
        write_jsonl_atomic(folder / "train.jsonl", world.train_rows)
        write_jsonl_atomic(folder / "test.jsonl", world.test_rows)
        # every held-out prompt is evaluated: no pair filter decides which prompts count
        write_jsonl_atomic(folder / "prompts.jsonl", [{"prompt_id": f"test-{i}", "prompt": r["instruction"]}
                                                      for i, r in enumerate(world.test_rows)])

    def _augment(self, source: Path, out: Path, mode: str) -> None:
        spec = self.spec
        augment_stage(AugmentConfig(source=str(source), out=str(out), schema="ultrafeedback", placement=spec.placement,
                           header=spec.header, line=spec.line, style=spec.style,
                           relabel=RelabelOptions(mode=mode, seed=self.seed),
                           schema_options=SchemaOptions(seed=self.seed, test_size=0, exclude_sources=()),
                           overwrite=True))

    def _sft_start(self) -> None:
        run_sft(str(self.root / "base"), sft_examples(self.world.train_rows, self.spec, self.cfg.start_goal_fraction,
                                                      self.seed),
                str(self.root / "start"), epochs=self.cfg.sft_epochs, lr=self.cfg.sft_lr, batch_size=64,
                seed=self.seed)
        self.spec.save(self.root / "start")

    # -- arms ----------------------------------------------------------------------------------------------------
    def train(self, arm: Arm, lr: float, folder: Path | None = None) -> Path:
        if arm.kind == "start":
            return self.root / "start"
        folder = folder or self.root / arm_folder(arm)
        settings = self._settings(arm=arm.recipe, lr=lr, beta=self.cfg.beta, batch_size=self.cfg.batch_size)
        if arm.kind == "dpo" and self.cfg.dpo_epochs != 1.0:  # one epoch: the key is left out, as before it existed
            settings["epochs"] = self.cfg.dpo_epochs
        self.stages.run(f"train {folder.relative_to(self.root)}", settings, lambda: self._train(arm, lr, folder),
                        timing=f"train {arm.name.split('@')[0]}")
        return folder

    def _train(self, arm: Arm, lr: float, folder: Path) -> None:
        start = self.root / "start"
        if arm.kind == "sft":
            fraction = 1.0 if arm.data == "goal" else 0.0
            run_sft(str(start), sft_examples(self.world.train_rows, self.spec, fraction, self.seed + 1), str(folder),
                    epochs=1.0, lr=lr, batch_size=64, seed=self.seed)
            self.spec.save(folder)
        else:
            with contextlib.redirect_stdout(io.StringIO()):  # the demo reports its own stages
                self._train_dpo(arm, lr, folder, start)

    def _train_dpo(self, arm: Arm, lr: float, folder: Path, start: Path) -> None:
        train_stage(overwrite=True, cfg=TrainConfig(  # a stage left unfinished by a kill is trained again
            output_dir=str(folder), seed=self.seed, model=ModelArgs(name_or_path=str(start)),
            data=DataArgs(path=str(self.root / "data" / arm.data), max_prompt_length=48),
            algorithm=AlgorithmArgs(name="dpo", beta=self.cfg.beta),
            training={"learning_rate": lr, "num_train_epochs": self.cfg.dpo_epochs,
                      "per_device_train_batch_size": self.cfg.batch_size, "max_length": 64,
                      "lr_scheduler_type": "cosine", "warmup_steps": 0.1, "disable_tqdm": True,
                      "logging_steps": 10, "save_strategy": "no"},
        ))

    # -- evaluation ----------------------------------------------------------------------------------------------
    def evaluate(self, name: str, model: Path, goal: bool, decoding: Decoding) -> dict:
        """Sample every held-out prompt, judge with the true reward; per-prompt means and shape rates."""
        rows = self._generate_and_judge(f"{name}.{decoding.name}", model, [self.spec.top] if goal else None,
                                        decoding.temperature, decoding.samples, None, f"evaluate {decoding.name}")
        per_prompt: dict[str, list[float]] = {}
        for row in rows:
            per_prompt.setdefault(row["prompt_id"], []).append(row["score"])
        n = len(rows)
        return {"n_prompts": len(per_prompt), "samples": decoding.samples,
                "mean": sum(r["score"] for r in rows) / n,
                "per_prompt": {pid: sum(v) / len(v) for pid, v in per_prompt.items()},
                "well_formed": sum(well_formed(r["prompt"], r["text"]) for r in rows) / n,
                "mean_length": sum(len(r["text"].split()) for r in rows) / n}

    def sweep(self, name: str, model: Path) -> dict:
        """True reward per goal and prompt over the first `sweep_prompts` held-out prompts (one sample, T 0.7)."""
        rows = self._generate_and_judge(f"{name}.sweep", model, list(self.cfg.sweep_goals), 0.7, 1,
                                        self.cfg.sweep_prompts, "sweep")
        by_goal: dict[str, dict[str, float]] = {}
        for row in sorted(rows, key=lambda r: r["goal"]):
            by_goal.setdefault(str(row["goal"]), {})[row["prompt_id"]] = row["score"]
        return by_goal

    def _generate_and_judge(self, name, model, goals, temperature, samples, limit, timing) -> list[dict]:
        # the same sampling seed for every arm: paired draws
        sampling = SamplingConfig(max_new_tokens=12, temperature=temperature, num_samples=samples, seed=self.seed,
                                  batch_size=2048)
        return generate_and_judge(self.stages, name, model=model, prompts=self.root / "world" / "prompts.jsonl",
                                  gen_path=self.root / "gen" / f"{name}.jsonl", judge_dir=self.root / "judge" / name,
                                  goals=goals, sampling=sampling, scorer=SCORER, limit=limit, backend="transformers",
                                  timing=timing)

    def probe(self, models: dict[str, Path]) -> dict:
        """Unlearning (C2): change in log p of held-out chosen and rejected responses, policy minus start, the start
        asked with the same goal as the policy (the response's own score for goal-conditioned arms)."""

        pairs = read_split(self.root / "data" / "heldout", "train").to_pylist()
        reference = LogProbModel(str(self.root / "start"), batch_size=256)
        result = {}
        for arm in self.cfg.arm_table:
            if arm.kind == "start" or arm.name not in models:
                continue
            condition = "own" if arm.goal or arm.data == "goal" else "none"
            rows = unlearning_probe(pairs, LogProbModel(str(models[arm.name]), batch_size=256), reference,
                                    self.spec if condition == "own" else None, (condition,), self.cfg.band, arm.name)
            result[arm.name] = {f"{r['response']} {r['band']}": r["mean_delta_logp"] for r in rows}
            result[arm.name]["condition"] = condition
        return {"arms": result, "heldout_pairs": len(pairs), "band": self.cfg.band}

    def data_stats(self) -> dict:
        summary = json.loads((self.root / "data" / "relabeled" / "summary.json").read_text())
        original = read_split(self.root / "data" / "original", "train")
        chosen, rejected = original["score_chosen"].to_pylist(), original["score_rejected"].to_pylist()
        heldout = read_split(self.root / "data" / "heldout", "train").to_pylist()
        n = len(chosen)
        return {
            **judge_agreement(self.world),
            "pairs": n, "dropped_by_reason": summary["dropped_by_reason"],
            "rejected_judged_at_least_band": sum(s >= self.cfg.band for s in rejected) / n,
            "tie_fraction": sum(a == b for a, b in zip(chosen, rejected)) / n,
            "mean_score_chosen": sum(chosen) / n, "mean_score_rejected": sum(rejected) / n,
            # the level preferences point to: the true reward of the held-out chosen answers
            "heldout_chosen_true_reward": sum(true_reward(instruction_text(p["prompt"]), response_text(p["chosen"]))
                                              for p in heldout) / len(heldout),
        }


def build_base(folder: Path, world, spec: GoalSpec, cfg: DemoConfig, seed: int) -> None:
    """The tiny model on a tokenizer over the symbols that occur; sampling can only emit tokens that occur in
    answers (the others are suppressed in the saved generation config, which every arm inherits)."""

    tags = [spec.render_score(s) for s in range(1, 11)] if spec.style == "opaque" else ()
    tokenizer = train_symbol_tokenizer(corpus(world, spec), extra_tokens=tags)
    model = tiny_model(tokenizer, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers, max_length=64, seed=seed)
    answer_ids = {tokenizer.eos_token_id}
    for row in world.train_rows:
        for completion in row["completions"]:
            answer_ids.update(tokenizer(completion["response"], add_special_tokens=False)["input_ids"])
    model.generation_config.suppress_tokens = sorted(set(range(len(tokenizer))) - answer_ids)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def run_seed(cfg: DemoConfig, seed: int, progress=None) -> dict:
    """Every stage for one evaluation seed; returns its measurements (saved as OUT/seed-N/results.json)."""
    root = Path(cfg.out) / f"seed-{seed}"
    done = root / "results.json"
    s = Seed(cfg, seed, root, progress)
    if s.stages.done("results", {"seed": seed}):
        return json.loads(done.read_text())
    s.prepare()
    arms = cfg.arm_table
    models = {arm.name: s.train(arm, cfg.learning_rate(arm.family) if arm.family else 0.0) for arm in arms}
    evaluations = {d.name: {arm.name: s.evaluate(arm.name, models[arm.name], arm.goal, d) for arm in arms}
                   for d in cfg.decoding_table}
    sweeps = {name: s.sweep(name, models[name]) for name in SWEPT if name in models}
    probe = s.timed("probe", s.probe, models)
    results = {"seed": seed, "evaluations": evaluations, "sweeps": sweeps, "probe": probe, "data": s.data_stats(),
               "timings_s": s.timings, "dispatch": dispatch.describe(cfg.kernels)}
    write_json_atomic(done, results)
    s.stages.mark("results", {"seed": seed})
    return results


def select_seed(cfg: DemoConfig, seed: int, progress=None, grid: dict | None = None) -> dict:
    """Validation seed: train each family's selecting arm at every learning rate; improvement over the start."""
    grid = grid or LR_GRID
    root = Path(cfg.out) / f"seed-{seed}"
    s = Seed(cfg, seed, root, progress)
    s.prepare()
    decoding = next(d for d in DECODINGS if d.name == PRIMARY)
    start = s.evaluate("start", root / "start", False, decoding)
    trials = []
    for family, arm_name in FAMILIES.items():
        arm = BY_NAME[arm_name]
        for lr in grid[family]:
            name = f"{arm.name.split('@')[0]}-lr{lr:g}"
            model = s.train(arm, lr, root / "select" / name)
            result = s.evaluate(name, model, arm.goal, decoding)
            trials.append({"family": family, "arm": arm.name, "lr": lr, "reward": result["mean"],
                           "improvement_over_start": result["mean"] - start["mean"],
                           "well_formed": result["well_formed"]})
    return {"seed": seed, "start": {"reward": start["mean"], "well_formed": start["well_formed"]}, "trials": trials}


DPO_GRID = (3e-6, 1e-5, 3e-5, 1e-4, 3e-4)
LR_GRID = {"sft": (3e-4, 1e-3, 3e-3), "dpo": DPO_GRID, "relabeled": DPO_GRID}
MIN_WELL_FORMED = 0.95


def select_hyperparameters(cfg: DemoConfig, seeds=VALIDATION_SEEDS, overwrite: bool = False) -> dict:
    """Per family, the learning rate with the largest mean improvement over the start on validation seeds (T 0.7),
    among those whose answers stay well-formed (>= MIN_WELL_FORMED on every seed). Never by which arm wins."""
    with Study(cfg.out, "demo --select-hparams", asdict(cfg), free=FREE_SETTINGS, overwrite=overwrite) as study:
        selection = _select(cfg, seeds, study.out)
        study.finish()
    return selection


def _select(cfg: DemoConfig, seeds, out: Path) -> dict:
    per_seed = run_seeds(select_seed, cfg, list(seeds), "select")
    chosen, table = {}, []
    for family, grid in LR_GRID.items():
        for lr in grid:
            trials = [t for r in per_seed for t in r["trials"] if t["family"] == family and t["lr"] == lr]
            entry = {"family": family, "arm": FAMILIES[family], "lr": lr,
                     "improvement_over_start": sum(t["improvement_over_start"] for t in trials) / len(trials),
                     "min_well_formed": min(t["well_formed"] for t in trials),
                     "per_seed": [round(t["improvement_over_start"], 4) for t in trials]}
            table.append(entry)
        eligible = [e for e in table if e["family"] == family and e["min_well_formed"] >= MIN_WELL_FORMED]
        chosen[family] = max(eligible, key=lambda e: e["improvement_over_start"])["lr"] if eligible else None
    selection = {"criterion": f"mean improvement of the family's arm over the start on validation seeds "
                              f"({PRIMARY}), answers well-formed >= {MIN_WELL_FORMED} on every seed",
                 "seeds": list(seeds), "grid": LR_GRID, "trials": table, "chosen": chosen,
                 "per_seed_start": [r["start"] for r in per_seed]}
    write_json_atomic(out / "selection.json", selection)
    return selection


def to_run(cfg: DemoConfig) -> DemoConfig:
    """The settings the demo runs: --quick's (`quick_config`) or the given ones."""
    return quick_config(cfg) if cfg.quick else cfg


def quick_note(cfg: DemoConfig, run: DemoConfig) -> str:
    """What --quick shrank, in one line: the seeds left out first, then every other setting it changed."""
    seeds = [f"seed {','.join(map(str, run.seeds))} only of {','.join(map(str, cfg.seeds))}"] \
        if run.seeds != cfg.seeds else []
    return "quick: " + "; ".join(seeds + shrunk(cfg, run, skip=("quick", "seeds")))


def main(cfg: DemoConfig, overwrite: bool = False) -> dict:
    run = to_run(cfg)
    # finished stages of an earlier run with the same settings are reused; other settings are refused
    with Study(run.out, "demo", asdict(run), free=FREE_SETTINGS, overwrite=overwrite) as study:
        if cfg.quick:  # after the folder is claimed: a refusal comes alone
            print("SMOKE RUN (--quick): every stage runs on a tiny world and model that cannot learn the task; its "
                  f"numbers mean nothing and no verdict is drawn.\n{quick_note(cfg, run)}", flush=True)
        report = _run(run, study.out)
        study.finish()
    return report


def _run(cfg: DemoConfig, out: Path) -> dict:
    write_json_atomic(out / "config.json", asdict(cfg))
    fresh = not any((out / f"seed-{seed}" / "results.json").is_file() for seed in cfg.seeds)
    start = time.perf_counter()
    results = run_seeds(run_seed, cfg, list(cfg.seeds), "demo")
    wall = time.perf_counter() - start
    if fresh:  # the time of a run that computed every seed, kept when later invocations reuse its stages

        write_json_atomic(out / "timing.json", {"full_run_wall_seconds": wall, "workers": cfg.workers,
                                                "git_hash": git_hash()})
    return write_report(cfg, results, out, wall_seconds=wall)
