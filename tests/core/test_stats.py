"""rapref.stats, every function checked against numbers worked out by hand."""

import math

import pytest

from rapref.stats import (interval, paired_difference, paired_over_prompts, paired_over_seeds, spearman, summary,
        t_interval, verdict)


def test_summary_and_clustered_standard_error():
    assert summary([1.0, 2.0, 3.0, 4.0])["stderr"] == pytest.approx(math.sqrt(5 / 3) / 2)  # var 5/3, n 4
    # clusters a: [1, 1], b: [0, 0]; mean 0.5; totals +1, -1; sqrt(2/1 * 2) / 4 = 0.5
    assert summary([1.0, 1.0, 0.0, 0.0], clusters=["a", "a", "b", "b"])["stderr"] == pytest.approx(0.5)


def test_t_interval_by_hand():
    mean, low, high = t_interval([1.0, 2.0, 3.0])  # sd 1, se 1/sqrt(3), t(0.975, 2) = 4.302653
    assert mean == 2.0 and low == pytest.approx(2 - 4.302653 / math.sqrt(3), abs=1e-5)
    assert t_interval([5.0]) == (5.0, None, None)
    assert interval([1.0, 2.0, 3.0])["n"] == 3


def test_paired_differences_average_samples_per_prompt_and_require_equal_prompts():
    assert paired_difference({"a": [1.0, 0.0], "b": 1.0}, {"a": 0.0, "b": 0.5}) == [0.5, 0.5]
    with pytest.raises(ValueError, match="different prompts"):
        paired_difference({"a": 1.0, "b": 1.0}, {"a": 0.0})  # never silently intersected
    # over prompts: differences 1, 0, 2 -> mean 1, sd 1, se 1/sqrt(3)
    ci = paired_over_prompts({"p": 2.0, "q": 1.0, "r": 3.0}, {"p": 1.0, "q": 1.0, "r": 1.0})
    assert ci["mean"] == pytest.approx(1.0) and ci["high"] == pytest.approx(1 + 4.302653 / math.sqrt(3), abs=1e-5)
    # over seeds: seed means 0.5 and 1.5 -> mean 1.0, sd 0.7071, se 0.5, t(0.975, 1) = 12.7062
    ci = paired_over_seeds([({"p": 1.0, "q": 0.0}, {"p": 0.0, "q": 0.0}), ({"p": 2.0}, {"p": 0.5})])
    assert ci["values"] == [0.5, 1.5] and ci["low"] == pytest.approx(1 - 12.7062 * 0.5, abs=1e-3)


def test_spearman_by_hand():
    r = spearman([1, 2, 3, 4, 5, 6], [1, 3, 2, 4, 6, 5])  # sum d^2 = 4: rho = 1 - 24 / 210
    assert r["rho"] == pytest.approx(1 - 24 / 210)
    z, half = math.atanh(r["rho"]), 1.959964 * math.sqrt((1 + r["rho"] ** 2 / 2) / 3)
    assert r["low"] == pytest.approx(math.tanh(z - half), abs=1e-5)
    assert spearman([1, 2, 3], [3, 2, 1])["low"] is None  # fewer than 4 points: no interval


@pytest.mark.parametrize("low,high,expected", [
    (0.02, 0.05, "holds"), (-0.05, -0.02, "fails (reversed)"),
    (-0.005, 0.005, "fails (no effect beyond ±0.01)"),
    (0.001, 0.009, "fails (no effect beyond ±0.01)"),   # was "holds" under the old asymmetric rule
    (-0.001, 0.009, "fails (no effect beyond ±0.01)"),  # ... and this "fails": now both alike
    (0.005, 0.05, "inconclusive at this precision (±0.023)"), (-0.05, 0.05, "inconclusive at this precision (±0.050)"),
    (None, None, "inconclusive (one replicate)")])
def test_the_verdict_rule_is_symmetric(low, high, expected):
    assert verdict({"low": low, "high": high}, 0.01) == expected


def test_band_zero():
    assert verdict({"low": 0.001, "high": 0.2}, 0.0) == "holds"
    assert verdict({"low": -0.2, "high": -0.001}, 0.0) == "fails (reversed)"
    assert verdict({"low": -0.001, "high": 0.001}, 0.0).startswith("inconclusive")


def test_values_a_float_cannot_hold_are_refused_not_written_as_infinity():
    from rapref.stats import Undefined, finite, summary

    with pytest.raises(Undefined, match="value 2 .* 401 digits.* too large"):
        finite([1, 10 ** 400])
    with pytest.raises(Undefined, match="mean or standard error of 2 values overflows"):
        summary([1e308, 1e308])  # the sum overflows
    with pytest.raises(Undefined, match="mean or standard error of 2 values overflows"):
        summary([1e160, -1e160])  # the squared deviations overflow
    with pytest.raises(Undefined, match="overflows"):
        summary([1e160, -1e160, 1e160], clusters=["a", "a", "b"])
    assert summary([1e150, -1e150])["stderr"] == pytest.approx(1e150)
