"""Tables, paired intervals and verdicts of `rapref experiment ifeval` (report.json, report.md, printed).

Claims come from the table in `run.CLAIMS`; intervals and verdicts from `rapref.stats` (one training seed: paired
differences over the same held-out prompts, t-intervals over prompts, so training variance is not in them) and
`rapref.studies.claims` (C2 from the probe's standard errors, C4-samples from Spearman's rho over samples).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rapref.io import write_json_atomic
from rapref.progress import say
from rapref.provenance import provenance
from rapref.reports import markdown_table, write_text_atomic
from rapref.stats import paired_over_prompts, spearman_interval, summary, verdict
from rapref.studies.claims import c2_one_run, c4_samples
from rapref.studies.ifeval.design import CLAIMS


def paired(evaluations: dict, arm: str, baseline: str, key: str = "per_prompt") -> dict:
    """Mean over the held-out prompts (both arms must hold the same) of (arm - baseline), with a 95% t-interval over
    prompts."""
    ci = paired_over_prompts(evaluations[arm][key], evaluations[baseline][key])
    return {"mean": ci["mean"], "low": ci["low"], "high": ci["high"], "n": ci["n"]}


def probe_table(probe: dict) -> str:
    rows = [{"policy": r["policy"], "goal": r["condition"], "response": r["response"], "score band": r["band"],
             "n": r["n"], "mean change in log p": f"{r['mean_delta_logp']:+.2f}",
             "stderr": "-" if r["stderr"] is None else f"{r['stderr']:.2f}"} for r in probe.get("rows", [])]
    return markdown_table(rows, list(rows[0])) if rows else "(no held-out pairs)"


def decide(ci: dict, band: float, smoke: bool) -> str:
    return "none (smoke run)" if smoke else verdict(ci, band)


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


def probe_means(probe: dict, policy: str, band: float) -> dict | None:
    """{"rejected": (mean, stderr), "chosen": (mean, stderr)} of a policy's high-quality held-out responses."""
    rows = {r["response"]: r for r in probe.get("rows", []) if r["policy"] == policy and r["band"] == f">= {band:g}"}
    if set(rows) != {"rejected", "chosen"} or min(rows[k]["n"] for k in rows) < 2:
        return None
    return {k: (rows[k]["mean_delta_logp"], rows[k]["stderr"]) for k in rows}


def claims(cfg, evaluations: dict, sweep: dict, probe: dict) -> list[dict]:
    out = []
    for claim in CLAIMS:
        if claim.kind == "paired":
            ci = paired(evaluations, claim.arm, claim.baseline)
            difference = claim.difference
        elif claim.kind == "controllability":
            ci = c4_samples(sweep)
            difference = "Spearman rho (goal, score) over samples" + \
                ("" if ci.get("p_value") is None else f", p = {ci['p_value']:.2g}")
        else:
            mine, theirs = probe_means(probe, claim.arm, cfg.band), probe_means(probe, claim.baseline, cfg.band)
            ci = c2_one_run(mine, theirs) if mine and theirs else {"mean": None, "low": None, "high": None}
            difference = "relabeled (rejected - chosen) - DPO (rejected - chosen), nats"
        out.append({"name": claim.name, "statement": claim.statement.format(band=cfg.band), "difference": difference,
                    "band": claim.band, **{k: v for k, v in ci.items() if k != "verdict"},
                    "verdict": decide(ci, claim.band, cfg.quick) if ci["mean"] is not None or cfg.quick
                    else "inconclusive (too few such held-out responses)"})
    return out


def write_report(cfg, out: Path, evaluations: dict, sweep: dict, probe: dict, timings: dict,
                 ifbench: dict | None = None) -> dict:
    report = {"smoke_run": cfg.quick, "arms": arm_rows(evaluations),
              "ifbench_arms": arm_rows(ifbench) if ifbench else None, "claims": claims(cfg, evaluations, sweep, probe),
              "sweep": {g: float(np.mean(v)) for g, v in sweep.items()}, "probe": probe, "timings_s": timings,
              "config": {k: v for k, v in cfg.__dict__.items()}, "provenance": provenance()}
    write_json_atomic(out / "report.json", report)
    text = render(report)
    write_text_atomic(out / "report.md", text)
    say(text)
    return report


def _ci(c) -> str:
    return "-" if c["mean"] is None else f"{c['mean']:+.2f}" + ("" if c["low"] is None else
                                                                f" [{c['low']:+.2f}, {c['high']:+.2f}]")


def _arm_table(arms: list[dict]) -> str:
    rows = [{"arm": a["arm"], "score (1-10)": f"{a['score']:.2f}", "prompt-level strict":
             "-" if a["prompt_level_strict"] is None else f"{a['prompt_level_strict']:.3f}",
             "instruction-level strict": "-" if a["instruction_level_strict"] is None else
             f"{a['instruction_level_strict']:.3f}", "score minus start": _ci(a["minus_start"]),
             "score minus DPO": _ci(a["minus_dpo"]),
             "prompt-level minus DPO": _ci(a["all_met_minus_dpo"])} for a in arms]
    return markdown_table(rows, list(rows[0]))


