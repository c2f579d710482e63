"""C2 (less unlearning) and C4 (controllability), defined once for every study.

C2: held-out high-quality responses (judged >= band). For each policy, the change in log p vs the start of the
rejected ones minus that of the chosen ones: what a good answer loses for having been rejected, beyond the drift every
good answer sees. C2 is that quantity for the relabeled policy minus that for DPO; it supports the paper when it is
above 0 (less is lost). Two ways to put an interval on it:
- `c2_over_seeds`: the t-interval over seeds (each seed a new world and training run);
- `c2_one_run`: one training run, from the four means' standard errors, treated as independent (wider than a paired
  interval over the same responses).

C4: the policy's achieved reward rises with the goal it is asked for. Two variants, named apart:
- "C4" (`c4_over_seeds`): per seed, Spearman's rho between the goal and the mean reward at that goal; the t-interval
  over seeds;
- "C4-samples" (`c4_samples`): one run, Spearman's rho over every (goal, score) sample, with its approximate interval
  (`rapref.stats.spearman`).
Verdicts come from `rapref.stats.verdict` with band 0: above 0 holds, below 0 fails.
"""

from __future__ import annotations

import math

from rapref.stats import interval, spearman, verdict


def unlearning_gap(rejected: float, chosen: float) -> float:
    """Change in log p of high-quality rejected responses minus that of high-quality chosen ones (nats)."""
    return rejected - chosen


def c2_over_seeds(relabeled: list[tuple[float, float]], dpo: list[tuple[float, float]]) -> dict:
    """Per seed (rejected, chosen) mean changes of each policy -> C2 with its interval over seeds."""
    ci = interval([unlearning_gap(*a) - unlearning_gap(*b) for a, b in zip(relabeled, dpo, strict=True)])
    return {**ci, "verdict": verdict(ci, 0.0)}


def c2_one_run(relabeled: dict, dpo: dict) -> dict:
    """Each policy's {"rejected": (mean, stderr), "chosen": (mean, stderr)} -> C2 with a normal interval from the four
    standard errors (None where one is missing)."""
    mean = unlearning_gap(relabeled["rejected"][0], relabeled["chosen"][0]) - \
        unlearning_gap(dpo["rejected"][0], dpo["chosen"][0])
    errors = [relabeled["rejected"][1], relabeled["chosen"][1], dpo["rejected"][1], dpo["chosen"][1]]
    if any(e is None for e in errors):
        ci = {"mean": mean, "low": None, "high": None}
    else:
        half = 1.96 * math.sqrt(sum(e * e for e in errors))
        ci = {"mean": mean, "low": mean - half, "high": mean + half}
    return {**ci, "verdict": verdict(ci, 0.0)}


def goal_curve(sweep: dict) -> dict[float, float]:
    """{goal: {prompt: reward} or [scores]} -> {goal: mean reward}, goals ascending."""
    def mean(values):
        values = list(values.values()) if isinstance(values, dict) else list(values)
        return sum(values) / len(values)

    return {float(g): mean(v) for g, v in sorted(sweep.items(), key=lambda item: float(item[0]))}


def sweep_rho(sweep: dict) -> float:
    """Spearman's rho between the goal and the mean reward at that goal. A flat curve (the same mean reward at every
    goal) has no rank correlation; it does not rise with the goal, so it counts as 0 here, never as NaN."""
    curve = goal_curve(sweep)
    if len(curve) >= 2 and len(set(curve.values())) == 1:
        return 0.0
    return spearman(list(curve), list(curve.values()))["rho"]


def c4_over_seeds(sweeps: list[dict]) -> dict:
    """C4: per-seed sweeps -> rho per seed, t-interval over seeds."""
    ci = interval([sweep_rho(s) for s in sweeps])
    return {**ci, "verdict": verdict(ci, 0.0)}


def c4_samples(sweep: dict) -> dict:
    """C4-samples: one sweep {goal: [scores]} -> Spearman's rho over samples with its interval and test."""
    pairs = [(float(g), float(v)) for g, values in sweep.items() for v in values]
    if len({g for g, _ in pairs}) < 2:
        ci = {"mean": None, "low": None, "high": None, "p_value": None}
    elif len({v for _, v in pairs}) == 1:  # no rank correlation with a constant: no rise with the goal
        return {"mean": 0.0, "low": None, "high": None, "p_value": None, "n": len(pairs),
                "no_interval": f"every score is {pairs[0][1]:g}",
                "verdict": f"fails (the same score, {pairs[0][1]:g}, at every goal)"}
    else:
        test = spearman([g for g, _ in pairs], [v for _, v in pairs])
        ci = {"mean": test["rho"], "low": test["low"], "high": test["high"], "p_value": test["p_value"],
              "n": test["n"]}
    return {**ci, "verdict": verdict(ci, 0.0)}
