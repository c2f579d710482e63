"""The grid's report: per cell the demo's claims (paired over that cell's seeds, the demo's verdict rule), the cell's
world checks beside them, one figure (cells x claims) and a "where it helps" paragraph generated from the verdicts.

    python -m rapref.studies.demo.grid_report docs/demo-grid   # re-render report.md and the figure from report.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from rapref.io import write_json_atomic
from rapref.provenance import git_hash, provenance
from rapref.reports import markdown_table, save_figure, write_text_atomic
from rapref.studies.demo.arms import BY_NAME, NEGLIGIBLE, PRIMARY
from rapref.studies.demo.report import _ci as _interval
from rapref.studies.demo.report import _dispatch_md, build, seeds_dispatch


def _short(verdict: str) -> str:
    """holds | fails | inconclusive (the verdict's family; `_label` keeps the kind of failure)."""
    return verdict.split(" (")[0].replace(" at this precision", "")


def _label(verdict: str) -> str:
    """A verdict in a table cell: "fails (reversed)" and "fails (no effect)" told apart."""
    if verdict.startswith("fails (no effect"):
        return "fails (no effect)"
    return verdict if verdict.startswith("fails") else _short(verdict)


def cell_report(cfg, overrides: dict, results: list[dict], names: list[str]) -> dict:
    """One cell: its claims (those named, in the grid's order), world checks and data, from the demo's `build`."""
    full = build(cfg, results)
    claims = {c["name"]: c for c in full.get("claims", [])}
    checks = full["checks"]
    trained_to_read = cfg.start_goal_fraction > 0
    reads = sum(c["start_reads_goals"] for c in checks)
    improves = sum(c["dpo_improves_on_start"] for c in checks)
    failed = []
    if trained_to_read and reads < len(checks):
        failed.append(f"the start reads goals in only {reads}/{len(checks)} seeds")
    if improves < len(checks):
        failed.append(f"DPO improves on the start in only {improves}/{len(checks)} seeds")
    return {"settings": overrides, "seeds": full["seeds"],
            "claims": [claims[n] for n in names if n in claims],
            "checks": {"start_trained_to_read_goals": trained_to_read, "start_reads_goals": reads,
                       "dpo_improves_on_start": improves, "seeds": len(checks), "failed": failed},
            "arms": {row["arm"]: {k: row[PRIMARY][k] for k in ("mean", "low", "high", "well_formed")}
                     for row in full["arms"]},
            "data": full["data"] | {"rejected_judged_at_least_band": float(np.mean(
                [r["data"].get("rejected_judged_at_least_band", float("nan")) for r in results]))},
            "timings_s": sum(sum(t.values()) for t in full["timings_s"])}


def where_it_helps(report: dict) -> str:
    """The finding, generated from the verdicts: per claim, the cells where it holds, fails or is undecided."""
    cells = report["cells"]
    lines = []
    for name in report["claims"]:
        by = {"holds": [], "fails (reversed)": [], "fails (no effect)": [], "inconclusive": []}
        widths = []
        for cell, c in cells.items():
            claim = next((x for x in c["claims"] if x["name"] == name), None)
            if claim is None:
                continue
            by[_label(claim["verdict"])].append(cell)
            if claim["low"] is not None:
                widths.append((claim["high"] - claim["low"]) / 2)
        statement = next(x["statement"] for c in cells.values() for x in c["claims"] if x["name"] == name)
        parts = [f"{words} {_cells(by[key])}" for key, words in (
            ("holds", "holds in"), ("fails (reversed)", "is reversed in"),
            ("fails (no effect)", "shows no effect beyond the band in"), ("inconclusive", "is inconclusive in"))
            if by[key]]
        precision = f" (95% intervals ±{min(widths):.3f} to ±{max(widths):.3f})" if widths else ""
        lines.append(f"- **{name}** ({statement}): {'; '.join(parts)}{precision}.")
    c1 = [cell for cell, c in cells.items() for x in c["claims"] if x["name"] == "C1" and x["verdict"] == "holds"]
    reversed_c1 = [f"`{cell}` (relabeled DPO asked for 10 answers well-formed {c['arms']['relabeled@10']['well_formed']:.0%}"
                   f" of the time, DPO {c['arms']['dpo']['well_formed']:.0%})" for cell, c in cells.items()
                   for x in c["claims"] if x["name"] == "C1" and x["verdict"] == "fails (reversed)"]
    flagged = [cell for cell, c in cells.items() if c["checks"]["failed"]]
    head = (f"Relabeled DPO asked for 10 beats DPO (C1) in {_cells(c1)} of {len(cells)} cells." if c1 else
            f"C1 holds in none of the {len(cells)} cells: no regime of this grid shows relabeled DPO asked for 10 "
            "beating DPO on the true reward at the precision reached.")
    flags = (f" Cells where a world check fails on some seed (the start's goal sweep rises without a step down beyond "
             f"noise where it was trained to read goals; DPO beats the start), so that their verdicts test less: "
             f"{_cells(flagged)}." if flagged else " Every cell passes its world checks on every seed.")
    if reversed_c1:
        head += f" It is reversed in {', '.join(reversed_c1)}."
    return head + flags + "\n\n" + "\n".join(lines)


def _cells(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names) if names else "no cell"


def markdown(report: dict) -> str:
    cells = report["cells"]
    rows = []
    for cell, c in cells.items():
        row = {"cell": f"`{cell}`"}
        for claim in c["claims"]:
            row[claim["name"]] = f"{_interval(claim, 3, True)} {_label(claim['verdict'])}"
        checks = c["checks"]
        row["world checks"] = "; ".join(checks["failed"]) if checks["failed"] else "pass"
        rows.append(row)
    settings = [{"cell": f"`{cell}`", "settings (over the demo's)": ", ".join(f"{k}={v}" for k, v in
                                                                             c["settings"].items()) or "the demo's",
                 "pairs": f"{c['data']['pairs']:.0f}",
                 "rejected judged >= 8": f"{c['data']['rejected_judged_at_least_band']:.0%}",
                 "judge vs true (Spearman)": f"{c['data']['spearman_judge_vs_true']:.2f}",
                 "DPO": f"{c['arms']['dpo']['mean']:.3f}",
                 "relabeled@10 (well-formed)": f"{c['arms']['relabeled@10']['mean']:.3f} "
                                               f"({c['arms']['relabeled@10']['well_formed']:.2f})",
                 "start reads goals": (f"{c['checks']['start_reads_goals']}/{c['checks']['seeds']}"
                                       + ("" if c["checks"]["start_trained_to_read_goals"] else " (not trained to)")),
                 "DPO > start": f"{c['checks']['dpo_improves_on_start']}/{c['checks']['seeds']}"}
                for cell, c in cells.items()]
    p = report["provenance"]
    versions = ", ".join([f"Python {p['python']}"] + [f"{k} {v}" for k, v in p["packages"].items()])
    minutes = report["full_run_wall_seconds"] / 60 if report.get("full_run_wall_seconds") else None
    return f"""# Where does reward augmentation help? The demo's claims over a grid of regimes

{report['description'].strip()}

## Where it helps

{where_it_helps(report)}

## Verdicts per cell

Paired difference [95% t-interval over the cell's {len(report['seeds'])} evaluation seeds] and verdict, at {PRIMARY},
by the demo's rule (band {NEGLIGIBLE} true-reward points for the paired claims, 0 for C2 and C4):

{markdown_table(rows, list(rows[0]))}

![claims per cell](grid.png)

## The cells

{markdown_table(settings, list(settings[0]))}

Learning rates are the demo's, chosen on validation seeds 101-102 at one epoch (`docs/demo-hparam-selection.json`),
in every cell (none re-chosen); evaluation seeds {', '.join(map(str, report['seeds']))}. No cell was dropped.

{_dispatch_md(report)}

Reproduce: `rapref demo --grid {report['grid_file']} --out runs/grid`{f" ({minutes:.0f} min with {report['workers']} workers on a 2-core CPU machine)" if minutes else ""}.
Commit `{str(p.get('git_hash'))[:10]}`; {versions}.
"""


def plot(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(report["cells"])
    names = report["claims"]
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 0.45 * len(cells) + 1.6), sharey=True)
    colors = {"holds": "tab:green", "fails": "tab:red", "inconclusive": "tab:gray"}
    y = np.arange(len(cells))[::-1]
    for ax, name in zip(np.atleast_1d(axes), names):
        for yi, cell in zip(y, cells):
            claim = next((c for c in report["cells"][cell]["claims"] if c["name"] == name), None)
            if claim is None:
                continue
            low, high = claim["low"], claim["high"]
            err = [[claim["mean"] - low], [high - claim["mean"]]] if low is not None else None
            ax.errorbar([claim["mean"]], [yi], xerr=err, fmt="o", capsize=3,
                        color=colors[_short(claim["verdict"])])
        band = next(c["band"] for cell in cells for c in report["cells"][cell]["claims"] if c["name"] == name)
        ax.axvline(0, color="black", lw=0.8)
        if band:
            ax.axvspan(-band, band, color="gray", alpha=0.15)
        ax.set_title(name, fontsize=10)
        ax.tick_params(axis="x", labelsize=7)
    np.atleast_1d(axes)[0].set_yticks(y, cells, fontsize=8)
    fig.text(0.01, 0.01, f"mean over seeds, 95% t-interval; green holds, red fails, gray inconclusive; shaded: "
                         f"±{NEGLIGIBLE} (paired claims); C2 in nats, C4 Spearman rho", fontsize=7)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    save_figure(fig, out / "grid.png")


