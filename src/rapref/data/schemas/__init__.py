"""Schema loaders: every common layout of scored preference data, turned into canonical scored pairs.

`--schema` picks one by name; `detect_schema` picks one from the columns of the first row.
"""

from __future__ import annotations

from rapref.data.schemas import pairs as _pairs  # noqa: F401  (registers pairs, ultrafeedback-binarized, argilla)
from rapref.data.schemas import responses as _responses  # noqa: F401  (registers ultrafeedback, nectar, ...)
from rapref.data.schemas.base import SCHEMAS, Drops, Loaded, SchemaOptions
from rapref.io import InputError

# Most specific first: `pairs` also matches the binarized layouts.
DETECT_ORDER = ["ultrafeedback", "multi-sample", "nectar", "helpsteer2", "ultrafeedback-binarized", "argilla", "pairs"]


# How to pick each layout by hand, named in the error for a file whose layout cannot be told from its columns.
LAYOUT_HINTS = {
    "pairs": "one scored pair per row with other column names: --prompt-column P --chosen-column C "
             "--rejected-column R --score-chosen-column SC --score-rejected-column SR (these imply --schema pairs)",
    "multi-sample": "K responses with K reward-model scores per row: --schema multi-sample (columns prompt, "
                    "all_generated_responses, all_rm_scores)",
    "helpsteer2": "one response per row with attribute scores: --schema helpsteer2",
    "ultrafeedback": "raw UltraFeedback (instruction, completions): --schema ultrafeedback",
    "nectar": "ranked answers (prompt, answers): --schema nectar",
}
COLUMN_FLAGS = ("prompt_column", "chosen_column", "rejected_column", "score_chosen_column", "score_rejected_column")


def detect_schema(rows_by_split: dict[str, list[dict]], source: str, options: SchemaOptions | None = None) -> str:
    """The layout named by the columns of the first row. Column flags (`--prompt-column` and its siblings) describe
    the generic `pairs` layout, so giving any of them picks it."""
    if options is not None and any(getattr(options, f) != getattr(SchemaOptions, f, None) for f in COLUMN_FLAGS):
        return "pairs"
    first = next((row for rows in rows_by_split.values() for row in rows), None)
    if first is None:
        raise InputError(f"{source}: no rows")
    columns = set(first)
    matches = [name for name in DETECT_ORDER if SCHEMAS[name][1](columns, first)]
    specific = [name for name in matches if name != "pairs"]  # `pairs` also matches every binarized layout
    if len(specific) > 1:
        raise InputError(f"{source}: the columns match more than one layout ({', '.join(specific)}); pick one with "
                         + " or ".join(f"--schema {name}" for name in specific))
    if matches:
        return matches[0]
    guess = _guess_pair_flags(first)
    hints = "; ".join(([f"it looks like one scored pair per row: pass {guess}"] if guess else [])
                      + [f"{hint}" for name, hint in LAYOUT_HINTS.items() if not (guess and name == "pairs")])
    raise InputError(f"{source}: cannot tell the layout from columns {sorted(columns)}; candidates: {hints}")


def _guess_pair_flags(row: dict) -> str:
    """The column flags for a file of five columns that reads as one scored pair per row (two texts, two numbers
    whose names extend the texts' names, one other text), e.g. question, better, worse, s_better, s_worse."""
    texts = [c for c, v in row.items() if isinstance(v, (str, list))]
    numbers = [c for c, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) != 2 or len(texts) < 3:
        return ""
    scored = {}
    for number in numbers:
        owners = [t for t in texts if t in number and t != number]
        if len(owners) == 1:
            scored[number] = owners[0]
    if len(set(scored.values())) != 2:
        return ""
    (sc, c), (sr, r) = scored.items()
    prompt = [t for t in texts if t not in (c, r)]
    if len(prompt) != 1:
        return ""
    return (f"--prompt-column {prompt[0]} --chosen-column {c} --rejected-column {r} --score-chosen-column {sc} "
            f"--score-rejected-column {sr} (if {c} is the chosen answer)")


def load_pairs(rows_by_split: dict[str, list[dict]], schema: str, options: SchemaOptions, source: str) -> Loaded:
    if schema not in SCHEMAS:
        raise InputError(f"unknown schema {schema!r}; choose one of {', '.join(sorted(SCHEMAS))}")
    return SCHEMAS[schema][0](rows_by_split, options, Drops(source, strict=options.strict))


__all__ = ["SCHEMAS", "SchemaOptions", "Loaded", "Drops", "detect_schema", "load_pairs"]
