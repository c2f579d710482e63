"""Generation throughput: a plain `model.generate` loop vs `rapref generate`'s sampler, on the same prompts, in one run.

    python benchmarks/generate_bench.py --model runs/smollm2 --prompts runs/exp-ifeval/prompts/test.jsonl
    python benchmarks/generate_bench.py --model runs/smollm2 --prompts P.jsonl --n 64 --max-new-tokens 64
    python benchmarks/generate_bench.py --model runs/smollm2 --prompts P.jsonl --serve "$(python -c \
        'from rapref.inference.serving import VLLM_CPU_SERVE as s; print(s)')" --vllm-python .venv-vllm/bin/python

Contenders (one after another, each with the same total thread count):
  plain      prompts in file order, batches of --batch-size, left padding, `model.generate` with the KV cache
  sorted     rapref's sampler in one process: prompts sorted by length first, so a batch pads little
  workers    rapref's sampler in --workers single-thread processes (`rapref generate --workers`)
  server     with --serve: a server (e.g. vLLM's CPU build) started from the template, sampled through
             `rapref generate --endpoint` (token-id prompts, per-request seeds, every prompt in flight at once)
Reported: useful new tokens per second (tokens up to and including EOS; the padding after a finished answer is not
counted) and wall seconds with model loading (for the server: its start until it answers), and loading alone (the
transformers contenders: one load of model and tokenizer, timed apart), so that tokens/s in steady state is
tokens / (wall - loading).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def useful_tokens(tokenizer, texts: list[str]) -> int:
    return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)


def plain(model_dir: str, ids: list[list[int]], sampling) -> list[str]:
    import torch

    from rapref.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(model_dir, padding_side="left")
    model = load_model(model_dir).eval()
    texts = []
    for start in range(0, len(ids), sampling.batch_size):
        batch = tokenizer.pad({"input_ids": ids[start:start + sampling.batch_size]}, padding=True, return_tensors="pt")
        torch.manual_seed(sampling.seed + start)
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=sampling.max_new_tokens, do_sample=True,
                                 temperature=sampling.temperature, pad_token_id=tokenizer.pad_token_id, use_cache=True)
        texts += [t.strip() for t in tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:],
                                                            skip_special_tokens=True)]
    return texts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--prompts", required=True, help="a prompt file `rapref generate` reads")
    p.add_argument("--n", type=int, default=96, help="prompts used")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="threads of the one-process contenders")
    p.add_argument("--serve", help="also a server from this command template ({model}, {port}, {python})")
    p.add_argument("--vllm-python", help="the interpreter {python} names in --serve (vLLM's own environment)")
    p.add_argument("--json", help="also write the results here (docs/bench/generate.json)")
    args = p.parse_args()

    import torch

    from rapref.inference.sampler import SamplingConfig, batch_prompt_ids
    from rapref.formats.prompts import load_prompts
    from rapref.inference.sampler import sample_batches
    from rapref.models import load_tokenizer
    from rapref.progress import configure

    configure(quiet=True)
    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.model)
    ids = batch_prompt_ids(tokenizer, [r["prompt"] for r in load_prompts(args.prompts, limit=args.n)])
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=0.7, batch_size=args.batch_size)
    start = time.perf_counter()
    from rapref.inference.sampler import _load

    _load(args.model)
    load_s = time.perf_counter() - start
    contenders = {
        "plain": lambda: plain(args.model, ids, sampling),
        "sorted": lambda: sample_batches(args.model, ids, sampling, threads=args.threads),
        f"workers x{args.workers}": lambda: sample_batches(args.model, ids, sampling, workers=args.workers, threads=1),
    }
    print(f"{len(ids)} prompts, mean {sum(map(len, ids)) / len(ids):.0f} prompt tokens, max_new_tokens "
          f"{args.max_new_tokens}, batch {args.batch_size}; torch {torch.__version__}, {os.cpu_count()} CPUs")
    loads = {name: load_s for name in contenders}
    if args.serve:
        contenders["server"] = lambda: served(args, ids, sampling, loads)
    print(f"{'contender':<12} {'wall s':>8} {'load s':>7} {'useful tok':>11} {'tok/s':>8} {'steady':>8} "
          f"{'vs plain':>9}")
    base, results = None, []
    for name, run in contenders.items():
        start = time.perf_counter()
        texts = run()
        wall = time.perf_counter() - start
        tokens = useful_tokens(tokenizer, texts)
        rate, steady = tokens / wall, tokens / max(1e-9, wall - loads[name])
        base = base or steady
        print(f"{name:<12} {wall:8.1f} {loads[name]:7.1f} {tokens:11d} {rate:8.1f} {steady:8.1f} "
              f"{steady / base:8.2f}x", flush=True)
        results.append({"contender": name, "wall_s": wall, "load_s": loads[name], "useful_tokens": tokens,
                        "tokens_per_s": rate, "steady_tokens_per_s": steady, "vs_plain": steady / base})
    if args.json:
        from record import write_record

        write_record(args.json, "generate", results, prompts=len(ids), max_new_tokens=args.max_new_tokens,
                     batch_size=args.batch_size, serve=args.serve)


def served(args, ids, sampling, loads) -> list[str]:
    """The server contender: its start (until it answers) is its loading; then every prompt in flight at once."""
    from rapref.inference.serving import Endpoint, Server, generate_endpoint

    template = args.serve.replace("{python}", str(Path(args.vllm_python).absolute())) if args.vllm_python \
        else args.serve
    start = time.perf_counter()
    with Server(template, args.model, log="runs/bench-server.log") as url:
        loads["server"] = time.perf_counter() - start
        endpoint = Endpoint(url)
        endpoint.check(args.model)
        return generate_endpoint(endpoint, args.model, ids, sampling, concurrency=len(ids))


if __name__ == "__main__":
    main()
