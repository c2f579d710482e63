"""TRL's defaults, TRL configured by hand and rapref's CUDA defaults, side by side on one device: speed, memory, and
whether they compute the same thing.

    python benchmarks/gpu_dpo_bench.py --out $OUT/gpu-dpo.json                  # on a CUDA device (scripts/gpu_check.sh)
    python benchmarks/gpu_dpo_bench.py --device cpu --tiny --out /tmp/b.json     # the same code on a CPU, tiny

Models are SmolLM2-135M- and SmolLM2-1.7B-shaped Llamas built from their configs (random weights, word-level
tokenizer: nothing is downloaded); data are UltraFeedback-like lengths (prompts ~150, responses lognormal ~200 words)
with a learnable preference (chosen words from one half of the vocabulary, rejected from the other), prepared once by
rapref's own data path (`rapref.train.run.prepare_splits`) and given to every configuration, so inputs are equal.
Each configuration is one `DPOTrainer` run of N steps (seed 0, same batches):
- `trl-*`: TRL 1.16's `DPOConfig` with its defaults (bf16, activation checkpointing) or options set by hand;
- `rapref-defaults`: rapref's mapping (`trl_args` with `rapref.train.cuda_defaults.choose`, `build_trainer`).
Recorded per configuration: real (unpadded) tokens/s over the steps after 2 warm-up steps (the precompute pass, if
any, counted in), peak GPU memory, the per-step losses, the first step's loss against ln 2 (policy equals reference
there), and against `trl-defaults`: the largest per-token log-prob difference of the first policy forward, the loss
curve's largest difference, and the first step's gradients per parameter tensor (relative norm of the difference,
cosine). Written after every configuration, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from equality import grad_comparison, token_diff  # noqa: E402 - benchmarks/ is on the path above

SHAPES = {
    "SmolLM2-135M": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, tie_word_embeddings=True),
    "SmolLM2-1.7B": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                         num_key_value_heads=32, tie_word_embeddings=True),
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, tie_word_embeddings=True),
}
# (shape, pairs per step, steps, learning rate full / LoRA, configurations)
PLANS = {
    "gpu": [("SmolLM2-135M", 32, 20, ["trl-defaults", "trl-no-checkpointing", "trl-liger", "trl-liger-no-checkpointing",
                                      "rapref-defaults", "trl-defaults+lora", "rapref-defaults+lora"]),
            ("SmolLM2-1.7B", 16, 10, ["trl-defaults", "trl-liger", "trl-liger-no-checkpointing", "rapref-defaults"])],
    "tiny": [("tiny", 4, 4, ["trl-defaults", "trl-no-checkpointing", "trl-liger", "rapref-defaults",
                             "trl-defaults+lora", "rapref-defaults+lora"])],
}
TRL_SETTINGS = {"trl-defaults": {}, "trl-no-checkpointing": {"gradient_checkpointing": False},
                "trl-liger": {"use_liger_kernel": True},
                "trl-liger-no-checkpointing": {"use_liger_kernel": True, "gradient_checkpointing": False}}
LR = {"full": 3e-5, "lora": 3e-4}
WARMUP = 2
# stated tolerances (bf16 autocast): what "equal results" means in this file
TOLERANCE = {"first_loss_vs_ln2": 1e-4, "max_token_logprob_diff": 0.05, "loss_curve_max_diff": 0.02,
             "grad_min_cosine": 0.99, "grad_max_rel_diff": 0.15}
LN2 = math.log(2)


def build(folder: Path, shape: str, pairs: int, steps: int, max_length: int, vocab: int, device: str) -> None:
    import datasets
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = {"<pad>": 0, "<eos>": 1, **{f"w{i}": i + 2 for i in range(vocab - 2)}}
    core = Tokenizer(models.WordLevel(words, unk_token="<eos>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>")
    tok.save_pretrained(folder / "model")
    torch.manual_seed(0)
    config = LlamaConfig(**SHAPES[shape], vocab_size=vocab, max_position_embeddings=2048, pad_token_id=0,
                         eos_token_id=1, bos_token_id=1)
    with torch.device(device):
        LlamaForCausalLM(config).save_pretrained(folder / "model")
    rng = random.Random(0)
    tiny = shape == "tiny"
    half = (vocab - 2) // 2

    def text(n, lo=0, hi=vocab - 2):
        return " ".join(f"w{rng.randrange(lo, hi)}" for _ in range(n))

    def response(lo, hi):
        n = rng.randint(2, 12) if tiny else int(min(600, max(50, rng.lognormvariate(5.3, 0.55))))
        return text(n, lo, hi)

    rows = [{"prompt": text(rng.randint(2, 10) if tiny else int(min(250, max(30, rng.gauss(150, 50))))),
             "chosen": response(0, half), "rejected": response(half, vocab - 2)} for _ in range(pairs * steps)]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(folder / "data"))


def rapref_config(folder: Path, pairs: int, steps: int, max_length: int, lora: bool, out: Path):
    from rapref.train.config import load_config

    return load_config(None, [f"model.name_or_path={folder / 'model'}", f"data.path={folder / 'data'}",
                              f"output_dir={out}", "seed=0", f"data.max_prompt_length={max_length // 2}",
                              f"training.max_length={max_length}", f"training.per_device_train_batch_size={pairs}",
                              f"training.learning_rate={LR['lora' if lora else 'full']}", f"training.max_steps={steps}",
                              "training.save_strategy='no'", "training.disable_tqdm=true", "training.logging_steps=1",
                              "training.dataloader_num_workers=0",
                              *([f"lora.enabled=true", "lora.dropout=0.0"] if lora else [])])


class Probe:
    """Forward hooks and callbacks: the first policy and reference forwards' per-token log-probs, real tokens and
    seconds per step, the first step's gradients (on the CPU, after TRL's clipping, before the optimizer step)."""

    def __init__(self, trainer, cuda: bool):
        from transformers import TrainerCallback

        import torch

        self.cuda, self.times, self.tokens, self.logps, self.grads, self.grad_norm = cuda, [], [], {}, None, None
        probe = self

        def hook(module, args, kwargs, output):
            if not hasattr(output, "log_probs") or output.log_probs is None:
                return
            role = "policy" if torch.is_grad_enabled() else "reference"
            labels = kwargs["labels"]
            width = output.log_probs.shape[1]
            mask = (labels[:, 1:] != -100)[:, -width:] if width < labels.shape[1] else labels != -100
            if role == "policy":
                probe.tokens.append(int(kwargs["attention_mask"].sum()))
            if role not in probe.logps:
                probe.logps[role] = (output.log_probs.detach().float().cpu(), mask.cpu())

        self.handles = [trainer.model.register_forward_hook(hook, with_kwargs=True)]
        if getattr(trainer, "ref_model", None) is not None:
            self.handles.append(trainer.ref_model.register_forward_hook(hook, with_kwargs=True))

        class Clock(TrainerCallback):
            def on_step_begin(self, *a, **k):
                probe.sync()
                self.start = time.perf_counter()

            def on_pre_optimizer_step(self, args, state, control, model=None, **k):
                if state.global_step == 0 and probe.grads is None:
                    probe.grads = {n: p.grad.detach().float().cpu() for n, p in model.named_parameters()
                                   if p.requires_grad and p.grad is not None}

            def on_step_end(self, *a, **k):
                probe.sync()
                probe.times.append(time.perf_counter() - self.start)

        trainer.add_callback(Clock())

    def sync(self):
        if self.cuda:
            import torch

            torch.cuda.synchronize()


def first_loss_from_logps(logps: dict, beta: float) -> float | None:
    """The sigmoid DPO loss of the first batch from the captured policy and reference log-probs."""
    import torch.nn.functional as F

    if "policy" not in logps or "reference" not in logps:
        return None
    (p, mask), (r, _) = logps["policy"], logps["reference"]
    ps, rs = (p * mask).sum(1), (r * mask).sum(1)
    pc, pr = ps.chunk(2)
    rc, rr = rs.chunk(2)
    return float(-F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean())


LLAMA_GLOBALS = ("LlamaRMSNorm", "LlamaMLP", "apply_rotary_pos_emb")


def llama_module_state() -> dict:
    """What Liger's patch replaces in transformers' Llama module (and leaves replaced for every later model of the
    process): saved before a configuration and put back after it, so each one starts from transformers' own."""
    from transformers.models.llama import modeling_llama

    return {name: getattr(modeling_llama, name) for name in LLAMA_GLOBALS} | {
        "LlamaForCausalLM.forward": modeling_llama.LlamaForCausalLM.forward}


