"""Batched sampling on the transformers backend: length-sorted batches, the KV cache, and worker processes.

Prompts are sorted by token length and cut into batches, so a batch pads little (left padding). Batch `b` is seeded
with `seed + b * batch_size` and its draws follow from the seed and the batch alone: the same texts come out whether
the batches run in one process or in several workers, all at once or resumed after an interruption (`done`). On a CPU
two single-thread workers generate faster than one two-thread process (`--workers 2`); each worker loads its own copy
of the model and sets its thread count explicitly. Batches are handed to workers round-robin; each finished batch is
passed to `on_batch(indices, texts)` in the parent as it arrives (where `rapref generate` appends it to its resume file).
"""

from __future__ import annotations

import os
import queue as queues
from collections.abc import Callable

BatchPlan = list[tuple[int, list[int]]]  # (batch number, prompt indices)


def plan_batches(ids: list[list[int]], batch_size: int) -> BatchPlan:
    """Prompt indices sorted by length (longest first, ties by position), cut into batches."""
    order = sorted(range(len(ids)), key=lambda i: (-len(ids[i]), i))
    return [(b, order[start:start + batch_size]) for b, start in enumerate(range(0, len(order), batch_size))]


def default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def sample_batches(model_dir: str, ids: list[list[int]], sampling, *, description: str = "Generating",
                   done: dict[int, str] | None = None, on_batch: Callable | None = None, workers: int = 1,
                   threads: int | None = None) -> list[str]:
    """One sampled text per prompt (token ids), in prompt order; `done` holds texts already made (resume)."""
    from rapref.progress import track

    done = dict(done or {})
    plan = [(b, idx) for b, idx in plan_batches(ids, sampling.batch_size) if not all(i in done for i in idx)]
    results = _run_workers(model_dir, ids, plan, sampling, workers, threads) if workers > 1 and len(plan) > 1 else \
        _run_here(model_dir, ids, plan, sampling, threads)
    for idx, texts in track(results, description, total=len(plan), unit="batch"):
        done.update(zip(idx, texts))
        if on_batch:
            on_batch(idx, texts)
    return [done[i] for i in range(len(ids))]


def _run_here(model_dir, ids, plan: BatchPlan, sampling, threads):
    """Sample in this process; a thread count asked for holds while sampling and is restored afterwards (the
    caller's later stages keep theirs)."""
    import torch

    if not plan:
        return
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model, tokenizer = _load(model_dir)
        for b, idx in plan:
            yield idx, _sample(model, tokenizer, [ids[i] for i in idx], sampling, b)
    finally:
        torch.set_num_threads(before)


def _run_workers(model_dir, ids, plan: BatchPlan, sampling, workers: int, threads: int | None):
    import multiprocessing as mp

    context = mp.get_context("spawn")  # no forked torch thread pools
    results = context.Queue()
    threads = threads or default_threads(workers)
    procs = [context.Process(target=_worker, daemon=True,
                             args=(model_dir, [(b, idx, [ids[i] for i in idx]) for b, idx in plan[w::workers]],
                                   sampling, threads, results)) for w in range(workers)]
    for proc in procs:
        proc.start()
    try:
        for _ in range(len(plan)):
            while True:
                try:
                    kind, idx, payload = results.get(timeout=5)
                    break
                except queues.Empty:
                    if not any(p.is_alive() for p in procs) or any(p.exitcode not in (None, 0) for p in procs):
                        raise RuntimeError("a generation worker stopped without a result (out of memory?)") from None
            if kind == "error":
                raise RuntimeError(f"generation worker failed: {payload}")
            yield idx, payload
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=10)


def _worker(model_dir, batches, sampling, threads: int, results) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        model, tokenizer = _load(model_dir)
        for b, idx, ids in batches:
            results.put(("ok", idx, _sample(model, tokenizer, ids, sampling, b)))
    except Exception as err:  # noqa: BLE001 - reported by the parent as one line
        results.put(("error", [], f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"))


def _load(model_dir):
    from rapref.models import device, load_model, load_tokenizer

    tokenizer = load_tokenizer(model_dir, padding_side="left")
    return load_model(model_dir).to(device()).eval(), tokenizer


def _sample(model, tokenizer, ids: list[list[int]], sampling, batch: int) -> list[str]:
    import torch

    from rapref.models import device

    inputs = tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt").to(device())
    torch.manual_seed(sampling.seed + batch * sampling.batch_size)  # the batch's draws follow from the seed alone
    with torch.no_grad():
        output = model.generate(
            **inputs, max_new_tokens=sampling.max_new_tokens, do_sample=sampling.temperature > 0,
            temperature=sampling.temperature if sampling.temperature > 0 else None, top_p=sampling.top_p,
            pad_token_id=tokenizer.pad_token_id, use_cache=True)
    new_tokens = output[:, inputs["input_ids"].shape[1]:]  # (B, T_new)
    return [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
