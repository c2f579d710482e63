"""Schemas with one scored pair per row: generic `pairs`, `ultrafeedback-binarized` (HuggingFaceH4) and `argilla`.

Texts may be strings or chat message lists; chosen/rejected lists may repeat the prompt turns before the answer
(as in ultrafeedback_binarized), in which case the prompt is taken from them and must agree between the two.
"""

from __future__ import annotations

from rapref.data.schemas.base import (
    Drops,
    Loaded,
    SchemaOptions,
    check_messages,
    check_score,
    check_text,
    clean_message,
    is_messages,
    normalise_splits,
    register,
    require_columns,
)
from rapref.io import InputError
from rapref.progress import track

SCORE_COLUMN_CANDIDATES = [
    ("score_chosen", "score_rejected"),
    ("chosen_score", "rejected_score"),
    ("chosen-rating", "rejected-rating"),
    ("chosen_rating", "rejected_rating"),
    ("chosen_reward", "rejected_reward"),
]


def _has_pair_columns(columns: set[str]) -> bool:
    return {"chosen", "rejected"} <= columns and any(set(pair) <= columns for pair in SCORE_COLUMN_CANDIDATES)


# The flat layouts (one scored pair per row): their score columns (None: from the flags or the first row) and the
# default score scale. The per-row loaders below and `rapref.data.schemas.arrow_pairs` both read this table.
FLAT_LAYOUTS = {
    "ultrafeedback-binarized": (("score_chosen", "score_rejected"), (1, 10)),
    "argilla": (("chosen-rating", "rejected-rating"), (1, 5)),
    "pairs": (None, (1, 10)),
}


@register("ultrafeedback-binarized", lambda cols, row: {"prompt_id", "score_chosen", "score_rejected"} <= cols)
def load_ultrafeedback_binarized(rows_by_split, options: SchemaOptions, drops: Drops) -> Loaded:
    return _load_flat("ultrafeedback-binarized", rows_by_split, options, drops)


@register("argilla", lambda cols, row: {"chosen-rating", "rejected-rating"} <= cols)
def load_argilla(rows_by_split, options: SchemaOptions, drops: Drops) -> Loaded:
    return _load_flat("argilla", rows_by_split, options, drops)


@register("pairs", lambda cols, row: _has_pair_columns(cols))
def load_pairs(rows_by_split, options: SchemaOptions, drops: Drops) -> Loaded:
    return _load_flat("pairs", rows_by_split, options, drops)


def maps_scores(options: SchemaOptions) -> bool:
    """Scores are mapped onto the scale after loading (`--score-mapping quantile|min-max`): any finite score is read."""
    return options.score_mapping in ("quantile", "min-max")


def _load_flat(schema: str, rows_by_split, options: SchemaOptions, drops: Drops) -> Loaded:
    first = next((row for rows in rows_by_split.values() for row in rows), {})
    return _load(rows_by_split, options, drops, score_columns_for(schema, options, first, drops.source),
                 default_scale=FLAT_LAYOUTS[schema][1])


def score_columns_for(schema: str, options: SchemaOptions, first: dict, source: str = "") -> tuple[str, str]:
    """The two score columns of a flat layout: fixed for the binarized layouts; for `pairs` the flags, else the
    first known pair of names found in the first row."""
    fixed = FLAT_LAYOUTS[schema][0]
    if fixed is not None:
        return fixed
    score_columns = (options.score_chosen_column, options.score_rejected_column)
    if None in score_columns:
        found = [pair for pair in SCORE_COLUMN_CANDIDATES if set(pair) <= set(first)]
        if len(found) > 1 and score_columns == (None, None):
            raise InputError(f"{source}: more than one pair of score columns ("
                             + ", ".join(f"{c}/{r}" for c, r in found) + "); pick one with "
                             + " or ".join(f"--score-chosen-column {c} --score-rejected-column {r}" for c, r in found))
        guess = found[0] if found else ("score_chosen", "score_rejected")
        score_columns = tuple(given or default for given, default in zip(score_columns, guess))
    return score_columns


