"""Batched sampling on the transformers backend: length-sorted batches, the KV cache, and worker processes.

Prompts are sorted by token length and cut into batches, so a batch pads little (left padding). Batch `b` is seeded
with `seed + b * batch_size` and its draws follow from the seed and the batch alone: the same texts come out whether
the batches run in one process or in several workers, all at once or resumed after an interruption (`done`). On a CPU
two single-thread workers generate faster than one two-thread process (`--workers 2`); each worker loads its own copy
of the model and sets its thread count explicitly. Batches are handed to workers round-robin; each finished batch is
passed to `on_batch(indices, texts)` in the parent as it arrives (where `rapref generate` appends it to its resume file).
"""

from __future__ import annotations

import math
import os
import queue as queues
from collections.abc import Callable
from dataclasses import dataclass

from rapref.inference.serving import generate_endpoint
from rapref.io import InputError
from rapref.models import device, load_model, load_tokenizer, model_context
from rapref.progress import track
from rapref.prompting import prompt_ids
from rapref.settings import check, setting

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
    tokenizer = load_tokenizer(model_dir, padding_side="left")
    return load_model(model_dir).to(device()).eval(), tokenizer


def _sample(model, tokenizer, ids: list[list[int]], sampling, batch: int) -> list[str]:
    import torch

    inputs = tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt").to(device())
    torch.manual_seed(sampling.seed + batch * sampling.batch_size)  # the batch's draws follow from the seed alone
    with torch.no_grad():
        output = model.generate(
            **inputs, max_new_tokens=sampling.max_new_tokens, do_sample=sampling.temperature > 0,
            temperature=sampling.temperature if sampling.temperature > 0 else None, top_p=sampling.top_p,
            pad_token_id=tokenizer.pad_token_id, use_cache=True)
    new_tokens = output[:, inputs["input_ids"].shape[1]:]  # (B, T_new)
    return [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


# a sampling temperature other than 0 (greedy) lies in this range: logits / 1e-300 overflow float32 (a crash), and
# vLLM raises anything in (0, 0.01) to 0.01 for the same reason; at 100 every token is about equally likely
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 100.0


def whole_number(low: int | None = None) -> Callable:
    """A rule for a whole-number setting (a float or a bool given from Python is refused, not truncated), at least
    `low` where given.

    >>> whole_number(1)(0), whole_number(1)(2.5), whole_number()(True)
    ('must be at least 1, got 0', 'must be a whole number, got 2.5', 'must be a whole number, got True')
    """
    def rule(value):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be a whole number, got {value!r}"
        return None if low is None or value >= low else f"must be at least {low}, got {value}"

    return rule


def finite_number(ok: Callable[[float], bool] | None = None, must: str = "") -> Callable:
    """A rule for a number setting: finite (JSON cannot hold the others, and no sampler means them), and `ok(value)`
    where given (`must` says what it asks, after "must")."""
    def rule(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        return None if ok is None or ok(value) else f"must {must}, got {value:g}"

    return rule


@dataclass
class SamplingConfig:
    """How answers are drawn; each field's rule is checked wherever a config is built (`rapref.settings`)."""

    max_new_tokens: int = setting(256, "longest answer, in tokens", rule=whole_number(1))
    temperature: float = setting(0.7, "sampling temperature; 0 decodes greedily", rule=finite_number(
        lambda t: t == 0 or MIN_TEMPERATURE <= t <= MAX_TEMPERATURE,
        f"be 0 (greedy) or from {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g} (below, logits divided by it overflow to "
        "inf/NaN; above, sampling is uniform noise)"))
    top_p: float = setting(1.0, "nucleus sampling threshold", rule=finite_number(lambda p: 0 < p <= 1, "lie in (0, 1]"))
    num_samples: int = setting(1, "answers per prompt and goal", rule=whole_number(1))
    seed: int = setting(0, "sampling seed: the same seed gives every policy the same draws", rule=whole_number())
    batch_size: int = setting(16, "prompts per generation batch", rule=whole_number(1))

    def __post_init__(self):
        check(self)


def generate_texts(model_dir: str, prompts: list, sampling: SamplingConfig, backend: str = "auto",
                   description: str = "Generating", done: dict[int, str] | None = None, on_batch=None,
                   workers: int = 1, endpoint=None, concurrency: int = 8, names: list[str] | None = None) -> list[str]:
    """One sampled response per goal-conditioned prompt (string or messages), in the trained prompt form.

    Transformers backend and endpoint: `done` (prompt position -> text) skips finished work, `on_batch(positions,
    texts)` sees each batch (request) as it finishes. Transformers: `workers` > 1 samples in that many single-thread
    processes (`rapref.inference.sampler`). Endpoint (`rapref.inference.serving.Endpoint`, checked to serve this model):
    the same token ids, `concurrency` requests in flight. Prompt and answer must fit the model's context
    (`check_context`; `names` label the prompts in its refusal).
    """
    if endpoint is not None:
        ids = batch_prompt_ids(load_tokenizer(model_dir), prompts)
        check_context(model_dir, ids, sampling.max_new_tokens, names)
        return generate_endpoint(endpoint, model_dir, ids, sampling, concurrency=concurrency,
                                 description=description, done=done, on_batch=on_batch)
    ids = batch_prompt_ids(load_tokenizer(model_dir), prompts)
    check_context(model_dir, ids, sampling.max_new_tokens, names)
    return sample_batches(model_dir, ids, sampling, description=description, done=done, on_batch=on_batch,
                          workers=workers, threads=1 if workers > 1 else None)


def check_context(model_dir: str, ids: list[list[int]], max_new_tokens: int, names: list[str] | None = None) -> None:
    """Refuse, before any sampling, a prompt that cannot be answered within the model's context: a prompt at or past
    it would be read at positions the model never learned (transformers only warns), and --max-new-tokens past it
    can never be honoured (a huge value would only reserve memory).

    >>> check_context("/no/such/model", [[1, 2]], 10**12)  # no config: nothing known to check against
    """
    context = model_context(model_dir)
    if context is None or not ids:
        return
    if max_new_tokens >= context:
        raise InputError(f"--max-new-tokens {max_new_tokens} is not below the model's context of {context} tokens "
                         f"({model_dir}); answers can be at most {context - 1} tokens, fewer the longer the prompt")
    longest = max(range(len(ids)), key=lambda i: len(ids[i]))
    if len(ids[longest]) + max_new_tokens > context:
        name = names[longest] if names else f"prompt {longest + 1}"
        room = context - len(ids[longest])
        raise InputError(f"{name}: {len(ids[longest])} prompt tokens + --max-new-tokens {max_new_tokens} exceed the "
                         f"model's context of {context} tokens ({model_dir}); "
                         + (f"lower --max-new-tokens to {room} or shorten the prompt" if room > 0 else
                            "the prompt alone fills it: shorten or leave out this prompt"))


def batch_prompt_ids(tokenizer, prompts: list) -> list[list[int]]:
    """The prompt token ids the model is fed: exactly those training conditioned on (`rapref.prompting`)."""
    return [prompt_ids(tokenizer, p) for p in prompts]
