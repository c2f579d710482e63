"""Tables printed at the end of a stage (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from rapref.goals import format_score
from rapref.progress import quiet

console = Console(stderr=False)


def format_scale(scale) -> str:
    lo, hi = (format_score(s) for s in scale)
    return f"{lo} to {hi}" if min(scale) < 0 else f"{lo}-{hi}"


def print_augment_summary(summary: dict, out: str) -> None:
    table = Table(title=f"rapref augment -> {out}", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("schema", summary["schema"])
    table.add_row("rows in", str(summary["rows_in"]))
    table.add_row("rows kept", str(summary["rows_kept"]))
    for reason, count in summary["dropped_by_reason"].items():
        table.add_row(f"  dropped: {reason.replace('_', ' ')}", str(count))
    checks = summary.get("pair_checks") or {}
    if checks:
        rule = {"swap": "swapped", "drop": "dropped", "keep": "kept as given"}[checks["inverted_rule"]]
        table.add_row(f"inverted pairs (chosen scored lower): {rule}", str(checks["inverted"]))
        table.add_row(f"ties (equal scores, train): {'kept' if checks['ties_rule'] == 'keep' else 'dropped'}",
                      str(checks["ties"]))
    else:
        table.add_row("ties (equal scores)", str(summary["relabel"]["ties"]))
    mapping = summary.get("score_mapping")
    if mapping and mapping.get("method") != "none":
        raw = mapping.get("raw_range")
        table.add_row(f"score mapping: {mapping['method']} onto {format_scale(mapping['scale'])}"
                      + (f" (scores {raw[0]:g} to {raw[1]:g}; train scores it was fitted on)" if raw else ""),
                      str(mapping.get("fitted_on", "")))
    for reason, count in summary["relabel"]["dropped"].items():
        table.add_row(f"  pairs not relabeled: {reason.replace('_', ' ')}", str(count))
    for split, rows in summary["rows_out"].items():
        table.add_row(f"rows out: {split}", str(rows))
    console.print(table)

    if quiet():  # --quiet: the table (the result) only
        return
    for note in summary.get("notes", []):
        console.print(f"[dim]note: {note}[/dim]")
