"""Padding-free, prompt-sharing DPO forward (`training.packing: true`).

TRL's DPOTrainer feeds the model 2B right-padded rows, `[prompt + chosen]` for every pair then `[prompt + rejected]`,
so every pad position and every prompt token is computed twice. The packed forward computes the same per-token
log-probabilities from fewer positions: each pair becomes one segment

    prompt p_0..p_{P-1} | chosen c_0..c_{C-1} | p_{P-1}' | rejected r_0..r_{R-1}

The chosen branch sees the prompt; the rejected branch sees the prompt but not the chosen branch; position ids restart
per branch (chosen and rejected both start at P). `p_{P-1}'` is a copy of the last prompt token (position P-1,
attending to p_0..p_{P-2} and itself), so its hidden state is the last prompt token's and it predicts r_0 while the
original predicts c_0: one extra token per pair instead of a whole second prompt.

Two layouts, chosen by the model's attention:
- `sdpa` (the default): all segments in one row, with no padding at all. Attention runs per segment as two
  scaled-dot-product calls, `prompt + chosen` (plain causal) and `p_{P-1}' + rejected` against `p_0..p_{P-2}` and
  itself (causal with an offset), so no work is spent on positions the tree mask would hide: about a quarter of the
  attention of one dense tree-masked row per segment. It is an `AttentionInterface` entry that takes over `sdpa`
  only when the packed forward passes it the segments (`rapref_segments`); every other call is transformers' own.
- other attention implementations: segments packed first-fit into rows, with a dense tree-shaped boolean mask.

Log-probabilities: on CPU only the positions that carry a label go through the LM head, with
`rapref.train.token_logprobs.TokenLogProbs`; elsewhere (and for heads it does not cover: soft-capped logits, a bias)
TRL's fused head (`trl.trainer.utils.add_fused_lm_head`) scores them, as in TRL's path. Either way the result is
returned in TRL's padded layout with every field TRL's head was asked for, so TRL's trainer, losses, metrics and
reference handling are unchanged. Batches that cannot be packed exactly (a prompt that differs between the chosen
and the rejected row, an empty prompt, extra model inputs) go through TRL's path unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import types
from dataclasses import dataclass

import torch

from rapref.train.packing_gate import known_head
from rapref.train.token_logprobs import OUTPUTS, TokenLogProbs

BRANCH_PROMPT, BRANCH_CHOSEN, BRANCH_REJECTED = 0, 1, 2
SEGMENTS_KWARG = "rapref_segments"
FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")  # TRL's FusedCausalLMOutput


@dataclass
class PackedBatch:
    input_ids: torch.Tensor  # (rows, width)
    position_ids: torch.Tensor  # (rows, width)
    shift_labels: torch.Tensor  # (rows, width): the token each position predicts, -100 elsewhere
    source: torch.Tensor  # flat indices into the packed (rows * width) outputs ...
    dest: torch.Tensor  # ... and where each lands in TRL's (2B * (L - 1)) layout
    real_tokens: int  # non-pad positions computed
    segments: list[tuple[int, int, int, int, int]]  # (row, start, P, C, R) of each pair
    attention_mask: torch.Tensor | None = None  # (rows, 1, width, width) bool tree mask, True = may attend


def pack_pairs(input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
               row_capacity: int | None = None, dense_mask: bool = True) -> PackedBatch | None:
    """TRL's padded preference batch -> prompt-sharing packed rows; None when it cannot be packed exactly.
    `row_capacity` 0 puts every segment in one row; `dense_mask` builds the tree mask of each row."""
    n_rows, length = input_ids.shape
    if n_rows % 2 or attention_mask is None or attention_mask.dim() != 2:
        return None
    pairs = n_rows // 2
    lengths_t = attention_mask.sum(1)
    right_padded = torch.arange(length, device=attention_mask.device)[None, :] < lengths_t[:, None]  # ones, then zeros
    if not torch.equal(attention_mask.bool(), right_padded):
        return None  # left (or no contiguous) padding: the layout below reads tokens from the start of each row
    lengths = lengths_t.tolist()
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
    capacity = sum(sizes) if row_capacity == 0 else max(max(sizes), row_capacity or 2 * length)
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
    tokens, positions, branch, prompt_index, last_prompt, segment_of = ([[-1] * width for _ in bins] for _ in range(6))
    source, dest, targets, layout = [], [], [], []
    for row, members in enumerate(bins):
        at = 0
        for i in members:
            p, c, r = segments[i]
            n_p, n_c, n_r = len(p), len(c), len(r)
            span = slice(at, at + sizes[i])
            tokens[row][span] = p + c + [p[-1]] + r
            positions[row][span] = [*range(n_p + n_c), n_p - 1, *range(n_p, n_p + n_r)]
            segment_of[row][span] = [i] * sizes[i]
            branch[row][span] = [BRANCH_PROMPT] * n_p + [BRANCH_CHOSEN] * n_c + [BRANCH_REJECTED] * (1 + n_r)
            prompt_index[row][span] = [*range(n_p)] + [length] * (n_c + 1 + n_r)
            last_prompt[row][span] = [n_p - 1] * sizes[i]
            # chosen: the prompt's last token and c_0..c_{C-2} predict c_0..c_{C-1}; TRL's row i, t = P-1 ..
            first = row * width + at
            targets += c + r
            source += [first + n_p - 1 + j for j in range(n_c)] + [first + n_p + n_c + j for j in range(n_r)]
            dest += [i * (length - 1) + n_p - 1 + j for j in range(n_c)] + \
                    [(i + pairs) * (length - 1) + n_p - 1 + j for j in range(n_r)]
            layout.append((row, at, n_p, n_c, n_r))
            at += sizes[i]
    device = input_ids.device
    packed = torch.tensor(tokens).clamp_(min=0)
    shift = torch.full((len(bins) * width,), -100, dtype=torch.long)
    shift[torch.tensor(source, dtype=torch.long)] = torch.tensor(targets, dtype=torch.long)
    mask = None
    if dense_mask:
        segment, branch_t = torch.tensor(segment_of), torch.tensor(branch)
        prompt_t, last_t = torch.tensor(prompt_index), torch.tensor(last_prompt)
        q, k = (slice(None), slice(None), None), (slice(None), None, slice(None))
        same = (segment[q] == segment[k]) & (segment[k] >= 0)
        causal = torch.arange(width)[:, None] >= torch.arange(width)[None, :]
        branch_ok = (branch_t[q] == branch_t[k]) | ((branch_t[k] == BRANCH_PROMPT) &
                                                    ((branch_t[q] == BRANCH_CHOSEN) | (prompt_t[k] < last_t[k])))
        mask = same & causal & branch_ok
        mask |= torch.eye(width, dtype=torch.bool)  # padding attends to itself (no empty softmax rows)
        mask = mask[:, None].to(device)
    return PackedBatch(packed.to(device), torch.tensor(positions).clamp_(min=0).to(device),
                       shift.view(len(bins), width).to(device), torch.tensor(source, dtype=torch.long, device=device),
                       torch.tensor(dest, dtype=torch.long, device=device), sum(sizes), layout, mask)


def segment_attention(query, key, value, segments, scaling=None, dropout=0.0) -> torch.Tensor:
    """Attention of one packed row of prompt-sharing segments, segment by segment (see the module notes).
    query (1, heads, N, d), key/value (1, kv heads, N, d) -> (1, N, heads, d)."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    gqa = query.shape[1] != key.shape[1]
    sizes, expected = [], 0
    for row, start, n_p, n_c, n_r in segments:
        if row != 0 or start != expected:
            raise ValueError("segment_attention expects one row of contiguous segments")
        sizes += [n_p + n_c, 1 + n_r]  # the trunk (prompt + chosen) and the rejected branch
        expected = start + n_p + n_c + 1 + n_r
    if expected != query.shape[2]:
        raise ValueError("segment_attention: the segments do not cover the row")
    # split, not slices: its backward is one concatenation instead of a zero-filled full-size gradient per slice
    queries, keys, values = (x.split(sizes, 2) for x in (query, key, value))
    pieces = []
    for i, (_, _, n_p, _, n_r) in enumerate(segments):
        trunk, branch = 2 * i, 2 * i + 1
        pieces.append(sdpa(queries[trunk], keys[trunk], values[trunk], is_causal=True, scale=scaling,
                           dropout_p=dropout, enable_gqa=gqa))
        # p_{P-1}' and r_j see p_0..p_{P-2}, then p_{P-1}' .. r_j: causal with an offset of P - 1
        k = torch.cat([keys[trunk][:, :, :n_p - 1], keys[branch]], 2)
        v = torch.cat([values[trunk][:, :, :n_p - 1], values[branch]], 2)
        offset = torch.ones(1 + n_r, n_p + n_r, dtype=torch.bool, device=query.device).tril_(n_p - 1)
        pieces.append(sdpa(queries[branch], k, v, attn_mask=offset, scale=scaling, dropout_p=dropout,
                           enable_gqa=gqa))
    return torch.cat(pieces, 2).transpose(1, 2).contiguous()