def restore_llama_module(state: dict) -> None:
    from transformers.models.llama import modeling_llama

    for name in LLAMA_GLOBALS:
        setattr(modeling_llama, name, state[name])
    modeling_llama.LlamaForCausalLM.forward = state["LlamaForCausalLM.forward"]


def run_config(name: str, folder: Path, pairs: int, steps: int, max_length: int, splits, tok, device: str) -> tuple:
    import torch
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    from rapref.models import load_model
    from rapref.train.cuda_defaults import choose
    from rapref.train.run import build_trainer, trl_args

    cuda = device.startswith("cuda")
    lora = name.endswith("+lora")
    base = name.removesuffix("+lora")
    out = folder / f"out-{name}"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    chosen = None
    start = time.perf_counter()
    if base == "rapref-defaults":
        cfg = rapref_config(folder, pairs, steps, max_length, lora, out)
        model = load_model(cfg.model)
        chosen = choose(cfg, model) if cuda else None
        args = trl_args(cfg, on_gpu=cuda, chosen=chosen.kwargs if chosen else None)
        torch.manual_seed(0)
        trainer = build_trainer(cfg, args, model, tok, splits)
    else:
        settings = dict(output_dir=str(out), seed=0, beta=0.1, per_device_train_batch_size=pairs,
                        max_length=max_length, learning_rate=LR["lora" if lora else "full"], max_steps=steps,
                        logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True,
                        dataloader_num_workers=0, **TRL_SETTINGS[base])
        if not cuda:
            settings["use_cpu"] = True
        model = load_model(str(folder / "model"))
        peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                          task_type="CAUSAL_LM") if lora else None
        trainer = DPOTrainer(model=model, args=DPOConfig(**settings), train_dataset=splits["train"],
                             processing_class=tok, peft_config=peft)
    setup_s = time.perf_counter() - start
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    probe = Probe(trainer, cuda)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    timed = slice(WARMUP, None) if len(probe.times) > WARMUP else slice(None)
    seconds, tokens = sum(probe.times[timed]), sum(probe.tokens[timed])
    precompute_s = setup_s if trainer.args.precompute_ref_log_probs else 0.0  # its share is counted in
    share = precompute_s * len(probe.times[timed]) / max(len(probe.times), 1)
    result = {"config": name, "lora": lora, "steps": len(probe.times),
              "gradient_checkpointing": bool(trainer.args.gradient_checkpointing),
              "use_liger_kernel": bool(trainer.args.use_liger_kernel), "bf16": bool(trainer.args.bf16),
              "precompute_ref_log_probs": bool(trainer.args.precompute_ref_log_probs),
              "real_tokens_per_s": round(tokens / (seconds + share), 1), "step_s": [round(t, 4) for t in probe.times],
              "setup_s": round(setup_s, 2), "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
              if cuda else None, "losses": [round(x, 6) for x in losses],
              "first_loss": losses[0] if losses else None,
              "first_loss_from_logps": first_loss_from_logps(probe.logps, 0.1),
              "policy_vs_reference_max_token_diff": token_diff(probe.logps["policy"], probe.logps["reference"])
              if {"policy", "reference"} <= set(probe.logps) else None,
              "grad_norm_first_step": None}
    if chosen is not None:
        result["cuda_defaults"] = chosen.record
        result["notices"] = chosen.notices
    grad_norms = [h.get("grad_norm") for h in trainer.state.log_history if "grad_norm" in h]
    result["grad_norm_first_step"] = grad_norms[0] if grad_norms else None
    captured = {"logps": probe.logps, "grads": probe.grads}
    for handle in probe.handles:
        handle.remove()
    del trainer, model, probe
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result, captured


