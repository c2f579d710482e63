"""Tables, paired intervals and verdicts of `rapref experiment ifeval` (report.json, report.md, printed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rapref.evaluate.diagnose import markdown_table
from rapref.io import atomic_path, write_json_atomic
from rapref.progress import say
from rapref.stats import summary, t_interval

CLAIMS = (("C1", "relabeled DPO asked for 10 beats DPO", "relabeled@10", "dpo"),
          ("C1-start", "relabeled DPO asked for 10 beats the start asked for 10", "relabeled@10", "start@10"),
          ("C3-steps", "relabeled DPO beats DPO on duplicated pairs (same steps)", "relabeled@10", "dpo-dup"),
          ("C3-half", "half-relabeled DPO beats DPO", "half@10", "dpo"),
          ("dpo-works", "DPO improves on the start", "dpo", "start"))


def paired(evaluations: dict, arm: str, baseline: str, key: str = "per_prompt") -> dict:
    """Mean over held-out prompts of (arm - baseline), with a 95% t-interval over prompts (one training seed: the
    interval does not include training variance)."""
    mine, theirs = evaluations[arm][key], evaluations[baseline][key]
    diffs = [mine[p] - theirs[p] for p in mine if p in theirs]
    mean, low, high = t_interval(diffs)
    return {"mean": mean, "low": low, "high": high, "n": len(diffs)}


def probe_table(probe: dict) -> str:
    rows = [{"policy": r["policy"], "goal": r["condition"], "response": r["response"], "score band": r["band"],
             "n": r["n"], "mean change in log p": f"{r['mean_delta_logp']:+.2f}",
             "stderr": "-" if r["stderr"] is None else f"{r['stderr']:.2f}"} for r in probe.get("rows", [])]
    return markdown_table(rows, list(rows[0])) if rows else "(no held-out pairs)"


def verdict(ci: dict, smoke: bool) -> str:
    if smoke:
        return "none (smoke run)"
    if ci["low"] is None:
        return "inconclusive (one prompt)"
    return "holds" if ci["low"] > 0 else "fails (reversed)" if ci["high"] < 0 else \
        f"inconclusive at this precision (±{(ci['high'] - ci['low']) / 2:.2f})"


def arm_rows(evaluations: dict) -> list[dict]:
    rows = []
    for arm, ev in evaluations.items():
        scores = list(ev["per_prompt"].values())
        rows.append({"arm": arm, "score": summary(scores)["mean"],
                     "prompt_level_strict": ev["checkers"].get("prompt_level_strict"),
                     "instruction_level_strict": ev["checkers"].get("instruction_level_strict"),
                     "minus_start": paired(evaluations, arm, "start"), "minus_dpo": paired(evaluations, arm, "dpo"),
                     "all_met_minus_dpo": paired(evaluations, arm, "dpo", "all_met")})
    return rows


def probe_claim(probe: dict, band: float, smoke: bool) -> dict:
    """C2 (less unlearning): held-out rejected responses scored >= band lose less log-probability under the relabeled
    policy (asked with their own score) than under DPO. Difference of the two means, with an interval from their
    standard errors (treated as independent: wider than a paired interval over the same responses)."""
    def row(policy):
        return next((r for r in probe.get("rows", []) if r["policy"] == policy and r["response"] == "rejected"
                     and r["band"] == f">= {band:g}"), None)

    mine, theirs = row("relabeled@10"), row("dpo")
    claim = {"name": "C2", "statement": f"held-out rejected responses scored >= {band:g} lose less log-probability "
                                        "under relabeled DPO (own goal) than under DPO",
             "difference": "mean change in log p, relabeled - DPO", "mean": None, "low": None, "high": None}
    if mine is None or theirs is None or mine["n"] < 2 or theirs["n"] < 2:
        n = 0 if mine is None else mine["n"]
        return {**claim, "verdict": "none (smoke run)" if smoke else f"inconclusive ({n} such held-out responses)"}
    diff = mine["mean_delta_logp"] - theirs["mean_delta_logp"]
    half = 1.96 * float(np.hypot(mine["stderr"], theirs["stderr"]))
    claim.update(mean=diff, low=diff - half, high=diff + half, n=mine["n"])
    return {**claim, "verdict": verdict(claim, smoke)}


def write_report(cfg, out: Path, evaluations: dict, sweep: dict, probe: dict, timings: dict,
                 ifbench: dict | None = None) -> dict:
    from scipy.stats import spearmanr

    from rapref.provenance import provenance

    arms = arm_rows(evaluations)
    ifbench_arms = arm_rows(ifbench) if ifbench else None
    claims = [{"name": n, "statement": s, "difference": f"{a} - {b}", **paired(evaluations, a, b),
               "verdict": verdict(paired(evaluations, a, b), cfg.quick)} for n, s, a, b in CLAIMS]
    goals = sorted(sweep, key=float)
    pairs = [(float(g), v) for g in goals for v in sweep[g]]
    rho, p_value = spearmanr([g for g, _ in pairs], [v for _, v in pairs]) if len(goals) > 1 else (float("nan"),) * 2
    rho, p_value = float(rho), float(p_value)
    claims.append({"name": "C4", "statement": "the relabeled policy's score rises with the goal asked for",
                   "difference": f"Spearman rho (goal, score), p = {p_value:.2g}", "mean": rho, "low": None,
                   "high": None, "p_value": p_value,
                   "verdict": "none (smoke run)" if cfg.quick else
                   "holds" if rho > 0 and p_value < 0.05 else "fails (reversed)" if rho < 0 and p_value < 0.05
                   else "inconclusive (no monotone trend at p < 0.05)"})
    claims.append(probe_claim(probe, cfg.band, cfg.quick))
    report = {"smoke_run": cfg.quick, "arms": arms, "ifbench_arms": ifbench_arms, "claims": claims,
              "sweep": {g: float(np.mean(v)) for g, v in sweep.items()}, "probe": probe, "timings_s": timings,
              "config": {k: v for k, v in cfg.__dict__.items()}, "provenance": provenance()}
    write_json_atomic(out / "report.json", report)

    def ci(c):
        return "-" if c["mean"] is None else f"{c['mean']:+.2f}" + ("" if c["low"] is None else
                                                                    f" [{c['low']:+.2f}, {c['high']:+.2f}]")

    def table(arms):
        rows = [{"arm": a["arm"], "score (1-10)": f"{a['score']:.2f}", "prompt-level strict":
                 "-" if a["prompt_level_strict"] is None else f"{a['prompt_level_strict']:.3f}",
                 "instruction-level strict": "-" if a["instruction_level_strict"] is None else
                 f"{a['instruction_level_strict']:.3f}", "score minus start": ci(a["minus_start"]),
                 "score minus DPO": ci(a["minus_dpo"]),
                 "prompt-level minus DPO": ci(a["all_met_minus_dpo"])} for a in arms]
        return markdown_table(rows, list(rows[0]))

    ifbench_text = "" if not ifbench_arms else f"""
