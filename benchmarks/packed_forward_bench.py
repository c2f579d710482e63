"""Where the packed DPO forward's speed comes from: one policy forward + backward, and the LM head alone.

    python benchmarks/packed_forward_bench.py                     # TRL's padded path vs the packed one, then the heads
    python benchmarks/packed_forward_bench.py --checkpointing     # the same with gradient checkpointing
    MALLOC_MMAP_THRESHOLD_=131072 python benchmarks/packed_forward_bench.py --checkpointing --paths packed

The batch is `train_bench.py`'s first 8 pairs (SmolLM2-135M-shaped Llama, max length 512) in TRL's padded layout
(2 x 8 rows, labels on the completions). Each path runs in its own process: one warm-up step, then one timed
forward + backward of the summed per-token log-probs; printed with the positions computed and the peak RSS.
The head comparison scores the labelled positions of that batch with random hidden states: TRL's fused
`ChunkedLogProbFunction` (its CPU fallback) against `rapref.train.token_logprobs.TokenLogProbs`, values compared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def padded_batch(folder: Path, max_length: int):
    """TRL's padded layout of the bench data: [prompt + chosen] rows, then [prompt + rejected] rows."""
    import datasets
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder / "model")
    rows = datasets.load_from_disk(str(folder / "data"))
    sequences = []
    for side in ("chosen", "rejected"):
        for row in rows:
            prompt = tokenizer(row["prompt"])["input_ids"][:256]
            completion = tokenizer(row[side])["input_ids"] + [tokenizer.eos_token_id]
            sequences.append(((prompt + completion)[:max_length], ([-100] * len(prompt) + completion)[:max_length]))
    width = max(len(ids) for ids, _ in sequences)
    input_ids = torch.zeros(len(sequences), width, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, -100)
    for i, (ids, lab) in enumerate(sequences):
        input_ids[i, :len(ids)], mask[i, :len(ids)], labels[i, :len(lab)] = torch.tensor(ids), 1, torch.tensor(lab)
    return input_ids, mask, labels


def run_path(path: str, folder: Path, args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from rapref.train.packing import add_packed_forward

    torch.set_num_threads(args.threads)
    input_ids, mask, labels = padded_batch(folder, args.max_length)
    model = AutoModelForCausalLM.from_pretrained(folder / "model", dtype=torch.float32)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))  # as TRL's DPO policy
    stats = add_packed_forward(model) if path == "packed" else None
    if args.checkpointing:
        model.gradient_checkpointing_enable()
    model.train()

    def step():
        out = model(input_ids=input_ids, attention_mask=mask, labels=labels, fused_lm_head=True)
        out.log_probs.sum().backward()
        model.zero_grad(set_to_none=True)

    step()
    start = time.perf_counter()
    step()
    seconds = time.perf_counter() - start
    positions = stats["positions"] // 2 if stats else input_ids.numel()
    return {"path": path, "seconds": seconds, "positions": positions,
            "scored": stats["scored_positions"] // 2 if stats else input_ids.numel(),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def heads(folder: Path, args) -> None:
    import torch
    from transformers import AutoConfig
    from trl.kernels import ChunkedLogProbFunction

    from rapref.train.token_logprobs import OUTPUTS, TokenLogProbs

    torch.set_num_threads(args.threads)
    _, _, labels = padded_batch(folder, args.max_length)
    n = int((labels[:, 1:] != -100).sum())
    config = AutoConfig.from_pretrained(folder / "model")
    torch.manual_seed(0)
    hidden = torch.randn(n, config.hidden_size, requires_grad=True)
    weight = (torch.randn(config.vocab_size, config.hidden_size) * 0.05).requires_grad_()
    targets = torch.randint(0, config.vocab_size, (n,))
    results = {}
    for name, apply in (("TRL ChunkedLogProbFunction", lambda: ChunkedLogProbFunction.apply(
            hidden, weight, None, targets, 1.0, 32768, None, 1.0, OUTPUTS)),
                        ("rapref TokenLogProbs", lambda: TokenLogProbs.apply(hidden, weight, targets, 1.0, OUTPUTS))):
        hidden.grad = weight.grad = None
        start = time.perf_counter()
        values = apply()
        forward = time.perf_counter() - start
        values[0].sum().backward()
        results[name] = (forward, time.perf_counter() - start - forward, values[0].detach())
        print(f"  {name:<28} forward {forward:6.2f} s  backward {results[name][1]:6.2f} s", flush=True)
    (_, _, a), (_, _, b) = results.values()
    print(f"  {n} labelled positions, vocabulary {config.vocab_size}; largest log-prob difference "
          f"{float((a - b).abs().max()):.1e}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--paths", default="trl,packed", help="trl (TRL's padded forward), packed (rapref's)")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing on")
    p.add_argument("--no-heads", action="store_true", help="skip the LM head comparison")
    p.add_argument("--json", help="also write the results here (docs/bench/packed-forward.json)")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    p.add_argument("--_folder", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child:
        print(json.dumps(run_path(args._child, Path(args._folder), args)) if args._child != "heads"
              else heads(Path(args._folder), args))
        return
    import train_bench

    with tempfile.TemporaryDirectory(prefix="rapref-forward-bench-") as tmp:
        folder = Path(tmp)
        train_bench.build_inputs(folder, "smollm2", 8, 0)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TRANSFORMERS_VERBOSITY": "error",
               "HF_HUB_OFFLINE": "1"}
        print(f"policy forward + backward, 8 pairs, max length {args.max_length}, {args.threads} thread(s)"
              f"{', gradient checkpointing' if args.checkpointing else ''}")
        results = []
        for path in [x.strip() for x in args.paths.split(",") if x.strip()]:
            child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--_child", path, "--_folder", tmp],
                                   capture_output=True, text=True, env=env)
            if child.returncode != 0:
                sys.exit(f"{path} failed:\n{child.stderr[-3000:]}")
            r = json.loads(child.stdout.strip().splitlines()[-1])
            results.append(r)
            print(f"  {r['path']:<7} {r['seconds']:7.2f} s  positions {r['positions']:>6}  LM head positions "
                  f"{r['scored']:>6}  peak RSS {r['peak_rss_gb']:.2f} GB", flush=True)
        if not args.no_heads:
            print("LM head alone, the batch's labelled positions:")
            child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--_child", "heads", "--_folder", tmp],
                                   text=True, env=env, stdout=subprocess.PIPE)
            head_lines = [line for line in child.stdout.splitlines() if line.strip() != "None"]
            print("\n".join(head_lines))
        if args.json:
            from record import write_record

            write_record(args.json, "packed-forward", results, heads=None if args.no_heads else head_lines)


if __name__ == "__main__":
    main()