def estimate_for(result: dict, shape: str, vocab: int, pairs: int, max_length: int) -> float:
    """rapref's own memory estimate for this configuration (`cuda_defaults.peak_estimate`), to check it against the
    measured peak."""
    from types import SimpleNamespace

    from rapref.train.cuda_defaults import peak_estimate

    s = SHAPES[shape]
    h, i, layers = s["hidden_size"], s["intermediate_size"], s["num_hidden_layers"]
    kv = h * s["num_key_value_heads"] // s["num_attention_heads"]
    n = vocab * h + layers * (2 * h * h + 2 * h * kv + 3 * h * i + 2 * h) + h
    return round(peak_estimate(n, SimpleNamespace(hidden_size=h, intermediate_size=i, num_hidden_layers=layers),
                               pairs, max_length, full=not result["lora"],
                               reference=not result["lora"] and not result["precompute_ref_log_probs"],
                               checkpointing=result["gradient_checkpointing"]) / 2**30, 2)


def verdicts(result: dict) -> dict:
    t = TOLERANCE
    checks = {"first_loss_is_ln2": result["first_loss"] is not None
              and abs(result["first_loss"] - LN2) <= t["first_loss_vs_ln2"]}
    vs = result.get("vs_trl_defaults") or {}
    if vs:
        checks["logprobs_equal"] = vs.get("max_token_logprob_diff") is not None \
            and vs["max_token_logprob_diff"] <= t["max_token_logprob_diff"]
        checks["loss_curve_equal"] = vs.get("loss_curve_max_diff") is not None \
            and vs["loss_curve_max_diff"] <= t["loss_curve_max_diff"]
        g = vs.get("grads") or {}
        checks["grads_equal"] = g.get("min_cosine") is not None and g["min_cosine"] >= t["grad_min_cosine"] \
            and g["max_rel_diff"] <= t["grad_max_rel_diff"]
    return checks


