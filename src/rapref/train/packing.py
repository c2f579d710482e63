"""Padding-free, prompt-sharing DPO forward (`training.packing: true`).

TRL's DPOTrainer feeds the model 2B right-padded rows, `[prompt + chosen]` for every pair then `[prompt + rejected]`,
so every pad position and every prompt token is computed twice. The packed forward computes the same per-token
log-probabilities from fewer positions: each pair becomes one segment

    prompt p_0..p_{P-1} | chosen c_0..c_{C-1} | p_{P-1}' | rejected r_0..r_{R-1}

and segments are packed into rows without padding between them. A tree-shaped attention mask lets the chosen branch
see the prompt, and the rejected branch see the prompt but not the chosen branch; position ids restart per branch
(chosen and rejected both start at P). `p_{P-1}'` is a copy of the last prompt token (position P-1, attending to
p_0..p_{P-2} and itself), so its hidden state is the last prompt token's and it predicts r_0 while the original predicts
c_0: one extra token per pair instead of a whole second prompt.

It is a patch of the model's forward on top of TRL's fused LM head (`trl.trainer.utils.add_fused_lm_head`), the way
TRL adds that head: the trainer, its losses, metrics and reference handling are TRL's, unchanged. The patched forward
receives TRL's padded batch, runs the backbone once on the packed rows (TRL's own fused head turns hidden states into
log-probabilities, via `shift_labels`), and returns every per-token field in TRL's padded layout. Batches it cannot
pack exactly (a prompt that differs between the chosen and the rejected row, an empty prompt, extra model inputs) go
through TRL's path unchanged.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import torch

BRANCH_PROMPT, BRANCH_CHOSEN, BRANCH_REJECTED = 0, 1, 2


@dataclass
class PackedBatch:
    input_ids: torch.Tensor  # (rows, length)
    position_ids: torch.Tensor  # (rows, length)
    attention_mask: torch.Tensor  # (rows, 1, length, length) bool, True = may attend
    shift_labels: torch.Tensor  # (rows, length): the token each position predicts, -100 elsewhere
    source: torch.Tensor  # flat indices into the packed (rows * length) outputs ...
    dest: torch.Tensor  # ... and where each lands in TRL's (2B * (L - 1)) layout
    real_tokens: int  # non-pad positions computed


def pack_pairs(input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
               row_capacity: int | None = None) -> PackedBatch | None:
    """TRL's padded preference batch -> prompt-sharing packed rows; None when it cannot be packed exactly."""
    n_rows, length = input_ids.shape
    if n_rows % 2 or attention_mask is None or attention_mask.dim() != 2:
        return None
    pairs = n_rows // 2
    lengths = attention_mask.sum(1).tolist()
    completion = (labels != -100).tolist()
    ids = input_ids.tolist()
    segments = []  # (prompt, chosen, rejected) token lists, with their TRL rows
    for i in range(pairs):
        rows = (i, i + pairs)
        prompt_len = [next((t for t in range(lengths[r]) if completion[r][t]), lengths[r]) for r in rows]
        if prompt_len[0] != prompt_len[1] or prompt_len[0] == 0 or \
                ids[rows[0]][:prompt_len[0]] != ids[rows[1]][:prompt_len[1]]:
            return None
        if any(not all(completion[r][prompt_len[0]:lengths[r]]) for r in rows):
            return None  # completion tokens must follow the prompt without a gap
        p = prompt_len[0]
        segments.append((ids[rows[0]][:p], ids[rows[0]][p:lengths[rows[0]]], ids[rows[1]][p:lengths[rows[1]]]))
    sizes = [len(p) + len(c) + 1 + len(r) for p, c, r in segments]
    capacity = max(max(sizes), row_capacity or 2 * length)
    bins: list[list[int]] = []  # first-fit decreasing
    room: list[int] = []
    for i in sorted(range(pairs), key=lambda i: -sizes[i]):
        target = next((b for b, free in enumerate(room) if free >= sizes[i]), None)
        if target is None:
            bins.append([]), room.append(capacity)
            target = len(bins) - 1
        bins[target].append(i)
        room[target] -= sizes[i]
    width = max(capacity - free for free in room)
    shape = (len(bins), width)
    packed = torch.zeros(shape, dtype=torch.long)
    positions = torch.zeros(shape, dtype=torch.long)
    shift = torch.full(shape, -100, dtype=torch.long)
    segment = torch.full(shape, -1, dtype=torch.long)  # -1: padding
    branch = torch.zeros(shape, dtype=torch.long)
    prompt_index = torch.zeros(shape, dtype=torch.long)  # within the prompt; large elsewhere
    last_prompt = torch.zeros(shape, dtype=torch.long)  # P - 1 of the position's segment
    source, dest = [], []
    for row, members in enumerate(bins):
        at = 0
        for i in members:
            p, c, r = segments[i]
            n_p, n_c, n_r = len(p), len(c), len(r)
            span = slice(at, at + sizes[i])
            packed[row, span] = torch.tensor(p + c + [p[-1]] + r)
            positions[row, span] = torch.tensor([*range(n_p + n_c), n_p - 1, *range(n_p, n_p + n_r)])
            segment[row, span] = i
            branch[row, span] = torch.tensor([BRANCH_PROMPT] * n_p + [BRANCH_CHOSEN] * n_c +
                                             [BRANCH_REJECTED] * (1 + n_r))
            prompt_index[row, span] = torch.tensor([*range(n_p)] + [length] * (n_c + 1 + n_r))
            last_prompt[row, span] = n_p - 1
            # chosen: the prompt's last token and c_0..c_{C-2} predict c_0..c_{C-1}; TRL's row i, t = P-1 ..
            first = row * width + at
            targets = c + r
            predictors = [first + n_p - 1 + j for j in range(n_c)] + [first + n_p + n_c + j for j in range(n_r)]
            flat_shift = shift.view(-1)
            flat_shift[torch.tensor(predictors, dtype=torch.long)] = torch.tensor(targets, dtype=torch.long)
            source += predictors
            dest += [i * (length - 1) + n_p - 1 + j for j in range(n_c)] + \
                    [(i + pairs) * (length - 1) + n_p - 1 + j for j in range(n_r)]
            at += sizes[i]
    q, k = (slice(None), slice(None), None), (slice(None), None, slice(None))
    same = (segment[q] == segment[k]) & (segment[k] >= 0)
    causal = torch.arange(width)[:, None] >= torch.arange(width)[None, :]
    branch_ok = (branch[q] == branch[k]) | ((branch[k] == BRANCH_PROMPT) &
                                            ((branch[q] == BRANCH_CHOSEN) | (prompt_index[k] < last_prompt[k])))
    mask = same & causal & branch_ok
    mask |= torch.eye(width, dtype=torch.bool)  # padding attends to itself (no empty softmax rows)
    return PackedBatch(packed.to(input_ids.device), positions.to(input_ids.device),
                       mask[:, None].to(input_ids.device), shift.to(input_ids.device),
                       torch.tensor(source, dtype=torch.long, device=input_ids.device),
                       torch.tensor(dest, dtype=torch.long, device=input_ids.device), sum(sizes))


