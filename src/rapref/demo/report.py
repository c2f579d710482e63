"""Aggregate the demo's seeds into `report.json`, `report.md`, PNG plots and a printed table; judge claims C1-C4.

Uncertainty: each seed is a whole new world, start model and training run, and seeds differ far more than prompts
within a seed, so every verdict uses a 95% t-interval over evaluation seeds (of the per-seed win rate, difference
or correlation). The pooled win rate over all paired per-prompt comparisons (ties count one half) is shown as a
description, with its within-seed 95% interval. A claim "holds" when its seed interval clears the no-effect line,
"is reversed" when it clears it the other way, and is "inconclusive" otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rapref.evaluate.diagnose import markdown_table
from rapref.evaluate.judge import win_rate
from rapref.io import atomic_path, write_json_atomic
from rapref.stats import t_interval

ARM_LABELS = {
    "sft": "SFT start (no goal)",
    "dpo": "DPO, original pairs",
    "dpo-dup": "DPO, original pairs x2 (same steps)",
    "relabeled": "DPO, relabeled, goal = 10",
    "half-relabeled": "DPO, half relabeled, goal = 10",
    "goal-sft": "goal-conditioned SFT, goal = 10",
}


def seed_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval over seeds (`rapref.stats.t_interval`); NaN bounds for one seed."""
    mean, low, high = t_interval(values)
    return mean, (float("nan") if low is None else low), (float("nan") if high is None else high)


def paired_win_rate(results: list[dict], arm: str, baseline: str) -> dict:
    """Pooled win rate over all seeds' paired prompts, plus the per-seed win rates and their t-interval."""
    pooled, per_seed = [], []
    for seed in results:
        mine = {k.split("@")[0]: v for k, v in seed["rewards"][arm]["per_prompt"].items()}
        theirs = {k.split("@")[0]: v for k, v in seed["rewards"][baseline]["per_prompt"].items()}
        pairs = [(mine[pid], theirs[pid]) for pid in sorted(mine.keys() & theirs.keys())]
        per_seed.append(win_rate([x for x, _ in pairs], [y for _, y in pairs])["win_rate"])
        pooled += pairs
    outcome = win_rate([x for x, _ in pooled], [y for _, y in pooled])
    outcome["per_seed"] = per_seed
    _, low, high = seed_interval(per_seed)
    outcome["low"], outcome["high"] = max(low, 0.0), min(high, 1.0)  # a win rate lies in [0, 1]
    return outcome


def verdict(low: float, high: float, null: float) -> str:
    if np.isnan(low):
        return "inconclusive (one seed)"
    if low > null:
        return "holds"
    if high < null:
        return "reversed"
    return "inconclusive"


def probe_value(seed: dict, arm: str, condition: str, response: str = "rejected", high: bool = True):
    for row in seed["probe"]["rows"]:
        if (row["policy"], row["condition"], row["response"]) == (arm, condition, response) and \
                row["band"].startswith(">=") == high:
            return row["mean_delta_logp"]
    return None