def main() -> None:
    import torch

    from record import machine

    from rapref.models import load_tokenizer
    from rapref.provenance import provenance
    from rapref.train.run import prepare_splits

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write (rewritten after every configuration)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny model and batch (a smoke run of this script)")
    parser.add_argument("--only", default="", help="comma-separated shapes to run (default: all of the plan)")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    vocab, max_length = (97, 64) if args.tiny else (49152, 1024)
    report = {"benchmark": "gpu_dpo", "command": " ".join(["python", "benchmarks/gpu_dpo_bench.py", *sys.argv[1:]]),
              "device": torch.cuda.get_device_name(0) if cuda else "cpu", "tiny": args.tiny,
              "device_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
              "machine": machine(), "max_length": max_length, "learning_rates": LR, "warmup_steps": WARMUP,
              "tolerances": TOLERANCE, "data": "UltraFeedback-like lengths, chosen words from one half of the "
              "vocabulary and rejected from the other, prepared once by rapref's data path", **provenance(),
              "sizes": []}
    report["packages"]["liger_kernel"] = _version("liger-kernel")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for shape, pairs, steps, configs in PLANS["tiny" if args.tiny else "gpu"]:
        if args.only and shape not in args.only.split(","):
            continue
        folder = Path(tempfile.mkdtemp(prefix="rapref-bench-"))
        t0 = time.perf_counter()
        build(folder, shape, pairs, steps, max_length, vocab, args.device)
        cfg = rapref_config(folder, pairs, steps, max_length, False, folder / "unused")
        tok = load_tokenizer(cfg.model)
        splits, _, _ = prepare_splits(cfg, tok, None)
        size = {"shape": shape, "model": f"{shape}-shaped Llama (random weights)", "pairs_per_step": pairs,
                "steps": steps, "build_s": round(time.perf_counter() - t0, 1), "results": []}
        report["sizes"].append(size)
        baseline = {}
        for name in configs:
            if name.startswith("trl-liger") and not _version("liger-kernel"):
                size["results"].append({"config": name, "skipped": "liger-kernel is not installed"})
                continue
            state = llama_module_state()
            try:
                result, captured = run_config(name, folder, pairs, steps, max_length, splits, tok, args.device)
            except Exception as err:  # noqa: BLE001 - one configuration's failure is recorded, the others run
                size["results"].append({"config": name, "error": f"{type(err).__name__}: {str(err)[:400]}"})
                _write(out, report)
                continue
            finally:
                restore_llama_module(state)
            if cuda:
                result["peak_estimate_gib"] = estimate_for(result, shape, vocab, pairs, max_length)
            kind = "lora" if result["lora"] else "full"
            if name.startswith("trl-defaults"):
                baseline[kind] = (result, captured)
            elif kind in baseline:
                base, base_captured = baseline[kind]
                n = min(len(result["losses"]), len(base["losses"]))
                result["vs_trl_defaults"] = {
                    "speedup": round(result["real_tokens_per_s"] / base["real_tokens_per_s"], 2),
                    "max_token_logprob_diff": token_diff(captured["logps"]["policy"], base_captured["logps"]["policy"]),
                    "reference_max_token_logprob_diff": token_diff(captured["logps"]["reference"],
                                                                   base_captured["logps"]["reference"])
                    if "reference" in captured["logps"] and "reference" in base_captured["logps"] else None,
                    "loss_curve_max_diff": max(abs(a - b) for a, b in zip(result["losses"][:n], base["losses"][:n])),
                    "grads": grad_comparison(captured["grads"], base_captured["grads"])
                    if captured["grads"] and base_captured["grads"] else None}
            result["checks"] = verdicts(result)
            size["results"].append(result)
            print(json.dumps({k: result.get(k) for k in ("config", "real_tokens_per_s", "peak_gib", "first_loss",
                                                          "checks")}), flush=True)
            _write(out, report)
            del captured
        baseline.clear()
        gc.collect()
    _write(out, report)


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _write(path: Path, report: dict) -> None:
    path.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
