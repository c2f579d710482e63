"""The relabeling rule of arXiv 2410.08067, vectorised over Arrow columns (no torch, no per-row Python).

Every kept pair (x, y_w, y_l, r_w, r_l) becomes two goal-conditioned pairs:

    positive copy: goal r_w, prompt goal_text(r_w) + x, chosen y_w, rejected y_l
    negative copy: goal r_l, prompt goal_text(r_l) + x, chosen y_l, rejected y_w   (swapped)

Input table (what every schema loader produces, see `rapref.data.schemas`):
    source_id: string, prompt, chosen, rejected: string or list<struct<role, content>>,
    score_chosen, score_rejected: float64, and optionally attributes_chosen / attributes_rejected
    (struct of named float scores, for multi-attribute goals).

>>> import pyarrow as pa
>>> from rapref.goals import GoalSpec
>>> pairs = pa.table({"source_id": ["a"], "prompt": ["Hi"], "chosen": ["Hello!"], "rejected": ["Go away."],
...                   "score_chosen": [9.0], "score_rejected": [3.0]})
>>> out, stats = relabel(pairs, GoalSpec(placement="user", header="Goal:", line="{score}"))
>>> out.select(["prompt", "chosen", "rejected", "copy", "goal"]).to_pylist()  # doctest: +NORMALIZE_WHITESPACE
[{'prompt': 'Goal:\\n9\\n\\nHi', 'chosen': 'Hello!', 'rejected': 'Go away.', 'copy': 'positive', 'goal': 9.0},
 {'prompt': 'Goal:\\n3\\n\\nHi', 'chosen': 'Go away.', 'rejected': 'Hello!', 'copy': 'negative', 'goal': 3.0}]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rapref.goals import GoalSpec, write_goal
from rapref.settings import check, expect, finite, setting

TIE_POLICIES = ("keep", "drop")
INVERTED_POLICIES = ("swap", "drop", "keep")
MODES = ("relabeled", "half", "positive", "original", "duplicated")
OUTPUT_COLUMNS = ["prompt", "chosen", "rejected", "source_id", "copy", "goal", "score_chosen", "score_rejected"]


@dataclass(frozen=True)
class RelabelOptions:
    ties: str = setting("keep", "pairs with equal scores: keep (the two copies share a goal and cancel out, as the "
                                "authors kept them) or drop", choices=TIE_POLICIES, group="relabeling")
    min_gap: float = setting(0.0, "drop pairs whose score gap is below this", group="relabeling",
                             rule=expect("a finite number of at least 0", lambda v: finite(v) and v >= 0))
    mode: str = setting("relabeled", "relabeled; half: a seeded half relabeled, output as large as the input (the "
                                     "paper's data-size control); positive: the positive copies only, no flipped pairs; "
                                     "original: plain pairs, no goal (the DPO baseline); duplicated: the original pairs "
                                     "twice (same number of steps as relabeled)", choices=MODES, group="relabeling")
    seed: int = setting(0, "seed of every random choice (rejected pick, test split, half mode)", group="relabeling")
    inverted: str = setting("swap", "pairs whose chosen scored below the rejected: swap them (chosen = higher score), "
                                    "drop them, or keep them as given (relabeled copies are the same either way)",
                            choices=INVERTED_POLICIES, group="relabeling")

    def __post_init__(self) -> None:
        check(self)


def relabel(pairs: pa.Table, spec: GoalSpec, options: RelabelOptions = RelabelOptions()) -> tuple[pa.Table, dict]:
    """Relabel scored pairs into goal-conditioned pairs. Returns the new table and counts.

    The input table is never modified (Arrow arrays are immutable). Output: all positive copies, then all negative
    copies in the same order, with columns `OUTPUT_COLUMNS` (plus `goal_attributes` for multi-attribute goals).
    `score_chosen` / `score_rejected` are the scores of the row's own chosen / rejected, so `goal == score_chosen`.
    """
    kept, copies, stats = plan_relabel(pairs, options)
    return pa.concat_tables([make_copy(kept, spec, copy) for copy in copies]), stats


def orient_pairs(pairs: pa.Table, rule: str = "swap") -> tuple[pa.Table, int]:
    """Inverted pairs (chosen scored below rejected) made to agree with their own scores. Returns (table, count).

    `swap`: chosen and rejected (texts, scores, attributes) trade places, so chosen is the higher-scored answer;
    `drop`: the pair is left out; `keep`: left as it is. Relabeled copies are the same either way (the two copies of a
    pair swap roles); the rule matters for plain pairs (`original`, `duplicated`) and for `positive` / `half`.

    >>> t = pa.table({"chosen": ["a", "b"], "rejected": ["x", "y"], "score_chosen": [2.0, 9.0],
    ...               "score_rejected": [7.0, 3.0]})
    >>> out, n = orient_pairs(t, "swap")
    >>> n, out.to_pydict()["chosen"], out.to_pydict()["score_chosen"]
    (1, ['x', 'b'], [7.0, 9.0])
    """
    if pairs.num_rows == 0 or "score_chosen" not in pairs.column_names:  # nothing to orient (an empty table)
        return pairs, 0
    inverted = pc.fill_null(pc.less(pairs["score_chosen"], pairs["score_rejected"]), False)
    count = int(pc.sum(inverted).as_py() or 0)
    if count == 0 or rule == "keep":
        return pairs, count
    if rule == "drop":
        return pairs.filter(pc.invert(inverted)), count
    mask = inverted.combine_chunks() if isinstance(inverted, pa.ChunkedArray) else inverted
    out = pairs
    for a, b in (("chosen", "rejected"), ("score_chosen", "score_rejected"),
                 ("attributes_chosen", "attributes_rejected")):
        if a not in pairs.column_names:
            continue
        col_a, col_b = pairs[a].combine_chunks(), pairs[b].combine_chunks()
        out = out.set_column(out.column_names.index(a), a, pc.if_else(mask, col_b, col_a))
        out = out.set_column(out.column_names.index(b), b, pc.if_else(mask, col_a, col_b))
    return out, count


def plan_relabel(pairs: pa.Table, options: RelabelOptions = RelabelOptions()) -> tuple[pa.Table, tuple, dict]:
    """The pairs that are relabeled, the copies each one gives in output order, and the counts: `relabel` without
    building the copies, so a writer can build them block by block (`make_copy` on slices of the pairs)."""
    stats = {"pairs_in": pairs.num_rows, "dropped": {}}
    gap = pc.abs(pc.subtract(pairs["score_chosen"], pairs["score_rejected"]))
    tie = pc.equal(gap, 0.0)
    stats["ties"] = int(pc.sum(tie).as_py() or 0)
    keep = pa.array(np.ones(pairs.num_rows, dtype=bool))
    if options.ties == "drop":
        keep = pc.and_(keep, pc.invert(tie))
        stats["dropped"]["tie"] = stats["ties"]
    if options.min_gap > 0:
        small = pc.and_(pc.less(gap, options.min_gap), keep)
        stats["dropped"]["score_gap_below_min"] = int(pc.sum(small).as_py() or 0)
        keep = pc.and_(keep, pc.invert(small))
    if pc.sum(keep).as_py() != pairs.num_rows:  # (all kept: no copy)
        pairs = pairs.filter(keep)
    if options.mode == "half":
        selected = half_selection(pairs["source_id"], options.seed)
        stats["dropped"]["half_mode_not_relabeled"] = pairs.num_rows - int(selected.sum())
        pairs = pairs.filter(pa.array(selected))
    stats["pairs_relabeled"] = pairs.num_rows
    copies = {"original": ("original",), "duplicated": ("original", "original"),
              "positive": ("positive",)}.get(options.mode, ("positive", "negative"))
    if options.mode in ("original", "duplicated"):
        stats["pairs_relabeled"] = 0
    stats["rows_out"] = pairs.num_rows * len(copies)
    return pairs, copies, stats


def make_copy(pairs: pa.Table, spec: GoalSpec, copy: str) -> pa.Table:
    """One copy of every pair in the output layout: `positive` (goal = chosen's score, chosen wins), `negative` (goal =
    rejected's score, rejected wins) or `original` (no goal)."""
    if copy == "original":
        return unconditioned(pairs)
    return _copy(pairs, spec, copy, "attributes_chosen" in pairs.column_names and len(spec.attributes) > 1)


def condition_on(pairs: pa.Table, spec: GoalSpec, goal: float | dict[str, float], copy: str = "goal") -> pa.Table:
    """Write one fixed goal (e.g. the top of the scale) into every prompt; chosen/rejected unchanged.

    Used for the goal-conditioned test split and for inference prompts.
    """
    text = spec.text(goal)
    texts = pa.array([text] * pairs.num_rows, pa.string()) if pairs.num_rows else pa.array([], pa.string())
    goal_value = _scalar_goal(goal, spec)
    return _assemble(pairs, spec, texts, pairs["chosen"], pairs["rejected"], copy,
                     pa.array(np.full(pairs.num_rows, goal_value)), pairs["score_chosen"], pairs["score_rejected"])


def unconditioned(pairs: pa.Table) -> pa.Table:
    """The original pairs in the output layout, with no goal (goal is null)."""
    n = pairs.num_rows
    return pa.table({
        "prompt": pairs["prompt"], "chosen": pairs["chosen"], "rejected": pairs["rejected"],
        "source_id": pairs["source_id"], "copy": pa.array(["original"] * n, pa.string()),
        "goal": pa.nulls(n, pa.float64()), "score_chosen": pairs["score_chosen"],
        "score_rejected": pairs["score_rejected"],
    })


def stable_hash(key: str, seed: int) -> int:
    """A 64-bit hash of (seed, key): per-example randomness that depends on content, not on row order."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest(), "little")


def half_selection(source_ids: pa.ChunkedArray | pa.Array, seed: int) -> np.ndarray:
    """Seeded choice of half the rows, by a content hash of (seed, source_id): independent of row order."""
    ids = source_ids.to_pylist()
    keys = np.array([stable_hash(i, seed) for i in ids], dtype=np.uint64)
    order = np.argsort(keys, kind="stable")
    selected = np.zeros(len(ids), dtype=bool)
    selected[order[: len(ids) // 2]] = True
    return selected


def _copy(pairs: pa.Table, spec: GoalSpec, which: str, multi: bool) -> pa.Table:
    win, lose = ("chosen", "rejected") if which == "positive" else ("rejected", "chosen")
    goal = pairs[f"score_{win}"]
    if multi:
        texts, goal_attrs = _multi_goal_texts(pairs[f"attributes_{win}"], spec)
    else:
        texts, goal_attrs = _goal_texts(goal, spec), None
    table = _assemble(pairs, spec, texts, pairs[win], pairs[lose], which, goal,
                      pairs[f"score_{win}"], pairs[f"score_{lose}"])
    if goal_attrs is not None:
        table = table.append_column("goal_attributes", goal_attrs)
    return table


def _assemble(pairs, spec, texts, chosen, rejected, copy, goal, score_chosen, score_rejected) -> pa.Table:
    n = pairs.num_rows
    return pa.table({
        "prompt": write_goal(pairs["prompt"], texts, spec.placement, spec.separator),
        "chosen": chosen,
        "rejected": rejected,
        "source_id": pairs["source_id"],
        "copy": pa.array([copy] * n, pa.string()) if n else pa.array([], pa.string()),
        "goal": goal,
        "score_chosen": score_chosen,
        "score_rejected": score_rejected,
    })


def _goal_texts(scores: pa.ChunkedArray, spec: GoalSpec) -> pa.Array:
    """One goal text per row, formatted once per distinct score and gathered with `take`."""
    uniques = pc.unique(scores)
    texts = pa.array([spec.text(s) for s in uniques.to_pylist()], pa.string())
    return pc.take(texts, pc.index_in(scores, value_set=uniques))


def _multi_goal_texts(attrs: pa.ChunkedArray, spec: GoalSpec) -> tuple[pa.Array, pa.Array]:
    rows = attrs.to_pylist()
    keys = [tuple(float(r[a]) for a in spec.attributes) for r in rows]
    cache: dict[tuple, str] = {}
    for key in keys:
        if key not in cache:
            cache[key] = spec.text(dict(zip(spec.attributes, key)))
    return pa.array([cache[k] for k in keys], pa.string()), attrs


def _scalar_goal(goal, spec: GoalSpec) -> float:
    return float(goal) if not isinstance(goal, dict) else float(np.mean([goal[a] for a in spec.attributes]))