def _load(rows_by_split, options: SchemaOptions, drops: Drops, score_columns, default_scale) -> Loaded:
    scale = options.scale or default_scale
    check = None if maps_scores(options) else scale  # mapped scores: any finite value, mapped after hold-out
    splits, notes = normalise_splits(rows_by_split)
    columns = [options.chosen_column, options.rejected_column, *score_columns]
    pairs: dict[str, list[dict]] = {}
    conversational = None
    for split, rows in splits.items():
        require_columns(rows, columns, drops.source)
        if rows and conversational is None:
            _require_prompt_column(rows, options, is_messages(rows[0][1].get(options.chosen_column)), drops.source)
        out = pairs.setdefault(split, [])
        for source_id, row in track(rows, f"Reading {split} rows", unit="row"):
            if conversational is None:
                conversational = is_messages(row.get(options.chosen_column))
            pair = _pair_from_row(row, source_id, options, drops, conversational)
            if pair is None:
                continue
            r_w = check_score(row.get(score_columns[0]), check, drops, source_id, score_columns[0])
            r_l = None if r_w is None else check_score(row.get(score_columns[1]), check, drops, source_id,
                                                       score_columns[1])
            if r_l is None:
                continue
            pair.update(source_id=source_id, score_chosen=r_w, score_rejected=r_l)
            out.append(pair)
    return Loaded(pairs=pairs, scale=scale, drops=drops, notes=notes)


def _require_prompt_column(rows, options: SchemaOptions, conversational: bool, source: str) -> None:
    """Plain-text pairs need the prompt column; so does any explicitly named one. A name found in no row is a typo,
    not a list of rows with missing prompts."""
    if conversational and options.prompt_column == "prompt":
        return  # message lists may carry the user turn inside chosen / rejected
    if not any(options.prompt_column in row for _, row in rows):
        columns = sorted({c for _, row in rows[:100] for c in row})
        raise InputError(f"{source}: no such column {options.prompt_column!r} (--prompt-column); "
                         f"the columns are {', '.join(map(repr, columns))}")


def _pair_from_row(row, source_id, options: SchemaOptions, drops: Drops, conversational: bool) -> dict | None:
    chosen, rejected = row.get(options.chosen_column), row.get(options.rejected_column)
    prompt = row.get(options.prompt_column)
    if not conversational:
        if prompt is None:
            drops.drop("missing_prompt", source_id, options.prompt_column)
            return None
        ok = (check_text(prompt, drops, source_id, options.prompt_column)
              and check_text(chosen, drops, source_id, options.chosen_column)
              and check_text(rejected, drops, source_id, options.rejected_column))
        if not ok:
            return None
        if chosen == rejected:
            drops.drop("chosen_equals_rejected", source_id, options.chosen_column)
            return None
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}

    if not (check_messages(chosen, drops, source_id, options.chosen_column, "assistant")
            and check_messages(rejected, drops, source_id, options.rejected_column, "assistant")):
        return None
    turns_w, turns_l = [clean_message(m) for m in chosen[:-1]], [clean_message(m) for m in rejected[:-1]]
    if turns_w != turns_l:
        drops.drop("chosen_and_rejected_prompts_differ", source_id, options.rejected_column)
        return None
    if turns_w:
        prompt_messages = turns_w
        if prompt_messages[-1]["role"] != "user":
            drops.drop("bad_message_role", source_id, f"{options.chosen_column}[-2].role", "expected 'user'")
            return None
    elif is_messages(prompt):
        if not check_messages(prompt, drops, source_id, options.prompt_column, "user"):
            return None
        prompt_messages = [clean_message(m) for m in prompt]
    else:
        if prompt is None:
            drops.drop("missing_prompt", source_id, options.prompt_column)
            return None
        if not check_text(prompt, drops, source_id, options.prompt_column):
            return None
        prompt_messages = [{"role": "user", "content": prompt}]
    answer_w, answer_l = [clean_message(chosen[-1])], [clean_message(rejected[-1])]
    if answer_w == answer_l:
        drops.drop("chosen_equals_rejected", source_id, options.chosen_column)
        return None
    return {"prompt": prompt_messages, "chosen": answer_w, "rejected": answer_l}
