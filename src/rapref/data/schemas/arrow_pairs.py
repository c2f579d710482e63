"""Arrow-native loading of flat scored pairs: a JSONL or Parquet file of the `pairs`, `ultrafeedback-binarized` or
`argilla` layout, with text or chat-message prompt / chosen / rejected columns and numeric score columns.

The file is read by Arrow's own readers and cleaned with compute kernels, column by column, never as Python dicts:
the same rule, the same counted drops (reason, row, field, detail) and the same one-line errors in strict mode as the
per-row loader in `rapref.data.schemas.pairs`, which stays the path for everything else (scores written as text, mixed
types, gzip, folders, hub ids, rows whose prompt comes from different places). `load` returns None whenever a table
is not of this form and the caller takes the per-row path; tests check that both paths write the same folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rapref.data.schemas.base import ROLES, Drops, Loaded, SchemaOptions, is_messages
from rapref.data.schemas.pairs import FLAT_LAYOUTS, maps_scores, score_columns_for

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])


@dataclass
class Check:
    """One way a row can fail, in the per-row loader's order: the first failing check is the row's reason."""

    reason: str
    mask: pa.Array  # bool per row (no nulls)
    field: Callable[[int], str]
    detail: Callable[[int], str] = lambda i: ""


def load(table: pa.Table, schema: str, options: SchemaOptions, source: str, offset: int = 0,
         drops: Drops | None = None) -> Loaded | None:
    """Clean one split ("train") with Arrow kernels; None when the table is not of a form this module reads.
    A block of a longer file: `offset` is its first row's number, `drops` the file's counts so far."""

    if schema not in FLAT_LAYOUTS or table.num_rows == 0:
        return None
    table = table.combine_chunks()
    score_columns = score_columns_for(schema, options, table.slice(0, 1).to_pylist()[0], source)
    p_col, c_col, r_col = options.prompt_column, options.chosen_column, options.rejected_column
    if any(c not in table.column_names for c in (c_col, r_col, *score_columns)) or \
            not all(pa.types.is_integer(table[c].type) or pa.types.is_floating(table[c].type) for c in score_columns):
        return None  # the per-row loader gives the one-line error, or parses scores written as text
    chosen, rejected = _array(table, c_col), _array(table, r_col)
    if p_col not in table.column_names and p_col != "prompt":
        return None  # a prompt column named on the command line and found nowhere: the per-row loader says so
    prompt = _array(table, p_col) if p_col in table.column_names else pa.nulls(table.num_rows, pa.string())
    if _is_text(chosen) and _is_text(rejected):
        if p_col not in table.column_names or not _is_text(prompt):
            return None
        checks, build = _text_checks(prompt, chosen, rejected, p_col, c_col, r_col)
    elif _is_messages(chosen) and _is_messages(rejected) and is_messages(chosen[0].as_py()):  # row 0 decides
        if not (_is_text(prompt) or _is_messages(prompt)):
            return None
        checks, build = _message_checks(prompt, chosen, rejected, p_col, c_col, r_col)
    else:
        return None
    scale = options.scale or FLAT_LAYOUTS[schema][1]
    scores = [pc.cast(table[c], pa.float64()).combine_chunks() for c in score_columns]
    checks += _score_checks(scores, score_columns, None if maps_scores(options) else scale)
    drops = drops if drops is not None else Drops(source, strict=options.strict)
    dropped = _apply(checks, drops, options.strict, offset)
    keep = pc.invert(dropped)
    columns = build(keep)
    if columns is None:
        return None
    index = pc.indices_nonzero(keep)
    index = pc.add(index, pa.scalar(offset, index.type)) if offset else index
    pairs = pa.table({**columns, "source_id": pc.utf8_replace_slice(pc.cast(index, pa.string()), 0, 0, "train:"),
                      "score_chosen": pc.filter(scores[0], keep), "score_rejected": pc.filter(scores[1], keep)})
    return Loaded(pairs={"train": pairs}, scale=scale, drops=drops)


def _array(table: pa.Table, name: str) -> pa.Array:
    column = table[name]
    return column.chunk(0) if column.num_chunks == 1 else pa.concat_arrays(column.chunks)


def _is_text(array: pa.Array) -> bool:
    return _is_text_type(array.type)


def _is_messages(array: pa.Array) -> bool:
    kind = array.type
    return pa.types.is_list(kind) and pa.types.is_struct(kind.value_type) and \
        {"role", "content"} <= {kind.value_type.field(i).name for i in range(kind.value_type.num_fields)} and \
        all(_is_text_type(kind.value_type.field(name).type) for name in ("role", "content"))


def _is_text_type(kind) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _blank(array: pa.Array) -> pa.Array:
    return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(array), ""), False)


# --- text columns ---------------------------------------------------------------------------------------------------


def _text_checks(prompt, chosen, rejected, p_col, c_col, r_col):
    checks = [Check("missing_prompt", pc.is_null(prompt), lambda i: p_col),
              Check("empty_text", _blank(prompt), lambda i: p_col)]
    for array, name in ((chosen, c_col), (rejected, r_col)):
        checks += [Check("text_not_a_string", pc.is_null(array), lambda i, n=name: n, lambda i: "got NoneType"),
                   Check("empty_text", _blank(array), lambda i, n=name: n)]
    checks.append(Check("chosen_equals_rejected", pc.fill_null(pc.equal(chosen, rejected), False), lambda i: c_col))

    def build(keep):
        return {"prompt": pc.filter(prompt, keep), "chosen": pc.filter(chosen, keep),
                "rejected": pc.filter(rejected, keep)}

    return checks, build


# --- message lists --------------------------------------------------------------------------------------------------


class Messages:
    """A list<struct<role, content>> column flattened once: per message its row and position, per row its length."""

    def __init__(self, array: pa.Array):
        self.array = array
        self.rows = len(array)
        self.length = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        flat = pc.list_flatten(array)
        self.parent = pc.list_parent_indices(array).to_numpy(zero_copy_only=False).astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(self.length)[:-1]])
        self.position = np.arange(len(flat)) - starts[self.parent] if len(flat) else np.zeros(0, np.int64)
        self.flat_valid = pc.is_valid(flat).to_numpy(zero_copy_only=False)
        self.role = pc.struct_field(flat, "role")
        self.content = pc.struct_field(flat, "content")
        self.start = starts  # flat index of each row's first message
        self.last = np.cumsum(self.length) - 1  # flat index of each row's last message (where length > 0)

    def per_row_any(self, flags: np.ndarray) -> np.ndarray:
        return np.bincount(self.parent[flags], minlength=self.rows) > 0

    def checks(self, name: str, last_role: str) -> list[Check]:
        """check_messages: non-empty list of messages, known roles, non-empty text, the last from `last_role`."""
        malformed = (self.length == 0) | self.per_row_any(~self.flat_valid) | \
            ~pc.is_valid(self.array).to_numpy(zero_copy_only=False)
        bad_role = ~pc.fill_null(pc.is_in(self.role, value_set=pa.array(ROLES)), False).to_numpy(
            zero_copy_only=False)
        no_text = pc.is_null(self.content).to_numpy(zero_copy_only=False)
        blank = _blank(self.content).to_numpy(zero_copy_only=False)
        failing = bad_role | no_text | blank
        first = np.full(self.rows, -1)  # flat index of each row's first failing message
        rows, at = np.unique(self.parent[failing], return_index=True)
        first[rows] = np.flatnonzero(failing)[at]
        kind = np.full(self.rows, -1)
        has = (first >= 0) & ~malformed
        kind[has] = np.where(bad_role[first[has]], 0, np.where(no_text[first[has]], 1, 2))
        last_ok = np.zeros(self.rows, dtype=bool)
        nonempty = self.length > 0
        last_role_of = np.full(self.rows, None, dtype=object)
        roles = self.role.to_numpy(zero_copy_only=False) if len(self.role) else np.zeros(0, dtype=object)
        last_role_of[nonempty] = roles[self.last[nonempty]]
        last_ok[nonempty] = last_role_of[nonempty] == last_role
        wrong_last = ~malformed & ~has & ~last_ok

        def where(i, part):
            return f"{name}[{self.position[first[i]]}].{part}"

        return [Check("malformed_messages", pa.array(malformed), lambda i: name,
                      lambda i: "expected a non-empty list of {role, content}"),
                Check("bad_message_role", pa.array(kind == 0), lambda i: where(i, "role"),
                      lambda i: f"got {roles[first[i]]!r}"),
                Check("text_not_a_string", pa.array(kind == 1), lambda i: where(i, "content"),
                      lambda i: "got NoneType"),
                Check("empty_text", pa.array(kind == 2), lambda i: where(i, "content")),
                Check("bad_message_role", pa.array(wrong_last), lambda i: f"{name}[-1].role",
                      lambda i: f"expected {last_role!r}, got {last_role_of[i]!r}")]

    def message_at(self, flat_index: np.ndarray) -> tuple[pa.Array, pa.Array]:
        take = pa.array(flat_index)
        return self.role.take(take), self.content.take(take)


def _message_checks(prompt, chosen, rejected, p_col, c_col, r_col):
    c, r = Messages(chosen), Messages(rejected)
    checks = c.checks(c_col, "assistant") + r.checks(r_col, "assistant")
    # the turns before the answer must agree (role and text, message by message)
    same_length = c.length == r.length
    differ = ~same_length
    rows = np.flatnonzero(same_length & (c.length > 1))
    if len(rows):  # compare message k < last of chosen and rejected, without copying the lists
        turns = c.length[rows] - 1
        row_of = np.repeat(rows, turns)
        k = np.arange(len(row_of)) - np.repeat(np.cumsum(turns) - turns, turns)
        at_c, at_r = pa.array(c.start[row_of] + k), pa.array(r.start[row_of] + k)
        unequal = np.zeros(len(row_of), dtype=bool)
        for field in ("role", "content"):
            a, b = getattr(c, field).take(at_c), getattr(r, field).take(at_r)
            unequal |= ~_same(a, b)
        differ[np.unique(row_of[unequal])] = True
    checks.append(Check("chosen_and_rejected_prompts_differ", pa.array(differ), lambda i: r_col))
    has_turns = c.length > 1
    roles = c.role.to_numpy(zero_copy_only=False) if len(c.role) else np.zeros(0, dtype=object)
    before_last = np.full(c.rows, None, dtype=object)
    before_last[has_turns] = roles[c.last[has_turns] - 1]
    checks.append(Check("bad_message_role", pa.array(has_turns & (before_last != "user")),
                        lambda i: f"{c_col}[-2].role", lambda i: "expected 'user'"))
    no_turns = ~has_turns
    if _is_messages(prompt):  # the per-row loader: a list of messages is checked as such, anything else as text
        p = Messages(prompt)
        missing = pc.is_null(prompt).to_numpy(zero_copy_only=False)
        not_messages = ~missing & ((p.length == 0) | p.per_row_any(~p.flat_valid))
        checks += [Check("missing_prompt", pa.array(no_turns & missing), lambda i: p_col),
                   Check("text_not_a_string", pa.array(no_turns & not_messages), lambda i: p_col,
                         lambda i: "got list")]
        checks += [Check(ch.reason, pc.and_(ch.mask, pa.array(no_turns)), ch.field, ch.detail)
                   for ch in p.checks(p_col, "user")[1:]]  # [0]: malformed, covered by the two above
    else:
        checks += [Check("missing_prompt", pc.and_(pc.is_null(prompt), pa.array(no_turns)), lambda i: p_col),
                   Check("empty_text", pc.and_(_blank(prompt), pa.array(no_turns)), lambda i: p_col)]
    answers_equal = np.zeros(c.rows, dtype=bool)
    both = (c.length > 0) & (r.length > 0)
    at_c, at_r = pa.array(c.last[both]), pa.array(r.last[both])
    answers_equal[both] = _same(c.role.take(at_c), r.role.take(at_r)) & \
        _same(c.content.take(at_c), r.content.take(at_r))
    checks.append(Check("chosen_equals_rejected", pa.array(answers_equal), lambda i: c_col))

    def build(keep):
        kept = keep.to_numpy(zero_copy_only=False)
        turns = has_turns[kept]
        if turns.any() and not turns.all():
            return None  # prompts from both places in one file: the per-row loader handles the mix
        if turns.all():  # the turns before the answer, from the chosen list
            flat = np.flatnonzero(kept[c.parent] & (c.position < c.length[c.parent] - 1))
            offsets = np.concatenate([[0], np.cumsum(c.length[kept] - 1)])
            prompts = message_lists(offsets, *c.message_at(flat))
        elif _is_messages(prompt):
            p = Messages(prompt)
            flat = np.flatnonzero(kept[p.parent])
            prompts = message_lists(np.concatenate([[0], np.cumsum(p.length[kept])]), *p.message_at(flat))
        else:
            prompts = one_message_each(pc.filter(prompt, keep), "user")
        answers = {}
        for name, m in (("chosen", c), ("rejected", r)):
            answers[name] = message_lists(np.arange(int(kept.sum()) + 1), *m.message_at(m.last[kept]))
        return {"prompt": prompts, **answers}

    return checks, build


def _same(a: pa.Array, b: pa.Array) -> np.ndarray:
    """Equal as Python compares them: two missing values are equal too."""
    return pc.fill_null(pc.equal(a, b), False).to_numpy(zero_copy_only=False) | \
        (pc.is_null(a).to_numpy(zero_copy_only=False) & pc.is_null(b).to_numpy(zero_copy_only=False))


def message_lists(offsets: np.ndarray, role: pa.Array, content: pa.Array) -> pa.Array:
    """list<struct<role, content>> from flat roles and texts and list offsets."""
    values = pa.StructArray.from_arrays([pc.cast(role, pa.string()), pc.cast(content, pa.string())],
                                        fields=list(MESSAGE))
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)


def one_message_each(texts: pa.Array, role: str) -> pa.Array:
    """Each text as a one-message list [{role, content}], built from the column's buffers (no per-row Python)."""
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    roles = pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(texts), dtype=np.int32)), pa.array([role]))
    return message_lists(np.arange(len(texts) + 1), roles, texts)


