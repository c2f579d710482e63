"""Generations files (`rapref generate`'s JSONL: one row per prompt, goal and sample): the one reader."""

from __future__ import annotations

from rapref.io import InputError, read_jsonl


def read_generations(path: str) -> list[dict]:
    rows = read_jsonl(path)
    if not rows:
        raise InputError(f"{path}: no generations")
    missing = [k for k in ("prompt_id", "text") if k not in rows[0]]
    if missing:
        raise InputError(f"{path}:1: not a generations file (no {', '.join(map(repr, missing))}); "
                         "write one with `rapref generate`")
    for i, row in enumerate(rows, start=1):
        for key in ("prompt_id", "prompt", "text"):
            if row.get(key) is None:
                raise InputError(f"{path}: row {i}, field {key!r}: missing (every generation needs prompt_id, "
                                 "prompt and text)")
        if not isinstance(row["text"], str):
            raise InputError(f"{path}: row {i}, field 'text': expected text, got {type(row['text']).__name__}")
        prompt = row["prompt"]
        if not (isinstance(prompt, str) or isinstance(prompt, list) and all(isinstance(m, dict) for m in prompt)):
            raise InputError(f"{path}: row {i}, field 'prompt': expected text or a list of messages")
    return rows
