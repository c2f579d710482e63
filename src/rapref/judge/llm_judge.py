"""An LLM as the judge, through an OpenAI-compatible server (`rapref.inference.serving`), in the benchmarks' manners.

    rapref judge gen.jsonl --scorer llm-judge:http://127.0.0.1:8000/v1 --out j            # MT-Bench: 1-10 grades
    rapref judge gen.jsonl --against base.jsonl --scorer llm-judge-pairwise:http://127.0.0.1:8000/v1 --out w

- **Single-answer grading** (MT-Bench's manner): the judge sees the question and the answer and ends its reply with
  "[[rating]]"; the grade (1-10) is parsed from it. A reply without a parseable grade is counted (`unscored`), never
  given a score.
- **Pairwise** (AlpacaEval's manner): against a baseline file, rows matched as `rapref judge --against` matches them.
  The judge sees the instruction and both outputs and names the better one, in both orders (cancelling position
  bias); each order scores 1 for the model's output, 0 for the baseline's and 1/2 for a tie the judge declares
  ("tie", "[[C]]"), and a comparison scores the mean of its orders (a judge that names one position whatever it is
  shown gives ties throughout, and no interval: see `rapref judge`); an order whose reply names neither output is left
  out, and a comparison with no parsed order is counted as unscored. Reported: the raw win rate and AlpacaEval 2's length-controlled win rate
  (`length_controlled_win_rate`), each with a 95% interval.
- The prompts are templates in files (`judge_templates/single.txt`, `pairwise.txt`; `--judge-template FILE` replaces
  them) with the placeholders {instruction}, {output} / {output_1}, {output_2}.
- Every verdict is cached (the judge's `cache.jsonl`) by the judge's fingerprint (served model and, where the server
  reports a local folder, its content fingerprint), the template, the prompt, the texts and the order. Only verdicts
  are cached: a reply without a grade or a choice is recorded with its text and asked again on the next run.
  `--overwrite` empties the output folder's cache and asks everything again. A hosted judge (no local folder) is
  fingerprinted by its id alone: when its provider changes the model under the same id, rerun with --overwrite (or a
  fresh --cache).
- **A hosted judge** (`--api-key-env NAME`, `--judge-model`): its key is read from the named environment variable and
  sent only as a header (`rapref.inference.hosted`); the judge model and the tokens its replies report are recorded
  with the run (`aggregate.json`, `requests.json`), the variable's name with them, never the key.
- A reply is checked before it becomes data (`rapref.inference.serving.Endpoint.chat`): one without message text is
  refused in one line naming the server and the request, never parsed as "no grade".
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np

from rapref.inference.serving import Endpoint
from rapref.io import InputError
from rapref.judge.base import Scorer
from rapref.models import model_fingerprint
from rapref.progress import track

TEMPLATES = Path(__file__).parent / "judge_templates"
MAX_TOKENS = {"single": 512, "pairwise": 16}
CONCURRENCY = 8
CHUNK = 32  # calls per step, cached as they finish: a refusal or Ctrl-C loses at most this many
BOOTSTRAP = 2000  # resamples of prompts for the length-controlled win rate's interval


def _instruction(prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{m.get('role')}: {m.get('content')}" if len(prompt) > 1 else str(m.get("content"))
                       for m in prompt if m.get("role") != "system")


def render(template: str, **fields: str) -> str:
    """Fill {name} placeholders by plain replacement (answers hold braces of their own)."""
    for name, value in fields.items():
        template = template.replace("{" + name + "}", value)
    return template


GRADE = r"(?<![\w.+-])(\d{1,2}(?:\.\d+)?)(?!\w|\.\d)"  # a plain number, not 1e3, -5 or 8.5.1


def parse_grade(reply: str) -> float | None:
    """The 1-10 grade of an MT-Bench-style reply ("[[8]]", or "Rating: 8"), or None: only a plain number from 1 to
    10 counts (not 1e3, 1e309, -5 or 11), and the last one given.

    >>> parse_grade("Good answer. Rating: [[8]]"), parse_grade("[[7.5]]"), parse_grade("I'd say 11"), parse_grade("")
    (8.0, 7.5, None, None)
    >>> parse_grade("Rating: 1e3"), parse_grade("Rating: 1e309"), parse_grade("Rating: 10."), parse_grade("[[0]]")
    (None, None, 10.0, None)
    """
    found = re.findall(r"\[\[\s*" + GRADE + r"\s*\]\]", reply) or \
        re.findall(r"\brating:\s*\[?" + GRADE + r"(?!\s*[eE])", reply, flags=re.IGNORECASE)
    if not found:
        return None
    grade = float(found[-1])
    return grade if 1 <= grade <= 10 else None


TIE = 0  # parse_choice's verdict for a declared tie
CHOICE_FORMS = (r"\[\[([abc])\]\]",                      # MT-Bench's [[A]], [[B]], [[C]] (a tie)
                r"\boutput\s*\(([ab])\)",                  # AlpacaEval's "Output (a)"
                r"\boutput\s+([ab])\b(?!['-])",             # "Output a", "output b." (not "output addresses")
                r"(?<![\w(])\(([ab])\)(?![\w)])")           # a bare "(a)" / "(b)"


def parse_choice(reply: str) -> int | None:
    """1 when the reply names output (a), 2 for (b), TIE (0) for a declared tie ("tie", MT-Bench's "[[C]]"), None for
    neither, both, or anything but the exact forms (`CHOICE_FORMS`, a whole-word match; or a reply that is just
    "a" or "b").

    >>> parse_choice("Output (a)"), parse_choice("output (B)"), parse_choice("b"), parse_choice("(a) or (b)")
    (1, 2, 2, None)
    >>> parse_choice("Tie."), parse_choice("[[C]]"), parse_choice("[[A]]")
    (0, 0, 1)
    >>> parse_choice("Neither output addresses the question, but (b) is better."), parse_choice("[[A]] [[B]]")
    (2, None)
    """
    text = reply.strip().lower()
    if re.fullmatch(r"(it'?s a )?tie\.?|(both|the two) (outputs )?are equally good\.?", text):
        return TIE
    marks = {m for form in CHOICE_FORMS for m in re.findall(form, text)}
    if not marks and text.rstrip(".") in ("a", "b"):
        marks = {text.rstrip(".")}
    return None if len(marks) != 1 else {"a": 1, "b": 2, "c": TIE}[marks.pop()]


class LLMJudge(Scorer):
    """The judge: a served model, a template, a cache of its calls (set by `rapref judge`)."""

    kind = "single"

    def __init__(self, url: str, template: str | None = None, judge_model: str | None = None, network=None, **_):
        if not url:
            raise InputError(f"scorer {self.name}: expected {self.name}:URL of an OpenAI-compatible server")
        self.endpoint = Endpoint(url, network, flag=f"--scorer {self.name}:URL")
        models = self.endpoint.served()
        names = [m.get("id") for m in models]
        if judge_model and judge_model not in names:
            raise InputError(f"{self.endpoint.url}: serves {', '.join(map(str, names))}, not --judge-model "
                             f"{judge_model!r}")
        if not judge_model and len(names) != 1:
            raise InputError(f"{self.endpoint.url}: serves {len(names)} models ({', '.join(map(str, names))}); "
                             "name the judge with --judge-model")
        self.endpoint.model = judge_model or names[0]
        served = next(m for m in models if m.get("id") == self.endpoint.model)
        path = Path(str(template or TEMPLATES / f"{self.kind}.txt"))
        if not path.is_file():
            raise InputError(f"--judge-template {path}: no such file")
        self.template = path.read_text(encoding="utf-8")
        needed = ("{instruction}", "{output}") if self.kind == "single" else ("{instruction}", "{output_1}",
                                                                               "{output_2}")
        missing = [p for p in needed if p not in self.template]
        if missing:
            raise InputError(f"{path}: a {self.kind} judge template needs the placeholders {', '.join(needed)}; "
                             f"missing {', '.join(missing)}")
        self.id = f"{self.name}:{self.endpoint.model}"
        self.fingerprint = _digest([self.kind, self.endpoint.model, _served_fingerprint(served), self.template])
        self.row_fields = ("prompt",)
        self.chunk = CHUNK
        self.replies: list[str] = []  # the last `score` call's replies, recorded where they hold no grade

    name = "llm-judge"

    def ask(self, prompts: list[str], names: list[str] | None = None) -> list[str]:
        """The judge's replies, CONCURRENCY calls in flight; Ctrl-C, SIGTERM or a refused reply stops them all."""
        from contextlib import closing

        names = names or [f"judge call {i + 1} of {len(prompts)}" for i in range(len(prompts))]
        calls = [lambda text=text, name=name: self.endpoint.chat([{"role": "user", "content": text}],
                                                                  MAX_TOKENS[self.kind], what=name)
                 for text, name in zip(prompts, names)]
        replies: list[str | None] = [None] * len(prompts)
        with closing(self.endpoint.each(calls, CONCURRENCY)) as answers:
            for i, reply in answers:
                replies[i] = reply
        return replies


def _served_fingerprint(served: dict) -> str:
    root = served.get("root")
    if root and Path(root).is_dir():
        return model_fingerprint(root)
    return json.dumps({k: served.get(k) for k in ("id", "root", "max_model_len")}, sort_keys=True)


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


class SingleAnswerJudge(LLMJudge):
    """MT-Bench's single-answer grading: 1-10, None where the reply holds no grade."""

    kind, name = "single", "llm-judge"

    def score(self, rows, texts):
        prompts = [render(self.template, instruction=_instruction(r["prompt"]), output=t) for r, t in zip(rows, texts)]
        self.replies = self.ask(prompts, [f"grading prompt_id {r.get('prompt_id')!r}" for r in rows])
        return [parse_grade(reply) for reply in self.replies]


class PairwiseJudge(LLMJudge):
    """AlpacaEval's pairwise preference, both orders (see the module notes). `rapref judge` calls `compare`."""

    kind, name = "pairwise", "llm-judge-pairwise"

    def score(self, rows, texts):
        raise InputError(f"scorer {self.name} compares two outputs: give the baseline with --against FILE")

    def compare(self, pairs: list[tuple[dict, str, str]], cache) -> list[float | None]:
        """(row, model's text, baseline's text) -> the model's outcome: 1, 1/2, 0 or a mean of the two orders, None
        where neither order was parsed. Sets `verdicts`: how often the judge named the first position, the second,
        a tie, or nothing."""
        calls, keys = {}, []
        for row, mine, theirs in pairs:
            instruction = _instruction(row["prompt"])
            for order, (first, second) in enumerate(((mine, theirs), (theirs, mine))):
                key = _digest([self.fingerprint, instruction, first, second, order])
                keys.append(key)
                if key not in cache.scores:
                    calls[key] = (render(self.template, instruction=instruction, output_1=first, output_2=second),
                                  f"comparing prompt_id {row.get('prompt_id')!r} ({'model' if order == 0 else 'baseline'}"
                                  " first)")
        if calls:
            todo = list(calls)
            chunks = [todo[i:i + CHUNK] for i in range(0, len(todo), CHUNK)]
            for chunk in track(chunks, f"Judging ({self.id}, both orders)", unit="chunk"):
                replies = self.ask([calls[k][0] for k in chunk], [calls[k][1] for k in chunk])
                cache.add({k: parse_choice(r) for k, r in zip(chunk, replies)}, dict(zip(chunk, replies)))
        self.verdicts = {"first": 0, "second": 0, "tie": 0, "none": 0}  # per reply, both orders
        outcomes = []
        for i in range(len(pairs)):
            orders = []
            for order in (0, 1):
                choice = cache.scores.get(keys[2 * i + order])
                self.verdicts[{1: "first", 2: "second", TIE: "tie", None: "none"}[choice]] += 1
                if choice is not None:
                    mine_named = 1 if order == 0 else 2  # the position the model's output held
                    orders.append(0.5 if choice == TIE else 1.0 if choice == mine_named else 0.0)
            outcomes.append(sum(orders) / len(orders) if orders else None)
        return outcomes

    def replies_for(self, cache, row: dict, mine: str, theirs: str) -> list[str | None]:
        """The judge's recorded replies (model first, baseline first) where they named no output."""
        instruction = _instruction(row["prompt"])
        return [cache.replies.get(_digest([self.fingerprint, instruction, first, second, order]))
                for order, (first, second) in enumerate(((mine, theirs), (theirs, mine)))]


def length_controlled_win_rate(outcomes: list[float], len_model: list[int], len_baseline: list[int],
                               clusters: list | None = None, seed: int = 0) -> dict:
    """AlpacaEval 2's length-controlled win rate for one model against one baseline (Dubois et al., 2024).

    AlpacaEval fits a GLM of the judge's preference on the standardized length difference,
    `logit P(model wins) = theta + phi * tanh((len_model - len_baseline) / std(len_model - len_baseline))`
    (+ an instruction-difficulty term fitted on its leaderboard's other models, which one comparison does not have;
    it is left out), and reports the win rate predicted at equal lengths: `100 * sigmoid(theta)` here, on a 0-1
    scale. Outcomes may be fractional (ties count 1/2: weighted as half a win and half a loss). The interval is a
    percentile bootstrap over prompts (`clusters`). Lengths in characters, as AlpacaEval's.
    """
    y = np.asarray(outcomes, dtype=float)
    delta = np.asarray(len_model, dtype=float) - np.asarray(len_baseline, dtype=float)
    theta, phi = _fit_glm(y, delta)
    result = {"lc_win_rate": _sigmoid(theta), "length_coefficient": phi, "n": int(len(y))}
    groups = np.asarray(clusters if clusters is not None else range(len(y)))
    unique = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in unique]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOTSTRAP if len(unique) > 1 else 0):
        idx = np.concatenate([members[j] for j in rng.integers(0, len(unique), len(unique))])
        draws.append(_sigmoid(_fit_glm(y[idx], delta[idx])[0]))
    result["low"], result["high"] = (float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))) \
        if draws else (None, None)
    return result


def _sigmoid(x: float) -> float:
    return float(1 / (1 + math.exp(-x))) if x >= 0 else float(math.exp(x) / (1 + math.exp(x)))


def _fit_glm(y: np.ndarray, delta: np.ndarray, ridge: float = 1e-6, steps: int = 50) -> tuple[float, float]:
    """Logistic regression of soft outcomes y in [0, 1] on [1, tanh(delta / std)], by Newton's method."""
    std = delta.std()
    x = np.column_stack([np.ones_like(delta), np.tanh(delta / std) if std > 0 else np.zeros_like(delta)])
    w = np.zeros(2)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w)))
        gradient = x.T @ (y - p) - ridge * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        w += step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])
