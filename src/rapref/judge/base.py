"""What every scorer of `rapref judge` is: `score(rows, texts) -> list[float]` plus an `id` (its name, shown in
outputs), a `fingerprint` of what computes its scores (keys the judge's cache, so a scorer changed in place is never
answered from the cache) and the `row_fields` it reads besides the text (None: every field of the row but rapref's own
bookkeeping). The registry that names them is `rapref.judge.scorers`."""

from __future__ import annotations

import hashlib
from pathlib import Path


class Scorer:
    id: str = "scorer"
    fingerprint: str = ""  # what computes the scores; set by every scorer
    row_fields: tuple[str, ...] | None = None  # the row fields the score depends on (None: all but bookkeeping)

    def score(self, rows: list[dict], texts: list[str]) -> list[float]:
        raise NotImplementedError


def source_fingerprint(*parts: str) -> str:
    """A short hash of source files (by path) and version strings."""
    digest = hashlib.sha256()
    for part in parts:
        path = Path(part)
        digest.update(path.read_bytes() if path.is_file() else part.encode())
    return digest.hexdigest()[:16]
