"""`rapref judge`: score generations, aggregate them, and compare two sets pairwise.

    rapref judge runs/gen.jsonl --scorer python:rapref.demo.world:true_reward --out runs/judge
    rapref judge runs/relabeled.jsonl --against runs/dpo.jsonl --scorer reward-model:PATH --out runs/win

Writes `scores.jsonl` (one row per sample) and `aggregate.json` (n, mean, standard error, by goal; and for pairwise
mode the win rate with ties as half and its standard error). Scores are cached by a content hash of
(scorer, prompt, text), so judging the same text again costs nothing.

Pairwise mode compares like with like: rows are matched on (prompt, goal, sample), and with several samples per
prompt the standard error is clustered by prompt (`rapref.stats.summary`); one comparison reports none.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from rapref.evaluate.generate import read_generations
from rapref.evaluate.scorers import Scorer, build_scorer
from rapref.io import InputError, read_jsonl, write_json_atomic, write_jsonl_atomic
from rapref.outputs import claim_output, mark_output, output_lock
from rapref.stats import summary


@dataclass
class JudgeConfig:
    generations: str
    scorer: str
    out: str
    against: str | None = None  # pairwise: the other generation set
    cache: str | None = None  # default: <out>/cache.jsonl
    trust_remote_code: bool = False
    overwrite: bool = False


class ScoreCache:
    """Append-only JSONL of {key: score}; keys hash the scorer id, prompt and text."""

    def __init__(self, path: Path):
        self.path = path
        self.scores: dict[str, float] = {}
        if path.is_file():
            for entry in read_jsonl(path):
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


SCORE_CHUNK = 512  # generations scored (and cached) per step


def score_rows(rows: list[dict], scorer: Scorer, cache: ScoreCache) -> list[float]:
    keys = [cache.key(scorer.id, r["prompt"], r["text"]) for r in rows]
    todo = {k: i for i, k in enumerate(keys) if k not in cache.scores}
    if todo:
        from rapref.progress import track

        idx = list(todo.values())
        chunks = [idx[start:start + SCORE_CHUNK] for start in range(0, len(idx), SCORE_CHUNK)]
        for chunk in track(chunks, f"Judging ({scorer.id})", unit="chunk"):  # cached as it goes: a kill loses little
            fresh = scorer.score([rows[i] for i in chunk], [rows[i]["text"] for i in chunk])
            cache.add({keys[i]: float(s) for i, s in zip(chunk, fresh)})
    return [cache.scores[k] for k in keys]


def win_rate(a: list[float], b: list[float], clusters: list | None = None) -> dict:
    """Win rate of a over b on matched samples: win 1, tie 0.5, loss 0; the standard error of that mean, clustered
    by `clusters` (the prompt of each comparison) when given; None for a single comparison.

    >>> win_rate([3, 2, 1, 5], [1, 2, 4, 0])["win_rate"]
    0.625
    """
    outcomes = [1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(a, b, strict=True)]
    stats = summary(outcomes, clusters)
    return {"n": stats["n"], "win_rate": stats["mean"], "stderr": stats["stderr"],
            "wins": outcomes.count(1.0), "ties": outcomes.count(0.5), "losses": outcomes.count(0.0),
            **({"prompts": stats["clusters"]} if "clusters" in stats else {})}


def aggregate(rows: list[dict], scores: list[float]) -> dict:
    by_goal = defaultdict(list)
    for row, score in zip(rows, scores):
        by_goal["none" if row.get("goal") is None else f"{row['goal']:g}"].append(score)
    return {**summary(scores), "by_goal": {g: summary(v) for g, v in by_goal.items()}}


def main(cfg: JudgeConfig) -> dict:
    out = claim_output(cfg.out, "judge", overwrite=cfg.overwrite, inputs=(cfg.generations, cfg.against))
    rows = read_generations(cfg.generations)
    other = read_generations(cfg.against) if cfg.against else None
    scorer = build_scorer(cfg.scorer, cfg.trust_remote_code)
    with output_lock(out):
        mark_output(out, "judge")
        cache = ScoreCache(Path(cfg.cache) if cfg.cache else out / "cache.jsonl")
        scores = score_rows(rows, scorer, cache)
        write_jsonl_atomic(out / "scores.jsonl",
                           [{**r, "score": s, "scorer": scorer.id} for r, s in zip(rows, scores)])
        result = {"scorer": scorer.id, "generations": cfg.generations, **aggregate(rows, scores)}
        if hasattr(scorer, "aggregate"):  # a scorer's own measures (e.g. prompt- and instruction-level accuracy)
            result["scorer_aggregate"] = scorer.aggregate(rows, [r["text"] for r in rows])
        if other is not None:
            result["pairwise"] = {"against": cfg.against,
                                  **pairwise(rows, scores, other, score_rows(other, scorer, cache), cfg)}
        write_json_atomic(out / "aggregate.json", result)
    return result


def pairwise(rows, scores, other, other_scores, cfg: JudgeConfig) -> dict:
    """Win rate on the rows both sets share, matched on (prompt, goal, sample)."""
    mine = _keyed(rows, scores, cfg.generations)
    theirs = _keyed(other, other_scores, cfg.against)
    shared = [k for k in mine if k in theirs]
    if not shared:
        raise InputError(f"{cfg.generations} and {cfg.against} share no (prompt_id, goal, sample) to compare; "
                         "a goal sweep is compared goal by goal, so generate the baseline with the same goals "
                         "(or compare a --no-goal baseline with one goal of the sweep)")
    result = win_rate([mine[k] for k in shared], [theirs[k] for k in shared], clusters=[k[0] for k in shared])
    return {**result, "unmatched": len(mine) - len(shared), "matched_on": ["prompt_id", "goal", "sample", "turn"]}


def _keyed(rows: list[dict], scores: list[float], path: str) -> dict:
    """{(prompt_id, goal, sample, turn): score}. A plain (no-goal) set keyed with goal None matches a set with one goal."""
    goals = {r.get("goal") for r in rows}
    single_goal = len(goals) == 1
    keyed = {}
    for row, score in zip(rows, scores):
        key = (str(row["prompt_id"]), None if single_goal else row.get("goal"), row.get("sample", 0),
               row.get("turn", 0))
        if key in keyed:
            raise InputError(f"{path}: two rows for prompt {key[0]!r}, goal {row.get('goal')}, sample {key[2]}, "
                             f"turn {key[3]}")
        keyed[key] = score
    return keyed
