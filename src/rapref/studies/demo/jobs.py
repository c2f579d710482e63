"""The demo's worker pool: (configuration, seed) jobs in single-thread processes, with one progress display.

`run_jobs(fn, jobs, label, workers, kernels)` calls `fn(cfg, seed, progress)` for every job; the demo runs its seeds
through it (`run_seeds`), the grid every (cell, seed). Each worker starts with one OpenMP thread unless the user set a
count and with the CPU kernel dispatch `kernels` (`rapref.dispatch`: pinned unless asked otherwise), and runs quietly
(`_quiet`): the libraries' own bars, notices and warnings would bury the one progress display. One worker runs in this
process only where the dispatch asked for is in effect here; otherwise in a fresh process that starts with it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from rapref import dispatch
from rapref.progress import interactive, quiet


@contextlib.contextmanager
def _quiet():
    """The demo shows one progress bar; the libraries' own bars, notices and deprecation warnings would bury it.
    One thread. Everything is put back on the way out, so a caller's process (workers=1) keeps its own settings."""
    import warnings

    import datasets
    import torch
    from transformers.utils import logging

    threads, verbosity = torch.get_num_threads(), logging.get_verbosity()
    bars, hf_bars = datasets.is_progress_bar_enabled(), logging.is_progress_bar_enabled()
    tqdm = os.environ.get("TQDM_DISABLE")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        os.environ["TQDM_DISABLE"] = "1"
        datasets.disable_progress_bars()
        logging.set_verbosity_error()
        logging.disable_progress_bar()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            logging.set_verbosity(verbosity)
            if hf_bars:
                logging.enable_progress_bar()
            if bars:
                datasets.enable_progress_bars()
            if tqdm is None:
                os.environ.pop("TQDM_DISABLE", None)
            else:
                os.environ["TQDM_DISABLE"] = tqdm


@contextlib.contextmanager
def _worker_env(kernels: str):
    """Worker processes start with one OpenMP thread unless the user set a count, and with the kernel dispatch asked
    for; the caller's environment is put back once they have started and ended."""
    names = ("OMP_NUM_THREADS", *dispatch.VARIABLES)
    before = {name: os.environ.get(name) for name in names}
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.update(dispatch.environment(kernels))
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _worker(job):
    """One (configuration, seed) job in a worker process: one thread, progress lines to the parent's queue."""
    fn, cfg, seed, queue, prefix = job
    with _quiet():
        return fn(cfg, seed, progress=(lambda text: queue.put(prefix + text)) if queue is not None else None)


def run_seeds(fn, cfg, seeds, label: str) -> list:
    """`fn(cfg, seed, progress)` for every seed, `cfg.workers` at a time (see `run_jobs`)."""
    return run_jobs(fn, [(cfg, seed, "") for seed in seeds], label, cfg.workers, cfg.kernels)


def run_jobs(fn, jobs: list[tuple], label: str, workers: int, kernels: str = "pinned") -> list:
    """`fn(cfg, seed, progress)` for every job (cfg, seed, progress prefix), `workers` at a time, in worker processes
    of one thread each with the kernel dispatch `kernels`. In a terminal a progress bar (stage, jobs done, time left);
    in a log file one line per stage with the time elapsed; nothing with --quiet. Results in the order of the jobs."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from contextlib import nullcontext

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    unit = "seeds" if len({id(job[0]) for job in jobs}) <= 1 else "runs"
    workers = max(1, min(workers, len(jobs)))
    results = {}
    start = time.monotonic()
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn(f"{{task.completed}}/{{task.total}} {unit}"),
                   TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn()) \
        if interactive() and not quiet() else None
    with bar or nullcontext():
        task = bar.add_task(label, total=len(jobs)) if bar else None

        def report(text: str | None = None, advance: bool = False) -> None:
            if bar:
                bar.update(task, description=f"{label}: {text}" if text else None, advance=int(advance))
            elif not quiet() and text:
                minutes, seconds = divmod(int(time.monotonic() - start), 60)
                print(f"[{minutes:02d}:{seconds:02d}] {label}: {text} ({len(results)}/{len(jobs)} {unit} done)",
                      flush=True)

        if workers == 1 and "torch" not in sys.modules:
            dispatch.apply(kernels)  # before torch loads in this process
        if workers == 1 and dispatch.in_effect(kernels):
            with _quiet():
                for i, (cfg, seed, prefix) in enumerate(jobs):
                    results[i] = fn(cfg, seed, progress=lambda text, p=prefix: report(p + text))
                    report(f"{prefix}seed {seed} done", advance=True)
        else:
            context = mp.get_context("spawn")
            with _worker_env(kernels), context.Manager() as manager, ProcessPoolExecutor(workers, mp_context=context) as pool:
                queue = manager.Queue()
                futures = {pool.submit(_worker, (fn, cfg, seed, queue, prefix)): i
                           for i, (cfg, seed, prefix) in enumerate(jobs)}
                pending = set(futures)
                while pending:
                    while not queue.empty():
                        report(queue.get())
                    for future in [f for f in pending if f.done()]:
                        i = futures[future]
                        results[i] = future.result()
                        pending.discard(future)
                        report(f"{jobs[i][2]}seed {jobs[i][1]} done", advance=True)
                    time.sleep(0.2)
    return [results[i] for i in range(len(jobs))]
