"""Packed DPO against TRL's padded path on one device: per-token log-probs, gradients, speed and memory.

    python benchmarks/gpu_packing_check.py --out docs/bench/gpu-packing.json          # on a CUDA device (scripts/gpu_check.sh)
    python benchmarks/gpu_packing_check.py --device cpu --tiny --out /tmp/check.json   # the same code on a CPU, tiny

The model is SmolLM2-135M-shaped (a Llama built from its config, random weights: nothing is downloaded), the batch
8 preference pairs of random tokens with prompts of 64-256 and completions of 32-256 tokens in TRL's padded layout.
Each variant (attention x LoRA, with bf16 autocast and gradient checkpointing on CUDA) runs TRL's fused head on the
padded rows and rapref's packed forward on a copy of the same weights, and records:
- the largest per-token log-probability difference and the largest relative difference of per-sequence sums;
- the gradients of the summed log-probs per parameter tensor (`equality.grad_comparison`: the largest relative norm
  of the difference and the smallest cosine; tensors zero in both, LoRA's A at the first step, counted apart);
- tokens per second (padded positions of the batch / seconds per forward + backward, median of 3) and peak memory;
- where the packing gate (`rapref.train.packing_gate`) sends the run (flash attention is not on its allow-list).
The JSON holds the device, versions and commit; `scripts/gpu_report.py` turns it into the README's GPU table.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from equality import grad_comparison  # noqa: E402 - benchmarks/ is on the path above

SMOLLM2 = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3, max_position_embeddings=2048, tie_word_embeddings=True)
TINY = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512)


def batch(n_pairs: int, vocab: int, tiny: bool, device, seed: int = 0):
    import torch

    rng = random.Random(seed)
    prompt_range, completion_range = ((2, 12), (2, 15)) if tiny else ((64, 256), (32, 256))
    rows = []
    for _ in range(n_pairs):
        prompt = [rng.randrange(1, vocab) for _ in range(rng.randint(*prompt_range))]
        rows.append((prompt, [rng.randrange(1, vocab) for _ in range(rng.randint(*completion_range))],
                     [rng.randrange(1, vocab) for _ in range(rng.randint(*completion_range))]))
    sequences = [(p + c, [-100] * len(p) + c) for p, c, _ in rows] + [(p + r, [-100] * len(p) + r) for p, _, r in rows]
    width = max(len(ids) for ids, _ in sequences)
    input_ids = torch.zeros(len(sequences), width, dtype=torch.long)
    mask, labels = torch.zeros_like(input_ids), torch.full_like(input_ids, -100)
    for i, (ids, lab) in enumerate(sequences):
        input_ids[i, :len(ids)], mask[i, :len(ids)], labels[i, :len(lab)] = torch.tensor(ids), 1, torch.tensor(lab)
    return input_ids.to(device), mask.to(device), labels.to(device)


def build(attn: str, lora: bool, tiny: bool, device, checkpointing: bool):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**(TINY if tiny else SMOLLM2), attn_implementation=attn)).to(device)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    return model.train()


def step(model, inputs, autocast: bool):
    """Forward and backward of the summed log-probs; the gradients stay on the parameters."""
    import torch

    input_ids, mask, labels = inputs
    with torch.autocast(input_ids.device.type, dtype=torch.bfloat16, enabled=autocast):
        out = model(input_ids=input_ids, attention_mask=mask, labels=labels, use_cache=False, fused_lm_head=True)
    total = out.log_probs.float().sum()
    total.backward()
    return out.log_probs.detach().float(), (out.log_probs.detach().float().sum(1))


def gradients(model) -> dict:
    return {n: p.grad.detach().float().cpu() for n, p in model.named_parameters()
            if p.requires_grad and p.grad is not None}


def timed(model, inputs, autocast: bool, repeats: int = 3) -> tuple[float, float]:
    import torch

    cuda = inputs[0].device.type == "cuda"
    seconds = []
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step(model, inputs, autocast)
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return statistics.median(seconds), peak


def variant(attn: str, lora: bool, tiny: bool, device) -> dict:
    import torch

    from rapref.train.packing import add_packed_forward
    from rapref.train.packing_gate import packing_refusal

    cuda = torch.device(device).type == "cuda"
    autocast = cuda
    try:
        trl_model = build(attn, lora, tiny, device, checkpointing=cuda)
    except (ImportError, ValueError) as err:  # e.g. flash attention not installed
        return {"attention": attn, "lora": lora, "skipped": str(err).splitlines()[0]}
    base = trl_model.get_base_model() if lora else trl_model
    refusal = packing_refusal(base, True, on_gpu=cuda)
    packed_model = copy.deepcopy(trl_model)
    stats = add_packed_forward(packed_model.get_base_model() if lora else packed_model)
    inputs = batch(8, base.config.vocab_size, tiny, device)
    result = {"attention": attn, "lora": lora, "bf16_autocast": autocast, "gradient_checkpointing": cuda,
              "gate": refusal or "packed", "padded_positions": int(inputs[0].numel())}
    ours = step(packed_model, inputs, autocast)
    theirs = step(trl_model, inputs, autocast)
    label = inputs[2][:, 1:] != -100
    result["max_abs_logprob_diff"] = float((ours[0] - theirs[0]).abs()[label].max())
    result["max_rel_sequence_diff"] = float(((ours[1] - theirs[1]).abs() / theirs[1].abs().clamp(min=1e-6)).max())
    grads = grad_comparison(gradients(packed_model), gradients(trl_model))
    result["grad_max_rel_diff"], result["grad_min_cosine"] = grads["max_rel_diff"], grads["min_cosine"]
    result["grad_tensors"], result["grad_zero_in_both"] = grads["tensors"], grads["zero_in_both"]
    result["packed_batches"] = stats["packed_batches"]
    packed_model.zero_grad(set_to_none=True)
    trl_model.zero_grad(set_to_none=True)
    for name, model in (("trl", trl_model), ("packed", packed_model)):
        seconds, peak = timed(model, inputs, autocast)
        result[f"{name}_tokens_per_s"] = round(result["padded_positions"] / seconds, 1)
        result[f"{name}_peak_gib"] = None if peak is None else round(peak, 2)
    result["speedup"] = round(result["packed_tokens_per_s"] / result["trl_tokens_per_s"], 2)
    return result


def main() -> None:
    import importlib.util

    import torch

    from record import machine

    from rapref.provenance import provenance

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny model and batch (a smoke run of this script)")
    args = parser.parse_args()
    attentions = ["sdpa", "eager"] + (["flash_attention_2"] if importlib.util.find_spec("flash_attn") else [])
    results = [variant(attn, lora, args.tiny, args.device) for attn in attentions for lora in (False, True)]
    device = torch.cuda.get_device_name(0) if torch.device(args.device).type == "cuda" else "cpu"
    report = {"command": " ".join(["python", "benchmarks/gpu_packing_check.py", *sys.argv[1:]]), "device": device,
              "machine": machine(), "tiny": args.tiny,
              "model": "tiny Llama" if args.tiny else "SmolLM2-135M-shaped Llama (random weights)",
              "batch": "8 pairs, TRL's padded layout", "results": results, **provenance()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
