"""TRL's defaults, TRL configured by hand and rapref's CUDA defaults, side by side on one device: speed, memory, and
whether they compute the same thing. Each configuration runs in its own fresh Python process.

    python benchmarks/gpu_dpo_bench.py --out $OUT/gpu-dpo.json                  # on a CUDA device (scripts/gpu_check.sh)
    python benchmarks/gpu_dpo_bench.py --device cpu --tiny --out /tmp/b.json     # the same code on a CPU, tiny

Models are SmolLM2-135M- and SmolLM2-1.7B-shaped Llamas built from their configs (random weights, word-level
tokenizer: nothing is downloaded); data are UltraFeedback-like lengths (prompts ~150, responses lognormal ~200 words)
with a learnable preference (chosen words from one half of the vocabulary, rejected from the other). This process
builds the model and prepares the data once per size by rapref's own data path (`rapref.train.run.prepare_splits`),
on the CPU, and never touches the device; it then starts one process per configuration (this file with `--one`),
so that nothing a configuration does to the process (Liger patches transformers' Llama module; CUDA's allocator keeps
its cache) reaches the next one. A configuration that crashes, runs out of memory or passes its time is recorded with
its error line and the next one runs; each process's output is kept in `<out>-logs/`.
Each configuration is one `DPOTrainer` run of N steps (seed 0, same batches):
- `trl-*`: TRL 1.16's `DPOConfig` with its defaults (bf16, activation checkpointing) or options set by hand;
  `trl-liger+ref-kernels` is `trl-liger` with rapref's `match_reference_kernels` (the reference model gets the
  policy's Liger kernels), the pair that tests whether that mismatch is why Liger's first loss is not ln 2;
- `rapref-defaults`: rapref's mapping (`trl_args` with `rapref.train.cuda_defaults.choose`, `build_trainer`).
Recorded per configuration: real (unpadded) tokens/s over the steps after 2 warm-up steps (the precompute pass, if
any, counted in), the peak memory of its own process (CUDA: `max_memory_allocated`; CPU: the process's max RSS,
labelled as such), the per-step losses, the first step's loss and its difference from ln 2 (policy equals reference
there), the RMSNorm and MLP forwards policy and reference actually ran, and against `trl-defaults` of the same kind
(full or LoRA): the largest per-token log-prob difference of the first policy forward, the loss curve's largest
difference, and the first step's gradients per parameter tensor (relative norm of the difference, cosine). The JSON
is rewritten after every configuration, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Config:
    trainer: str  # "trl": TRL's DPOTrainer as a user would build it; "rapref": rapref's mapping and trainer
    trl: dict = field(default_factory=dict)  # DPOConfig fields set by hand, over TRL's defaults
    lora: bool = False
    match_reference: bool = False  # rapref's match_reference_kernels on TRL's trainer

    @property
    def baseline(self) -> str:
        return "trl-defaults+lora" if self.lora else "trl-defaults"


CONFIGS = {
    "trl-defaults": Config("trl"),
    "trl-no-checkpointing": Config("trl", {"gradient_checkpointing": False}),
    "trl-liger": Config("trl", {"use_liger_kernel": True}),
    "trl-liger+ref-kernels": Config("trl", {"use_liger_kernel": True}, match_reference=True),
    "trl-liger-no-checkpointing": Config("trl", {"use_liger_kernel": True, "gradient_checkpointing": False}),
    "rapref-defaults": Config("rapref"),
    "trl-defaults+lora": Config("trl", lora=True),
    "rapref-defaults+lora": Config("rapref", lora=True),
}


@dataclass(frozen=True)
class Size:
    shape: str
    pairs: int  # per step
    steps: int
    budget_s: float  # this size's share of the benchmark's time, builds included; unused time passes on
    config_timeout_s: float  # one configuration's process at most
    configs: tuple  # in order of importance: what the budget cannot reach is recorded as not started


# Sized for an H200 (scripts/gpu_check.sh gives the whole benchmark 280 s): the Liger pair and rapref against TRL's
# best come first; 12 and 8 steps (2 of them warm-up) to fit a process per configuration.
PLANS = {
    "gpu": (Size("SmolLM2-135M", 32, 12, 150, 75, (
                "trl-defaults", "trl-liger", "trl-liger+ref-kernels", "rapref-defaults", "trl-liger-no-checkpointing",
                "trl-defaults+lora", "rapref-defaults+lora", "trl-no-checkpointing")),
            Size("SmolLM2-1.7B", 16, 8, 130, 90, (
                "trl-defaults", "trl-liger", "rapref-defaults", "trl-liger-no-checkpointing"))),
    "tiny": (Size("tiny", 4, 4, 170, 90, (
                "trl-defaults", "trl-liger", "trl-liger+ref-kernels", "rapref-defaults", "trl-defaults+lora",
                "rapref-defaults+lora")),),
}
MIN_START_S = 12  # a configuration is not started with less time than this left
LR = {"full": 3e-5, "lora": 3e-4}
WARMUP = 2
# stated tolerances (bf16 autocast): what "equal results" means in this file
TOLERANCE = {"first_loss_vs_ln2": 1e-4, "max_token_logprob_diff": 0.05, "loss_curve_max_diff": 0.02,
             "grad_min_cosine": 0.99, "grad_max_rel_diff": 0.15}
LN2 = math.log(2)
PEAK_MEMORY = {"peak_gib": "torch.cuda.max_memory_allocated of the configuration's own process (CUDA)",
               "peak_rss_gib": "max resident set size of the configuration's own process (CPU rehearsal: host memory, "
                               "imports included; not comparable with peak_gib)"}


# ---- built once per size, in this process, on the CPU ----

def build(folder: Path, shape: str, pairs: int, steps: int, max_length: int, vocab: int) -> None:
    """The model (random weights), its word-level tokenizer and the prepared data, into `folder`."""
    import datasets
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from rapref.models import load_tokenizer
    from rapref.train.run import prepare_splits

    words = {"<pad>": 0, "<eos>": 1, **{f"w{i}": i + 2 for i in range(vocab - 2)}}
    core = Tokenizer(models.WordLevel(words, unk_token="<eos>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>")
    tok.save_pretrained(folder / "model")
    torch.manual_seed(0)
    config = LlamaConfig(**SHAPES[shape], vocab_size=vocab, max_position_embeddings=2048, pad_token_id=0,
                         eos_token_id=1, bos_token_id=1)
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
    cfg = rapref_config(folder, pairs, steps, max_length, False, folder / "unused")
    splits, _, _ = prepare_splits(cfg, load_tokenizer(cfg.model), None)
    datasets.DatasetDict(splits).save_to_disk(str(folder / "splits"))


def rapref_config(folder: Path, pairs: int, steps: int, max_length: int, lora: bool, out: Path):
    from rapref.train.config import load_config

    return load_config(None, [f"model.name_or_path={folder / 'model'}", f"data.path={folder / 'data'}",
                              f"output_dir={out}", "seed=0", f"data.max_prompt_length={max_length // 2}",
                              f"training.max_length={max_length}", f"training.per_device_train_batch_size={pairs}",
                              f"training.learning_rate={LR['lora' if lora else 'full']}", f"training.max_steps={steps}",
                              "training.save_strategy='no'", "training.disable_tqdm=true", "training.logging_steps=1",
                              "training.dataloader_num_workers=0",
                              *(["lora.enabled=true", "lora.dropout=0.0"] if lora else [])])


# ---- one configuration, in its own process (--one) ----

class Probe:
    """Forward hooks and callbacks: the first policy and reference forwards' per-token log-probs, real tokens and
    seconds per step, the first step's gradients (on the CPU, after TRL's clipping, before the optimizer step)."""

    def __init__(self, trainer, cuda: bool):
        import torch
        from transformers import TrainerCallback

        self.cuda, self.times, self.tokens, self.logps, self.grads = cuda, [], [], {}, None
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

        trainer.model.register_forward_hook(hook, with_kwargs=True)
        if getattr(trainer, "ref_model", None) is not None:
            trainer.ref_model.register_forward_hook(hook, with_kwargs=True)

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


def kernels(model) -> dict | None:
    """The forward each first decoder layer's RMSNorm and MLP runs, as observed on the instance (Liger patches
    instances' forwards, or transformers' classes for models built later), and the rotary function the Llama module
    calls: 'LlamaRMSNorm.forward' or 'LigerRMSNorm.forward', and so on."""
    if model is None:
        return None
    from transformers.models.llama import modeling_llama

    found = {}
    for name, module in model.named_modules():
        for key, suffix in (("norm", "input_layernorm"), ("mlp", "mlp")):
            if key not in found and name.endswith(suffix):
                forward = module.forward
                found[key] = getattr(getattr(forward, "__func__", forward), "__qualname__", type(module).__name__)
    rotary = modeling_llama.apply_rotary_pos_emb
    return {**found, "rotary": f"{rotary.__module__.split('.')[0]}:{rotary.__name__}"}


def run_config(name: str, folder: Path, pairs: int, steps: int, max_length: int, device: str) -> tuple:
    import datasets
    import torch
    from peft import LoraConfig
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    from rapref.models import load_model, load_tokenizer
    from rapref.train.cuda_defaults import choose, match_reference_kernels
    from rapref.train.run import build_trainer, trl_args

    config = CONFIGS[name]
    cuda = device.startswith("cuda")
    out = folder / f"out-{name}"
    torch.manual_seed(0)
    chosen = None
    start = time.perf_counter()
    cfg = rapref_config(folder, pairs, steps, max_length, config.lora, out)
    tok = load_tokenizer(cfg.model)
    splits = dict(datasets.load_from_disk(str(folder / "splits")))
    if config.trainer == "rapref":
        model = load_model(cfg.model)
        chosen = choose(cfg, model) if cuda else None
        args = trl_args(cfg, on_gpu=cuda, chosen=chosen.kwargs if chosen else None)
        torch.manual_seed(0)
        trainer = build_trainer(cfg, args, model, tok, splits)  # match_reference_kernels inside
    else:
        settings = dict(output_dir=str(out), seed=0, beta=0.1, per_device_train_batch_size=pairs,
                        max_length=max_length, learning_rate=LR["lora" if config.lora else "full"], max_steps=steps,
                        logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True,
                        dataloader_num_workers=0, **config.trl)
        if not cuda:
            settings["use_cpu"] = True
        model = load_model(str(folder / "model"))
        peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                          task_type="CAUSAL_LM") if config.lora else None
        trainer = DPOTrainer(model=model, args=DPOConfig(**settings), train_dataset=splits["train"],
                             processing_class=tok, peft_config=peft)
        if config.match_reference:
            match_reference_kernels(trainer)
    setup_s = time.perf_counter() - start
    trainer.remove_callback(PrinterCallback)
    probe = Probe(trainer, cuda)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    grad_norms = [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h]
    timed = slice(WARMUP, None) if len(probe.times) > WARMUP else slice(None)
    seconds, tokens = sum(probe.times[timed]), sum(probe.tokens[timed])
    precompute_s = setup_s if trainer.args.precompute_ref_log_probs else 0.0  # its share is counted in
    share = precompute_s * len(probe.times[timed]) / max(len(probe.times), 1)
    reference = getattr(trainer, "ref_model", None)
    observed = {"policy": kernels(trainer.accelerator.unwrap_model(trainer.model)),
                "reference": kernels(trainer.accelerator.unwrap_model(reference)) if reference is not None else None}
    result = {"config": name, "lora": config.lora, "steps": len(probe.times),
              "gradient_checkpointing": bool(trainer.args.gradient_checkpointing),
              "use_liger_kernel": bool(trainer.args.use_liger_kernel), "bf16": bool(trainer.args.bf16),
              "precompute_ref_log_probs": bool(trainer.args.precompute_ref_log_probs),
              "real_tokens_per_s": round(tokens / (seconds + share), 1), "step_s": [round(t, 4) for t in probe.times],
              "setup_s": round(setup_s, 2), "losses": [round(x, 6) for x in losses],
              "first_loss": losses[0] if losses else None,
              "first_loss_minus_ln2": losses[0] - LN2 if losses else None,
              "first_loss_from_logps": first_loss_from_logps(probe.logps, 0.1),
              "policy_vs_reference_max_token_diff": token_diff(probe.logps["policy"], probe.logps["reference"])
              if {"policy", "reference"} <= set(probe.logps) else None,
              "grad_norm_first_step": grad_norms[0] if grad_norms else None,
              "reference_model": "separate" if reference is not None else "the policy without its adapters"
              if config.lora else "none (precomputed)",
              "reference_kernels_patched": reference is not None and bool(trainer.args.use_liger_kernel)
              and (config.match_reference or config.trainer == "rapref"),
              "kernels": observed,
              "reference_kernels_matched": observed["policy"] == observed["reference"] if reference is not None
              else None}
    if chosen is not None:
        result["cuda_defaults"] = chosen.record
        result["notices"] = chosen.notices
    return result, {"logps": probe.logps, "grads": probe.grads}


def run_one(args) -> None:
    """One configuration in this process: measure, keep (the baseline) or compare with (the others) the baseline's
    first-step tensors, write the result file. An exception is recorded as the result's one error line."""
    config = CONFIGS[args.one]
    folder, result_path = Path(args.work), Path(args.result)
    try:
        import torch

        cuda = args.device.startswith("cuda")
        result, captured = run_config(args.one, folder, args.pairs, args.steps, args.max_length, args.device)
        result["pid"] = os.getpid()
        if cuda:
            result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            result["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
            result["device_name"] = torch.cuda.get_device_name(0)
            result["device_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        else:
            import resource

            result["peak_gib"] = None
            result["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
        kept = folder / f"captured-{config.baseline}.pt"
        if args.one == config.baseline:
            torch.save(captured, kept)
        elif kept.is_file():
            base = torch.load(kept, mmap=True, weights_only=True)
            result["vs_baseline_tensors"] = compare_tensors(captured, base)
    except Exception as err:  # noqa: BLE001 - recorded as this configuration's result; the benchmark goes on
        import traceback

        traceback.print_exc()
        result = {"config": args.one, "pid": os.getpid(), "error": one_line(err)}
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result) + "\n")
    tmp.replace(result_path)


def compare_tensors(ours: dict, base: dict) -> dict:
    logps, base_logps = ours["logps"], base["logps"]
    return {"max_token_logprob_diff": token_diff(logps["policy"], base_logps["policy"])
            if "policy" in logps and "policy" in base_logps else None,
            "reference_max_token_logprob_diff": token_diff(logps["reference"], base_logps["reference"])
            if "reference" in logps and "reference" in base_logps else None,
            "grads": grad_comparison(ours["grads"], base["grads"]) if ours["grads"] and base["grads"] else None}


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:400] if text else ''}"


