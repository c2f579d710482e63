"""The harness every study runs on: the demo, the IFEval experiment and the on-policy loop.

- `Study`: a run folder under rapref's output rule (`rapref.runs.folder`). A rerun whose defining settings differ from the
  folder's first launch is refused with one line (`rapref.runs.launches`); `--overwrite` starts over; every launch is
  appended to `launches.jsonl` (settings, commit, package versions, time); two runs at once: the second stops.
- `Stages`: named units of work under a root. A stage is done when its marker, `ROOT/.stages/NAME.json`, is there
  (written last, after everything the stage writes) and records the settings that define it. A rerun reuses a stage
  only then; a stage whose marker records other settings is refused with one line. Wall time per stage is
  accumulated over reruns in `ROOT/timings.json`.
- `Arm`, `Claim`: arms and claims as data: each study declares its arms and claims in one table, and its report is
  generated from the table.
- `generate_and_judge`: sample a policy on a prompt file and score the samples, as two stages.
- `shrunk`: what a study's `--quick` changed, setting by setting, for the one line a smoke run prints.

    study = Study(out, "demo", settings, free=("workers",), overwrite=False)
    with study:
        stages = Stages(out / "seed-1")
        stages.run("world", {"seed": 1}, lambda: build_world(...))
        study.finish()
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rapref.formats.scores import read_scores
from rapref.generate.run import GenerateConfig
from rapref.generate.run import main as generate
from rapref.inference.serving import Server
from rapref.io import InputError, write_json_atomic
from rapref.judge.run import JudgeConfig
from rapref.judge.run import main as judge
from rapref.runs.folder import RunFolder
from rapref.runs.launches import changed, check_settings, launches

STAGES = ".stages"


@dataclass(frozen=True)
class Arm:
    """A policy and how it is asked: `recipe` says how the policy is made, "KIND" or "KIND:DATA" (the driver reads
    it: e.g. "start", "sft:goal", "dpo:relabeled"), `goal` whether it is asked for the top score at evaluation."""
    name: str
    label: str
    recipe: str
    family: str | None = None  # arms of one family share a tuned value (the demo: a learning rate)
    goal: bool = False

    @property
    def kind(self) -> str:
        return self.recipe.partition(":")[0]

    @property
    def data(self) -> str | None:
        return self.recipe.partition(":")[2] or None


@dataclass(frozen=True)
class Claim:
    """What a study claims and the direction that supports the paper: the claim holds when its interval lies above
    +band (`rapref.stats.verdict`). `kind` "paired": the paired difference `arm - baseline`; "unlearning": C2 of `arm`
    against `baseline`; "controllability": C4 of `arm` (`rapref.studies.claims`)."""
    name: str
    statement: str
    arm: str
    baseline: str | None = None
    band: float = 0.0  # negligible effect, in the claim's units
    kind: str = "paired"

    @property
    def difference(self) -> str:
        return f"{self.arm} - {self.baseline}" if self.kind == "paired" else self.kind


class Study:
    """A study's run folder (see the module notes). Use as a context manager; call `finish()` once every stage ran."""

    def __init__(self, out: str | Path, command: str, settings: dict, free: tuple[str, ...] = (),
                 overwrite: bool = False, inputs: tuple = (), legacy_settings: str | None = "config.json",
                 remedy: str = "rerun with the same settings, pass --overwrite to start over, or choose another --out"):
        self._run = RunFolder(out, command, overwrite=overwrite, reuse=True, inputs=inputs, empty=True, begin=False,
                              finish=False)
        self.out = self._run.path
        self.command, self.settings, self.free, self.overwrite = command, settings, free, overwrite
        self.legacy, self.remedy = legacy_settings, remedy

    def __enter__(self) -> "Study":
        self._run.__enter__()
        try:
            if not self.overwrite:  # --overwrite starts from an emptied folder: nothing earlier to compare with
                self._check()
            self._run.begin(self.settings)  # unfinished until this launch ends
        except BaseException as err:
            self._run.__exit__(type(err), err, err.__traceback__)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._run.__exit__(*exc)

    def _check(self) -> None:
        remedy, what = self.remedy, f"an earlier `rapref {self.command}` run"
        if launches(self.out):
            check_settings(self.out, self.settings, self.free, what, remedy)
            return
        saved = self.out / self.legacy if self.legacy else None
        if saved is not None and saved.is_file():  # a folder from before launches were recorded
            diff = changed(json.loads(saved.read_text()), self.settings, self.free)
            if diff:
                raise InputError(f"{self.out}: holds {what} with other settings ({', '.join(diff[:3])}"
                                 f"; see {self.legacy}); {remedy}")

    def finish(self) -> None:
        self._run.finish()


