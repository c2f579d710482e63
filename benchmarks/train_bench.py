"""DPO training speed and memory: a plain TRL `DPOTrainer` script vs `rapref train`, same model, data, seed and steps.

    python benchmarks/train_bench.py                               # SmolLM2-135M-sized Llama, batch 8, max length 512
    python benchmarks/train_bench.py --preset small --steps 4      # a 4-layer model: minutes, for a quick look
    python benchmarks/train_bench.py --variants trl,rapref         # any subset, in this order

Variants (each runs in its own process, so peak RSS is its own):
  trl               a plain TRL script: DPOTrainer(model, DPOConfig(...), dataset, tokenizer), nothing of rapref
  rapref            `rapref train` (rapref.train.run.main) with the same TRL arguments and `training.packing=false`:
                    TRL's padded path, to measure the wrapper's overhead
  packed            `rapref train` as it runs by default for DPO, `training.packing=true` (rapref.train.packing: one
                    padding-free row, one prompt per pair, attention per segment, LM head on labelled positions only)
  packed-precompute the same with `training.precompute_ref_log_probs=true`: the reference pass runs once, before training
                    (time reported with and without that pass). The positive and negative relabeled copies of a pair
                    differ in the goal text, so they cannot share reference log-probs: each copy gets its own.
  packed-checkpointing  packed, with gradient checkpointing (activations recomputed in the backward pass)
No variant materialises the (batch, length, vocabulary) logits: TRL 1.16's fused LM head is chunked over the
vocabulary and recomputed in the backward pass, but on CPU it scores every position (prompt and padding included) in
4096 x 32768 tiles; the packed variants score only the labelled positions with rapref.train.token_logprobs.

Data: random-word texts with UltraFeedback-like lengths (prompts ~150 tokens, responses 50-600 tokens, long-tailed) and
a word-level tokenizer, so one word is one token; the model is randomly initialised from a config (no download).
Reported: real (non-pad) tokens per second of TRL's padded layout (2 x prompt + chosen + rejected per pair, after
truncation to max length), seconds per step (median, first step excluded), peak RSS, and every step's loss.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PRESETS = {  # SmolLM2-135M's shape; `small` keeps the vocabulary and width, with 4 layers
    "smollm2": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152),
    "small": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=9,
                  num_key_value_heads=3, vocab_size=49152),
}
VARIANTS = ("trl", "rapref", "packed", "packed-precompute", "packed-checkpointing")


def build_inputs(folder: Path, preset: str, n_pairs: int, seed: int) -> None:
    """A word-level tokenizer, a randomly initialised Llama, and a pairs dataset (save_to_disk)."""
    import datasets
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    shape = PRESETS[preset]
    vocab = {"<pad>": 0, "<eos>": 1, **{f"w{i}": i + 2 for i in range(shape["vocab_size"] - 2)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>")
    tokenizer.save_pretrained(folder / "model")
    torch.manual_seed(seed)
    config = LlamaConfig(**shape, max_position_embeddings=2048, tie_word_embeddings=True, rope_theta=100000.0,
                         pad_token_id=0, eos_token_id=1, bos_token_id=1)
    LlamaForCausalLM(config).save_pretrained(folder / "model")
    rng = random.Random(seed)

    def text(n):
        return " ".join(f"w{rng.randrange(shape['vocab_size'] - 2)}" for _ in range(n))

    def response():
        return text(int(min(600, max(50, rng.lognormvariate(5.3, 0.55)))))  # median ~200, long right tail

    rows = [{"prompt": text(int(min(250, max(30, rng.gauss(150, 50))))), "chosen": response(),
             "rejected": response()} for _ in range(n_pairs)]
    datasets.Dataset.from_list(rows).save_to_disk(str(folder / "data"))


def trl_fields(args) -> dict:
    """The DPOConfig fields both scripts use (rapref passes the same through its recipe)."""
    return {"per_device_train_batch_size": args.batch, "max_length": args.max_length, "learning_rate": 1e-6,
            "max_steps": args.steps, "logging_steps": 1, "report_to": "none", "save_strategy": "no", "use_cpu": True,
            "bf16": False, "gradient_checkpointing": False, "disable_tqdm": True, "dataloader_num_workers": 0}


def run_variant(variant: str, folder: Path, args) -> dict:
    """Inside the child process: train, return timings, losses and peak RSS."""
    import torch

    torch.set_num_threads(args.threads)
    out = folder / f"out-{variant}"
    step_times: list[float] = []
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            step_times.append(time.perf_counter() - self.start)

    import transformers

    original_init = transformers.Trainer.__init__

    def with_clock(self, *a, **k):  # the same callback in both scripts, added the same way
        original_init(self, *a, **k)
        self.add_callback(Clock())

    transformers.Trainer.__init__ = with_clock
    start = time.perf_counter()
    if variant == "trl":
        import datasets
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import DPOConfig, DPOTrainer

        model = AutoModelForCausalLM.from_pretrained(folder / "model", dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder / "model")
        trainer = DPOTrainer(model=model, args=DPOConfig(output_dir=str(out), seed=args.seed, beta=0.1,
                                                         **trl_fields(args)),
                             train_dataset=datasets.load_from_disk(str(folder / "data")), processing_class=tokenizer)
        trainer.train()
        history = trainer.state.log_history
    else:
        from rapref.train.config import load_config
        from rapref.train.run import main

        overrides = [f"model.name_or_path={folder / 'model'}", f"data.path={folder / 'data'}", f"output_dir={out}",
                     f"seed={args.seed}", "algorithm.beta=0.1", f"data.max_prompt_length={min(256, args.max_length - 1)}"]
        fields = {**trl_fields(args), "save_strategy": '"no"'}
        fields["packing"] = "true" if variant.startswith("packed") else "false"
        if variant == "packed-precompute":
            fields["precompute_ref_log_probs"] = "true"
        if variant == "packed-checkpointing":
            fields["gradient_checkpointing"] = "true"
        overrides += [f"training.{k}={json.dumps(v) if isinstance(v, bool) else v}" for k, v in fields.items()]
        main(load_config(None, overrides), overwrite=True)
        history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    total = time.perf_counter() - start
    train_runtime = next((h["train_runtime"] for h in history if "train_runtime" in h), None)
    return {"variant": variant, "losses": [h["loss"] for h in history if "loss" in h], "step_s": step_times,
            "train_runtime_s": train_runtime, "total_s": total,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def real_tokens(folder: Path, args) -> int:
    """Non-pad tokens of TRL's layout over the steps run: 2 x prompt + chosen + rejected (+ EOS), truncated."""
    import datasets
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder / "model")
    rows = datasets.load_from_disk(str(folder / "data")).select(range(args.batch * args.steps))
    total = 0
    for row in rows:
        p = len(tokenizer(row["prompt"])["input_ids"])
        for side in ("chosen", "rejected"):
            total += min(args.max_length, p + len(tokenizer(row[side])["input_ids"]) + 1)
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", choices=PRESETS, default="smollm2")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps per variant (the first is warm-up)")
    p.add_argument("--batch", type=int, default=8, help="pairs per step")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--threads", type=int, default=2, help="torch threads per variant (they run one at a time)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    p.add_argument("--_folder", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child:
        print(json.dumps(run_variant(args._child, Path(args._folder), args)))
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    with tempfile.TemporaryDirectory(prefix="rapref-train-bench-") as tmp:
        folder = Path(tmp)
        build_inputs(folder, args.preset, args.batch * args.steps, args.seed)
        tokens = real_tokens(folder, args)
        results = []
        for variant in variants:
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false",
                   "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1"}
            child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--_child", variant, "--_folder",
                                    str(folder)], capture_output=True, text=True, env=env)
            if child.returncode != 0:
                sys.exit(f"{variant} failed:\n{child.stderr[-3000:]}")
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))
            print(f"  {variant}: done in {results[-1]['total_s']:.0f} s", file=sys.stderr, flush=True)
    report(results, tokens, args)


