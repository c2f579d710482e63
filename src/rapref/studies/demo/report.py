"""Pair the demo's arms seed by seed into `report.json`, `report.md`, plots and a printed table, with verdicts.

Statistics (`rapref.stats`): every arm answers the same held-out prompts with the same sampling seeds, so arms are
compared by paired differences. Per evaluation seed, the difference of two arms is the mean over prompts of (reward of
arm - reward of baseline); a claim's 95% t-interval is taken over those per-seed differences (each seed is a new world,
start and training run, the unit that varies most). Verdicts, from that interval at the primary decoding (T 0.7), by
one symmetric rule (`rapref.stats.verdict`): "holds" above +band, "fails" below -band or entirely within +-band, and
"inconclusive at this precision" otherwise; the band of each claim is in the claims table (`arms.CLAIMS`).
C2 and C4 are defined once for every study (`rapref.studies.claims`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rapref.dispatch import sentence
from rapref.io import write_json_atomic
from rapref.provenance import provenance
from rapref.reports import markdown_table, save_figure, write_text_atomic
from rapref.stats import interval as stats_interval
from rapref.stats import paired_over_seeds, summary, verdict
from rapref.studies.claims import c2_over_seeds, c4_over_seeds, goal_curve, sweep_rho
from rapref.studies.demo.arms import ARMS, BY_NAME, CLAIMS, DECODINGS, NEGLIGIBLE, PRIMARY, SWEPT

MONOTONE_TOLERANCE = 0.02  # a goal sweep is monotone when no step down exceeds this and two paired standard errors


def per_seed(ci: dict) -> dict:
    """A `rapref.stats` interval in the report's layout: its values are one per seed."""
    return {"mean": ci["mean"], "low": ci["low"], "high": ci["high"], "per_seed": ci["values"],
            **({"verdict": ci["verdict"]} if "verdict" in ci else {})}


def interval(values: list[float]) -> dict:
    return per_seed(stats_interval(values))


def paired(results: list[dict], decoding: str, arm: str, baseline: str) -> dict:
    """Per-seed paired differences over the same prompts (required equal), t-interval over seeds."""
    return per_seed(paired_over_seeds([tuple(seed["evaluations"][decoding][a]["per_prompt"] for a in (arm, baseline))
                                       for seed in results]))


