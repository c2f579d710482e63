"""What every schema loader shares: options, the registry, counted drops and row checks.

A loader turns the rows of one public schema into canonical pairs:

    {"source_id": "train:17", "prompt": ..., "chosen": ..., "rejected": ...,
     "score_chosen": 9.0, "score_rejected": 7.0}   (+ "attributes_chosen"/"attributes_rejected")

where texts are all strings (standard) or all message lists (conversational). Nothing is dropped without a reason:
`Drops` counts each dropped input row under its reason and keeps the first few examples with row and field, and in
strict mode the first problem stops the run with a one-line error.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from rapref.io import InputError, parse_score
from rapref.relabel import stable_hash

ROLES = ("system", "user", "assistant", "tool")


@dataclass
class SchemaOptions:
    """Options that loaders read; each one documents which schema uses it."""

    # pairs: column names
    prompt_column: str = "prompt"
    chosen_column: str = "chosen"
    rejected_column: str = "rejected"
    score_chosen_column: str | None = None  # default: first of score_chosen, chosen_score, chosen-rating, ...
    score_rejected_column: str | None = None
    scale: tuple[float, float] | None = None  # declared score scale; default per schema
    out_of_scale: str = "auto"  # flat pairs: auto (drop and count a few, stop if many), stop, or drop
    seed: int = 0
    test_size: float | None = None  # prompts held out when the input has no test split: count (>=1) or fraction
    # ultrafeedback (raw)
    consistency_filter: bool = True  # keep pairs whose chosen mean aspect rating >= rejected's
    exclude_sources: tuple[str, ...] = ("truthful_qa",)
    # nectar / helpsteer2 / multi-sample
    pairing: str = "best-vs-random"  # best-vs-random, best-vs-worst, all-pairs
    # helpsteer2
    attribute_weights: dict[str, float] | None = None  # score = weighted mean of these attributes
    multi_attribute: bool = False  # goal text names each attribute's score
    # multi-sample and flat pairs
    score_mapping: str | None = None  # quantile bins or min-max, fitted on train only; none: already on the scale;
    # None: per schema (multi-sample: quantile; flat pairs: none)
    goal_precision: int = 0  # decimals of mapped goal scores
    strict: bool = False  # stop at the first bad row instead of counting a drop

    def __post_init__(self) -> None:
        if self.pairing not in PAIRINGS:
            raise InputError(f"pairing must be one of {PAIRINGS}, got {self.pairing!r}")
        if self.out_of_scale not in OUT_OF_SCALE:
            raise InputError(f"out-of-scale rule must be one of {', '.join(OUT_OF_SCALE)}, got {self.out_of_scale!r}")
        if self.score_mapping is not None and self.score_mapping not in SCORE_MAPPINGS:
            raise InputError(f"score mapping must be one of {', '.join(SCORE_MAPPINGS)}, got {self.score_mapping!r}")
        named = {}
        for flag in ("prompt_column", "chosen_column", "rejected_column", "score_chosen_column",
                     "score_rejected_column"):
            column = getattr(self, flag)
            if column is not None and column in named:
                raise InputError(f"--{named[column].replace('_', '-')} and --{flag.replace('_', '-')} both name the "
                                 f"column {column!r}; each flag needs its own column")
            named.setdefault(column, flag)
        size = self.test_size
        if size is not None and (not math.isfinite(size) or size < 0 or size >= 1 and size != int(size)):
            raise InputError(f"--test-size must be a fraction in [0, 1) or a whole number of prompts, got {size:g}")


PAIRINGS = ("best-vs-random", "best-vs-worst", "all-pairs")
SCORE_MAPPINGS = ("quantile", "min-max", "none")
OUT_OF_SCALE = ("auto", "stop", "drop")
# `auto`: rows whose score lies outside the scale are dropped and counted while they are at most this share of the
# rows read; more, and the run stops (they are most likely on another scale, e.g. a reward model's).
OUT_OF_SCALE_AUTO_SHARE = 0.10


@dataclass
class Loaded:
    """A loader's result: canonical pairs by split, the score scale, attribute names, and drop counts."""

    pairs: dict[str, list[dict]]
    scale: tuple[float, float]
    drops: "Drops"
    attributes: tuple[str, ...] = ("Overall",)
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


