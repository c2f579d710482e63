"""Scores onto the goal scale: reward-model scores (unbounded, any sign) become goals on [lo, hi].

The mapping is fitted on the training split only and applied to every split, so held-out pairs never shape it:

>>> import numpy as np
>>> m = fit_score_mapping(np.array([-4.0, -1.0, 0.5, 3.0]), (1, 10), "min-max")
>>> [m(s) for s in (-4.0, 0.5, 3.0, 9.0)]   # clipped to the training range
[1.0, 7.0, 10.0, 10.0]

`map_pair_scores` applies one to the `score_chosen` / `score_rejected` columns of canonical pairs (`rapref augment`
with `--score-mapping` on one-pair-per-row layouts); `multi-sample` maps each response's score before pairing.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from rapref.goals import format_score
from rapref.io import InputError


class identity_mapping:  # noqa: N801 - the `fit_score_mapping` interface, for scores already on the scale
    def __init__(self, scale):
        self.describe = {"method": "none", "scale": list(scale)}

    def __call__(self, score: float) -> float:
        return float(score)

    def map_array(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores, dtype=float)


class fit_score_mapping:  # noqa: N801 - used like a function that returns a callable
    """Map unbounded scores onto [lo, hi]: `quantile` bins (equal-count, one per whole score) or `min-max`."""

    def __init__(self, train_scores: np.ndarray, scale, method: str, precision: int = 0):
        if len(train_scores) == 0:
            raise InputError("cannot fit a score mapping: the train split has no scores")
        distinct = np.unique(train_scores)
        if len(distinct) < 2:
            raise InputError(f"cannot fit a {method} score mapping on one distinct score (all {len(train_scores)} "
                             f"train scores are {distinct[0]:g}): every pair would become a tie; these scores carry "
                             "no preference to map")
        check_mapping_scale(scale, method, precision)
        self.lo, self.hi = scale
        self.method, self.precision = method, precision
        levels = int(round(self.hi - self.lo)) + 1
        if method == "quantile":  # edges rounded to 12 significant digits: float noise never moves a score's bin
            edges = np.quantile(train_scores, np.linspace(0, 1, levels + 1)[1:-1])
            self.edges = np.array([float(f"{e:.12g}") for e in edges.tolist()], dtype=float)
        else:
            self.min, self.max = float(train_scores.min()), float(train_scores.max())
        self.describe = {"method": method, "scale": [self.lo, self.hi], "precision": precision,
                         "fitted_on": int(len(train_scores)),
                         **({"edges": self.edges.tolist()} if method == "quantile" else
                            {"min": self.min, "max": self.max})}

    def __call__(self, score: float) -> float:
        if self.method == "quantile":
            return float(self.lo + np.searchsorted(self.edges, score, side="right"))
        span = (self.max - self.min) or 1.0
        value = self.lo + (min(max(score, self.min), self.max) - self.min) / span * (self.hi - self.lo)
        return float(round(value, self.precision))

    def map_array(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=float)
        if self.method == "quantile":
            return (self.lo + np.searchsorted(self.edges, scores, side="right")).astype(float)
        return np.array([self(s) for s in scores.tolist()], dtype=float)  # Python's rounding, as `__call__`


def check_mapping_scale(scale, method: str, precision: int = 0) -> None:
    """Every mapped goal lies on the scale and the scale holds at least two goals: `quantile` writes one goal per whole
    step from the low end (so the scale spans a whole number of steps), `min-max` rounds to `precision` decimals (so
    both ends are written with at most that many).

    >>> check_mapping_scale((1, 10.5), "quantile")
    Traceback (most recent call last):
    rapref.io.InputError: --scale 1-10.5 with --score-mapping quantile: quantile bins are one whole step each from 1, so the scale must span a whole number of steps (at least 1), e.g. 1-10
    """

    lo, hi = (float(v) for v in scale)
    text = f"--scale {format_score(lo)}-{format_score(hi)} with --score-mapping {method}"
    if method == "quantile":
        span = hi - lo
        if span < 1 or abs(span - round(span)) > 1e-9:
            raise InputError(f"{text}: quantile bins are one whole step each from {format_score(lo)}, so the scale "
                             f"must span a whole number of steps (at least 1), e.g. "
                             f"{format_score(lo)}-{format_score(lo + max(1, int(span)))}")
        return
    if precision < 0:
        raise InputError(f"--goal-precision {precision}: give 0 or more decimals")
    on_grid = all(abs(round(v, precision) - v) <= 1e-9 for v in (lo, hi))
    if not on_grid:
        needed = next(p for p in range(precision + 1, 16) if all(abs(round(v, p) - v) <= 1e-9 for v in (lo, hi)))
        raise InputError(f"{text} and --goal-precision {precision}: goals are rounded to {precision} decimals, so "
                         "goals could fall outside the scale or all on one end; pass --goal-precision "
                         f"{needed} or a scale whose ends have " + ("whole numbers" if precision == 0 else
                                                                  f"at most {precision} decimals"))


def map_pair_scores(pairs: dict[str, pa.Table], scale, method: str, precision: int = 0) -> tuple[dict, dict]:
    """Every split's `score_chosen` / `score_rejected` mapped onto `scale` by a mapping fitted on the train split's
    scores (chosen and rejected pooled). Returns the tables and the mapping's description (with the raw range)."""
    train = pairs["train"]
    raw = np.concatenate([train["score_chosen"].to_numpy(), train["score_rejected"].to_numpy()])
    mapper = fit_score_mapping(raw, scale, method, precision)
    out = {}
    for split, table in pairs.items():
        for column in ("score_chosen", "score_rejected"):
            mapped = pa.array(mapper.map_array(table[column].to_numpy()), pa.float64())
            table = table.set_column(table.column_names.index(column), column, mapped)
        out[split] = table
    described = {**mapper.describe, "raw_range": [float(raw.min()), float(raw.max())],
                 "ties_before": _ties(train), "ties_after": _ties(out["train"]), "pairs": train.num_rows}
    return out, described


def _ties(pairs: pa.Table) -> int:
    return int(np.sum(pairs["score_chosen"].to_numpy() == pairs["score_rejected"].to_numpy()))


TIES_WARN_SHARE = 0.5  # a mapping that makes more than this share of the train pairs ties is warned about


def ties_warning(described: dict) -> str | None:
    """A warning when the mapping turned many pairs into ties (coarse bins: each tie's two copies cancel out)."""
    made = described.get("ties_after", 0) - described.get("ties_before", 0)
    if made <= 0 or described["ties_after"] <= TIES_WARN_SHARE * described["pairs"]:
        return None
    return (f"warning: the {described['method']} mapping made {made} of {described['pairs']} train pairs ties "
            f"({described['ties_after']} ties in all): their two copies cancel out; a finer scale or "
            "--goal-precision (min-max) keeps them apart")
