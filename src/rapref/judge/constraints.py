"""`constraints`: rapref's own small constraint checks (not IFEval): the fraction of a row's `constraints`
([{"type": "max_words", "value": 50}, ...]) the response satisfies; fingerprinted by this module's source."""

from __future__ import annotations

import json
import re
from typing import Callable

from rapref.io import InputError
from rapref.judge.base import Scorer, source_fingerprint

CHECKS: dict[str, Callable[[str, object], bool]] = {
    "max_words": lambda text, n: len(text.split()) <= int(n),
    "min_words": lambda text, n: len(text.split()) >= int(n),
    "include_keywords": lambda text, words: all(w.lower() in text.lower() for w in words),
    "forbidden_words": lambda text, words: not any(re.search(rf"\b{re.escape(w)}\b", text, re.I) for w in words),
    "no_commas": lambda text, _: "," not in text,
    "all_lowercase": lambda text, _: text == text.lower(),
    "all_uppercase": lambda text, _: text == text.upper(),
    "end_with": lambda text, phrase: text.rstrip().endswith(phrase),
    "start_with": lambda text, phrase: text.lstrip().startswith(phrase),
    "bullet_points": lambda text, n: len(re.findall(r"^\s*[*-] ", text, re.M)) == int(n),
    "json_format": lambda text, _: _is_json(text),
    "max_sentences": lambda text, n: len([s for s in re.split(r"[.!?]+", text) if s.strip()]) <= int(n),
}


def _is_json(text: str) -> bool:
    stripped = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        json.loads(stripped)
    except ValueError:
        return False
    return True


class ConstraintScorer(Scorer):
    """rapref's own constraint checks, not IFEval: each row carries `constraints: [{"type": "max_words", "value": 50},
    ...]`; the score is the fraction met. Use `if-official:ifeval` for IFEval itself."""

    id = "constraints"
    row_fields = ("prompt", "constraints")

    def __init__(self, *_, **__):
        self.fingerprint = source_fingerprint(__file__)

    def score(self, rows, texts):
        scores = []
        for i, (row, text) in enumerate(zip(rows, texts)):
            constraints = row.get("constraints")
            if not constraints:
                raise InputError(f"scorer constraints: row {i} ({row.get('prompt_id')}) has no 'constraints'")
            met = []
            for c in constraints:
                if c.get("type") not in CHECKS:
                    raise InputError(f"scorer constraints: row {i}: unknown constraint type {c.get('type')!r}; "
                                     f"known: {', '.join(sorted(CHECKS))}")
                met.append(CHECKS[c["type"]](text, c.get("value")))
            scores.append(sum(met) / len(met))
        return scores
