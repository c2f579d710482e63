"""Conservative DPO (cDPO), restored on top of TRL's built-in losses.

The paper's Qwen2 and Gemma-2 recipes use label smoothing eps = 0.3 on the sigmoid loss:

    L_cDPO(z) = -(1 - eps) * log sigmoid(z) - eps * log sigmoid(-z),      z = beta * (chosen logratio - rejected logratio)

TRL >= 0.29 silently ignores `label_smoothing` for `loss_type="sigmoid"`. Rather than fork the trainer, we write
cDPO as a fixed combination of two losses TRL still has, both evaluated at the same z and eps:

    sigmoid:  S(z) = -log sigmoid(z)
    robust:   R(z) = (-(1 - eps) log sigmoid(z) + eps log sigmoid(-z)) / (1 - 2 eps)

    L_cDPO = 2 (1 - eps) * S  -  (1 - 2 eps) * R

(the log sigmoid(-z) terms: -(1-2eps) * eps/(1-2eps) = -eps; the log sigmoid(z) terms: -2(1-eps) + (1-eps) = -(1-eps)).
So `loss_type=["sigmoid", "robust"]`, `loss_weights=[2(1-eps), -(1-2eps)]`, `label_smoothing=eps` trains exactly cDPO.
"""

from __future__ import annotations

import math

from rapref.io import InputError


def conservative_dpo_loss(z, eps: float):
    """-(1-eps) log sigmoid(z) - eps log sigmoid(-z); works on floats and torch tensors.

    >>> round(conservative_dpo_loss(0.0, 0.3), 6)   # log 2 whatever eps
    0.693147
    >>> round(conservative_dpo_loss(2.0, 0.0), 6)   # plain DPO: -log sigmoid(2)
    0.126928
    """
    if isinstance(z, (int, float)):
        return -(1 - eps) * _logsigmoid(z) - eps * _logsigmoid(-z)
    import torch.nn.functional as F

    return -(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)


def _logsigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def with_conservative_dpo(loss_type: list[str], loss_weights: list[float] | None, eps: float):
    """TRL loss list and weights that compute cDPO wherever `sigmoid` appears. Returns (loss_type, loss_weights)."""
    weights = list(loss_weights) if loss_weights is not None else [1.0] * len(loss_type)
    if len(weights) != len(loss_type):
        raise InputError(f"loss_weights has {len(weights)} entries for {len(loss_type)} loss types")
    if eps == 0 or "sigmoid" not in loss_type:
        return list(loss_type), loss_weights
    if "robust" in loss_type:
        raise InputError("label_smoothing with both 'sigmoid' and 'robust' is ambiguous; use one of them")
    out_types, out_weights = [], []
    for name, weight in zip(loss_type, weights):
        if name == "sigmoid":
            out_types += ["sigmoid", "robust"]
            out_weights += [weight * 2 * (1 - eps), -weight * (1 - 2 * eps)]
        else:
            out_types.append(name)
            out_weights.append(weight)
    return out_types, out_weights