# --- scores and the drop bookkeeping --------------------------------------------------------------------------------


def _score_checks(scores, names, scale) -> list[Check]:
    """Finite scores, on `scale` (None: any finite score, mapped onto the scale later)."""
    lo, hi = scale if scale is not None else (-np.inf, np.inf)
    checks = []
    for name, score in zip(names, scores):
        finite = pc.fill_null(pc.is_finite(score), False)
        inside = pc.fill_null(pc.and_(pc.greater_equal(score, lo), pc.less_equal(score, hi)), False)
        checks += [Check("score_not_a_finite_number", pc.invert(finite), lambda i, n=name: n,
                         lambda i, s=score: f"got {s[i].as_py()!r}"),
                   Check("score_outside_scale", pc.and_(finite, pc.invert(inside)), lambda i, n=name: n,
                         lambda i, s=score: f"{s[i].as_py():g} not in [{lo:g}, {hi:g}]")]
    return checks


def _apply(checks: list[Check], drops: Drops, strict: bool, offset: int = 0) -> pa.Array:
    """Each row's first failing check is its drop reason: counts, and the first examples in row order."""
    if strict:  # the first row with any problem, and its first problem (Drops.drop raises)
        failing = checks[0].mask
        for check in checks[1:]:
            failing = pc.or_(failing, check.mask)
        rows = pc.indices_nonzero(failing).slice(0, 1).to_pylist()
        if rows:
            check = next(ch for ch in checks if ch.mask[rows[0]].as_py())
            drops.drop(check.reason, f"train:{offset + rows[0]}", check.field(rows[0]), check.detail(rows[0]))
    dropped, counts, examples = None, {}, {}
    for check in checks:
        new = check.mask if dropped is None else pc.and_(check.mask, pc.invert(dropped))
        count = pc.sum(new).as_py() or 0
        if count:
            counts[check.reason] = counts.get(check.reason, 0) + count
            examples.setdefault(check.reason, []).extend(
                (i, check) for i in pc.indices_nonzero(new).slice(0, drops.limit).to_pylist())
        dropped = new if dropped is None else pc.or_(dropped, new)
    for reason in sorted(examples, key=lambda r: min(i for i, _ in examples[r])):  # in the order rows meet them
        shown = sorted(examples[reason], key=lambda e: e[0])[:drops.limit]
        for i, check in shown:
            drops.drop(reason, f"train:{offset + i}", check.field(i), check.detail(i))
        drops.counts[reason] += counts[reason] - len(shown)
    return dropped