def build(cfg, results: list[dict]) -> dict:
    arms = list(ARM_LABELS)
    table = []
    for arm in arms:
        mean, low, high = seed_interval([r["rewards"][arm]["mean"] for r in results])
        row = {"arm": arm, "label": ARM_LABELS[arm], "true_reward": mean, "ci_low": low, "ci_high": high,
               "n_per_seed": results[0]["rewards"][arm]["n"]}
        if arm != "dpo":
            row["win_rate_vs_dpo"] = paired_win_rate(results, arm, "dpo")
        for condition in ("none", "own"):
            values = [probe_value(r, arm, condition) for r in results]
            if arm != "sft" and all(v is not None for v in values):
                row[f"dlogp_high_rejected_{condition}"] = seed_interval(values)
        table.append(row)
    sweep_curve = _curve(results, "sweep")
    rhos = [_spearman(r["sweep"]) for r in results]
    rho, rho_low, rho_high = seed_interval(rhos)
    by_arm = {row["arm"]: row for row in table}
    c2_diffs = [probe_value(r, "relabeled", "own") - probe_value(r, "dpo", "none") for r in results]
    c2 = seed_interval(c2_diffs)
    claims = {
        "C1": {"statement": "asked for the top score, DPO on relabeled data beats DPO on the original pairs",
               "win_rate": by_arm["relabeled"]["win_rate_vs_dpo"],
               "verdict": verdict(by_arm["relabeled"]["win_rate_vs_dpo"]["low"],
                                  by_arm["relabeled"]["win_rate_vs_dpo"]["high"], 0.5)},
        "C2": {"statement": "held-out high-quality rejected responses (judged >= %g) lose less log-probability "
                            "than under DPO (relabeled policy asked with the response's own score)" % cfg.band,
               "difference_in_dlogp": {"mean": c2[0], "low": c2[1], "high": c2[2]},
               "verdict": verdict(c2[1], c2[2], 0.0)},
        "C3": {"statement": "it beats DPO with as many gradient steps (duplicated data); half-relabeled beats DPO",
               "relabeled_vs_dpo_dup": paired_win_rate(results, "relabeled", "dpo-dup"),
               "half_vs_dpo": by_arm["half-relabeled"]["win_rate_vs_dpo"]},
        "C4": {"statement": "achieved true reward rises with the goal given at inference",
               "spearman_rho": {"mean": rho, "low": rho_low, "high": rho_high, "per_seed": rhos},
               "curve": sweep_curve, "verdict": verdict(rho_low, rho_high, 0.0)},
    }
    c3a, c3b = claims["C3"]["relabeled_vs_dpo_dup"], claims["C3"]["half_vs_dpo"]
    claims["C3"]["verdict"] = (f"vs duplicated: {verdict(c3a['low'], c3a['high'], 0.5)}; "
                               f"half vs DPO: {verdict(c3b['low'], c3b['high'], 0.5)}")
    data = {k: float(np.mean([r["data"][k] for r in results])) for k in
            ("spearman_judge_vs_true", "tie_fraction", "rejected_high_quality_fraction", "mean_score_chosen",
             "mean_score_rejected", "mean_gap", "mean_true_reward_of_pool", "pairs")}
    start_curve = _curve(results, "sft_sweep") if results[0].get("sft_sweep") else None
    start_rho = float(np.mean([_spearman(r["sft_sweep"]) for r in results])) if start_curve else None
    return {"table": table, "claims": claims, "data": data, "start_sweep_curve": start_curve,
            "start_spearman_rho": start_rho,
            "seeds": [r["seed"] for r in results], "timings_s": [r["timings_s"] for r in results]}


def _curve(results, key):
    goals = sorted({float(k.split("@")[1]) for k in results[0][key]["per_prompt"]})
    curve = []
    for goal in goals:
        per_seed = [float(np.mean([v for k, v in r[key]["per_prompt"].items() if float(k.split("@")[1]) == goal]))
                    for r in results]
        mean, low, high = seed_interval(per_seed)
        curve.append({"goal": goal, "mean": mean, "low": low, "high": high})
    return curve


def _spearman(sweep: dict) -> float:
    from scipy.stats import spearmanr

    items = [(float(k.split("@")[1]), v) for k, v in sweep["per_prompt"].items()]
    rho, _ = spearmanr([g for g, _ in items], [v for _, v in items])
    return float(rho)


def _fmt_ci(mean, low, high, digits=3):
    if np.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _bracket(low, high) -> str:
    return "" if np.isnan(low) else f"[{low:.2f}, {high:.2f}]"


def reading(report: dict) -> str:
    """Plain sentences on what the table says, including what does not favour the method."""
    rows = {r["arm"]: r for r in report["table"]}
    best = max(report["table"], key=lambda r: r["true_reward"])
    below = [r["label"] for r in report["table"] if r["arm"] != "sft"
             and r["true_reward"] < rows["sft"]["true_reward"]]
    text = f"Highest mean true reward: {best['label']} ({best['true_reward']:.3f})."
    if below:
        text += f" Below the SFT start ({rows['sft']['true_reward']:.3f}): {', '.join(below)}."
    return text


