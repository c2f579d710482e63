"""Provenance stamped on every artefact: rapref version, rapref's own commit, package versions, time."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("rapref", "pyarrow", "datasets", "torch", "transformers", "trl", "peft", "accelerate", "tokenizers")
# Where a copy of rapref's tree travels without its git history (a lent GPU machine: the tree is copied into another
# repository there), the commit it was copied from is passed in this variable.
COMMIT_ENV = "RAPREF_COMMIT"
UNKNOWN = "unknown"


def _is_rapref_root(root: Path) -> bool:
    """True when `root` holds rapref's own pyproject (project name "rapref")."""
    try:
        import tomllib

        return tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"] == "rapref"
    except (OSError, ValueError, KeyError, TypeError, ImportError):
        return False


def git_hash(start: Path | None = None) -> str:
    """rapref's own commit: $RAPREF_COMMIT when set, else HEAD of the git repository enclosing this file when that
    repository's root is rapref's (its pyproject names rapref), else "unknown". A tree copied into some other
    repository records "unknown", never that repository's commit."""
    given = os.environ.get(COMMIT_ENV, "").strip()
    if given:
        return given
    start = start or Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=start, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2 or not _is_rapref_root(Path(lines[0])):
        return UNKNOWN
    return lines[1]


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance() -> dict:
    return {
        "git_hash": git_hash(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
