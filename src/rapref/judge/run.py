"""`rapref judge`: score generations, aggregate them, and compare two sets pairwise.

    rapref judge runs/gen.jsonl --scorer python:rapref.studies.demo.world:true_reward --out runs/judge
    rapref judge runs/relabeled.jsonl --against runs/dpo.jsonl --scorer reward-model:PATH --out runs/win

Writes `scores.jsonl` (one row per sample) and `aggregate.json` (n, mean, standard error, by goal; and for pairwise
mode the win rate with ties as half and its standard error). Scores are cached by a content hash of (the scorer's
fingerprint, the row fields it reads, text): judging the same text again costs nothing, and a scorer replaced in
place (a reward model saved again at the same path, an edited Python function) is never answered from the cache.

Pairwise mode compares like with like: rows are matched on (prompt, goal, sample, turn), the prompt by its content
(the text, or the conversation's non-assistant turns), never by row number. Where the two files give one prompt id
to different prompts, it refuses; where both hold a single goal and the goals differ, or the sampling settings
differ, it says so and records it in `aggregate.json`. With several samples per prompt the standard error is
clustered by prompt (`rapref.stats.summary`); one comparison reports none.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from rapref.formats.generations import read_generations
from rapref.formats.scores import AGGREGATE_FILE, SCORES_FILE, write_aggregate, write_scores
from rapref.inference.serving import NetworkConfig, record_requests, served_record
from rapref.io import InputError
from rapref.judge.llm_judge import length_controlled_win_rate
from rapref.judge.scorers import Scorer, build_scorer
from rapref.progress import say, track
from rapref.runs.folder import RunFolder
from rapref.settings import SettingError, check, nested, setting
from rapref.stats import interval, summary


def _braces(text: str) -> str:
    """Text put into a SettingError's template as it is (a path may hold braces)."""
    return str(text).replace("{", "{{").replace("}", "}}")


@dataclass
class JudgeConfig:
    """What `rapref judge` does (its flags are derived from these fields, `rapref.settings`)."""

    generations: str = setting(help="JSONL written by `rapref generate`", positional=True)
    scorer: str = setting(help="if-official:ifeval | if-official:ifbench | reward-model:PATH | constraints | "
                               "llm-judge:URL | llm-judge-pairwise:URL | python:MODULE:FUNCTION (see "
                               "rapref.judge.scorers)")
    out: str = setting(help="output folder (scores.jsonl, aggregate.json, cache.jsonl)")
    against: str | None = setting(None, "pairwise: win rate of GENERATIONS against this generation set",
                                  shown="none: score GENERATIONS alone")
    cache: str | None = setting(None, "score cache file; one kept apart from OUT survives --overwrite (entries are "
                                      "keyed by content)", shown="OUT/cache.jsonl")
    trust_remote_code: bool = setting(False, "allow a reward model's own code to run")
    judge_template: str | None = setting(None, "LLM judges: the prompt template ({instruction} and {output}; "
                                               "pairwise {output_1}, {output_2})", metavar="FILE",
                                         shown="rapref's, in the manner of MT-Bench / AlpacaEval")
    judge_model: str | None = setting(None, "LLM judges: the served model, where a server serves several",
                                      metavar="NAME", shown="the one the server serves")
    network: NetworkConfig = nested(NetworkConfig, group="reaching an LLM judge's server")
    overwrite: bool = setting(False, "replace an output folder that rapref judge wrote, asking the judge everything "
                                     "again (OUT/cache.jsonl is emptied; a --cache FILE is kept); needed when a hosted "
                                     "judge changed its model under the same name")

    def __post_init__(self):
        if self.network is None:  # a caller's "the defaults"
            self.network = NetworkConfig()
        check(self)
        for name in ("generations", "against", "cache"):
            if getattr(self, name) and Path(getattr(self, name)).resolve() == Path(self.out).resolve():
                raise SettingError(f"{{}} {_braces(self.out)} is the {{}} file of this run; give the output folder a "
                                   "path of its own", "out", name)
        given = [n for n in ("judge_template", "judge_model") if getattr(self, n) is not None] + \
            [f"network.{n}" for n in self.network.given()]
        if given and not self.scorer.startswith("llm-judge"):
            listed = ", ".join(["{}"] * (len(given) - 1)) + " and {}" if len(given) > 1 else "{}"
            raise SettingError(f"{listed} {'are' if len(given) > 1 else 'is'} for the LLM judges (scorers "
                               "llm-judge:URL and llm-judge-pairwise:URL)", *given)

    def judge_options(self) -> dict:
        """The LLM judge's settings that were given, as `build_scorer` takes them."""
        return {k: v for k, v in (("template", self.judge_template), ("judge_model", self.judge_model),
                                  ("network", self.network if self.network.given() else None)) if v}


