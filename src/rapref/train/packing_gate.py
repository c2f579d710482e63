"""Where the packed DPO forward (`rapref.train.packing`) is proven to equal TRL's path, and where it is not used.

Packing is on by default for DPO on CPU. It runs only where every condition below holds; anywhere else the run takes
TRL's padded path, prints one line saying why, and records the reason in `rapref_train.json` (`result.packing`):

- TRL is a version the packing tests ran on (`TESTED_TRL`), and every TRL and transformers internal the packed
  forward uses is there and shaped as expected (`add_fused_lm_head` in TRL's DPO trainer module, the settings its
  fused head closes over, `FusedCausalLMOutput`'s fields, transformers' `AttentionInterface` and its `sdpa` entry);
- the model's attention implementation is on the allow-list: `sdpa` (attention per segment) and `eager` (a dense
  tree mask). Kernels that do not take an arbitrary mask (flash attention 2 and 3, flex attention, hub kernels) are
  not: flash attention also reads restarted position ids as separate sequences, so the rejected branch would not see
  the prompt;
- the model adds no auxiliary loss to its forward (mixture-of-experts routers: TRL adds `router_aux_loss_coef *
  aux_loss`, which the packed head does not compute);
- the device is a CPU, unless `training.packing=true` is given: on CUDA the packed path has not been measured yet
  (`scripts/gpu_check.sh` writes the evidence), so it is opt-in there.

Inside a packed run, each batch is checked again (`pack_pairs`): right padding and prompts equal across the pair, or
that batch goes through TRL's path unchanged. rapref's own CPU LM head is used only when every transform TRL's head
applies is one it reproduces (`known_head`); otherwise TRL's head scores the packed rows.
"""

from __future__ import annotations

# TRL (major, minor) versions whose internals the packing tests ran against
TESTED_TRL = ((1, 16),)
ATTENTION = ("sdpa", "eager")
# the names TRL 1.16's fused head closes over: any other is a transform rapref does not know
KNOWN_HEAD_CLOSURE = frozenset({"backbone_attr", "cast_lm_head_to_fp32", "final_logit_softcapping", "logit_scale",
                                "original_forward", "outputs", "temperature", "text_config"})
FUSED_OUTPUT_FIELDS = ("loss", "log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1", "label_mask",
                       "aux_loss")


def trl_refusal() -> str | None:
    """Why this TRL / transformers cannot run the packed forward; None when they can."""
    import dataclasses

    import trl

    try:
        major, minor = (int(x) for x in trl.__version__.split(".")[:2])
    except ValueError:
        return f"TRL {trl.__version__} is not a release version"
    if (major, minor) not in TESTED_TRL:
        tested = ", ".join(f"{a}.{b}" for a, b in TESTED_TRL)
        return f"TRL {trl.__version__} is not a version the packing tests ran on ({tested})"
    try:
        import trl.trainer.dpo_trainer as dpo
        from transformers import AttentionInterface  # noqa: F401 - needed to route sdpa
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
        from trl.trainer.utils import FusedCausalLMOutput
    except ImportError as err:
        return f"an internal of TRL or transformers is missing ({err})"
    if not callable(getattr(dpo, "add_fused_lm_head", None)):
        return "TRL's DPO trainer has no add_fused_lm_head to pack"
    if "sdpa" not in ALL_ATTENTION_FUNCTIONS:
        return "transformers has no sdpa attention function to route"
    fields = {f.name for f in dataclasses.fields(FusedCausalLMOutput)} if dataclasses.is_dataclass(
        FusedCausalLMOutput) else set(getattr(FusedCausalLMOutput, "__annotations__", {}))
    if not set(FUSED_OUTPUT_FIELDS) <= fields:
        return "TRL's FusedCausalLMOutput has other fields than the packed forward fills"
    return None


def model_refusal(model) -> str | None:
    """Why this model cannot run the packed forward; None when it can."""
    attn = getattr(model.config, "_attn_implementation", None) or "sdpa"
    if attn not in ATTENTION:
        return (f"attention {attn!r} is not on the packing allow-list ({', '.join(ATTENTION)}): it may not honour the "
                "packed tree mask")
    text = model.config.get_text_config()
    if any(getattr(text, key, None) for key in ("num_local_experts", "num_experts", "n_routed_experts")) or \
            hasattr(text, "output_router_logits"):
        return "a mixture-of-experts model: its router auxiliary loss is computed on TRL's path only"
    return None


def packing_refusal(model, requested: bool | None, on_gpu: bool) -> str | None:
    """Why a DPO run with this model takes TRL's path (`requested`: training.packing as given, None when unset)."""
    if requested is False:
        return "training.packing=false"
    if on_gpu and requested is None:
        return ("on CUDA packing is opt-in (training.packing=true) until scripts/gpu_check.sh has measured it on a "
                "GPU")
    return trl_refusal() or model_refusal(model)


def known_head(closure_names) -> bool:
    """True when every setting TRL's fused head closes over is one rapref's head reads or does not need."""
    return set(closure_names) <= KNOWN_HEAD_CLOSURE
