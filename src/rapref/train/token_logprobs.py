"""Per-token log-probabilities of `hidden @ weight.T`, chunk by chunk, for devices without Triton.

TRL 1.16's fused LM head (`trl.kernels.ChunkedLogProbFunction`) never materialises the (tokens, vocabulary) logits:
it projects tiles, folds them into online log-sum-exp statistics and recomputes them in the backward pass. On Triton
devices the fold is a kernel; elsewhere it is about ten full-tile torch passes per tile of 4096 tokens x 32768 words
(512 MB in float32), well outside any CPU cache, and TRL then scores every position, prompt and padding included.

`TokenLogProbs` is the same computation shaped for a CPU: tiles of a few hundred tokens x the whole vocabulary (so a
tile stays in the last-level cache), in-place passes, and only the positions that carry a label. It returns what
TRL's head returns, `log_probs` (differentiable) and, on request, `entropy`, `mean_logits` and `is_top1` (metrics,
not differentiable), with TRL's definitions: `is_top1` is True when the label is the first arg-max.
"""

from __future__ import annotations

import torch

OUTPUTS = ("log_probs", "entropy", "mean_logits", "is_top1")
TOKEN_CHUNK = 256


class TokenLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, scale: float = 1.0, outputs: tuple = ("log_probs",),
                chunk: int = TOKEN_CHUNK):
        unknown = set(outputs) - set(OUTPUTS)
        if unknown:
            raise ValueError(f"TokenLogProbs cannot compute {sorted(unknown)}; it computes {OUTPUTS}")
        n, vocab = hidden.shape[0], weight.shape[0]
        log_z = hidden.new_empty(n, dtype=torch.float32)
        target_z = hidden.new_empty(n, dtype=torch.float32)
        entropy = hidden.new_empty(n, dtype=torch.float32) if "entropy" in outputs else None
        mean = hidden.new_empty(n, dtype=torch.float32) if "mean_logits" in outputs else None
        top1 = torch.empty(n, dtype=torch.bool, device=hidden.device) if "is_top1" in outputs else None
        buf = hidden.new_empty((min(n, chunk), vocab), dtype=torch.float32)
        w = weight.float()
        for start in range(0, n, chunk):
            end = min(start + chunk, n)
            z = buf[: end - start]
            torch.mm(hidden[start:end].float(), w.t(), out=z)
            if scale != 1.0:
                z.mul_(scale)
            t = targets[start:end]
            if mean is not None:
                torch.mean(z, -1, out=mean[start:end])
            top, arg = z.max(-1)
            if top1 is not None:
                top1[start:end] = arg == t
            target_z[start:end] = z.gather(-1, t[:, None]).squeeze(-1)
            z.sub_(top[:, None])
            if entropy is None:
                log_z[start:end] = z.exp_().sum(-1).log_().add_(top)
            else:
                e = torch.exp(z)
                s = e.sum(-1)
                ez = e.mul_(z).sum(-1)
                entropy[start:end] = s.log() - ez / s
                log_z[start:end] = s.log_().add_(top)
        ctx.save_for_backward(hidden, weight, targets, log_z)
        ctx.scale, ctx.chunk = scale, chunk
        extras = [x for x in (entropy, mean, top1) if x is not None]
        ctx.mark_non_differentiable(*extras)
        ctx.set_materialize_grads(False)
        return target_z - log_z, entropy, mean, top1

    @staticmethod
    def backward(ctx, grad_log_probs, *unused):
        hidden, weight, targets, log_z = ctx.saved_tensors
        if grad_log_probs is None:
            return None, None, None, None, None, None
        n, vocab = hidden.shape[0], weight.shape[0]
        scale, chunk = ctx.scale, ctx.chunk
        need_hidden, need_weight = ctx.needs_input_grad[:2]
        w = weight.float()
        grad_hidden = torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        buf = hidden.new_empty((min(n, chunk), vocab), dtype=torch.float32)
        g_all = grad_log_probs.float() * scale
        for start in range(0, n, chunk):
            end = min(start + chunk, n)
            z = buf[: end - start]
            h = hidden[start:end].float()
            torch.mm(h, w.t(), out=z)
            if scale != 1.0:
                z.mul_(scale)
            g = g_all[start:end]
            z.sub_(log_z[start:end, None]).exp_().mul_(-g[:, None])  # d log p_t / dz_j = 1[j = t] - p_j
            z.scatter_add_(-1, targets[start:end, None], g[:, None])
            if grad_hidden is not None:
                torch.mm(z, w, out=grad_hidden[start:end])
            if grad_weight is not None:
                grad_weight.addmm_(z.t(), h)
        return (None if grad_hidden is None else grad_hidden.to(hidden.dtype),
                None if grad_weight is None else grad_weight.to(weight.dtype), None, None, None, None)