def markdown(cfg, report: dict, wall_seconds: float) -> str:
    rows = []
    for row in report["table"]:
        wr = row.get("win_rate_vs_dpo")
        none, own = row.get("dlogp_high_rejected_none"), row.get("dlogp_high_rejected_own")
        rows.append({"arm": row["label"], "true reward (95% CI over seeds)":
                     _fmt_ci(row["true_reward"], row["ci_low"], row["ci_high"]),
                     "win rate vs DPO: pooled [seed 95% CI]": "-" if wr is None else
                     f"{wr['win_rate']:.3f} {_bracket(wr['low'], wr['high'])}",
                     "Δ log p, high-quality rejected, no goal": "-" if none is None else _fmt_ci(*none, 2),
                     "… asked with its own score": "-" if own is None else _fmt_ci(*own, 2)})
    columns = list(rows[0])
    claims = "\n".join(f"- **{name}** ({c['statement']}): **{c['verdict']}**" for name, c in report["claims"].items())
    c4 = report["claims"]["C4"]
    curve = " · ".join(f"{p['goal']:g}: {p['mean']:.2f}" for p in c4["curve"])
    start = report.get("start_sweep_curve")
    start_line = ("" if not start else "\nThe SFT start, before any preference training, asked for each goal: "
                  + " · ".join(f"{p['goal']:g}: {p['mean']:.2f}" for p in start) + ".\n")
    d = report["data"]
    start_rho = report.get("start_spearman_rho")
    start_reads = ("" if start_rho is None else
                   f"On these evaluation seeds the start's goal-vs-reward Spearman rho is {start_rho:.2f}"
                   + (" (it reads goals)." if start_rho >= 0.3 else
                      " (below 0.3: here the start does not reliably read goals, so the paper's premise is weak)."))
    return f"""# rapref demo: reward-augmented DPO in a synthetic sorting world

Evaluation seeds {report['seeds']}; {report['table'][0]['n_per_seed']} held-out prompts per seed; the stages took
{sum(sum(t.values()) for t in report['timings_s']) / 60:.1f} min (this invocation: {wall_seconds / 60:.1f} min; finished
stages are reused). True reward is the fraction of letters in the right place (0-1), measured on sampled
answers (temperature {cfg.temperature}).

{markdown_table(rows, columns)}

{reading(report)}

Δ log p: change in the log-probability of held-out rejected responses judged >= {cfg.band:g}, relative to the SFT
start (more negative = more unlearning). Win rates pool the paired per-prompt comparisons of all seeds (ties = 1/2);
the bracket is the 95% t-interval of the per-seed win rates, which the verdicts use: seeds differ far more than
prompts do.

## Claims
{claims}

Controllability (C4), relabeled policy, mean true reward per goal: {curve}
(Spearman's rho {_fmt_ci(c4['spearman_rho']['mean'], c4['spearman_rho']['low'], c4['spearman_rho']['high'])}).
{start_line}
## The world and why it is the default
Goal style `{cfg.goal_style}`, start model fine-tuned with the judge's score as goal on
{cfg.start_goal_fraction:.0%} of its examples, judge noise {cfg.world.judge_noise} points. The paper's instruct models
read "Overall score: 10" as language and know 10 > 9; the default was chosen on validation seed 101 as the smallest
goal fraction whose start reads goals (Spearman rho >= 0.3 between goal and true reward) while still answering
without one (`rapref demo --select-world`, docs/demo-world-selection.json), not by which arm wins. {start_reads}
Change `--goal-style` (opaque, thermometer) and `--start-goal-fraction` to see where the effect appears or vanishes.

Data (means over seeds): {d['pairs']:.0f} pairs; judge vs true reward Spearman {d['spearman_judge_vs_true']:.2f};
ties {d['tie_fraction']:.1%}; rejected judged >= 5: {d['rejected_high_quality_fraction']:.1%}; mean judged score
chosen {d['mean_score_chosen']:.2f}, rejected {d['mean_score_rejected']:.2f} (gap {d['mean_gap']:.2f}).

## Settings
beta {cfg.beta}, DPO learning rate {cfg.dpo_lr}, {cfg.dpo_epochs:g} epoch(s), batch {cfg.batch_size}; SFT
{cfg.sft_epochs:g} epochs at {cfg.sft_lr}; model hidden size {cfg.hidden_size}, {cfg.num_layers} layers. All arms share
these; they were fixed on validation seeds 101-102 by the DPO baseline's validation reward (see README), never on
the evaluation seeds.

Reproduce: `rapref demo --out {cfg.out}`{' --quick' if cfg.quick else ''}
"""