## IFBench test prompts (official checkers; prompts none of whose checkers run here are left out)

{table(ifbench_arms)}
"""
    claim_rows = [{"claim": c["name"], "statement": c["statement"], "paired [95% CI over prompts]": ci(c),
                   "verdict": c["verdict"]} for c in claims]
    smoke = "**SMOKE RUN (`--quick`): the numbers mean nothing.**\n\n" if cfg.quick else ""
    text = f"""# rapref experiment ifeval

{smoke}Start `{cfg.model}`; {cfg.train_prompts} training prompts x {cfg.samples} on-policy samples, {cfg.test_prompts}
held-out test prompts (IFEval-style, official checkers, strict); one training seed ({cfg.seed}).

## Verdicts

{markdown_table(claim_rows, list(claim_rows[0]))}

## Arms (held-out IFEval-style prompts)

{table(arms)}
{ifbench_text}
Paired differences are means over the same held-out prompts with 95% t-intervals over prompts (one training seed,
so training variance is not in them). Score (1-10) = 1 + 9 x the fraction of a prompt's instructions met: its
difference is 9 x the difference in per-prompt instruction-level accuracy. Prompt-level: all instructions met.

## Unlearning probe (held-out pairs; change in log p, policy minus start, both asked with the same prompt)

{probe_table(probe)}

Goal sweep of the relabeled policy (mean score per goal): {', '.join(f"{float(g):g}: {np.mean(sweep[g]):.2f}" for g in goals)}.

Stage times (s): {', '.join(f'{k} {v}' for k, v in timings.items())}.
"""
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(text)
    say(text)
    return report