def add_packed_forward(model, stats: dict | None = None) -> dict:
    """Patch `model.forward` (already given TRL's fused LM head) to pack preference batches; see the module notes.
    Returns the counts it keeps: batches packed and passed through, positions computed and TRL's padded positions."""
    stats = stats if stats is not None else {"packed_batches": 0, "unpacked_batches": 0, "positions": 0,
                                             "padded_positions": 0}
    fused_forward = model.forward
    use_bool = getattr(model.config, "_attn_implementation", "sdpa") in ("sdpa", "flex_attention")

    def forward(self, *args, fused_lm_head=False, labels=None, **kwargs):
        kwargs = {k: v for k, v in kwargs.items() if v is not None}  # PEFT passes unset inputs as None
        extra = set(kwargs) - {"input_ids", "attention_mask", "use_cache", "output_router_logits"}
        plan = None
        if fused_lm_head and labels is not None and not args and not extra:
            plan = pack_pairs(kwargs["input_ids"], kwargs.get("attention_mask"), labels)
        if plan is None:
            if fused_lm_head:
                stats["unpacked_batches"] += 1
            return fused_forward(*args, fused_lm_head=fused_lm_head, labels=labels, **kwargs)
        stats["packed_batches"] += 1
        stats["positions"] += plan.input_ids.numel()
        stats["padded_positions"] += kwargs["input_ids"].numel()
        mask = plan.attention_mask
        if not use_bool:  # eager attention adds the mask to the scores
            mask = torch.zeros(mask.shape, dtype=self.dtype, device=mask.device).masked_fill(
                ~mask, torch.finfo(self.dtype).min)
        out = fused_forward(input_ids=plan.input_ids, attention_mask=mask, position_ids=plan.position_ids,
                            shift_labels=plan.shift_labels, fused_lm_head=True,
                            **{k: v for k, v in kwargs.items() if k not in ("input_ids", "attention_mask")})
        rows, length = labels.shape
        fields = {}
        for name in ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1"):
            value = getattr(out, name)
            if value is not None:
                flat = value.new_zeros(rows * (length - 1)).index_put((plan.dest,), value.reshape(-1)[plan.source])
                fields[name] = flat.view(rows, length - 1)
        mask = labels[:, 1:] != -100
        log_probs = fields["log_probs"]
        loss = -log_probs.sum() / mask.sum().clamp(min=1)
        return type(out)(loss=loss, label_mask=mask, aux_loss=out.aux_loss, **fields)

    model.forward = types.MethodType(forward, model)
    return stats
