"""rapref's CUDA defaults: the field's kernels and memory settings, chosen per run where TRL's defaults leave speed.

On a CPU nothing here applies (fp32, no checkpointing, TRL's path). On CUDA, for every key the recipe leaves unset,
`choose` decides, before training, and each choice that differs from TRL 1.16's `DPOConfig` default is recorded
with its reason (`rapref_train.json`: `result.cuda_defaults`) and said in one line:

- `gradient_checkpointing` (TRL: on): off when the estimated peak memory of this model, batch and length without
  activation checkpointing fits the device (`peak_estimate`, calibrated on H200 measurements); on otherwise. On an
  H200 it cost 4.1x (SmolLM2-135M shape, 32 pairs) and 2.5x (1.7B shape, 16 pairs) in speed for memory that was free
  (`../shared/gpu/trl-options*.json`). Kept as TRL has it under DeepSpeed or FSDP (sharded memory is not estimated).
- `use_liger_kernel` (TRL: off): on where `liger-kernel` is installed (`pip install 'rapref[gpu]'`), the model type
  is one Liger patches, the algorithm is DPO (TRL's `DPOTrainer`) and packing is off. In TRL 1.16 this applies
  Liger's layer kernels (RMSNorm, RoPE, SwiGLU); TRL's own chunked LM head still computes the log-probabilities (it
  refuses Liger's fused linear cross-entropy). TRL patches the policy instance when training starts, after it built
  the reference model, so a full fine-tune's policy and reference run on different kernels: the first step's loss is
  not ln 2 where they are equal (0.69369 and 0.70214 in `../shared/gpu/trl-options*.json`, 0.69284 in
  `docs/bench/gpu-dpo.json`), and the implicit reward carries that kernel difference all run long. Liger also patches
  transformers' Llama module itself, so a model built later in the same process gets its kernels whatever it asked
  for (the likely reason Liger without checkpointing looked exact: it ran second, in the same process).
  `match_reference_kernels` patches the reference too. That this alone brings the first loss to ln 2 is still to be
  measured: `benchmarks/gpu_dpo_bench.py` runs `trl-liger` and `trl-liger+ref-kernels` (the same, with this patch),
  each configuration in its own process, and records the kernels each model ran (`liger_first_loss` in its JSON).
- `precompute_ref_log_probs` (TRL: off): on for DPO when the run makes more than one pass over the data (each later
  epoch would repeat the reference forwards), or when a full fine-tune fits only without a resident reference model.

A recipe value always wins; `choose` only fills what the recipe leaves unset.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field

from rapref.train.algorithms import ALGORITHMS

# Activation bytes saved per position per layer without checkpointing (bf16 autocast, sdpa), as
# BYTES_PER_HIDDEN * hidden_size + BYTES_PER_INTERMEDIATE * intermediate_size: fitted on two H200 peaks of TRL 1.16's
# DPOTrainer (SmolLM2-135M shape, 32 pairs x 1024: 52.3 GiB; 1.7B shape, 16 pairs x 1024: 109.6 GiB).
BYTES_PER_HIDDEN = 37.0
BYTES_PER_INTERMEDIATE = 3.7
FIT_FRACTION = 0.85  # of the device's memory: room for the allocator's fragmentation and the CUDA context
GiB = 2**30


@dataclass
class CudaDefaults:
    kwargs: dict = field(default_factory=dict)  # TRL config fields rapref sets (only keys the recipe left unset)
    record: dict = field(default_factory=dict)  # key -> {"value", "trl_default", "reason"}: goes into the run record
    notices: list = field(default_factory=list)  # one line each, said before training

    def set(self, key: str, value, trl_default, reason: str) -> None:
        self.kwargs[key] = value
        self.record[key] = {"value": value, "trl_default": trl_default, "reason": reason}


def peak_estimate(n_params: int, text_config, pairs: int, max_length: int, *, full: bool, reference: bool,
                  checkpointing: bool, bf16: bool = True, param_bytes: int = 4) -> int:
    """Estimated peak bytes of one DPO step: weights (+ gradients and AdamW's two moments for a full fine-tune), a
    resident reference copy, and the saved activations of 2 x `pairs` sequences padded to `max_length`.

    >>> from types import SimpleNamespace as NS
    >>> shape = NS(hidden_size=576, intermediate_size=1536, num_hidden_layers=30)
    >>> round(peak_estimate(134_515_008, shape, 32, 1024, full=True, reference=True, checkpointing=False) / 2**30, 1)
    51.9
    """
    hidden, layers = text_config.hidden_size, text_config.num_hidden_layers
    intermediate = getattr(text_config, "intermediate_size", None) or 4 * hidden
    positions = 2 * pairs * max_length
    states = n_params * param_bytes * (4 if full else 1) + (n_params * param_bytes if reference else 0)
    per_layer = BYTES_PER_HIDDEN * hidden + BYTES_PER_INTERMEDIATE * intermediate
    if checkpointing:  # each layer's input is kept; one layer at a time is recomputed with its activations
        activations = positions * (layers * 4 * hidden + per_layer)
    else:
        activations = positions * layers * per_layer
    return int(states + activations * (1 if bf16 else 2))


def _dpo_trainer(algorithm: str) -> bool:
    """True when `algorithm` trains with TRL's DPOTrainer (the trainer the kernels and precompute were measured with)."""
    return ALGORITHMS[algorithm].trainer == "trl:DPOTrainer"


def liger_refusal(model_type: str, algorithm: str, packing: bool | None, installed: bool | None = None,
                  patched_types=None) -> str | None:
    """Why Liger's kernels stay off for this run; None when they go on."""
    if not _dpo_trainer(algorithm):
        return f"measured with TRL's DPOTrainer only, not algorithm.name={algorithm}"
    if packing:
        return "training.packing=true replaces the forward Liger would patch"
    if installed is None:
        installed = importlib.util.find_spec("liger_kernel") is not None
    if not installed:
        return "liger-kernel is not installed (pip install 'rapref[gpu]')"
    if patched_types is None:
        try:
            from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN as patched_types
        except Exception as err:  # noqa: BLE001 - a broken install falls back, in one line
            return f"liger-kernel does not import ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    if model_type not in patched_types:
        return f"Liger has no kernels for model type {model_type!r}"
    return None


def _sharded() -> str | None:
    for name, engine in (("ACCELERATE_USE_DEEPSPEED", "DeepSpeed"), ("ACCELERATE_USE_FSDP", "FSDP")):
        if os.environ.get(name, "false").lower() == "true":
            return engine
    return None


def choose(cfg, model, device_memory: int | None = None, liger_installed: bool | None = None,
           liger_types=None) -> CudaDefaults:
    """CUDA defaults for `cfg` (a `TrainConfig`) and the loaded `model`, filling only keys the recipe left unset.
    `device_memory` (bytes) defaults to device 0's; the liger arguments stand in for the installed package in tests."""
    t = cfg.training
    out = CudaDefaults()
    text = model.config.get_text_config()
    n_params = sum(p.numel() for p in model.parameters())
    pairs, max_length = t.get("per_device_train_batch_size", 8), t.get("max_length", 1024) or 1024
    full = not cfg.lora.enabled
    has_reference = ALGORITHMS[cfg.algorithm.name].reference_model
    if device_memory is None:
        import torch

        device_memory = torch.cuda.get_device_properties(0).total_memory
    budget = FIT_FRACTION * device_memory
    bf16 = t.get("bf16", True)
    epochs, max_steps = t.get("num_train_epochs", 3.0), t.get("max_steps", -1)
    precompute = t.get("precompute_ref_log_probs")
    if precompute is None and _dpo_trainer(cfg.algorithm.name) and not t.get("sync_ref_model") and not t.get("packing"):
        if max_steps <= 0 and epochs > 1:
            out.set("precompute_ref_log_probs", True, False,
                    f"{epochs:g} epochs: the reference log-probs are computed once, up front, not once per epoch")
        elif full and peak_estimate(n_params, text, pairs, max_length, full=True, reference=True,
                                    checkpointing=True, bf16=bf16) > budget:
            out.set("precompute_ref_log_probs", True, False,
                    "a resident reference model would not fit the device; its log-probs are computed up front")
        precompute = out.kwargs.get("precompute_ref_log_probs", False)
    reference = has_reference and full and not precompute
    if t.get("gradient_checkpointing") is None:
        engine = _sharded()
        estimate = peak_estimate(n_params, text, pairs, max_length, full=full, reference=reference,
                                 checkpointing=False, bf16=bf16)
        fits = f"{estimate / GiB:.1f} GiB estimated without activation checkpointing, {device_memory / GiB:.0f} GiB " \
               f"on the device"
        if engine:
            out.notices.append(f"activation checkpointing on (TRL's default: memory under {engine} is not estimated)")
        elif estimate <= budget:
            out.set("gradient_checkpointing", False, True, f"fits: {fits}")
            out.notices.append(f"activation checkpointing off ({fits})")
        else:
            out.notices.append(f"activation checkpointing on, as TRL has it (would not fit without: {fits})")
    if t.get("use_liger_kernel") is None:
        refusal = liger_refusal(getattr(text, "model_type", None) or model.config.model_type, cfg.algorithm.name,
                                t.get("packing"), liger_installed, liger_types)
        if refusal is None:
            out.set("use_liger_kernel", True, False, "Liger's RMSNorm, RoPE and SwiGLU kernels, on the reference too: "
                    "3.3x TRL's defaults at less memory with checkpointing, 4.4x without (SmolLM2-135M shape, H200)")
            out.notices.append("Liger kernels on")
        else:
            out.record["use_liger_kernel"] = {"value": False, "trl_default": False, "reason": refusal}
            out.notices.append(f"Liger kernels off ({refusal})")
    if "precompute_ref_log_probs" in out.kwargs:
        out.notices.append(f"reference log-probs precomputed ({out.record['precompute_ref_log_probs']['reason']})")
    return out


def match_reference_kernels(trainer, apply=None) -> bool:
    """Give a separate reference model the kernels TRL gives the policy (`use_liger_kernel`): TRL 1.16 patches only
    the policy, when training starts, so a reference built before that runs on transformers' own RMSNorm and MLP.
    Returns True when the reference was patched. `apply` stands in for transformers' `apply_liger_kernel` in tests."""
    ref = getattr(trainer, "ref_model", None)
    if ref is None or not getattr(trainer.args, "use_liger_kernel", False):
        return False
    if apply is None:
        from transformers.integrations.liger import apply_liger_kernel as apply
    apply(trainer.accelerator.unwrap_model(ref), trainer.args.liger_kernel_config)
    return True
