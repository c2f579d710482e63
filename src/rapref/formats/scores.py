"""A judge folder (`rapref judge`'s output), the file set one stage hands to others: the one writer and reader.

    OUT/scores.jsonl     one row per judged sample: the generation's fields, `score` (a number, or null where the
                         judge's reply held none, with `judge_reply`), `scorer`; pairwise LLM judges add
                         `baseline_text` (and `judge_replies` where neither order was read)
    OUT/aggregate.json   n, mean, standard error, by goal, `unscored`; `pairwise` where compared; `requests` for an
                         LLM judge

`rapref diagnose controllability`, the studies' harness (`rapref.studies.harness`) and whoever reads a judge's scores
read them here: a judge folder or its scores.jsonl, rows checked to be scores (every row has a `score`).
"""

from __future__ import annotations

import json
from pathlib import Path

from rapref.io import InputError, read_jsonl, write_json_atomic, write_jsonl_atomic

SCORES_FILE = "scores.jsonl"
AGGREGATE_FILE = "aggregate.json"


def scores_path(source: str | Path) -> Path:
    """The scores file of a judge folder, or the file itself."""
    source = Path(source)
    return source / SCORES_FILE if source.is_dir() else source


def write_scores(folder: str | Path, rows: list[dict]) -> Path:
    """`folder/scores.jsonl`, written whole (atomically)."""
    path = Path(folder) / SCORES_FILE
    write_jsonl_atomic(path, rows)
    return path


def write_aggregate(folder: str | Path, result: dict) -> Path:
    """`folder/aggregate.json`, written whole (atomically)."""
    path = Path(folder) / AGGREGATE_FILE
    write_json_atomic(path, result)
    return path


def read_scores(source: str | Path) -> list[dict]:
    """The rows of a judge folder's scores.jsonl (or of that file given itself): each an object with a `score`
    (None where the judge gave none); anything else is refused naming the file, row and field."""
    path = scores_path(source)
    if not path.is_file():
        raise InputError(f"{path}: no such scores file (a folder written by `rapref judge` holds {SCORES_FILE})")
    rows = read_jsonl(path)
    if not rows:
        raise InputError(f"{path}: no scores")
    for i, row in enumerate(rows, start=1):
        check_score_row(row, i, path)
    return rows


def check_score_row(row, i: int, source) -> None:
    """Refuses row `i` of `source` unless it is an object with a `score` field (null allowed: unscored)."""
    if not isinstance(row, dict):
        raise InputError(f"{source}: row {i}: expected an object with goal and score")
    if "score" not in row:
        raise InputError(f"{source}: row {i}, field 'score': missing; {SCORES_FILE} is what `rapref judge` writes "
                         "(a generations file is judged first)")


def read_aggregate(folder: str | Path) -> dict:
    """A judge folder's aggregate.json."""
    path = Path(folder) / AGGREGATE_FILE
    if not path.is_file():
        raise InputError(f"{path}: no such file (a finished `rapref judge` folder holds {AGGREGATE_FILE})")
    try:
        result = json.loads(path.read_text())
    except ValueError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(result, dict):
        raise InputError(f"{path}: expected an object, got {type(result).__name__}")
    return result