_SDPA = {}


def install_segment_attention() -> None:
    """Route transformers' `sdpa` attention through `segment_attention` when, and only when, a forward passes
    `rapref_segments`; otherwise (and for any other caller) transformers' own `sdpa` function runs. Idempotent."""
    from transformers import AttentionInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if _SDPA:
        return
    _SDPA["original"] = original = ALL_ATTENTION_FUNCTIONS["sdpa"]
    _SDPA["segment_calls"] = 0

    def sdpa_or_segments(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
        segments = kwargs.pop(SEGMENTS_KWARG, None)
        if segments is None:
            return original(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
        _SDPA["segment_calls"] += 1
        return segment_attention(query, key, value, segments, scaling=scaling, dropout=dropout), None

    AttentionInterface.register("sdpa", sdpa_or_segments)


def fused_head_settings(fused_forward) -> dict | None:
    """The settings TRL's `add_fused_lm_head` closed over (outputs, temperature, logit scale, soft-capping, backbone
    attribute), read from the patched forward; None when they cannot be read, or when the head closes over anything
    rapref does not know (another TRL version, a transform rapref's head would not apply)."""

    fn = getattr(fused_forward, "__func__", fused_forward)
    cells = dict(zip(getattr(getattr(fn, "__code__", None), "co_freevars", ()), getattr(fn, "__closure__", None) or ()))
    if not cells or not known_head(cells):
        return None
    names = ("outputs", "temperature", "logit_scale", "final_logit_softcapping", "backbone_attr")
    try:
        return {name: cells[name].cell_contents for name in names}
    except (KeyError, ValueError):
        return None


def segments_supported(model) -> bool:
    """Per-segment attention reproduces plain causal sdpa: not sliding windows, soft-capped or sink attention."""
    config = model.config.get_text_config()
    return (getattr(model.config, "_attn_implementation", None) == "sdpa"
            and getattr(config, "sliding_window", None) is None
            and getattr(config, "attn_logit_softcapping", None) is None
            and set(getattr(config, "layer_types", None) or ()) <= {"full_attention"})


def new_stats() -> dict:
    return {"packed_batches": 0, "unpacked_batches": 0, "positions": 0, "padded_positions": 0, "scored_positions": 0}


@contextlib.contextmanager
def packed_heads(stats: dict | None = None, release_memory: bool | None = None):
    """While TRL's DPOTrainer is constructed, every fused LM head it adds (policy and reference) gets the packed
    forward on top, at the moment TRL adds it: so the reference pass of `precompute_ref_log_probs`, which runs in the
    constructor, is packed too. Yields the shared counts."""
    import trl.trainer.dpo_trainer as dpo

    stats = new_stats() if stats is None else stats
    original = dpo.add_fused_lm_head

    def add_fused_then_packed(model, *args, **kwargs):
        original(model, *args, **kwargs)
        add_packed_forward(model, stats, release_memory=release_memory)

    dpo.add_fused_lm_head = add_fused_then_packed
    try:
        yield stats
    finally:
        dpo.add_fused_lm_head = original


@functools.cache
def _malloc_trim():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Give back to the system the memory glibc's allocator keeps after tensors are freed (`malloc_trim`): on CPU a
    forward pass leaves gigabytes of freed activations in the heap, which the backward pass cannot reuse in place.
    Called at the end of each packed forward on CPU with gradient checkpointing (without it, the live activations
    are the peak and trimming gains nothing); a no-op without glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _whole_tensor(weight) -> bool:
    """A plain local weight: not a DeepSpeed ZeRO-3 partition or an FSDP DTensor, which TRL's head gathers first."""
    return type(weight.data) is torch.Tensor and weight.numel() > 0 and not hasattr(weight, "ds_id")


def _check_segments_used(use_segments: bool, calls_before) -> None:
    """Attention that never saw the segments attended across pairs: stop before those values are used."""
    if use_segments and _SDPA.get("segment_calls") == calls_before:
        raise RuntimeError("training.packing: this model's attention layers did not receive the packed segments "
                           "(its forward does not pass attention kwargs through); set training.packing=false")


def add_packed_forward(model, stats: dict | None = None, release_memory: bool | None = None) -> dict:
    """Patch `model.forward` (already given TRL's fused LM head) to pack preference batches; see the module notes.
    Returns the counts it keeps: batches packed and passed through, positions computed and TRL's padded positions,
    and how attention and the LM head were computed. `release_memory` (training.release_memory): None, trim freed
    heap memory after each packed forward on CPU with gradient checkpointing (where it was measured to help); False,
    never; True, after every packed forward on CPU."""
    from trl.trainer.utils import FusedCausalLMOutput

    stats = stats if stats is not None else new_stats()
    fused_forward = model.forward
    attn = getattr(model.config, "_attn_implementation", "sdpa")
    use_segments = segments_supported(model)
    if use_segments:
        install_segment_attention()
    head = fused_head_settings(fused_forward)
    own_head = (head is not None and head["final_logit_softcapping"] is None and set(head["outputs"]) <= set(OUTPUTS)
                and getattr(model.get_output_embeddings(), "bias", None) is None)
    stats.setdefault("attention", {})[type(model).__name__] = "segments" if use_segments else f"{attn} tree mask"

    def forward(self, *args, fused_lm_head=False, labels=None, **kwargs):
        kwargs = {k: v for k, v in kwargs.items() if v is not None}  # PEFT passes unset inputs as None
        extra = set(kwargs) - {"input_ids", "attention_mask", "use_cache", "output_router_logits"}
        plan = None
        if fused_lm_head and labels is not None and not args and not extra:
            plan = pack_pairs(kwargs["input_ids"], kwargs.get("attention_mask"), labels,
                              row_capacity=0 if use_segments else None, dense_mask=not use_segments)
        if plan is None:
            if fused_lm_head:
                stats["unpacked_batches"] += 1
            return fused_forward(*args, fused_lm_head=fused_lm_head, labels=labels, **kwargs)
        stats["packed_batches"] += 1
        stats["positions"] += plan.input_ids.numel()
        stats["padded_positions"] += kwargs["input_ids"].numel()
        rest = {k: v for k, v in kwargs.items() if k not in ("input_ids", "attention_mask")}
        if use_segments:
            inputs = dict(input_ids=plan.input_ids, position_ids=plan.position_ids, attention_mask=None,
                          **{SEGMENTS_KWARG: plan.segments}, **rest)
        else:
            mask = plan.attention_mask
            if attn == "eager":  # eager attention adds the mask to the scores
                mask = torch.zeros(mask.shape, dtype=self.dtype, device=mask.device).masked_fill(
                    ~mask, torch.finfo(self.dtype).min)
            inputs = dict(input_ids=plan.input_ids, position_ids=plan.position_ids, attention_mask=mask, **rest)
        rows, length = labels.shape
        fields = {}
        weight = self.get_output_embeddings().weight
        if own_head and plan.input_ids.device.type == "cpu" and _whole_tensor(weight):
            # (on Triton devices TRL's head is compact already; sharded heads are gathered by TRL's)
            stats["scored_positions"] += plan.source.numel()
            inputs["use_cache"] = False
            calls = _SDPA.get("segment_calls")
            hidden = getattr(self, head["backbone_attr"])(**inputs).last_hidden_state
            _check_segments_used(use_segments, calls)
            hidden = hidden.reshape(-1, hidden.shape[-1])[plan.source]
            with torch.autocast("cpu", enabled=False):
                values = TokenLogProbs.apply(hidden, weight, plan.shift_labels.reshape(-1)[plan.source],
                                             head["logit_scale"] / head["temperature"], tuple(head["outputs"]))
            compact = dict(zip(OUTPUTS, values))
            aux_loss = None
        else:
            stats["scored_positions"] += plan.input_ids.numel()
            calls = _SDPA.get("segment_calls")
            out = fused_forward(shift_labels=plan.shift_labels, fused_lm_head=True, **inputs)
            _check_segments_used(use_segments, calls)
            compact = {name: getattr(out, name).reshape(-1)[plan.source] for name in FIELDS
                       if getattr(out, name) is not None}
            aux_loss = out.aux_loss
        for name in FIELDS:
            value = compact.get(name)
            fields[name] = None if value is None else \
                value.new_zeros(rows * (length - 1)).index_put((plan.dest,), value).view(rows, length - 1)
        mask = labels[:, 1:] != -100
        loss = -fields["log_probs"].sum() / mask.sum().clamp(min=1)
        trim = getattr(self, "is_gradient_checkpointing", False) if release_memory is None else release_memory
        if plan.input_ids.device.type == "cpu" and trim:
            release_free_memory()  # what is left is what checkpointing saves; give the rest back before backward
        return FusedCausalLMOutput(loss=loss, label_mask=mask, aux_loss=aux_loss, **fields)

    model.forward = types.MethodType(forward, model)
    return stats