# ---- this process: the plan, one process per configuration, the comparisons ----

def run_isolated(command: list, timeout: float, log: Path, result_path: Path) -> dict:
    """Run `command` (one configuration) in a new process group, its output into `log`; its result file, or what
    went wrong in one line: a timeout (the whole group is killed), a signal (the kernel's OOM killer: SIGKILL) or an
    exit code, with the log's last error line."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended meanwhile
                pass
            proc.wait()
            code = None
    seconds = round(time.perf_counter() - start, 1)
    if code is None:
        return {"error": f"timed out after {timeout:.0f} s", "process_s": seconds}
    if result_path.is_file():
        result = json.loads(result_path.read_text())
        return {**result, "process_s": seconds, **({"process_exit": code} if code else {})}
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    return {"error": f"{how}: {last_error_line(log)}", "process_s": seconds}


def last_error_line(log: Path) -> str:
    """The last line of a process's output that names an error, else its last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if any(word in line for word in ("Error", "error:", "Killed", "out of memory", "Exception")):
            return line[:400]
    return lines[-1][:400] if lines else "no output"


def skip_reason(name: str, device: str) -> str | None:
    if CONFIGS[name].trl.get("use_liger_kernel"):
        if not _version("liger-kernel"):
            return "liger-kernel is not installed"
        if not device.startswith("cuda"):
            return "Liger's kernels are Triton GPU kernels; not run on a CPU"
    return None


