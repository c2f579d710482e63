"""Tables printed at the end of a stage (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console(stderr=False)


def print_augment_summary(summary: dict, out: str) -> None:
    table = Table(title=f"rapref augment -> {out}", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("schema", summary["schema"])
    table.add_row("rows in", str(summary["rows_in"]))
    table.add_row("rows kept", str(summary["rows_kept"]))
    for reason, count in summary["dropped_by_reason"].items():
        table.add_row(f"  dropped: {reason.replace('_', ' ')}", str(count))
    table.add_row("ties (equal scores)", str(summary["relabel"]["ties"]))
    for reason, count in summary["relabel"]["dropped"].items():
        table.add_row(f"  pairs not relabeled: {reason.replace('_', ' ')}", str(count))
    for split, rows in summary["rows_out"].items():
        table.add_row(f"rows out: {split}", str(rows))
    console.print(table)
    for note in summary.get("notes", []):
        console.print(f"[dim]note: {note}[/dim]")