class Stages:
    """The stages of one root folder (see the module notes)."""

    def __init__(self, root: str | Path, progress: Callable[[str], None] | None = None):
        self.root = Path(root)
        self.progress = progress or (lambda text: None)
        path = self.root / "timings.json"
        self.timings: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}

    def _marker(self, name: str) -> Path:
        return self.root / STAGES / f"{re.sub(r'[^A-Za-z0-9_.@=-]+', '_', name)}.json"

    def done(self, name: str, settings: dict) -> bool:
        """True when `name` finished with these settings; refused when it finished with others (see `run`)."""
        marker = self._marker(name)
        if not marker.is_file():
            return False
        saved = json.loads(marker.read_text())["settings"]
        diff = changed(saved, settings)
        if diff:
            raise InputError(f"{self.root}: stage {name!r} was made with other settings ({', '.join(diff[:3])}); "
                             "start over with --overwrite or choose another --out")
        return True

    def run(self, name: str, settings: dict, work: Callable[[], object], *, timing: str | None = None) -> bool:
        """Run `work()` unless stage `name` is done with `settings` (refused when done with others); returns whether
        it ran. Wall time is added to `timings[timing or name]`."""
        if self.done(name, settings):
            return False
        self.progress(name)
        start = time.perf_counter()
        work()
        key = timing or name
        self.timings[key] = round(self.timings.get(key, 0.0) + time.perf_counter() - start, 2)
        write_json_atomic(self.root / "timings.json", self.timings)
        self.mark(name, settings)
        return True

    def mark(self, name: str, settings: dict) -> None:
        """Record stage `name` as done with `settings` (what `run` does last; for a stage whose work the driver ran
        itself, e.g. one that gathers the results of the others)."""
        write_json_atomic(self._marker(name), {"stage": name, "settings": json.loads(json.dumps(settings,
                                                                                              default=str))})


def shrunk(full, quick, skip: tuple[str, ...] = ("quick",), prefix: str = "") -> list[str]:
    """The settings `quick` (a study's --quick config) changed from `full`, but those named in `skip`: `name FULL ->
    QUICK` (lists comma-separated), a mapping's changed entries as `name KEY=VALUE, ...`."""
    items = []
    for f in dataclasses.fields(quick):
        before, after, name = getattr(full, f.name), getattr(quick, f.name), prefix + f.name
        if before == after or name in skip:
            continue
        if dataclasses.is_dataclass(after):
            items += shrunk(before, after, skip, f"{name}.")
        elif isinstance(after, dict):
            items.append(f"{name} " + ", ".join(f"{k}={v}" for k, v in after.items() if before.get(k) != v))
        else:
            items.append(f"{name} {_listed(before)} -> {_listed(after)}")
    return items


def _listed(value) -> str:
    """A setting as the command line gives it: a number in short form, a list comma-separated."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(_listed, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def generate_and_judge(stages: Stages, name: str, *, model: str | Path, prompts: str | Path, gen_path: Path,
                       judge_dir: Path, goals: list | None, sampling, scorer: str, limit: int | None = None,
                       workers: int = 1, backend: str = "auto", split: str = "test", goal_from_model: bool = False,
                       timing: str | None = None, serve: str | None = None) -> list[dict]:
    """Sample `model` on `prompts` (the goals given; with none, no goal, or with `goal_from_model` the top goal of
    the model's own goal settings) and score every sample with `scorer`: two stages, each reused when done with the
    same settings. With `serve` (a server command template, `rapref.inference.serving.Server`) the samples come from
    a server started on `model` for the generation stage only, and stopped after it, whatever happens. Returns the
    judged rows (`judge_dir/scores.jsonl`, read by `rapref.formats.scores`)."""
    from dataclasses import asdict

    no_goal = goals is None and not goal_from_model
    gen_settings = {"model": str(model), "prompts": str(prompts), "split": split, "goals": goals, "no_goal": no_goal,
                    "limit": limit, "sampling": asdict(sampling), "out": str(gen_path)}
    if serve:
        gen_settings["serve"] = serve  # another engine draws other samples: never reused across engines

    def sample(endpoint: str | None = None):
        generate(GenerateConfig(model=str(model), prompts=str(prompts), out=str(gen_path), split=split, goals=goals,
                                no_goal=no_goal, limit=limit, sampling=sampling,
                                backend="auto" if endpoint else backend, overwrite=True,
                                workers=1 if endpoint else workers, endpoint=endpoint))  # the server batches

    def served():
        gen_path.parent.mkdir(parents=True, exist_ok=True)
        with Server(serve, str(model), log=gen_path.parent / f"{gen_path.stem}.server.log") as url:
            sample(url)

    stages.run(f"generate {name}", gen_settings, served if serve else sample, timing=timing)
    stages.run(f"judge {name}", {"generations": str(gen_path), "scorer": scorer, "out": str(judge_dir)},
               lambda: judge(JudgeConfig(generations=str(gen_path), scorer=scorer, out=str(judge_dir),
                                         overwrite=True)), timing=timing)
    return read_scores(judge_dir)