def compare(result: dict, base: dict) -> dict:
    """Against the baseline of the same kind: speed and loss curve from the results, tensors from the process."""
    tensors = result.pop("vs_baseline_tensors", None) or {}
    n = min(len(result["losses"]), len(base["losses"]))
    return {"speedup": round(result["real_tokens_per_s"] / base["real_tokens_per_s"], 2),
            "max_token_logprob_diff": tensors.get("max_token_logprob_diff"),
            "reference_max_token_logprob_diff": tensors.get("reference_max_token_logprob_diff"),
            "loss_curve_max_diff": max((abs(a - b) for a, b in zip(result["losses"][:n], base["losses"][:n])),
                                       default=None),
            "grads": tensors.get("grads")}


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


def liger_first_loss(results: list) -> dict | None:
    """Is Liger's first-step loss off ln 2 because the policy runs Liger's kernels and the reference transformers'
    (TRL 1.16 patches only the policy)? The full fine-tunes with Liger on, each with its checkpointing, whether the
    reference got the policy's kernels (as observed), and its first loss minus ln 2; the answer by the tolerance.

    >>> row = lambda name, ckpt, matched, d: {"config": name, "lora": False, "use_liger_kernel": True,
    ...     "gradient_checkpointing": ckpt, "reference_kernels_matched": matched, "first_loss": LN2 + d,
    ...     "first_loss_minus_ln2": d, "policy_vs_reference_max_token_diff": abs(d) * 10}
    >>> liger_first_loss([row("a", True, False, 5e-4), row("b", True, True, 0.0)])["answer"][:9]
    'explained'
    >>> liger_first_loss([row("a", True, False, 5e-4), row("b", True, True, 3e-4)])["answer"][:13]
    'not explained'
    """
    rows = [{k: r.get(k) for k in ("config", "gradient_checkpointing", "reference_kernels_matched",
                                   "first_loss_minus_ln2", "policy_vs_reference_max_token_diff")}
            for r in results if r.get("use_liger_kernel") and not r.get("lora") and r.get("first_loss") is not None]
    if not rows:
        return None
    tol = TOLERANCE["first_loss_vs_ln2"]
    off = {r["config"]: abs(r["first_loss_minus_ln2"]) > tol for r in rows}
    matched = [r["config"] for r in rows if r["reference_kernels_matched"]]
    unmatched = [r["config"] for r in rows if r["reference_kernels_matched"] is False]
    if any(off[c] for c in matched):
        answer = ("not explained: with the reference on the policy's kernels the first loss is still off ln 2 ("
                  + ", ".join(c for c in matched if off[c]) + ")")
    elif matched and unmatched and all(off[c] for c in unmatched):
        answer = ("explained: every run whose reference kept transformers' kernels is off ln 2 ("
                  + ", ".join(unmatched) + "), every run whose reference got the policy's is at ln 2 ("
                  + ", ".join(matched) + ")")
    elif unmatched and not any(off[c] for c in unmatched):
        answer = "nothing to explain: the runs whose reference kept transformers' kernels are at ln 2 too"
    else:
        answer = "undecided: the pair (reference with and without the policy's kernels) did not both run"
    return {"tolerance": tol, "rows": rows, "answer": answer}


