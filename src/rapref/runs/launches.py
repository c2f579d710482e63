"""Reuse with changed settings is refused, never mixed; every launch is recorded.

A command that reuses or continues the work in a run folder (`train --resume`, `onpolicy`, `experiment`, `demo`)
saves the settings that define that work with its first launch. A later launch into the same folder calls
`check_settings`: a setting that would change what a finished (or half-finished) stage computed stops it with one
line saying how to start over or branch; settings that change no result (workers, threads, logging) may differ.
`record_launch` appends every launch (settings, git commit, package versions, time) to `launches.jsonl`, so the
provenance of a folder that several launches worked on is complete, not just the last.

    >>> flatten({"a": {"b": 1, "c": [2]}, "d": 3})
    {'a.b': 1, 'a.c': [2], 'd': 3}
    >>> changed({"a.b": 1, "workers": 2}, {"a.b": 5, "workers": 1}, free=("workers",))
    ['a.b']
"""

from __future__ import annotations

import json
from pathlib import Path

from rapref.io import InputError, read_jsonl_prefix
from rapref.provenance import provenance

LAUNCHES = "launches.jsonl"


def flatten(settings: dict, prefix: str = "") -> dict:
    """Nested mappings as one level of dotted keys (lists and other values kept as they are)."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed(before: dict, now: dict, free: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ, leaving out `free` keys (a free key also frees every key under it)."""
    def is_free(key: str) -> bool:
        return any(key == f or key.startswith(f"{f}.") for f in free)

    before, now = flatten(_plain(before)), flatten(_plain(now))
    return sorted(k for k in set(before) | set(now) if not is_free(k) and before.get(k) != now.get(k))


def _plain(value):
    """JSON's view of a value (tuples as lists, paths as text), so saved and live settings compare alike."""
    return json.loads(json.dumps(value, default=str))


def launches(folder: str | Path) -> list[dict]:
    path = Path(folder) / LAUNCHES
    if not path.is_file():
        return []

    return read_jsonl_prefix(path)


def check_settings(folder: str | Path, settings: dict, free: tuple[str, ...], what: str, remedy: str) -> None:
    """Refuse a launch whose defining settings differ from the first launch recorded in `folder`."""
    earlier = launches(folder)
    if not earlier:
        return
    diff = changed(earlier[0]["settings"], settings, free)
    if diff:
        first = flatten(_plain(earlier[0]["settings"]))
        now = flatten(_plain(settings))
        shown = ", ".join(f"{k} {first.get(k)!r} -> {now.get(k)!r}" for k in diff[:3])
        more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
        raise InputError(f"{folder}: holds {what} with other settings ({shown}{more}; see {LAUNCHES}); {remedy}")


def record_launch(folder: str | Path, settings: dict, command: str) -> None:
    """Append this launch (settings, commit, package versions, time) to `folder/launches.jsonl`."""

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"command": command, "settings": _plain(settings), **provenance()}, ensure_ascii=False)
    with open(folder / LAUNCHES, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