class Drops:
    """Counts dropped input rows by reason (rows in = rows kept + rows dropped)."""

    def __init__(self, source: str, strict: bool = False, examples_per_reason: int = 3):
        self.source, self.strict, self.limit = source, strict, examples_per_reason
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def drop(self, reason: str, row: str, field_name: str, detail: str = "") -> None:
        where = f"{self.source}: row {row}, field {field_name!r}: {reason.replace('_', ' ')}"
        where += f" ({detail})" if detail else ""
        if self.strict:
            raise InputError(where)
        self.counts[reason] += 1
        bucket = self.examples.setdefault(reason, [])
        if len(bucket) < self.limit:
            bucket.append(where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


LoaderFn = Callable[[dict[str, list[dict]], SchemaOptions, Drops], Loaded]
DetectFn = Callable[[set[str], dict], bool]
SCHEMAS: dict[str, tuple[LoaderFn, DetectFn]] = {}


def register(name: str, detect: DetectFn):
    """Register a loader under the name `--schema` uses (lm-eval style plain registry)."""

    def wrap(fn: LoaderFn) -> LoaderFn:
        SCHEMAS[name] = (fn, detect)
        return fn

    return wrap


# --- checks shared by loaders -------------------------------------------------------------------------------------


def check_score(value, scale, drops: Drops, row: str, field_name: str) -> float | None:
    """A finite score on `scale` (None: any finite score, for scores that are mapped onto the scale later)."""
    score = parse_score(value)
    if score is None:
        drops.drop("score_not_a_finite_number", row, field_name, f"got {value!r}")
        return None
    if scale is None:
        return score
    lo, hi = scale
    if not lo <= score <= hi:
        drops.drop("score_outside_scale", row, field_name, f"{score:g} not in [{lo:g}, {hi:g}]")
        return None
    return score


def is_messages(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) for m in value)


def check_text(value, drops: Drops, row: str, field_name: str) -> bool:
    if not isinstance(value, str):
        drops.drop("text_not_a_string", row, field_name, f"got {type(value).__name__}")
        return False
    if not value.strip():
        drops.drop("empty_text", row, field_name)
        return False
    return True


def check_messages(messages, drops: Drops, row: str, field_name: str, last_role: str | None) -> bool:
    """Messages are {role, content} dicts with known roles and non-empty text; the last has `last_role`."""
    if not is_messages(messages):
        drops.drop("malformed_messages", row, field_name, "expected a non-empty list of {role, content}")
        return False
    for i, message in enumerate(messages):
        if message.get("role") not in ROLES:
            drops.drop("bad_message_role", row, f"{field_name}[{i}].role", f"got {message.get('role')!r}")
            return False
        if not check_text(message.get("content"), drops, row, f"{field_name}[{i}].content"):
            return False
    if last_role and messages[-1]["role"] != last_role:
        drops.drop("bad_message_role", row, f"{field_name}[-1].role",
                   f"expected {last_role!r}, got {messages[-1]['role']!r}")
        return False
    return True


def clean_message(m: dict) -> dict:
    return {"role": m["role"], "content": m["content"]}


def seeded_choice(options: list, key: str, seed: int):
    """A deterministic 'random' pick derived from the row's content and the seed."""
    return options[stable_hash(key, seed) % len(options)]


def normalise_splits(rows_by_split: dict[str, list[dict]]) -> tuple[dict[str, list[tuple[str, dict]]], list[str]]:
    """Map input split names onto train/test; rows are tagged with their source id `split:index`.

    `*_prefs` splits win where present (ultrafeedback_binarized also has *_sft and *_gen); names with test,
    validation or val become test, names with train become train; anything else is ignored with a note.
    """
    names = list(rows_by_split)
    if any(n.endswith("_prefs") for n in names):
        names = [n for n in names if n.endswith("_prefs")]
    out: dict[str, list[tuple[str, dict]]] = {}
    notes = []
    for name in names:
        lowered = name.lower()
        if "test" in lowered or lowered.startswith("val") or lowered == "dev":
            target = "test"
        elif "train" in lowered:
            target = "train"
        else:
            notes.append(f"input split {name!r} ignored (neither train nor test)")
            continue
        out.setdefault(target, []).extend((f"{name}:{i}", row) for i, row in enumerate(rows_by_split[name]))
    ignored = [n for n in rows_by_split if n not in names]
    if ignored:
        notes.append(f"input splits ignored: {', '.join(ignored)} (using the *_prefs splits)")
    return out, notes


def require_columns(rows: list[tuple[str, dict]], columns: list[str], source: str) -> None:
    if not rows:
        return
    first_id, first = rows[0]
    missing = [c for c in columns if c not in first]
    if missing:
        raise InputError(
            f"{source}: row {first_id}: missing column(s) {', '.join(map(repr, missing))}; "
            f"found {', '.join(map(repr, sorted(first)))}"
        )