def main() -> None:
    import torch

    from record import machine

    from rapref.provenance import provenance

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="JSON file to write (rewritten after every configuration)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny model and batch (a smoke run of this script)")
    parser.add_argument("--only", default="", help="comma-separated shapes to run (default: all of the plan)")
    parser.add_argument("--configs", default="", help="comma-separated configurations to run (default: the plan's)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole benchmark (default: the plan's sizes' budgets added up)")
    child = parser.add_argument_group("one configuration (this script starts these itself)")
    child.add_argument("--one", choices=sorted(CONFIGS), help="run this configuration in this process")
    for flag in ("--work", "--result", "--pairs", "--steps", "--max-length"):
        child.add_argument(flag, type=int if flag in ("--pairs", "--steps", "--max-length") else str)
    args = parser.parse_args()
    if args.one:
        return run_one(args)
    if not args.out:
        parser.error("--out is required")
    unknown = sorted(set(filter(None, args.configs.split(","))) - set(CONFIGS))
    if unknown:
        parser.error(f"--configs: no configuration {', '.join(unknown)} (there are {', '.join(CONFIGS)})")
    cuda = args.device.startswith("cuda")
    vocab, max_length = (97, 64) if args.tiny else (49152, 1024)
    plan = [s for s in PLANS["tiny" if args.tiny else "gpu"] if not args.only or s.shape in args.only.split(",")]
    budget = args.budget if args.budget is not None else sum(s.budget_s for s in plan)
    report = {"benchmark": "gpu_dpo", "command": " ".join(["python", "benchmarks/gpu_dpo_bench.py", *sys.argv[1:]]),
              "device": None if cuda else "cpu", "tiny": args.tiny, "device_memory_gib": None,
              "machine": machine(), "max_length": max_length, "learning_rates": LR, "warmup_steps": WARMUP,
              "tolerances": TOLERANCE, "isolation": "one process per config", "peak_memory": PEAK_MEMORY,
              "budget_s": budget, "data": "UltraFeedback-like lengths, chosen words from one half of the "
              "vocabulary and rejected from the other, prepared once by rapref's data path", **provenance(),
              "sizes": []}
    report["packages"]["liger_kernel"] = _version("liger-kernel")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    logs = out.with_name(out.stem + "-logs")
    logs.mkdir(exist_ok=True)
    start, allotted = time.perf_counter(), 0.0
    for size in plan:
        allotted += size.budget_s
        deadline = start + min(allotted, budget)
        folder = Path(tempfile.mkdtemp(prefix="rapref-bench-"))
        record = {"shape": size.shape, "model": f"{size.shape}-shaped Llama (random weights)",
                  "pairs_per_step": size.pairs, "steps": size.steps, "build_s": None, "results": []}
        report["sizes"].append(record)
        try:
            t0 = time.perf_counter()
            build(folder, size.shape, size.pairs, size.steps, max_length, vocab)
            record["build_s"] = round(time.perf_counter() - t0, 1)
            run_size(size, record, report, folder, logs, deadline, args, vocab, max_length, out)
        except Exception as err:  # noqa: BLE001 - a size that cannot be built is recorded; the next one runs
            record["error"] = one_line(err)
            _write(out, report)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    report["wall_s"] = round(time.perf_counter() - start, 1)
    _write(out, report)


