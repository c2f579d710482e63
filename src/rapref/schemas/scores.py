"""Scores onto the goal scale: reward-model scores (unbounded, any sign) become goals on [lo, hi].

The mapping is fitted on the training split only and applied to every split, so held-out pairs never shape it:

>>> import numpy as np
>>> m = fit_score_mapping(np.array([-4.0, -1.0, 0.5, 3.0]), (1, 10), "min-max")
>>> [m(s) for s in (-4.0, 0.5, 3.0, 9.0)]   # clipped to the training range
[1.0, 6.0, 10.0, 10.0]

`map_pair_scores` applies one to the `score_chosen` / `score_rejected` columns of canonical pairs (`rapref augment`
with `--score-mapping` on one-pair-per-row layouts); `multi-sample` maps each response's score before pairing.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

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
        self.lo, self.hi = scale
        self.method, self.precision = method, precision
        levels = int(round(self.hi - self.lo)) + 1
        if method == "quantile":
            self.edges = np.quantile(train_scores, np.linspace(0, 1, levels + 1)[1:-1])
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
    described = {**mapper.describe, "raw_range": [float(raw.min()), float(raw.max())]}
    return out, described