def curve(sweep: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean true reward per goal of a sweep ({goal: {prompt_id: reward}}), keyed as the sweep is."""
    means = goal_curve(sweep)
    return {g: means[float(g)] for g in sorted(sweep, key=float)}


def steps_down(sweep: dict[str, dict[str, float]]) -> list[str]:
    """Steps from one goal to the next where reward falls by more than sampling noise allows: below 0 by more than
    two paired standard errors (the same prompts at both goals) and by more than MONOTONE_TOLERANCE."""
    goals = sorted(sweep, key=float)
    found = []
    for a, b in zip(goals, goals[1:]):
        step = summary([sweep[b][p] - sweep[a][p] for p in sweep[a]])
        if step["mean"] < -max(2 * (step["stderr"] or 0.0), MONOTONE_TOLERANCE):
            found.append(f"{float(a):g}->{float(b):g}: {step['mean']:+.3f}")
    return found


def checks(cfg, seed: dict) -> dict:
    """Is this world one where the paper's question means something? Printed for every seed. (A run of a subset of
    the decodings, as the grid's cells are, leaves out the greedy check.)"""
    start_sweep = seed["sweeps"]["start@10"]
    evaluation = seed["evaluations"]
    down = steps_down(start_sweep)
    found = {
        "seed": seed["seed"],
        "start_reads_goals": not down and sweep_rho(start_sweep) > 0,
        "start_sweep_spearman": sweep_rho(start_sweep),
        "start_sweep_steps_down": down,
        "dpo_improves_on_start": evaluation[PRIMARY]["dpo"]["mean"] > evaluation[PRIMARY]["start"]["mean"],
        "dpo_minus_start": evaluation[PRIMARY]["dpo"]["mean"] - evaluation[PRIMARY]["start"]["mean"],
    }
    if "greedy" in evaluation:
        found.update(start_greedy=evaluation["greedy"]["start"]["mean"],
                     chosen_answers=seed["data"]["heldout_chosen_true_reward"],
                     greedy_start_below_chosen=evaluation["greedy"]["start"]["mean"]
                     < seed["data"]["heldout_chosen_true_reward"])
    return found


def unlearning(seed: dict, arm: str, band: float) -> dict | None:
    """Mean change in log p vs the start of held-out responses judged >= band: rejected ones, chosen ones, and
    rejected minus chosen (what is lost for being rejected, beyond the drift every good answer sees)."""
    row = seed["probe"]["arms"].get(arm)
    key = f">= {band:g}"
    if not row or f"rejected {key}" not in row or f"chosen {key}" not in row:
        return None
    return {"rejected_hq": row[f"rejected {key}"], "chosen_hq": row[f"chosen {key}"],
            "difference": row[f"rejected {key}"] - row[f"chosen {key}"]}


def build(cfg, results: list[dict]) -> dict:
    arms = []
    for arm in cfg.arm_table:
        row = {"arm": arm.name, "label": arm.label}
        for d in cfg.decoding_table:
            evals = [r["evaluations"][d.name][arm.name] for r in results]
            row[d.name] = {**interval([e["mean"] for e in evals]),
                           "well_formed": float(np.mean([e["well_formed"] for e in evals])),
                           "mean_length": float(np.mean([e["mean_length"] for e in evals])),
                           "minus_start": paired(results, d.name, arm.name, "start"),
                           "minus_dpo": paired(results, d.name, arm.name, "dpo")}
        arms.append(row)
    sweeps = {arm: {g: interval([curve(r["sweeps"][arm])[g] for r in results]) for g in results[0]["sweeps"][arm]}
              for arm in SWEPT if arm in results[0]["sweeps"]}
    probe = {}
    for arm in cfg.arm_table:
        values = [unlearning(r, arm.name, cfg.band) for r in results]
        if all(values):
            probe[arm.name] = {k: interval([v[k] for v in values]) for k in values[0]}
    report = {"seeds": [r["seed"] for r in results], "primary_decoding": PRIMARY, "arms": arms, "sweeps": sweeps,
              "unlearning": probe, "checks": [checks(cfg, r) for r in results],
              "n_prompts": results[0]["evaluations"][PRIMARY]["start"]["n_prompts"],
              "data": {k: float(np.mean([r["data"][k] for r in results])) for k in
                       ("spearman_judge_vs_true", "hard_item_fraction", "tie_fraction", "mean_score_chosen",
                        "mean_score_rejected", "mean_true_reward_of_pool", "heldout_chosen_true_reward", "pairs")},
              "timings_s": [r["timings_s"] for r in results]}
    if not cfg.quick:
        report["claims"] = claims(cfg, results, probe)
    return report


def claims(cfg, results, probe, names: tuple[str, ...] = ()) -> list[dict]:
    """Every claim of `arms.CLAIMS` (or those named), its interval and its verdict."""
    out = []
    for claim in CLAIMS:
        if names and claim.name not in names:
            continue
        evaluated = results[0]["evaluations"][PRIMARY]
        if claim.kind == "paired":
            if claim.arm not in evaluated or claim.baseline not in evaluated:  # a run of a subset of the arms
                continue
            ci = {**paired(results, PRIMARY, claim.arm, claim.baseline)}
            ci["verdict"] = verdict(ci, claim.band)
        elif claim.kind == "unlearning":
            if claim.arm not in probe or claim.baseline not in probe:
                continue
            gaps = {arm: [(u["rejected_hq"], u["chosen_hq"]) for u in (unlearning(r, arm, cfg.band) for r in results)]
                    for arm in (claim.arm, claim.baseline)}
            ci = per_seed(c2_over_seeds(gaps[claim.arm], gaps[claim.baseline]))
        else:
            if claim.arm not in results[0]["sweeps"]:
                continue
            ci = per_seed(c4_over_seeds([r["sweeps"][claim.arm] for r in results]))
        out.append({"name": claim.name, "statement": claim.statement.format(band=cfg.band),
                    "difference": DIFFERENCES.get(claim.kind, f"{claim.arm} - {claim.baseline}"), "band": claim.band,
                    **ci})
    return out


DIFFERENCES = {"unlearning": "relabeled (rejected - chosen) - dpo (rejected - chosen), nats",
               "controllability": "Spearman rho of goal vs reward"}


def _ci(ci: dict, digits: int = 3, signed: bool = False) -> str:
    sign = "+" if signed else ""
    if ci["low"] is None:
        return f"{ci['mean']:{sign}.{digits}f}"
    return f"{ci['mean']:{sign}.{digits}f} [{ci['low']:{sign}.{digits}f}, {ci['high']:{sign}.{digits}f}]"


def _verdicts_md(cfg, report: dict) -> str:
    smoke = ("**SMOKE RUN (`--quick`): a tiny world and model that cannot learn the task. The numbers below only show "
             "that every stage ran; they mean nothing, and no verdict is drawn.**\n\n") if cfg.quick else ""
    if "claims" not in report:
        return smoke
    rows = [{"claim": c["name"], "statement": c["statement"], "paired difference [95% CI over seeds]":
             _ci(c, 3, True), "verdict": c["verdict"]} for c in report["claims"]]
    return smoke + "## Verdicts\n\n" + markdown_table(rows, list(rows[0])) + "\n\n" + (
        f"Paired over {len(report['seeds'])} evaluation seeds (each a new world, start and training run); per "
        f"seed, {report['n_prompts']} held-out prompts x 2 samples at {PRIMARY}, every arm on the same prompts "
        f"and sampling seeds. One rule for every claim, symmetric around 0: holds when the 95% t-interval lies "
        f"above +band, fails when it lies below -band or entirely within ±band (no effect worth the name), "
        f"otherwise inconclusive at this precision; band = {NEGLIGIBLE} true-reward points for the paired "
        f"claims, 0 for C2 and C4. {len(report['claims'])} intervals were read (no multiplicity correction).\n\n")


def _arm_rows(report: dict) -> list[dict]:
    rows = []
    for row in report["arms"]:
        p = row[PRIMARY]
        rows.append({"arm": row["label"], f"true reward {PRIMARY}": _ci(p), "minus start": _ci(p["minus_start"], 3, True),
                     "minus DPO": _ci(p["minus_dpo"], 3, True), "T1.0": f"{row['T1.0']['mean']:.3f}",
                     "greedy": f"{row['greedy']['mean']:.3f}",
                     "well-formed T1.0 / T0.7": f"{row['T1.0']['well_formed']:.2f} / {p['well_formed']:.2f}",
                     "length T1.0": f"{row['T1.0']['mean_length']:.2f}"})
    return rows


def _check_rows(report: dict) -> list[dict]:
    def reads(c):
        down = f"; down {', '.join(c['start_sweep_steps_down'])}" if c["start_sweep_steps_down"] else ""
        return f"{'yes' if c['start_reads_goals'] else 'NO'} (rho {c['start_sweep_spearman']:.2f}{down})"

    return [{"seed": c["seed"], "start reads goals (sweep monotone)": reads(c),
             "DPO - start": f"{c['dpo_minus_start']:+.3f}" + ("" if c["dpo_improves_on_start"] else " NO"),
             "greedy start vs chosen answers": f"{c['start_greedy']:.3f} vs {c['chosen_answers']:.3f}"
             + ("" if c["greedy_start_below_chosen"] else " NO")} for c in report["checks"]]


def _sweep_and_probe_rows(cfg, report: dict) -> tuple[list[dict], list[dict]]:
    goals = list(report["sweeps"]["relabeled@10"])
    sweep_rows = [{"arm": BY_NAME[a].label, **{f"{float(g):g}": f"{report['sweeps'][a][g]['mean']:.2f}" for g in goals}}
                  for a in SWEPT]
    probe_rows = [{"arm": BY_NAME[a].label, f"rejected judged >= {cfg.band:g}": _ci(v["rejected_hq"], 2, True),
                   f"chosen judged >= {cfg.band:g}": _ci(v["chosen_hq"], 2, True),
                   "rejected - chosen": _ci(v["difference"], 2, True)}
                  for a, v in report["unlearning"].items()]
    return sweep_rows, probe_rows


def markdown(cfg, report: dict, wall_seconds: float) -> str:
    verdicts, arm_rows, check_rows = _verdicts_md(cfg, report), _arm_rows(report), _check_rows(report)
    sweep_rows, probe_rows = _sweep_and_probe_rows(cfg, report)
    d = report["data"]
    minutes = sum(sum(t.values()) for t in report["timings_s"]) / 60
    full = "" if not report.get("full_run_wall_seconds") else \
        f"; the run that computed every seed took {report['full_run_wall_seconds'] / 60:.1f} min"
    return f"""# rapref demo: reward-augmented DPO in a synthetic sorting world

{verdicts}## Arms

{markdown_table(arm_rows, list(arm_rows[0]))}

True reward: longest common subsequence of answer and ideal over the longer (0-1). Means and 95% t-intervals over
seeds; "minus start" / "minus DPO" are the paired differences. T1.0 and greedy are the same prompts sampled at
temperature 1 and decoded greedily; well-formed = as many single letters as the prompt has.

## Checks, per seed

{markdown_table(check_rows, list(check_rows[0]))}

The start must read goals (its sweep rises with the goal: Spearman rho > 0 and no step down larger than two paired
standard errors and {MONOTONE_TOLERANCE}), plain DPO must improve on it, and the start's greedy answers must fall short of the chosen answers: otherwise preferences could
only sharpen the start and the world could not test the paper.

## Goal sweeps (controllability, C4)

Mean true reward per goal asked for, {cfg.sweep_prompts} held-out prompts, one sample at T 0.7, mean over seeds:

{markdown_table(sweep_rows, list(sweep_rows[0]))}

## Unlearning probe (C2)

Change in log p of held-out responses judged >= {cfg.band:g}, policy minus start, nats, with the start asked with the
same goal as the policy (goal-conditioned arms: the response's own judged score; the others: no goal). "Rejected -
chosen" is what a good answer loses for having been rejected, beyond the drift every good answer sees:

{markdown_table(probe_rows, list(probe_rows[0]))}

## The world

Judge vs true reward Spearman {d['spearman_judge_vs_true']:.2f}; hard items (a shared misconception applies)
{d['hard_item_fraction']:.0%}; {d['pairs']:.0f} training pairs, ties {d['tie_fraction']:.1%}; mean judged score chosen
{d['mean_score_chosen']:.2f}, rejected {d['mean_score_rejected']:.2f}; pool true reward
{d['mean_true_reward_of_pool']:.3f}, held-out chosen answers {d['heldout_chosen_true_reward']:.3f}. Judge noise
{cfg.world.judge_noise}, length bias {cfg.world.judge_length_bias}, shared-mistake rate {cfg.world.shared_mistake},
goal style `{cfg.goal_style}`, start goal fraction {cfg.start_goal_fraction}.

## Settings

Learning rates (chosen on validation seeds 101-102 by improvement over the start, answers well-formed; see
`rapref demo --select-hparams`): extra SFT epoch {cfg.extra_sft_lr}, DPO {cfg.dpo_lr}, relabeled family
{cfg.relabeled_lr}; beta {cfg.beta}, batch {cfg.batch_size}, one epoch; start: {cfg.sft_epochs:g} SFT epochs at
{cfg.sft_lr}, model hidden size {cfg.hidden_size}, {cfg.num_layers} layers. Stage time {minutes:.1f} min over all
seeds; this invocation {wall_seconds / 60:.1f} min wall ({cfg.workers} workers){full}.

{_dispatch_md(report)}

Reproduce: `rapref demo --out {cfg.out}{' --quick' if cfg.quick else ''}{_kernels_flag(cfg)}`
"""


def _kernels_flag(cfg) -> str:
    return "" if cfg.kernels == "pinned" else f" --kernels {cfg.kernels}"


def _dispatch_md(report: dict) -> str:
    record = report.get("dispatch")
    if not record:
        return ("CPU kernel dispatch: not recorded (made before rapref pinned it, at the native dispatch of the machine "
                "that made it); these numbers need not match what a fresh run gives.")
    if record.get("kernels") == "mixed":
        return "CPU kernel dispatch: not the same for every seed; these numbers need not match the published ones."
    return sentence(record)


def plots(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    def save(fig, name):
        save_figure(fig, out / name)

    seeds = len(report["seeds"])
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for arm, sweep in report["sweeps"].items():
        goals = sorted(sweep, key=float)
        means = [sweep[g]["mean"] for g in goals]
        low = [max(0.0, sweep[g]["low"]) if sweep[g]["low"] is not None else sweep[g]["mean"] for g in goals]
        high = [min(1.0, sweep[g]["high"]) if sweep[g]["high"] is not None else sweep[g]["mean"] for g in goals]
        x = [float(g) for g in goals]
        ax.plot(x, means, marker="o", label=BY_NAME[arm].label.replace("asked for 10", "asked for the goal"), lw=1.2)
        ax.fill_between(x, low, high, alpha=0.15)
    ax.set_ylim(0, 1)  # the true reward's range
    ax.set_xlabel("goal asked for (judge scale 1-10)")
    ax.set_ylabel("true reward, T 0.7 (0-1)")
    ax.set_title("goal sweeps: mean over seeds")
    ax.legend(fontsize=7, loc="lower right")
    fig.text(0.01, 0.01, f"shaded: 95% t-interval over {seeds} seeds, clipped to [0, 1]", fontsize=7)
    save(fig, "controllability.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharey=True)
    labels = [row["label"] for row in report["arms"]]
    for ax, key, title in ((axes[0], "minus_start", "arm - start"), (axes[1], "minus_dpo", "arm - DPO")):
        cis = [row[PRIMARY][key] for row in report["arms"]]
        y = np.arange(len(cis))[::-1]
        means = [c["mean"] for c in cis]
        err = [[c["mean"] - c["low"] if c["low"] is not None else 0 for c in cis],
               [c["high"] - c["mean"] if c["high"] is not None else 0 for c in cis]]
        ax.errorbar(means, y, xerr=err, fmt="o", capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(f"{title} ({PRIMARY})", fontsize=10)
        ax.set_xlabel("paired difference in true reward")
        ax.xaxis.set_major_locator(MaxNLocator(5))  # no overlapping tick labels
        ax.set_yticks(y, labels, fontsize=7)
    fig.text(0.01, 0.01, f"points: mean over {seeds} seeds of the per-seed paired difference (same prompts and sampling "
                         "seeds); bars: 95% t-interval over seeds", fontsize=7)
    save(fig, "differences.png")


def print_table(report: dict, quick: bool) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    # in a terminal, fit it; in a pipe or a file, print every table at its natural width (never wrapped into cells)
    console = Console() if sys.stdout.isatty() else Console(width=1000)
    if "claims" in report:
        table = Table(title=f"rapref demo: verdicts (paired over seeds {report['seeds']}, {PRIMARY})")
        for column in ("claim", "difference", "paired [95% CI]", "verdict"):
            table.add_column(column)
        for c in report["claims"]:
            table.add_row(c["name"], c["difference"], _ci(c, 3, True), c["verdict"])
        console.print(table)
    table = Table(title="true reward on held-out prompts" + (" (SMOKE RUN: meaningless)" if quick else ""))
    for column in ("arm", f"{PRIMARY} [CI]", "minus start", "minus DPO", "T1.0", "greedy", "well-formed T1.0"):
        table.add_column(column)
    for row in report["arms"]:
        p = row[PRIMARY]
        table.add_row(row["label"], _ci(p), _ci(p["minus_start"], 3, True), _ci(p["minus_dpo"], 3, True),
                      f"{row['T1.0']['mean']:.3f}", f"{row['greedy']['mean']:.3f}", f"{row['T1.0']['well_formed']:.2f}")
    console.print(table)
    for c in report["checks"]:
        console.print(f"seed {c['seed']}: start reads goals: {'yes' if c['start_reads_goals'] else 'NO'}; "
                      f"DPO - start {c['dpo_minus_start']:+.3f}; greedy start {c['start_greedy']:.3f} vs chosen "
                      f"answers {c['chosen_answers']:.3f}")


def seeds_dispatch(results: list[dict]) -> dict | None:
    """The kernel dispatch the seeds ran with (`rapref.dispatch.describe`), or a note where seeds differ in it."""
    records = [r.get("dispatch") for r in results]
    if not records[0] or any(r != records[0] for r in records):
        return {"kernels": "mixed", "per_seed": records}
    return records[0]


def write_report(cfg, results: list[dict], out: Path, wall_seconds: float) -> dict:
    from dataclasses import asdict

    report = build(cfg, results)
    timing = out / "timing.json"
    full_run = json.loads(timing.read_text()) if timing.is_file() else {}
    report.update(wall_seconds=wall_seconds, full_run_wall_seconds=full_run.get("full_run_wall_seconds"),
                  full_run_git_hash=full_run.get("git_hash"), config=asdict(cfg),
                  provenance=provenance(), smoke_run=cfg.quick, dispatch=seeds_dispatch(results))
    write_json_atomic(out / "report.json", report)
    write_text_atomic(out / "report.md", markdown(cfg, report, wall_seconds))
    plots(report, out)
    print_table(report, cfg.quick)
    minutes, seconds = divmod(round(wall_seconds), 60)
    print(f"rapref demo: {minutes} min {seconds} s on {cfg.workers} worker(s); report in {out / 'report.md'}")
    return report


__all__ = ["write_report", "build"]
