"""Progress a person can follow, in a terminal and in a log file.

In a terminal, long loops show a tqdm bar (name, done / total, time left). When output goes to a file or a pipe, a
stage that runs longer than `RAPREF_PROGRESS_SECONDS` (default 30) prints a line with done / total and time left at
that pace, and one when it ends: no carriage returns, no 20 silent minutes, and no lines for stages over in seconds
(their result line says it all). `--quiet` silences both; `--log-level`
sets how much transformers, datasets and TRL report. Under torchrun / accelerate only rank 0 prints.

    for batch in track(batches, "Generating", unit="batch"):
        ...
    say("rapref generate: 120 samples -> gen.jsonl")
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, TypeVar

from rapref.settings import setting

T = TypeVar("T")
_QUIET = "RAPREF_QUIET"
_QUIET_TQDM = "RAPREF_SET_TQDM_DISABLE"  # TQDM_DISABLE was set by rapref (not by the user)


@dataclass
class OutputOptions:
    """`--quiet` and `--log-level`, on every command (their flags are derived from these fields)."""

    quiet: bool = setting(False, "no progress bars or notices: only results and errors (for scripts)", group="output")
    log_level: str = setting("warning", "how much the libraries underneath (transformers, datasets, TRL) report",
                             choices=("debug", "info", "warning", "error"), group="output")


def configure(quiet: bool = OutputOptions.quiet, log_level: str = OutputOptions.log_level) -> None:
    """Apply `--quiet` / `--log-level` to rapref and the libraries under it (called once by the CLI)."""
    level = getattr(logging, log_level.upper())
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if quiet:
        os.environ[_QUIET] = "1"
    else:  # one process may run several commands (tests, notebooks): undo an earlier --quiet
        os.environ.pop(_QUIET, None)
    if quiet or not interactive():  # library bars too (datasets, transformers, GGUF conversion): no raw \r in logs
        os.environ["TQDM_DISABLE"] = os.environ[_QUIET_TQDM] = "1"
    elif os.environ.pop(_QUIET_TQDM, None):
        os.environ.pop("TQDM_DISABLE", None)
    # The libraries read these when imported; commands that never import them (augment) do not pay for it.
    os.environ["TRANSFORMERS_VERBOSITY"] = os.environ["DATASETS_VERBOSITY"] = log_level.lower()
    bars_off = quiet or not interactive()
    if bars_off:
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers" in sys.modules:  # already imported (tests, notebooks): tell it directly
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(level)
        if bars_off:
            hf_logging.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.logging.set_verbosity(level)
        if bars_off:
            datasets.disable_progress_bars()  # their per-map bars would flood a log file; ours report the stage
        else:
            datasets.enable_progress_bars()


def quiet() -> bool:
    return os.environ.get(_QUIET) == "1"


def main_process() -> bool:
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def interactive() -> bool:
    return sys.stderr.isatty()


def say(message: str) -> None:
    """A result or notice line: printed by rank 0 unless --quiet."""
    if not quiet() and main_process():
        print(message, flush=True)


def _interval() -> float:
    return float(os.environ.get("RAPREF_PROGRESS_SECONDS", "30"))


def _eta(done: int, total: int | None, elapsed: float) -> str:
    if not total or not done:
        return ""
    left = elapsed / done * (total - done)
    return f", {int(left // 60)}:{int(left % 60):02d} left"


def track(iterable: Iterable[T], description: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Iterate with progress: a tqdm bar in a terminal, periodic lines in a log file, nothing when quiet."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if quiet() or not main_process():
        yield from iterable
        return
    if interactive():
        from tqdm.auto import tqdm

        yield from tqdm(iterable, desc=description, total=total, unit=unit)
        return
    start = last = time.monotonic()
    of = f"/{total}" if total else ""
    done, reported = 0, False
    for item in iterable:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= _interval() and (total is None or done < total):
            print(f"{description}: {done}{of} {unit}{_eta(done, total, now - start)}", file=sys.stderr, flush=True)
            last, reported = now, True
    if reported:
        print(f"{description}: done, {done}{of} {unit} in {time.monotonic() - start:.1f} s", file=sys.stderr,
              flush=True)


def trainer_callback(description: str):
    """A transformers `TrainerCallback` printing periodic `step i/N, loss, time left` lines (for log files, where the
    Trainer's own tqdm bar is switched off)."""
    from transformers import TrainerCallback

    class LogProgress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start = self.last = time.monotonic()
            self.reported = False

        def on_step_end(self, args, state, control, **kwargs):
            now = time.monotonic()
            if state.is_world_process_zero and not quiet() and now - self.last >= _interval():
                losses = [h["loss"] for h in state.log_history if "loss" in h]
                loss = f", loss {losses[-1]:.4f}" if losses else ""
                print(f"{description}: step {state.global_step}/{state.max_steps}{loss}"
                      f"{_eta(state.global_step, state.max_steps, now - self.start)}", file=sys.stderr, flush=True)
                self.last, self.reported = now, True

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero and not quiet() and self.reported:
                print(f"{description}: done, {state.global_step} steps in {time.monotonic() - self.start:.1f} s",
                      file=sys.stderr, flush=True)

    return LogProgress()