def write_report(grid: dict, configs: dict, per_cell: dict, out: Path, wall: float, grid_file: str) -> dict:
    quick = any(cfg.quick for cfg in configs.values())
    names = grid["claims"] or [c["name"] for c in build(next(iter(configs.values())),
                                                         next(iter(per_cell.values()))).get("claims", [])]
    timing = out / "timing.json"
    if not timing.is_file():  # the first invocation computed every cell
        write_json_atomic(timing, {"full_run_wall_seconds": wall, "git_hash": git_hash()})
    report = {"grid_file": str(grid_file), "description": grid.get("description", ""), "seeds": grid["seeds"],
              "claims": names, "smoke_run": quick, "workers": next(iter(configs.values())).workers,
              "cells": {name: cell_report(configs[name], grid["cells"][name], per_cell[name], names)
                        for name in configs},
              "wall_seconds": wall, "full_run_wall_seconds": json.loads(timing.read_text())["full_run_wall_seconds"],
              "provenance": provenance(), "dispatch": seeds_dispatch([r for rs in per_cell.values() for r in rs])}
    write_json_atomic(out / "report.json", report)
    render(report, out)
    return report


def render(report: dict, out: Path) -> None:
    if report["smoke_run"]:
        text = ("# Grid smoke run (--quick)\n\nOne tiny cell on a world and model that cannot learn the task: every "
                "stage ran; the numbers mean nothing and no verdict is drawn.\n")
    else:
        text = markdown(report)
        plot(report, out)
    write_text_atomic(out / "report.md", text)
    print(text if not report["smoke_run"] else text.splitlines()[-1])


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/demo-grid")
    render(json.loads((folder / "report.json").read_text()), folder)