def plots(report: dict, results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig, name):
        with atomic_path(out / name) as tmp:
            fig.tight_layout()
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key, label in (("C4", "relabeled DPO"), ("start", "SFT start")):
        curve = report["claims"]["C4"]["curve"] if key == "C4" else report.get("start_sweep_curve")
        if curve:
            ax.plot([p["goal"] for p in curve], [p["mean"] for p in curve], marker="o", label=label)
    dpo = next(r for r in report["table"] if r["arm"] == "dpo")["true_reward"]
    ax.axhline(dpo, ls="--", color="gray", label="DPO (no goal)")
    ax.set_xlabel("goal given at inference")
    ax.set_ylabel("true reward")
    ax.set_title("controllability")
    ax.legend(fontsize=8)
    save(fig, "controllability.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels, values = [], []
    for row in report["table"]:
        for condition in ("none", "own"):
            value = row.get(f"dlogp_high_rejected_{condition}")
            if value:
                labels.append(f"{row['arm']}\n{condition}")
                values.append(value)
    ax.bar(range(len(values)), [v[0] for v in values],
           yerr=[[v[0] - v[1] if not np.isnan(v[1]) else 0 for v in values],
                 [v[2] - v[0] if not np.isnan(v[2]) else 0 for v in values]], capsize=3)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(values)), labels, fontsize=7)
    ax.set_ylabel("Δ log p vs SFT start")
    ax.set_title("held-out high-quality rejected responses")
    save(fig, "unlearning.png")

    fig, ax = plt.subplots(figsize=(7, 3.5))
    arms = list(ARM_LABELS)
    data = [[v for r in results for v in r["rewards"][arm]["per_prompt"].values()] for arm in arms]
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(arms) + 1), arms, fontsize=8)
    ax.set_ylabel("true reward per prompt")
    ax.set_title("reward distributions per arm")
    save(fig, "rewards.png")


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="rapref demo: true reward on held-out prompts")
    for column in ("arm", "true reward [95% CI over seeds]", "win rate vs DPO [seed CI]"):
        table.add_column(column)
    for row in report["table"]:
        wr = row.get("win_rate_vs_dpo")
        table.add_row(row["label"], _fmt_ci(row["true_reward"], row["ci_low"], row["ci_high"]),
                      "-" if wr is None else f"{wr['win_rate']:.3f} {_bracket(wr['low'], wr['high'])}")
    console = Console()
    console.print(table)
    console.print(reading(report))
    for name, claim in report["claims"].items():
        console.print(f"{name}: {claim['verdict']}  ({claim['statement']})")


def write_report(cfg, results: list[dict], out: Path, wall_seconds: float) -> dict:
    from dataclasses import asdict

    from rapref.provenance import provenance

    report = build(cfg, results)
    report["wall_seconds"] = wall_seconds
    report["config"] = asdict(cfg)
    report["provenance"] = provenance()
    write_json_atomic(out / "report.json", report)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(markdown(cfg, report, wall_seconds))
    plots(report, results, out)
    print_table(report)
    return report


__all__ = ["write_report", "build"]