def report(results: list[dict], tokens: int, args) -> None:
    import platform

    import torch
    import transformers
    import trl

    print(f"preset {args.preset}, batch {args.batch}, max length {args.max_length}, {args.steps} steps, "
          f"{args.threads} thread(s); {tokens} real tokens; torch {torch.__version__}, trl {trl.__version__}, "
          f"transformers {transformers.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    base = next((r for r in results if r["variant"] == "trl"), results[0])
    print(f"{'variant':<21} {'s/step':>8} {'tokens/s':>9} {'vs trl':>7} {'train s':>8} {'total s':>8} "
          f"{'peak RSS GB':>12}")
    for r in results:
        per_step = statistics.median(r["step_s"][1:] or r["step_s"])
        rate = tokens / r["train_runtime_s"]
        r.update(s_per_step=per_step, tokens_per_s=rate, speedup=base["train_runtime_s"] / r["train_runtime_s"])
        print(f"{r['variant']:<21} {per_step:8.2f} {rate:9.1f} {r['speedup']:6.2f}x {r['train_runtime_s']:8.1f} "
              f"{r['total_s']:8.1f} {r['peak_rss_gb']:12.2f}")
    print("losses per step:")
    for r in results:
        print(f"  {r['variant']:<21} " + " ".join(f"{x:.6f}" for x in r["losses"]))
    if args.json:
        from record import write_record

        write_record(args.json, "train", results, real_tokens=tokens,
                     settings={k: v for k, v in vars(args).items() if not k.startswith("_") and k != "json"})


if __name__ == "__main__":
    main()