BOOKKEEPING = ("text", "model", "sampling", "score", "scorer")  # row fields no scorer's score may depend on


class ScoreCache:
    """Append-only JSONL of what a scorer said, keyed by a hash of the scorer's fingerprint, the row fields it reads
    and the text. Only successes are cached: `{key, score}` is never asked again; a reply without a score (an LLM
    judge's reply with no grade) is recorded as `{key, score: null, reply}`, so the user can read what the judge
    said, and asked again on the next run. A file that is not such a cache (a generations file given as --cache) is
    refused, never appended to; a final line torn by a kill during an append (no newline at its end) is dropped with
    a warning."""

    def __init__(self, path: Path):
        self.path = path
        self.scores: dict[str, float] = {}  # successes
        self.replies: dict[str, str | None] = {}  # the latest reply without a score, by key (asked again)
        if path.exists() and not path.is_file():
            raise InputError(f"--cache {path}: is not a file")
        if path.is_file():
            for entry in self._entries():
                if entry["score"] is None:
                    self.replies[entry["key"]] = entry.get("reply")
                else:
                    self.scores[entry["key"]] = entry["score"]
                    self.replies.pop(entry["key"], None)

    def _entries(self) -> list[dict]:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        torn = lines.pop() if lines else b""  # after the last newline: empty, or a torn append
        entries = []
        for number, line in enumerate(lines, 1):
            if line.strip():
                entries.append(self._entry(line, number))
        if torn.strip():
            try:
                entries.append(self._entry(torn, len(lines) + 1))
            except InputError:
                if not entries and len(lines) == 0:
                    raise
                with open(self.path, "r+b") as handle:  # appends must start on a line of their own
                    handle.truncate(len(data) - len(torn))
                print(f"rapref judge: warning: {self.path}: dropped its last line, cut short ({len(torn)} bytes, "
                      "no newline: a run killed while writing it); that entry is asked again", file=sys.stderr)
        return entries

    def _entry(self, line: bytes, number: int) -> dict:
        try:
            entry = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            entry = None
        score = entry.get("score", "missing") if isinstance(entry, dict) else "missing"
        if not (isinstance(entry, dict) and isinstance(entry.get("key"), str) and
                (score is None or type(score) in (int, float))):
            raise InputError(f"--cache {self.path}: line {number} is not a score cache entry ({{key, score}}); "
                             "give a cache file written by rapref judge, or a new path (rapref never appends to "
                             "another file)")
        return entry

    @staticmethod
    def key(scorer: Scorer, row: dict, text: str) -> str:
        fields = scorer.row_fields or sorted(k for k in row if k not in BOOKKEEPING)
        blob = json.dumps([scorer.fingerprint or scorer.id, {k: row.get(k) for k in fields}, text], sort_keys=True,
                          ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def add(self, entries: dict, replies: dict[str, str] | None = None) -> None:
        """Record `{key: score}`; a None score is recorded with its reply (from `replies`) but not cached."""
        replies = replies or {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            for key, score in entries.items():
                if score is None:
                    self.replies[key] = replies.get(key)
                    handle.write(json.dumps({"key": key, "score": None, "reply": replies.get(key)},
                                            ensure_ascii=False) + "\n")
                else:
                    self.scores[key] = score
                    self.replies.pop(key, None)
                    handle.write(json.dumps({"key": key, "score": score}) + "\n")


SCORE_CHUNK = 512  # generations scored (and cached) per step; a scorer may set its own `chunk`


def score_rows(rows: list[dict], scorer: Scorer, cache: ScoreCache) -> list[float | None]:
    """Each row's score, from the cache where it holds one; None where the scorer gave none (asked again next run).
    A score that is not a finite number is refused, naming the row."""
    keys = [cache.key(scorer, r, r["text"]) for r in rows]
    todo = list(dict.fromkeys(k for k in keys if k not in cache.scores))
    first = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    if todo:
        idx = [first[k] for k in todo]
        step = getattr(scorer, "chunk", SCORE_CHUNK)
        chunks = [idx[start:start + step] for start in range(0, len(idx), step)]
        for chunk in track(chunks, f"Judging ({scorer.id})", unit="chunk"):  # cached as it goes: a kill loses little
            fresh = scorer.score([rows[i] for i in chunk], [rows[i]["text"] for i in chunk])
            replies = getattr(scorer, "replies", None) or [None] * len(chunk)
            for i, s in zip(chunk, fresh):
                if s is not None and (isinstance(s, bool) or not isinstance(s, (int, float)) or
                                      not math.isfinite(float(s))):
                    raise InputError(f"scorer {scorer.id}: row {i + 1} (prompt_id {rows[i].get('prompt_id')!r}): "
                                     f"score {s!r} is not a finite number")
            cache.add({keys[i]: None if s is None else float(s) for i, s in zip(chunk, fresh)},
                      {keys[i]: r for i, r in zip(chunk, replies)})
    return [cache.scores.get(k) for k in keys]


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


def _say_unscored(unscored: int, out: Path) -> None:
    if unscored:
        say(f"rapref judge: {unscored} replies held no score; what the judge said is in {out / SCORES_FILE} "
            f"(judge_reply); they are not cached: `--out NEW --cache {out / 'cache.jsonl'}` asks only them again, "
            "--overwrite asks every one again")


def _requests(scorer) -> dict:
    """What an LLM judge was asked, for aggregate.json: the server, the model named, the key's variable (its NAME),
    the transport's counts (requests, retries, refusals) and the tokens the replies reported."""
    endpoint = getattr(scorer, "endpoint", None)
    if endpoint is None:
        return {}
    return {"requests": served_record(endpoint)}


def aggregate(rows: list[dict], scores: list[float | None], replies: Path | None = None) -> dict:
    """Summary over the scored samples; a sample its scorer could not score (an LLM judge's reply without a grade)
    is counted in `unscored`, never averaged."""
    by_goal = defaultdict(list)
    for row, score in zip(rows, scores):
        if score is not None:
            by_goal["none" if row.get("goal") is None else f"{row['goal']:g}"].append(score)
    scored = [s for s in scores if s is not None]
    if not scored:
        raise InputError(f"no sample could be scored ({len(scores)} unscored)" +
                         (f"; the judge's replies are in {replies} (field `reply`)" if replies else ""))
    return {**summary(scored), "unscored": len(scores) - len(scored),
            "by_goal": {g: summary(v) for g, v in by_goal.items()}}


def _cache_path(cfg: JudgeConfig, out: Path) -> Path:
    """The score cache: OUT/cache.jsonl (emptied by --overwrite, which re-asks everything), or --cache FILE (kept
    across runs, --overwrite included: its entries are keyed by content); never an input of this run."""
    path = Path(cfg.cache) if cfg.cache else out / "cache.jsonl"
    for flag, source in (("the generations", cfg.generations), ("the --against", cfg.against)):
        if source and Path(source).exists() and path.exists() and Path(source).resolve() == path.resolve():
            raise InputError(f"--cache {path}: is {flag} file of this run; give the cache a path of its own")
    return path


def main(cfg: JudgeConfig) -> dict:
    run = RunFolder(cfg.out, "judge", overwrite=cfg.overwrite, inputs=(cfg.generations, cfg.against),
                    continue_unfinished=True)  # an interrupted judge resumes from its cache
    rows = read_generations(cfg.generations)
    other = read_generations(cfg.against) if cfg.against else None
    cache_path = _cache_path(cfg, run.path)
    if cfg.cache:
        ScoreCache(cache_path)  # a file that is not a cache: refused before any work
    scorer = build_scorer(cfg.scorer, cfg.trust_remote_code, **cfg.judge_options())
    if hasattr(scorer, "compare") and other is None:
        raise InputError(f"scorer {cfg.scorer}: compares two outputs; give the baseline with --against FILE")
    with _requests_recorded(scorer, run.path, resumed=not cfg.overwrite), run:
        if cfg.overwrite:  # the earlier results go first: a run that fails leaves none of them behind as data
            for name in (SCORES_FILE, AGGREGATE_FILE):
                (run.path / name).unlink(missing_ok=True)
        if cfg.overwrite and not cfg.cache:
            cache_path.unlink(missing_ok=True)  # --overwrite re-asks everything
        cache = ScoreCache(cache_path)
        judged = judge_pairs if hasattr(scorer, "compare") else _judge_rows
        return judged(rows, other, scorer, cache, cfg, run.path)


@contextlib.contextmanager
def _requests_recorded(scorer, out: Path, resumed: bool):
    """An LLM judge's requests.json, however the run ends (finished, refused, interrupted): the counts of this
    session and of those it resumed. The run folder's lock is released first."""
    endpoint = getattr(scorer, "endpoint", None)
    outcome = "interrupted"
    try:
        yield
        outcome = "finished"
    except InputError:
        outcome = "refused"
        raise
    finally:
        if endpoint is not None:
            record_requests(endpoint, out / "requests.json", "rapref judge", resumed=resumed, outcome=outcome)


def _judge_rows(rows, other, scorer, cache: ScoreCache, cfg: JudgeConfig, out: Path) -> dict:
    scores = score_rows(rows, scorer, cache)
    write_scores(out, [
        {**r, "score": s, "scorer": scorer.id,
         **({"judge_reply": cache.replies.get(cache.key(scorer, r, r["text"]))} if s is None else {})}
        for r, s in zip(rows, scores)])
    _say_unscored(scores.count(None), out)
    result = {"scorer": scorer.id, "scorer_fingerprint": scorer.fingerprint, "generations": cfg.generations,
              **aggregate(rows, scores, cache.path), **_requests(scorer)}
    if hasattr(scorer, "aggregate"):  # a scorer's own measures (e.g. prompt- and instruction-level accuracy)
        result["scorer_aggregate"] = scorer.aggregate(rows, [r["text"] for r in rows])
    if other is not None:
        result["pairwise"] = {"against": cfg.against,
                              **pairwise(rows, scores, other, score_rows(other, scorer, cache), cfg)}
        for note in result["pairwise"]["notes"]:
            say(f"rapref judge: note: {note}")
    write_aggregate(out, result)
    return result


MATCHED_ON = ["prompt", "goal", "sample", "turn"]


def judge_pairs(rows, other, scorer, cache: ScoreCache, cfg: JudgeConfig, out: Path) -> dict:
    """An LLM judge's pairwise verdicts on the matched rows: raw and length-controlled win rates with intervals."""
    _same_prompts_under_same_ids(rows, other, cfg.generations, cfg.against)
    mine, theirs = _keyed_rows(rows, cfg.generations), _keyed_rows(other, cfg.against)
    shared = [k for k in mine if k in theirs]
    if not shared:
        raise InputError(f"{cfg.generations} and {cfg.against} share no (prompt, goal, sample, turn) to compare")
    outcomes = scorer.compare([(mine[k], mine[k]["text"], theirs[k]["text"]) for k in shared], cache)
    write_scores(out, [
        {**mine[k], "score": o, "scorer": scorer.id, "baseline_text": theirs[k]["text"],
         **({"judge_replies": _pair_replies(scorer, cache, mine[k], theirs[k])} if o is None else {})}
        for k, o in zip(shared, outcomes)])
    scored = [(k, o) for k, o in zip(shared, outcomes) if o is not None]
    _say_unscored(len(shared) - len(scored), out)
    if not scored:
        raise InputError(f"the judge named neither output in any of {2 * len(shared)} replies; its replies are in "
                         f"{out / SCORES_FILE} (judge_replies); see its template")
    keys, values = [k for k, _ in scored], [o for _, o in scored]
    raw = summary(values, [k[0] for k in keys])  # outcomes 1, 1/2, 0; the standard error clustered by prompt
    raw["win_rate"] = raw["mean"]
    verdicts = getattr(scorer, "verdicts", {})
    refused = _no_interval(values, verdicts)
    ci = interval(values) if not refused and len({k[0] for k in keys}) == len(keys) else None  # one per prompt: t
    low, high = win_rate_bounds(raw["win_rate"], None if refused else raw["stderr"], ci)
    lc = length_controlled_win_rate(values, [len(mine[k]["text"]) for k in keys],
                                    [len(theirs[k]["text"]) for k in keys], clusters=[k[0] for k in keys])
    stderr = None if refused else raw["stderr"]
    pairwise = {"against": cfg.against, "n": len(values), "unscored": len(shared) - len(values),
                "win_rate": raw["win_rate"], "stderr": stderr,
                "low": low, "high": high,
                "wins": values.count(1.0), "ties": values.count(0.5), "losses": values.count(0.0),
                "split": sum(v not in (0.0, 0.5, 1.0) for v in values),  # one order parsed a tie, the other not
                "lc_win_rate": lc["lc_win_rate"], "lc_low": None if refused else lc["low"],
                "lc_high": None if refused else lc["high"], "length_coefficient": lc["length_coefficient"],
                "mean_length": sum(len(mine[k]["text"]) for k in keys) / len(keys),
                "mean_length_against": sum(len(theirs[k]["text"]) for k in keys) / len(keys),
                "matched_on": MATCHED_ON, "unmatched": len(mine) - len(shared),
                "unmatched_against": len(theirs) - len(shared), "both_orders": True, "verdicts": verdicts}
    if refused:
        pairwise["no_interval"] = refused
        say(f"rapref judge: note: no interval: {refused}")
    pairwise = _finite(pairwise)
    result = {"scorer": scorer.id, "scorer_fingerprint": scorer.fingerprint, "generations": cfg.generations,
              "n": len(values), "mean": raw["win_rate"], "stderr": stderr, "pairwise": pairwise, **_requests(scorer)}
    write_aggregate(out, result)
    return result


def win_rate_bounds(rate: float, stderr: float | None, ci: dict | None) -> tuple[float | None, float | None]:
    """The 95% interval of a win rate: the t-interval `ci` where given, else rate +- 1.96 stderr; held within [0, 1]
    (a rate is a share of comparisons: a t-interval on a few of them reaches past both ends).

    >>> win_rate_bounds(1 / 3, None, {"low": -1.1, "high": 1.77}), win_rate_bounds(0.5, 0.1, None)
    ((0.0, 1.0), (0.304, 0.696))
    """
    if ci is not None and ci.get("low") is not None:
        low, high = ci["low"], ci["high"]
    elif stderr is not None:
        low, high = rate - 1.96 * stderr, rate + 1.96 * stderr
    else:
        return None, None
    return max(0.0, low), min(1.0, high)


def _no_interval(values: list[float], verdicts: dict) -> str | None:
    """Why a pairwise judge's outcomes give no interval, or None: outcomes without spread say nothing about their
    uncertainty (a zero-width interval would claim certainty), least of all from a judge that names one position
    whatever it is shown."""
    named = {k: verdicts.get(k, 0) for k in ("first", "second")}
    if len(values) > 1 and sum(named.values()) >= 2 and min(named.values()) == 0 and len(set(values)) == 1:
        side = "first (a)" if named["first"] else "second (b)"
        return (f"the judge named the {side} output in all {max(named.values())} replies that named one, whichever "
                "output it was shown there: its verdicts follow position, not content (every comparison a tie)")
    if len(set(values)) == 1:
        return f"all {len(values)} comparisons have the same outcome ({values[0]:g}): no spread to estimate one from"
    return None


def _finite(record: dict) -> dict:
    """`record` with every non-finite number replaced by None and named in `not_finite` (never written as a result)."""
    bad = sorted(k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v))
    if bad:
        say(f"rapref judge: note: {', '.join(bad)} not finite; written as null")
    return {**{k: None if k in bad else v for k, v in record.items()}, **({"not_finite": bad} if bad else {})}


def _pair_replies(scorer, cache: ScoreCache, row: dict, baseline: dict) -> list:
    """The judge's replies (model first, baseline first) for a comparison neither order of which was parsed."""
    replies = getattr(scorer, "replies_for", None)
    return replies(cache, row, row["text"], baseline["text"]) if replies else []


def pairwise(rows, scores, other, other_scores, cfg: JudgeConfig) -> dict:
    """Win rate on the rows both sets share, matched on (prompt content, goal, sample, turn)."""
    _same_prompts_under_same_ids(rows, other, cfg.generations, cfg.against)
    mine = _keyed(rows, scores, cfg.generations)
    theirs = _keyed(other, other_scores, cfg.against)
    matched = [k for k in mine if k in theirs]
    shared = [k for k in matched if mine[k] is not None and theirs[k] is not None]  # unscored rows: counted, not won
    if not shared:
        raise InputError(f"{cfg.generations} and {cfg.against} share no scored (prompt, goal, sample, turn) to compare; "
                         "a goal sweep is compared goal by goal, so generate the baseline with the same goals "
                         "(or compare a --no-goal baseline with one goal of the sweep)")
    result = win_rate([mine[k] for k in shared], [theirs[k] for k in shared], clusters=[k[0] for k in shared])
    notes, goals = [], (_goals(rows), _goals(other))
    if len(goals[0]) == 1 and len(goals[1]) == 1 and goals[0] != goals[1]:
        notes.append(f"different goals: {_goal_text(goals[0])} ({cfg.generations}) against {_goal_text(goals[1])} "
                     f"({cfg.against})")
    sampling = sampling_differences(rows, other)
    if sampling:
        notes.append("different sampling settings: " + ", ".join(f"{k} {a} vs {b}" for k, (a, b) in sampling.items()))
    return {**result, "matched_on": MATCHED_ON, "unmatched": len(mine) - len(matched),
            "unscored": len(matched) - len(shared),
            "unmatched_against": len(theirs) - len(matched), "goals": [_goal_text(g) for g in goals],
            "sampling_differences": sampling, "notes": notes}


def prompt_key(prompt) -> str:
    """A prompt by its content: the text, or a conversation's turns other than the assistant's (a later turn's
    conversation holds the model's own earlier answers, which differ between the two sets by design)."""
    asked = [prompt] if isinstance(prompt, str) else \
        [[m.get("role"), m.get("content")] for m in prompt if m.get("role") != "assistant"]
    if len(asked) == 1 and not isinstance(prompt, str) and asked[0][0] == "user":
        asked = [asked[0][1]]  # one user message is the same prompt as its text
    content = asked[0] if len(asked) == 1 and isinstance(asked[0], str) else json.dumps(asked, ensure_ascii=False)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def _same_prompts_under_same_ids(rows, other, path, other_path) -> None:
    """Refuse two files that give one prompt id (and turn) to different prompts: made from different prompt files."""
    theirs = {(str(r["prompt_id"]), r.get("turn", 0)): r["prompt"] for r in other}
    for row in rows:
        key = (str(row["prompt_id"]), row.get("turn", 0))
        if key in theirs and prompt_key(theirs[key]) != prompt_key(row["prompt"]):
            raise InputError(f"{path} and {other_path}: prompt_id {key[0]!r} holds different prompts "
                             f"({_short(row['prompt'])!r} vs {_short(theirs[key])!r}); were they generated from the "
                             "same prompt file?")


def _short(prompt, width: int = 40) -> str:
    text = prompt if isinstance(prompt, str) else next((m.get("content", "") for m in reversed(prompt)
                                                        if m.get("role") == "user"), "")
    return text if len(text) <= width else text[:width - 3] + "..."


def sampling_differences(rows, other) -> dict:
    """{setting: [this file's, the other's]} for the decoding settings that differ (batch size aside)."""
    mine, theirs = rows[0].get("sampling") or {}, other[0].get("sampling") or {}
    return {k: [mine.get(k), theirs.get(k)] for k in sorted(set(mine) | set(theirs))
            if k != "batch_size" and mine.get(k) != theirs.get(k)}


def _goals(rows) -> set:
    return {r.get("goal") for r in rows}


def _goal_text(goals: set) -> str:
    return ", ".join("none" if g is None else f"{g:g}" for g in sorted(goals, key=lambda g: (g is None, g)))


def _keyed(rows: list[dict], scores: list[float], path: str) -> dict:
    """{(prompt, goal, sample, turn): score} (see `_keyed_rows`)."""
    keyed_rows = _keyed_rows(rows, path)
    score_of = {id(row): score for row, score in zip(rows, scores)}
    return {key: score_of[id(row)] for key, row in keyed_rows.items()}


def _keyed_rows(rows: list[dict], path: str) -> dict:
    """{(prompt, goal, sample, turn): row}, the prompt by its content (its k-th distinct id where a file repeats a
    prompt). A single-goal set is keyed with goal None, so a plain (no-goal) set matches a set with one goal."""
    single_goal = len(_goals(rows)) == 1
    ids_of: dict[str, list[str]] = defaultdict(list)
    keyed = {}
    for row in rows:
        content, pid = prompt_key(_first_turn(row)), str(row["prompt_id"])
        if pid not in ids_of[content]:
            ids_of[content].append(pid)
        key = (f"{content}#{ids_of[content].index(pid)}", None if single_goal else row.get("goal"),
               row.get("sample", 0), row.get("turn", 0))
        if key in keyed:
            raise InputError(f"{path}: two rows for prompt {pid!r}, goal {row.get('goal')}, sample {key[2]}, "
                             f"turn {key[3]}")
        keyed[key] = row
    return keyed


def _first_turn(row: dict):
    """The prompt as first asked: a later turn's conversation up to its first user message."""
    prompt = row["prompt"]
    if isinstance(prompt, str) or not row.get("turn"):
        return prompt
    first_user = next((i for i, m in enumerate(prompt) if m.get("role") == "user"), len(prompt) - 1)
    return prompt[:first_user + 1]
