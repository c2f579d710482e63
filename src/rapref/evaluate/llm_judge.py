"""An LLM as the judge, through an OpenAI-compatible server (`rapref.evaluate.serving`), in the benchmarks' manners.

    rapref judge gen.jsonl --scorer llm-judge:http://127.0.0.1:8000/v1 --out j            # MT-Bench: 1-10 grades
    rapref judge gen.jsonl --against base.jsonl --scorer llm-judge-pairwise:http://127.0.0.1:8000/v1 --out w

- **Single-answer grading** (MT-Bench's manner): the judge sees the question and the answer and ends its reply with
  "[[rating]]"; the grade (1-10) is parsed from it. A reply without a parseable grade is counted (`unscored`), never
  given a score.
- **Pairwise** (AlpacaEval's manner): against a baseline file, rows matched as `rapref judge --against` matches them.
  The judge sees the instruction and both outputs and names the better one, in both orders (cancelling position
  bias); a comparison scores 1 when the model's output wins both orders, 0 when it loses both and 1/2 when the orders
  disagree (a tie); an order whose reply names neither output is left out, and a comparison with no parsed order is
  counted as unscored. Reported: the raw win rate and AlpacaEval 2's length-controlled win rate
  (`length_controlled_win_rate`), each with a 95% interval.
- The prompts are templates in files (`judge_templates/single.txt`, `pairwise.txt`; `--judge-template FILE` replaces
  them) with the placeholders {instruction}, {output} / {output_1}, {output_2}.
- Every call is cached (the judge's `cache.jsonl`) by the judge's fingerprint (served model and, where the server
  reports a local folder, its content fingerprint), the template, the prompt, the texts and the order.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from rapref.evaluate.scorers import Scorer, register_scorer
from rapref.io import InputError

TEMPLATES = Path(__file__).parent / "judge_templates"
MAX_TOKENS = {"single": 512, "pairwise": 16}
CONCURRENCY = 8
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


def parse_grade(reply: str) -> float | None:
    """The 1-10 grade of an MT-Bench-style reply, or None.

    >>> parse_grade("Good answer. Rating: [[8]]"), parse_grade("[[7.5]]"), parse_grade("I'd say 11"), parse_grade("")
    (8.0, 7.5, None, None)
    """
    found = re.findall(r"\[\[(\d+(?:\.\d+)?)\]\]", reply) or re.findall(r"[Rr]ating:\s*(\d+(?:\.\d+)?)", reply)
    if not found:
        return None
    grade = float(found[-1])
    return grade if 1 <= grade <= 10 else None


def parse_choice(reply: str) -> int | None:
    """1 when the reply names output (a), 2 for (b), None for neither or both.

    >>> parse_choice("Output (a)"), parse_choice("output (B)"), parse_choice("b"), parse_choice("(a) or (b)")
    (1, 2, 2, None)
    """
    text = reply.strip().lower()
    marks = set(re.findall(r"output\s*\(?([ab])\)?", text)) or set(re.findall(r"\(([ab])\)", text))
    if not marks and text.rstrip(".") in ("a", "b"):
        marks = {text.rstrip(".")}
    return None if len(marks) != 1 else (1 if marks == {"a"} else 2)


class LLMJudge(Scorer):
    """The judge: a served model, a template, a cache of its calls (set by `rapref judge`)."""

    kind = "single"

    def __init__(self, url: str, template: str | None = None, judge_model: str | None = None, **_):
        from rapref.evaluate.serving import Endpoint

        if not url:
            raise InputError(f"scorer {self.name}: expected {self.name}:URL of an OpenAI-compatible server")
        self.endpoint = Endpoint(url)
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

    name = "llm-judge"

    def ask(self, prompts: list[str]) -> list[str]:
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            return list(pool.map(lambda text: self.endpoint.chat([{"role": "user", "content": text}],
                                                                 MAX_TOKENS[self.kind]), prompts))


def _served_fingerprint(served: dict) -> str:
    root = served.get("root")
    if root and Path(root).is_dir():
        from rapref.models import model_fingerprint

        return model_fingerprint(root)
    return json.dumps({k: served.get(k) for k in ("id", "root", "max_model_len")}, sort_keys=True)


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


@register_scorer("llm-judge")
class SingleAnswerJudge(LLMJudge):
    """MT-Bench's single-answer grading: 1-10, None where the reply holds no grade."""

    kind, name = "single", "llm-judge"

    def score(self, rows, texts):
        prompts = [render(self.template, instruction=_instruction(r["prompt"]), output=t) for r, t in zip(rows, texts)]
        return [parse_grade(reply) for reply in self.ask(prompts)]


@register_scorer("llm-judge-pairwise")
class PairwiseJudge(LLMJudge):
    """AlpacaEval's pairwise preference, both orders (see the module notes). `rapref judge` calls `compare`."""

    kind, name = "pairwise", "llm-judge-pairwise"

    def score(self, rows, texts):
        raise InputError(f"scorer {self.name} compares two outputs: give the baseline with --against FILE")

    def compare(self, pairs: list[tuple[dict, str, str]], cache) -> list[float | None]:
        """(row, model's text, baseline's text) -> the model's outcome: 1, 1/2, 0, or None (no order parsed)."""
        calls, keys = {}, []
        for row, mine, theirs in pairs:
            instruction = _instruction(row["prompt"])
            for order, (first, second) in enumerate(((mine, theirs), (theirs, mine))):
                key = _digest([self.fingerprint, instruction, first, second, order])
                keys.append(key)
                if key not in cache.scores:
                    calls[key] = render(self.template, instruction=instruction, output_1=first, output_2=second)
        if calls:
            from rapref.progress import track

            todo = list(calls)
            chunks = [todo[i:i + 64] for i in range(0, len(todo), 64)]
            for chunk in track(chunks, f"Judging ({self.id}, both orders)", unit="chunk"):
                replies = self.ask([calls[k] for k in chunk])
                cache.add({k: parse_choice(r) for k, r in zip(chunk, replies)})  # 1, 2 or None (cached too)
        outcomes = []
        for i in range(len(pairs)):
            first, second = cache.scores[keys[2 * i]], cache.scores[keys[2 * i + 1]]
            wins = [v for v in ((1.0 if first == 1 else 0.0) if first else None,
                                (1.0 if second == 2 else 0.0) if second else None) if v is not None]
            outcomes.append(sum(wins) / len(wins) if wins else None)
        return outcomes


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
