"""Summary statistics: the one home for means, standard errors, intervals, paired differences, rank correlation and
verdicts in every report rapref writes (the demo, the IFEval experiment, judge, diagnose).

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


class Undefined(ValueError):
    """A statistic the data cannot define (a non-finite value, a rank correlation of a constant): refused with its
    reason, never written as NaN or infinity."""


def finite(values: Sequence[float], what: str = "values") -> list[float]:
    """`values` as floats, refusing NaN and infinities (they would spread into every mean and interval).

    >>> finite([1, 2.5])
    [1.0, 2.5]
    """
    out = []
    for i, v in enumerate(values):
        try:
            out.append(float(v))
        except OverflowError:  # an integer of hundreds of digits
            raise Undefined(f"{what}: value {i + 1} ({str(v)[:12]}..., {len(str(v))} digits) is too large for a "
                            "floating-point number") from None
    bad = next((i for i, v in enumerate(out) if not math.isfinite(v)), None)
    if bad is not None:
        raise Undefined(f"{what}: value {bad + 1} is {out[bad]}, not a finite number")
    return out


def summary(values: Sequence[float], clusters: Sequence[Hashable] | None = None) -> dict:
    """n, mean and standard error of the mean; `stderr` is None when it cannot be estimated (n < 2).

    With `clusters` (e.g. the prompt of each sample, when there are several samples per prompt) the standard error
    is clustered: the sandwich estimate over cluster totals, sqrt(G / (G - 1) * sum_g (sum_i (x_gi - mean))^2) / n,
    which does not pretend that samples of one prompt are independent. With one value per cluster it equals the
    plain standard error.
    """
    values = finite(values)
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "stderr": None}
    try:
        result = _summary(values, clusters)
    except OverflowError:
        result = {"mean": math.inf, "stderr": None}
    if not all(math.isfinite(v) for v in (result["mean"], result["stderr"] or 0.0)):
        raise Undefined(f"the mean or standard error of {n} values overflows (values up to "
                        f"{max(map(abs, values)):.3g}; a float holds about 1.8e308)")
    return result


def _summary(values: list[float], clusters) -> dict:
    n = len(values)
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
    """Mean and the two-sided t-interval over independent replicates (e.g. seeds); (mean, None, None) for one, and
    for replicates that all agree: a zero-width interval would claim a certainty that a few equal values (a judge
    that always picks one side, a metric stuck at its bound) cannot give (`no_interval` says why)."""
    from scipy.stats import t

    stats = summary(values)
    if stats["stderr"] is None or no_interval(values):
        return stats["mean"], None, None
    half = float(t.ppf(0.5 + level / 2, stats["n"] - 1)) * stats["stderr"]
    return stats["mean"], stats["mean"] - half, stats["mean"] + half


def interval(values: Sequence[float], level: float = 0.95) -> dict:
    """{mean, low, high, n, values}: the t-interval of `t_interval` as a record (values rounded to 4 places)."""
    mean, low, high = t_interval(values, level)
    record = {"mean": mean, "low": low, "high": high, "n": len(values), "values": [round(float(v), 4) for v in values]}
    reason = no_interval(values)
    if reason:
        record["no_interval"] = reason
    return record


def no_interval(values: Sequence[float]) -> str | None:
    """Why `t_interval` gives no interval for `values`, or None when it gives one.

    >>> no_interval([1.0]), no_interval([1.0, 1.0, 1.0]), no_interval([1.0, 2.0])
    ('one replicate', 'no spread: all 3 values are 1', None)
    """
    values = finite(values)
    if len(values) < 2:
        return "one replicate" if values else "no values"
    if all(math.isclose(v, values[0], rel_tol=1e-9, abs_tol=1e-12) for v in values):  # equal up to rounding
        return f"no spread: all {len(values)} values are {values[0]:.4g}"
    return None


def _per_prompt_means(scores: dict) -> dict:
    """{prompt: score or list of sample scores} -> {prompt: mean over its samples}."""
    return {p: (sum(v) / len(v) if isinstance(v, (list, tuple)) else float(v)) for p, v in scores.items()}


def paired_difference(arm: dict, baseline: dict) -> list[float]:
    """Per-prompt differences arm - baseline, samples averaged per prompt first. Both must hold the same prompts:
    a comparison over other prompt sets is not paired, so it is refused (ValueError), never quietly intersected.

    >>> paired_difference({"a": [1.0, 0.0], "b": 1.0}, {"a": 0.0, "b": 0.5})
    [0.5, 0.5]
    """
    if arm.keys() != baseline.keys():
        missing = sorted(set(arm) ^ set(baseline))
        raise ValueError(f"paired comparison over different prompts ({len(missing)} not in both, e.g. {missing[0]!r})")
    mine, theirs = _per_prompt_means(arm), _per_prompt_means(baseline)
    return [mine[p] - theirs[p] for p in mine]


def paired_over_prompts(arm: dict, baseline: dict, level: float = 0.95) -> dict:
    """Mean paired difference over prompts with its t-interval over prompts (one training run: training variance is
    not in it)."""
    return interval(paired_difference(arm, baseline), level)


def paired_over_seeds(seeds: Sequence[tuple[dict, dict]], level: float = 0.95) -> dict:
    """Per seed, the mean over prompts of the paired difference (arm, baseline); the t-interval over seeds (each seed a
    new world, start and training run: the unit that varies most).

    >>> round(paired_over_seeds([({"p": 2.0}, {"p": 1.0}), ({"p": 3.0}, {"p": 1.0})])["mean"], 3)
    1.5
    """
    return interval([sum(d) / len(d) for d in (paired_difference(a, b) for a, b in seeds)], level)


def spearman(x: Sequence[float], y: Sequence[float], level: float = 0.95) -> dict:
    """Spearman's rank correlation with its two-sided test and an approximate interval: {rho, p_value, n, low, high}.
    The interval is Fisher's z with Bonett and Wright's variance for Spearman's rho, (1 + rho^2 / 2) / (n - 3):
    rho = tanh(atanh(rho) +- z * sqrt(var)); None below 4 points or at |rho| = 1.

    >>> r = spearman([1, 2, 3, 4, 5, 6], [1, 3, 2, 4, 6, 5])  # d^2 sums to 4: rho = 1 - 6 * 4 / (6 * 35)
    >>> round(r["rho"], 4), round(r["low"], 3), round(r["high"], 3)
    (0.8857, 0.066, 0.992)

    A rank correlation of a constant (every x, or every y, the same) is undefined: refused (`Undefined`), as are
    non-finite values and sequences of different lengths.
    """
    from scipy.stats import spearmanr

    x, y = finite(x, "x"), finite(y, "y")
    if len(x) != len(y):
        raise Undefined(f"rank correlation of {len(x)} values against {len(y)}")
    if len(x) < 2:
        raise Undefined(f"rank correlation of {len(x)} point(s): needs at least 2")
    for name, values in (("x", x), ("y", y)):
        if len(set(values)) == 1:
            raise Undefined(f"rank correlation with a constant: every {name} is {values[0]:g} ({len(values)} points)")
    rho, p_value = spearmanr(x, y)
    rho, n = float(rho), len(x)
    p_value = float(p_value) if math.isfinite(float(p_value)) else None  # too few points for the test
    low, high = spearman_interval(rho, n, level)
    return {"rho": rho, "p_value": p_value, "n": n, "low": low, "high": high}


def spearman_interval(rho: float, n: int, level: float = 0.95) -> tuple[float | None, float | None]:
    """The interval of `spearman` from rho and the number of points alone (for a report that stored only those)."""
    from scipy.stats import norm

    if rho is None or not math.isfinite(rho) or n <= 3 or abs(rho) >= 1:
        return None, None
    half = float(norm.ppf(0.5 + level / 2)) * math.sqrt((1 + rho * rho / 2) / (n - 3))
    return math.tanh(math.atanh(rho) - half), math.tanh(math.atanh(rho) + half)


def verdict(ci: dict, band: float) -> str:
    """One rule for every claim, symmetric around 0 with a negligible-effect `band` (in the claim's units):
    "holds" when the whole interval lies above +band; "fails (reversed)" when it lies below -band; "fails (no effect
    beyond +-band)" when it lies inside (-band, +band); otherwise "inconclusive at this precision". With band 0 the
    middle case cannot occur.

    >>> [verdict({"low": lo, "high": hi}, 0.01) for lo, hi in ((0.02, 0.05), (-0.05, -0.02), (-0.005, 0.005),
    ...                                                       (0.001, 0.009), (-0.001, 0.009), (-0.02, 0.03))]
    ['holds', 'fails (reversed)', 'fails (no effect beyond ±0.01)', 'fails (no effect beyond ±0.01)', \
'fails (no effect beyond ±0.01)', 'inconclusive at this precision (±0.025)']
    """
    low, high = ci.get("low"), ci.get("high")
    if low is None or high is None:
        return f"inconclusive ({ci.get('no_interval', 'one replicate')})"
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise Undefined(f"an interval from {low} to {high}")
    if low > band:
        return "holds"
    if high < -band:
        return "fails (reversed)"
    if low > -band and high < band:
        return f"fails (no effect beyond ±{band:g})"
    return f"inconclusive at this precision (±{(high - low) / 2:.3f})"
