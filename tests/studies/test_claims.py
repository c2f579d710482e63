"""rapref.studies.claims, both ways (over seeds and within one run) against numbers worked out by hand."""

import math

import pytest

from rapref.stats import verdict
from rapref.studies.claims import c2_one_run, c2_over_seeds, c4_over_seeds, c4_samples, goal_curve


def test_c2_both_ways_by_hand():
    # per seed: relabeled (rejected, chosen), dpo (rejected, chosen); gaps -0.1 - (-0.5) = 0.4 and 0.2 - (-0.2) = 0.4
    ci = c2_over_seeds([(-0.2, -0.1), (0.0, -0.2)], [(-0.6, -0.1), (-0.4, -0.2)])
    # sd 0: no zero-width interval (two equal seeds cannot show certainty), so no verdict either way
    assert ci["values"] == [0.4, 0.4] and ci["low"] is None and ci["high"] is None
    assert ci["verdict"] == "inconclusive (no spread: all 2 values are 0.4)"
    ci = c2_one_run({"rejected": (-0.1, 0.1), "chosen": (0.0, 0.1)}, {"rejected": (-0.5, 0.1), "chosen": (0.0, 0.1)})
    assert ci["mean"] == pytest.approx(0.4) and ci["low"] == pytest.approx(0.4 - 1.96 * 0.2)  # sqrt(4 * 0.01)
    assert ci["verdict"] == "holds"


def test_c4_both_ways_by_hand():
    sweep = {"1": {"p": 0.1, "q": 0.3}, "2": {"p": 0.4, "q": 0.4}, "3": {"p": 0.5, "q": 0.7}}
    assert goal_curve(sweep) == {1.0: pytest.approx(0.2), 2.0: pytest.approx(0.4), 3.0: pytest.approx(0.6)}
    assert c4_over_seeds([sweep, sweep])["values"] == [1.0, 1.0]
    samples = c4_samples({"1": [1.0, 2.0], "2": [2.0, 3.0], "3": [3.0, 4.0]})
    # average ranks: goals 1.5 1.5 3.5 3.5 5.5 5.5, scores 1 2.5 2.5 4.5 4.5 6; their Pearson correlation
    gx, sy = [1.5, 1.5, 3.5, 3.5, 5.5, 5.5], [1, 2.5, 2.5, 4.5, 4.5, 6]
    cov = sum((a - 3.5) * (b - 3.5) for a, b in zip(gx, sy))
    rho = cov / math.sqrt(sum((a - 3.5) ** 2 for a in gx) * sum((b - 3.5) ** 2 for b in sy))
    assert samples["mean"] == pytest.approx(rho) and samples["n"] == 6
    half = 1.959964 * math.sqrt((1 + rho ** 2 / 2) / 3)
    assert samples["low"] == pytest.approx(math.tanh(math.atanh(rho) - half), abs=1e-5)
    assert samples["verdict"] == ("holds" if samples["low"] > 0 else verdict(samples, 0.0))