def render(report: dict) -> str:
    """report.md from report.json alone (so a committed report can be regenerated with this code)."""
    cfg = report["config"]
    ifbench_text = "" if not report.get("ifbench_arms") else f"""
## IFBench test prompts (official checkers; prompts none of whose checkers run here are left out)

{_arm_table(report["ifbench_arms"])}
"""
    claim_rows = [{"claim": c["name"], "statement": c["statement"], "difference": c["difference"],
                   "estimate [95% CI]": _ci(c), "verdict": c["verdict"]} for c in report["claims"]]
    smoke = "**SMOKE RUN (`--quick`): the numbers mean nothing.**\n\n" if report["smoke_run"] else ""
    sweep = ", ".join(f"{float(g):g}: {v:.2f}" for g, v in sorted(report["sweep"].items(), key=lambda i: float(i[0])))
    return f"""# rapref experiment ifeval

{smoke}Start `{cfg['model']}`; {cfg['train_prompts']} training prompts x {cfg['samples']} on-policy samples,
{cfg['test_prompts']} held-out test prompts (IFEval-style, official checkers, strict); one training seed ({cfg['seed']}).

## Verdicts

{markdown_table(claim_rows, list(claim_rows[0]))}

One rule for every claim (`rapref.stats.verdict`), symmetric around 0 with band 0 here: holds when the 95% interval
lies above 0, fails when it lies below 0, inconclusive otherwise. {len(report['claims'])} intervals were read (no
multiplicity correction). Paired claims: means over the same held-out prompts with t-intervals over prompts (one
training seed, so training variance is not in them). C2: from the probe's four means and standard errors, treated as
independent. C4-samples: Spearman's rho over every (goal, score) sample of the sweep, Fisher-z interval.

## Arms (held-out IFEval-style prompts)

{_arm_table(report["arms"])}
{ifbench_text}
Score (1-10) = 1 + 9 x the fraction of a prompt's instructions met: its difference is 9 x the difference in
per-prompt instruction-level accuracy. Prompt-level: all instructions met.

## Unlearning probe (held-out pairs; change in log p, policy minus start, both asked with the same prompt)

{probe_table(report["probe"])}

Goal sweep of the relabeled policy (mean score per goal): {sweep}.

Stage times (s): {', '.join(f'{k} {v}' for k, v in report["timings_s"].items())}.
"""


def rederive_claims(report: dict) -> list[dict]:
    """The claims of a finished report.json under today's definitions, from what it stores: paired intervals as
    they were (the per-prompt scores are not in report.json), C2 from the probe rows, C4-samples from rho and the
    number of sweep samples."""

    cfg, stored = report["config"], {c["name"]: c for c in report["claims"]}
    out = []
    for claim in CLAIMS:
        if claim.kind == "paired":
            ci = {k: stored[claim.name][k] for k in ("mean", "low", "high", "n")}
            difference = claim.difference
        elif claim.kind == "controllability":
            old = stored.get(claim.name) or stored["C4"]
            n = old.get("n") or cfg["sweep_prompts"] * len(cfg["sweep_goals"])
            low, high = spearman_interval(old["mean"], n)
            ci = {"mean": old["mean"], "low": low, "high": high, "p_value": old.get("p_value"), "n": n}
            difference = f"Spearman rho (goal, score) over samples, p = {old.get('p_value'):.2g}"
        else:
            mine, theirs = (probe_means(report["probe"], p, cfg["band"]) for p in (claim.arm, claim.baseline))
            ci = c2_one_run(mine, theirs) if mine and theirs else {"mean": None, "low": None, "high": None}
            ci.pop("verdict", None)
            difference = "relabeled (rejected - chosen) - DPO (rejected - chosen), nats"
        out.append({"name": claim.name, "statement": claim.statement.format(band=cfg["band"]),
                    "difference": difference, "band": claim.band, **ci,
                    "verdict": decide(ci, claim.band, report["smoke_run"])})
    return out


def regenerate(folder: str | Path) -> dict:
    """Rewrite FOLDER/report.json's claims and FOLDER/report.md with today's report code.

        python -m rapref.studies.ifeval.report docs/exp-ifeval
    """
    import json

    folder = Path(folder)
    report = json.loads((folder / "report.json").read_text())
    report["claims"] = rederive_claims(report)
    write_json_atomic(folder / "report.json", report)
    write_text_atomic(folder / "report.md", render(report))
    return report


if __name__ == "__main__":
    import sys

    regenerate(sys.argv[1])
