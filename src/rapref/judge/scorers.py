"""Scorers for `rapref judge`, in a plain registry keyed by the name `--scorer` uses.

    if-official:ifeval       the official IFEval checkers (if-official:ifbench: IFBench's) on the benchmarks' own
                             `instruction_id_list` + `kwargs`: 1 + 9 x fraction met
    reward-model:PATH        a Hugging Face sequence-classification reward model (local folder or hub id)
    constraints              rapref's own small constraint checks (not IFEval): the fraction of a row's
                             `constraints` ([{"type": "max_words", "value": 50}, ...]) the response satisfies
    python:MODULE:FUNCTION   any function f(row, text) -> float (synthetic tasks with a known true reward)
    llm-judge:URL            an LLM on an OpenAI-compatible server grades each answer 1-10 (MT-Bench's manner);
                             llm-judge-pairwise:URL compares against --against in both orders (AlpacaEval's manner)
                             (`rapref.judge.llm_judge`)

A scorer is `score(rows, texts) -> list[float]` plus an `id` (its name, shown in outputs), a `fingerprint` of what
computes its scores (keys the judge's cache, so a scorer changed in place is never answered from the cache) and the
`row_fields` it reads besides the text (None: every field of the row but rapref's own bookkeeping).

| scorer | fingerprint |
|---|---|
| `reward-model:PATH` | `rapref.models.model_fingerprint`: config and tokenizer content, weight files' sizes and times |
| `python:M:F` | the source of module M (the file), so editing F or a helper it calls gives new scores |
| `constraints` | the source of its module (`rapref.judge.constraints`: its checks) |
| `if-official:B` | the `if-verifiable` package version and the source of its module (`rapref.judge.if_official`) |
| `llm-judge:URL` | the served model (its folder's fingerprint where the server reports one) and the template |
"""

from __future__ import annotations

import functools
import importlib
from typing import Callable

from rapref.io import InputError
from rapref.judge.base import Scorer
from rapref.models import model_fingerprint
from rapref.progress import say

# name -> "module:Class", imported on first use (lm-evaluation-harness's registries do the same), or a factory
# registered from Python (`register_scorer`)
SCORERS: dict[str, str | Callable[..., Scorer]] = {
    "python": "rapref.judge.python_scorer:PythonScorer",
    "reward-model": "rapref.judge.reward_model:RewardModelScorer",
    "constraints": "rapref.judge.constraints:ConstraintScorer",
    "if-official": "rapref.judge.if_official:OfficialInstructionScorer",
    "llm-judge": "rapref.judge.llm_judge:SingleAnswerJudge",
    "llm-judge-pairwise": "rapref.judge.llm_judge:PairwiseJudge",
}

# old scorer names that keep working, each a one-line notice: `ifeval` was rapref's own small checks (not IFEval's)
ALIASES = {"ifeval": "constraints"}


def scorer_fingerprint(spec: str, trust_remote_code: bool = False) -> str:
    """The fingerprint a scorer would have, without loading a reward model (for settings guards)."""
    name, _, argument = spec.partition(":")
    if name == "reward-model" and argument:
        return f"reward-model:{model_fingerprint(argument)}"
    return build_scorer(spec, trust_remote_code).fingerprint


def register_scorer(name: str):
    """A decorator adding a scorer factory (a `Scorer` subclass or a function returning one) under `name`."""
    def wrap(factory):
        SCORERS[name] = factory
        return factory

    return wrap


def scorer_class(name: str) -> Callable[..., Scorer]:
    """The factory registered under `name` (or an old name of it), its module imported on first use."""
    if name in ALIASES and name not in SCORERS:
        name = _renamed(name)
    if name not in SCORERS:
        raise InputError(f"unknown scorer {name!r}; choose one of {', '.join(sorted(SCORERS))}")
    entry = SCORERS[name]
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        entry = SCORERS[name] = getattr(importlib.import_module(module), attribute)
    return entry


@functools.cache  # the notice once per process
def _renamed(old: str) -> str:
    say(f"note: scorer {old!r} is now called {ALIASES[old]!r} (rapref's own checks; IFEval's official checkers are "
        "if-official:ifeval)")
    return ALIASES[old]


def canonical_scorer(spec: str) -> str:
    """The scorer spelled by its current name (`ifeval` -> `constraints`): what a study records and compares."""
    name, colon, argument = spec.partition(":")
    if name in ALIASES and name not in SCORERS:
        name = _renamed(name)
    return f"{name}{colon}{argument}"


def build_scorer(spec: str, trust_remote_code: bool = False, **options) -> Scorer:
    """`name` or `name:argument` -> a scorer; a clear one-line error when it cannot load. `options` go to the
    scorer (the LLM judge's template and model)."""
    name, _, argument = spec.partition(":")
    return scorer_class(name)(argument, trust_remote_code=trust_remote_code, **options)
