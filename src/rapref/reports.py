"""Report utilities shared by every report rapref writes (the studies and `rapref diagnose`): markdown tables and
figures saved atomically."""

from __future__ import annotations

from pathlib import Path

from rapref.io import atomic_path


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """A GitHub markdown table; floats with 3 decimals, None as "-".

    >>> print(markdown_table([{"arm": "dpo", "mean": 0.5, "stderr": None}], ["arm", "mean", "stderr"]))
    | arm | mean | stderr |
    |---|---|---|
    | dpo | 0.500 | - |
    """
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else "-" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def save_figure(fig, path: Path, caption_room: float = 0.05, dpi: int = 120) -> None:
    """Save a matplotlib figure as PNG atomically (room left at the bottom for a caption) and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.tight_layout(rect=(0, caption_room, 1, 1))
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
