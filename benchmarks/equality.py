"""How two runs of the same model are compared: gradients per parameter tensor, per-token log-probabilities.

Gradients, not parameters after an optimizer step: AdamW's first step is +-lr wherever a gradient is non-zero, so
parameters after it cannot show agreement (LoRA's B starts at zero: bf16 noise in a near-zero gradient flips the
step's sign).
"""

from __future__ import annotations


def grad_comparison(ours: dict, theirs: dict) -> dict:
    """Per parameter tensor (name -> gradient): relative norm of the difference, ||a - b|| / ||b||, and cosine.
    Tensors zero in both (LoRA's A at the first step, while B is zero) are counted apart.

    >>> import torch
    >>> g = {"w": torch.tensor([1.0, 2.0]), "a": torch.zeros(2)}
    >>> r = grad_comparison({"w": torch.tensor([1.0, 2.2]), "a": torch.zeros(2)}, g)
    >>> round(r["max_rel_diff"], 4), round(r["min_cosine"], 4), r["zero_in_both"]
    (0.0894, 0.9993, 1)
    """
    import torch

    rel, cos, both_zero, names = [], [], 0, sorted(set(ours) & set(theirs))
    for name in names:
        a, b = ours[name].flatten().float(), theirs[name].flatten().float()
        na, nb = float(a.norm()), float(b.norm())
        if na == 0 and nb == 0:
            both_zero += 1
            continue
        rel.append(float((a - b).norm()) / max(nb, 1e-30))
        cos.append(float(torch.dot(a, b)) / max(na * nb, 1e-30))
    rel_sorted = sorted(rel)
    return {"tensors": len(names), "zero_in_both": both_zero, "missing": len(set(ours) ^ set(theirs)),
            "max_rel_diff": rel_sorted[-1] if rel else None,
            "median_rel_diff": rel_sorted[len(rel) // 2] if rel else None, "min_cosine": min(cos) if cos else None}


def token_diff(ours, theirs) -> float | None:
    """Largest per-token difference of two (log_probs, mask) pairs over the masked (completion) tokens."""
    (a, mask), (b, _) = ours, theirs
    if a.shape != b.shape:
        return None
    return float((a - b).abs()[mask].max())
