"""Summary statistics: the one home for means, standard errors and intervals in every report rapref writes.

>>> summary([1.0, 2.0, 3.0, 4.0])["stderr"]   # sample SD 1.291 / sqrt(4)
0.6454972243679028
>>> summary([5.0])["stderr"] is None          # one value: no standard error
True
>>> round(summary([1.0, 1.0, 0.0, 0.0], clusters=["a", "a", "b", "b"])["stderr"], 6)  # two prompts, two samples each
0.5
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Hashable, Sequence


def summary(values: Sequence[float], clusters: Sequence[Hashable] | None = None) -> dict:
    """n, mean and standard error of the mean; `stderr` is None when it cannot be estimated (n < 2).

    With `clusters` (e.g. the prompt of each sample, when there are several samples per prompt) the standard error
    is clustered: the sandwich estimate over cluster totals, sqrt(G / (G - 1) * sum_g (sum_i (x_gi - mean))^2) / n,
    which does not pretend that samples of one prompt are independent. With one value per cluster it equals the
    plain standard error.
    """
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "stderr": None}
    mean = sum(values) / n
    if clusters is None or len(set(clusters)) == n:
        stderr = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else None
        return {"n": n, "mean": mean, "stderr": stderr}
    if len(clusters) != n:
        raise ValueError(f"{len(clusters)} cluster labels for {n} values")
    totals: dict = defaultdict(float)
    for value, cluster in zip(values, clusters):
        totals[cluster] += value - mean
    groups = len(totals)
    stderr = (math.sqrt(groups / (groups - 1) * sum(t * t for t in totals.values())) / n) if groups > 1 else None
    return {"n": n, "mean": mean, "stderr": stderr, "clusters": groups}


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float | None, float | None]:
    """Mean and the two-sided t-interval over independent replicates (e.g. seeds); (mean, None, None) for one."""
    from scipy.stats import t

    stats = summary(values)
    if stats["stderr"] is None:
        return stats["mean"], None, None
    half = float(t.ppf(0.5 + level / 2, stats["n"] - 1)) * stats["stderr"]
    return stats["mean"], stats["mean"] - half, stats["mean"] + half
