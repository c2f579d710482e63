"""`rapref judge`: score generations, aggregate them, and compare two sets pairwise.

    rapref judge runs/gen.jsonl --scorer python:rapref.demo.world:true_reward --out runs/judge
    rapref judge runs/relabeled.jsonl --against runs/dpo.jsonl --scorer reward-model:PATH --out runs/win

Writes `scores.jsonl` (one row per sample) and `aggregate.json` (n, mean, standard error, by goal; and for pairwise
mode the win rate with ties as half and its standard error). Scores are cached by a content hash of
(scorer, prompt, text), so judging the same text again costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from rapref.evaluate.generate import read_generations
from rapref.evaluate.scorers import Scorer, build_scorer
from rapref.io import write_json_atomic, write_jsonl_atomic


@dataclass
class JudgeConfig:
    generations: str
    scorer: str
    out: str
    against: str | None = None  # pairwise: the other generation set
    cache: str | None = None  # default: <out>/cache.jsonl
    trust_remote_code: bool = False


class ScoreCache:
    """Append-only JSONL of {key: score}; keys hash the scorer id, prompt and text."""

    def __init__(self, path: Path):
        self.path = path
        self.scores: dict[str, float] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self.scores[entry["key"]] = entry["score"]

    @staticmethod
    def key(scorer_id: str, prompt, text: str) -> str:
        blob = json.dumps([scorer_id, prompt, text], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def add(self, entries: dict[str, float]) -> None:
        self.scores.update(entries)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            for key, score in entries.items():
                handle.write(json.dumps({"key": key, "score": score}) + "\n")


def score_rows(rows: list[dict], scorer: Scorer, cache: ScoreCache) -> list[float]:
    keys = [cache.key(scorer.id, r["prompt"], r["text"]) for r in rows]
    todo = {k: i for i, k in enumerate(keys) if k not in cache.scores}
    if todo:
        idx = list(todo.values())
        fresh = scorer.score([rows[i] for i in idx], [rows[i]["text"] for i in idx])
        cache.add({keys[i]: float(s) for i, s in zip(idx, fresh)})
    return [cache.scores[k] for k in keys]


def mean_and_stderr(values: list[float]) -> dict:
    n = len(values)
    mean = sum(values) / n if n else float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return {"n": n, "mean": mean, "stderr": math.sqrt(var / n) if n else float("nan")}


def win_rate(a: list[float], b: list[float]) -> dict:
    """Win rate of a over b on matched samples: win 1, tie 0.5, loss 0; stderr of that mean.

    >>> win_rate([3, 2, 1, 5], [1, 2, 4, 0])["win_rate"]
    0.625
    """
    outcomes = [1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(a, b, strict=True)]
    stats = mean_and_stderr(outcomes)
    return {"n": stats["n"], "win_rate": stats["mean"], "stderr": stats["stderr"],
            "wins": outcomes.count(1.0), "ties": outcomes.count(0.5), "losses": outcomes.count(0.0)}


def aggregate(rows: list[dict], scores: list[float]) -> dict:
    by_goal = defaultdict(list)
    for row, score in zip(rows, scores):
        by_goal["none" if row.get("goal") is None else f"{row['goal']:g}"].append(score)
    return {**mean_and_stderr(scores), "by_goal": {g: mean_and_stderr(v) for g, v in by_goal.items()}}


def main(cfg: JudgeConfig) -> dict:
    out = Path(cfg.out)
    scorer = build_scorer(cfg.scorer, cfg.trust_remote_code)
    cache = ScoreCache(Path(cfg.cache) if cfg.cache else out / "cache.jsonl")
    rows = read_generations(cfg.generations)
    scores = score_rows(rows, scorer, cache)
    write_jsonl_atomic(out / "scores.jsonl", [{**r, "score": s, "scorer": scorer.id} for r, s in zip(rows, scores)])
    result = {"scorer": scorer.id, "generations": cfg.generations, **aggregate(rows, scores)}
    if cfg.against:
        other = read_generations(cfg.against)
        other_scores = dict(zip([_match_key(r) for r in other], score_rows(other, scorer, cache)))
        mine = {_match_key(r): s for r, s in zip(rows, scores)}
        shared = [k for k in mine if k in other_scores]
        if not shared:
            raise ValueError(f"{cfg.generations} and {cfg.against} share no (prompt_id, sample) to compare")
        result["pairwise"] = {"against": cfg.against, **win_rate([mine[k] for k in shared],
                                                                 [other_scores[k] for k in shared])}
    write_json_atomic(out / "aggregate.json", result)
    return result


def _match_key(row: dict) -> tuple:
    return (str(row["prompt_id"]), row.get("sample", 0))
