"""Arrow-native loading of flat scored pairs: a JSONL or Parquet file with text prompt / chosen / rejected columns
and numeric score columns (the `pairs`, `ultrafeedback-binarized` and `argilla` layouts in their plain-text form).

The file is read by Arrow's own readers and cleaned with compute kernels, column by column, never as Python dicts:
the same rule, the same counted drops (reason, row, field) and the same one-line errors as the per-row loaders in
`rapref.schemas.pairs`, which remain the path for everything else (message lists, scores written as text, mixed
types, gzip, folders, hub ids). `load` returns None whenever the file is not of this plain form, and the caller then
takes the per-row path; a test checks that both paths give the same tables and summary.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from rapref.schemas.base import Drops, Loaded, SchemaOptions

SCHEMAS = ("pairs", "ultrafeedback-binarized", "argilla")


def is_text(column: pa.ChunkedArray) -> bool:
    return pa.types.is_string(column.type) or pa.types.is_large_string(column.type)


def load(table: pa.Table, schema: str, options: SchemaOptions, source: str) -> Loaded | None:
    """Clean one split ("train") of flat pairs with Arrow kernels; None when the table is not of that form."""
    from rapref.schemas.pairs import score_columns_for

    if schema not in SCHEMAS or table.num_rows == 0:
        return None
    first = table.slice(0, 1).to_pylist()[0]
    score_columns = score_columns_for(schema, options, first)
    columns = (options.prompt_column, options.chosen_column, options.rejected_column)
    if any(c not in table.column_names for c in (*columns, *score_columns)):
        return None  # the per-row loader gives the one-line error
    if not all(is_text(table[c]) for c in columns) or \
            not all(pa.types.is_integer(table[c].type) or pa.types.is_floating(table[c].type) for c in score_columns):
        return None
    scale = options.scale or ((1, 5) if schema == "argilla" else (1, 10))
    drops = Drops(source, strict=options.strict)
    prompt, chosen, rejected = (table[c] for c in columns)
    scores = [pc.cast(table[c], pa.float64()) for c in score_columns]
    lo, hi = scale
    checks = [  # (reason, field, failing mask, detail of row i) in the per-row loader's order: the first one counts
        ("missing_prompt", columns[0], pc.is_null(prompt), None),
        ("empty_text", columns[0], _blank(prompt), None),
        ("text_not_a_string", columns[1], pc.is_null(chosen), lambda i: "got NoneType"),
        ("empty_text", columns[1], _blank(chosen), None),
        ("text_not_a_string", columns[2], pc.is_null(rejected), lambda i: "got NoneType"),
        ("empty_text", columns[2], _blank(rejected), None),
        ("chosen_equals_rejected", columns[1], pc.fill_null(pc.equal(chosen, rejected), False), None),
    ]
    for column, score in zip(score_columns, scores):
        finite = pc.fill_null(pc.is_finite(score), False)
        inside = pc.fill_null(pc.and_(pc.greater_equal(score, lo), pc.less_equal(score, hi)), False)
        checks += [("score_not_a_finite_number", column, pc.invert(finite),
                    lambda i, s=score: f"got {s[i].as_py()!r}"),
                   ("score_outside_scale", column, pc.and_(finite, pc.invert(inside)),
                    lambda i, s=score: f"{s[i].as_py():g} not in [{lo:g}, {hi:g}]")]
    if options.strict:
        _raise_first_problem(checks, drops)
    dropped, counts, examples = None, {}, {}
    for reason, field_name, mask, detail in checks:
        new = mask if dropped is None else pc.and_(mask, pc.invert(dropped))
        count = pc.sum(new).as_py() or 0
        if count:
            counts[reason] = counts.get(reason, 0) + count
            examples.setdefault(reason, []).extend(
                (i, field_name, detail(i) if detail else "") for i in
                pc.indices_nonzero(new).slice(0, drops.limit).to_pylist())
        dropped = new if dropped is None else pc.or_(dropped, new)
    for reason in sorted(examples, key=lambda r: min(examples[r])):  # as the per-row loader meets them: row order
        shown = sorted(examples[reason])[:drops.limit]
        for i, field_name, detail in shown:
            drops.drop(reason, f"train:{i}", field_name, detail)
        drops.counts[reason] += counts[reason] - len(shown)
    keep = pc.invert(dropped)
    index = pc.indices_nonzero(keep)
    pairs = pa.table({"prompt": pc.filter(prompt, keep), "chosen": pc.filter(chosen, keep),
                      "rejected": pc.filter(rejected, keep),
                      "source_id": pc.utf8_replace_slice(pc.cast(index, pa.string()), 0, 0, "train:"),
                      "score_chosen": pc.filter(scores[0], keep), "score_rejected": pc.filter(scores[1], keep)})
    return Loaded(pairs={"train": pairs.combine_chunks()}, scale=scale, drops=drops)


def _raise_first_problem(checks, drops: Drops) -> None:
    """Strict mode: the first row with any problem, and its first problem in the per-row loader's order."""
    failing = None
    for _, _, mask, _ in checks:
        failing = mask if failing is None else pc.or_(failing, mask)
    rows = pc.indices_nonzero(failing).slice(0, 1).to_pylist()
    if rows:
        i = rows[0]
        reason, field_name, _, detail = next(c for c in checks if c[2][i].as_py())
        drops.drop(reason, f"train:{i}", field_name, detail(i) if detail else "")  # raises InputError


def _blank(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(column), ""), False)
