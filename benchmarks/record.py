"""One JSON per benchmark run: its command, the machine, package versions, commit and results.

Every published performance table is generated from these files (`python scripts/readme_results.py`), and a test
checks that the pages match them, so a figure cannot drift from its source.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict:
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory = None
    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "memory_gib": None if memory is None else round(memory, 1), "system": platform.system()}


def write_record(path: str | Path, benchmark: str, results, **extra) -> Path:
    """Write `results` with the command that made them, the machine, the package versions and the commit."""
    sys.path.insert(0, str(ROOT / "src"))
    from rapref.provenance import provenance

    script = Path(sys.argv[0]).resolve()
    argv = [script.relative_to(ROOT).as_posix() if script.is_relative_to(ROOT) else sys.argv[0], *sys.argv[1:]]
    record = {"benchmark": benchmark, "command": "python " + shlex.join(argv), "machine": machine(), **provenance(),
              **extra, "results": results}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
