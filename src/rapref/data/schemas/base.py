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

from rapref.data.relabel import stable_hash
from rapref.goals import format_score, scale_field
from rapref.io import InputError, parse_score
from rapref.settings import SettingError, check, comma_separated, setting

ROLES = ("system", "user", "assistant", "tool")


PAIRINGS = ("best-vs-random", "best-vs-worst", "all-pairs")
SCORE_MAPPINGS = ("quantile", "min-max", "none")
OUT_OF_SCALE = ("auto", "stop", "drop")
# `auto`: rows whose score lies outside the scale are dropped and counted while they are at most this share of the
# rows read; more, and the run stops (they are most likely on another scale, e.g. a reward model's).
OUT_OF_SCALE_AUTO_SHARE = 0.10
COLUMNS, SCHEMA = "columns (schema `pairs`)", "schema options"  # --help sections


def _test_size(size: float) -> str | None:
    if math.isfinite(size) and 0 <= size and (size < 1 or size == int(size)):
        return None
    return f"must be a fraction in [0, 1) or a whole number of prompts, got {size:g}"


def _weights(value) -> dict[str, float]:
    """`helpfulness=1,correctness=0.5` (a bare name weighs 1), or a mapping from a file."""
    if isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items()}
    weights = {}
    for item in value.split(","):
        name, _, weight = item.partition("=")
        if not name.strip():
            raise ValueError(f"expected NAME=WEIGHT,..., got {value!r} (a name is empty)")
        if name.strip() in weights:
            raise ValueError(f"{name.strip()} is weighted twice in {value!r}")
        try:
            weights[name.strip()] = float(weight or 1)
        except ValueError:
            raise ValueError(f"expected NAME=WEIGHT,..., got {item!r}") from None
    return weights


def _scale_text(scale) -> str:
    return f"{format_score(scale[0])}-{format_score(scale[1])}"


@dataclass
class SchemaOptions:
    """Options that loaders read; each one documents which schema uses it."""

    # pairs: column names
    prompt_column: str = setting("prompt", "pairs schema: column holding the prompt", group=COLUMNS)
    chosen_column: str = setting("chosen", "pairs schema: column holding the chosen response", group=COLUMNS)
    rejected_column: str = setting("rejected", "pairs schema: column holding the rejected response", group=COLUMNS)
    score_chosen_column: str | None = setting(None, "pairs schema: column holding the chosen score", group=COLUMNS,
                                              shown="the first of score_chosen, chosen_score, chosen-rating, ...")
    score_rejected_column: str | None = setting(None, "pairs schema: column holding the rejected score",
                                                group=COLUMNS, shown="the partner of the chosen score's column")
    scale: tuple[float, float] | None = setting(
        None, "score scale LOW-HIGH, e.g. 1-10, 0,4 or -3-5; with --score-mapping quantile|min-max the scale scores "
              "are mapped onto", parse=scale_field, show=_scale_text, shown="per schema; 1-10 for pairs", group="goal")
    out_of_scale: str = setting(
        "auto", f"rows with a score outside the scale: auto drops and counts them while they are at most "
                f"{OUT_OF_SCALE_AUTO_SHARE * 100:.0f}% of the rows and stops with a hint otherwise; stop; drop",
        choices=OUT_OF_SCALE, group="goal")
    seed: int = setting(0, "seed of every random choice (rejected pick, test split, half mode)", group="relabeling")
    test_size: float | None = setting(
        None, "prompts held out for test when the input has no test split: a count or a fraction", rule=_test_size,
        shown="min(2000, 10% of prompts)", group="relabeling")
    # ultrafeedback (raw)
    consistency_filter: bool = setting(
        True, "ultrafeedback: keep pairs whose chosen mean aspect rating is below the rejected's",
        flag="no-consistency-filter", group=SCHEMA)
    exclude_sources: tuple[str, ...] = setting(
        ("truthful_qa",), "ultrafeedback: comma-separated `source` values to drop ('' for none)",
        parse=comma_separated(), group=SCHEMA)
    # nectar / helpsteer2 / multi-sample
    pairing: str = setting("best-vs-random", "nectar / helpsteer2 / multi-sample: how responses of one prompt are "
                                             "paired", choices=PAIRINGS, group=SCHEMA)
    # helpsteer2
    attribute_weights: dict[str, float] | None = setting(
        None, "helpsteer2: e.g. helpfulness=1,correctness=0.5", parse=_weights, shown="helpfulness only", group=SCHEMA)
    multi_attribute: bool = setting(False, "helpsteer2: the goal text names all five attribute scores", group=SCHEMA)
    # multi-sample and flat pairs
    score_mapping: str | None = setting(
        None, "map reward-model scores (any sign, unbounded) onto the scale, fitted on the training split only: "
              "quantile (equal-count bins, one per whole score) or min-max; none: the scores are already on the scale "
              "and are used as they are", choices=SCORE_MAPPINGS,
        shown="quantile for multi-sample, none for one-pair-per-row layouts", group=SCHEMA)
    goal_precision: int = setting(0, "decimals of mapped scores (min-max)", group=SCHEMA)
    strict: bool = setting(False, "stop at the first bad row instead of counting a drop", group="relabeling")

    def __post_init__(self) -> None:
        check(self)
        named = {}
        for name in ("prompt_column", "chosen_column", "rejected_column", "score_chosen_column",
                     "score_rejected_column"):
            column = getattr(self, name)
            if column is not None and column in named:
                raise SettingError(f"{{}} and {{}} both name the column {column!r}; each needs its own column",
                                   named[column], name)
            named.setdefault(column, name)


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
