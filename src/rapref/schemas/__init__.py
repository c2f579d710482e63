"""Schema loaders: every common layout of scored preference data, turned into canonical scored pairs.

`--schema` picks one by name; `detect_schema` picks one from the columns of the first row.
"""

from __future__ import annotations

from rapref.io import InputError
from rapref.schemas import pairs as _pairs  # noqa: F401  (registers pairs, ultrafeedback-binarized, argilla)
from rapref.schemas import responses as _responses  # noqa: F401  (registers ultrafeedback, nectar, ...)
from rapref.schemas.base import SCHEMAS, Drops, Loaded, SchemaOptions

# Most specific first: `pairs` also matches the binarized layouts.
DETECT_ORDER = ["ultrafeedback", "multi-sample", "nectar", "helpsteer2", "ultrafeedback-binarized", "argilla", "pairs"]


def detect_schema(rows_by_split: dict[str, list[dict]], source: str) -> str:
    first = next((row for rows in rows_by_split.values() for row in rows), None)
    if first is None:
        raise InputError(f"{source}: no rows")
    columns = set(first)
    for name in DETECT_ORDER:
        if SCHEMAS[name][1](columns, first):
            return name
    raise InputError(
        f"{source}: cannot tell the schema from columns {sorted(columns)}; pass --schema "
        f"({', '.join(sorted(SCHEMAS))}) and, for `pairs`, the column flags"
    )


def load_pairs(rows_by_split: dict[str, list[dict]], schema: str, options: SchemaOptions, source: str) -> Loaded:
    if schema not in SCHEMAS:
        raise InputError(f"unknown schema {schema!r}; choose one of {', '.join(sorted(SCHEMAS))}")
    return SCHEMAS[schema][0](rows_by_split, options, Drops(source, strict=options.strict))


__all__ = ["SCHEMAS", "SchemaOptions", "Loaded", "Drops", "detect_schema", "load_pairs"]