def run_size(size: Size, record: dict, report: dict, folder: Path, logs: Path, deadline: float, args, vocab: int,
             max_length: int, out: Path) -> None:
    done = {}
    wanted = args.configs.split(",") if args.configs else None
    for name in size.configs:
        if wanted is not None and name not in wanted:
            continue
        left = deadline - time.perf_counter()
        reason = skip_reason(name, args.device) or (
            f"not started: {max(left, 0):.0f} s left of the benchmark's time budget" if left < MIN_START_S else None)
        if reason:
            record["results"].append({"config": name, "skipped": reason})
            print(json.dumps(record["results"][-1]), flush=True)
            _write(out, report)
            continue
        command = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--work", str(folder),
                   "--result", str(folder / f"result-{name}.json"), "--pairs", str(size.pairs), "--steps",
                   str(size.steps), "--max-length", str(max_length), "--device", args.device]
        result = {"config": name, **run_isolated(command, min(size.config_timeout_s, left),
                                                 logs / f"{size.shape}-{name}.log",
                                                 folder / f"result-{name}.json")}
        if report["device"] is None and "device_name" in result:
            report["device"], report["device_memory_gib"] = result["device_name"], result["device_memory_gib"]
        for key in ("device_name", "device_memory_gib"):
            result.pop(key, None)
        if "real_tokens_per_s" in result:
            if args.device.startswith("cuda"):
                result["peak_estimate_gib"] = estimate_for(result, size.shape, vocab, size.pairs, max_length)
            base = done.get(CONFIGS[name].baseline)
            if base is not None and name != CONFIGS[name].baseline:
                result["vs_trl_defaults"] = compare(result, base)
            result.pop("vs_baseline_tensors", None)
            result["checks"] = verdicts(result)
            done[name] = result
        record["results"].append(result)
        print(json.dumps({k: result.get(k) for k in ("config", "real_tokens_per_s", "peak_gib", "first_loss",
                                                      "checks", "error", "process_s") if k in result}), flush=True)
        record["liger_first_loss"] = liger_first_loss(record["results"])
        _write(out, report)


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _write(path: Path, report: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    main()
