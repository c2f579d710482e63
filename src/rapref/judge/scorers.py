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
| `constraints` | the source of this module (its checks) |
| `if-official:B` | the `if-verifiable` package version and the source of this module |
| `llm-judge:URL` | the served model (its folder's fingerprint where the server reports one) and the template |
"""

from __future__ import annotations

import importlib
import json
import re
from typing import Callable

from rapref.io import InputError

SCORERS: dict[str, Callable[..., "Scorer"]] = {}


class Scorer:
    id: str = "scorer"
    fingerprint: str = ""  # what computes the scores; set by every scorer
    row_fields: tuple[str, ...] | None = None  # the row fields the score depends on (None: all but bookkeeping)

    def score(self, rows: list[dict], texts: list[str]) -> list[float]:
        raise NotImplementedError


def source_fingerprint(*parts: str) -> str:
    """A short hash of source files (by path) and version strings."""
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256()
    for part in parts:
        path = Path(part)
        digest.update(path.read_bytes() if path.is_file() else part.encode())
    return digest.hexdigest()[:16]


def scorer_fingerprint(spec: str, trust_remote_code: bool = False) -> str:
    """The fingerprint a scorer would have, without loading a reward model (for settings guards)."""
    name, _, argument = spec.partition(":")
    if name == "reward-model" and argument:
        from rapref.models import model_fingerprint

        return f"reward-model:{model_fingerprint(argument)}"
    return build_scorer(spec, trust_remote_code).fingerprint


def register_scorer(name: str):
    def wrap(factory):
        SCORERS[name] = factory
        return factory

    return wrap


def build_scorer(spec: str, trust_remote_code: bool = False, **options) -> Scorer:
    """`name` or `name:argument` -> a scorer; a clear one-line error when it cannot load. `options` go to the
    scorer (the LLM judge's template and model)."""
    name, _, argument = spec.partition(":")
    if name.startswith("llm-judge"):
        import rapref.judge.llm_judge  # noqa: F401 - registers the LLM judges
    if name not in SCORERS:
        raise InputError(f"unknown scorer {name!r}; choose one of {', '.join(sorted(SCORERS))}")
    return SCORERS[name](argument, trust_remote_code=trust_remote_code, **options)


# --- a programmatic scorer --------------------------------------------------------------------------------------------


@register_scorer("python")
class PythonScorer(Scorer):
    def __init__(self, target: str, **_):
        module_name, _, function_name = target.rpartition(":")
        if not module_name or not function_name:
            raise InputError(f"scorer python:{target}: expected python:MODULE:FUNCTION")
        try:
            module = importlib.import_module(module_name)
            self.fn = getattr(module, function_name)
        except (ImportError, AttributeError) as err:
            raise InputError(f"scorer python:{target}: cannot load ({err})") from None
        if not callable(self.fn) or not _takes_row_and_text(self.fn):
            raise InputError(f"scorer python:{target}: expected a function f(row, text) -> float (row: the "
                             "generation's JSON object, text: its answer)")
        self.id = f"python:{target}"
        self.fingerprint = source_fingerprint(getattr(module, "__file__", None) or target)

    def score(self, rows, texts):
        scores = []
        for row, text in zip(rows, texts):
            try:
                value = float(self.fn(row, text))
            except Exception as err:  # noqa: BLE001 - the user's function: one line naming the row
                raise InputError(f"scorer {self.id}: failed on prompt {row.get('prompt_id')!r} "
                                 f"({type(err).__name__}: {err})") from None
            if value != value:
                raise InputError(f"scorer {self.id}: returned NaN for prompt {row.get('prompt_id')!r}")
            scores.append(value)
        return scores


def _takes_row_and_text(fn) -> bool:
    import inspect

    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin): let the call tell
        return True
    return True


# --- a Hugging Face reward model ----------------------------------------------------------------------------------------


@register_scorer("reward-model")
class RewardModelScorer(Scorer):
    def __init__(self, path: str, trust_remote_code: bool = False, batch_size: int = 8, **_):
        from rapref.models import ModelArgs, load_model, load_tokenizer, model_fingerprint

        if not path:
            raise InputError("scorer reward-model: give its path, e.g. reward-model:runs/rm")
        args = ModelArgs(name_or_path=path, trust_remote_code=trust_remote_code)
        self.tokenizer = load_tokenizer(args)
        self.model, info = load_model(args, kind="reward-model", output_loading_info=True)
        untrained = sorted(set(info.get("missing_keys") or ()))
        if untrained:  # e.g. a causal LM loaded as a classifier: its score head would be random
            raise InputError(f"scorer reward-model:{path}: not a trained reward model; the weights "
                             f"{', '.join(untrained[:3])}{' ...' if len(untrained) > 3 else ''} are missing and "
                             "would be initialised at random")
        self.model.eval()
        self.batch_size, self.id = batch_size, f"reward-model:{path}"
        self.fingerprint = f"reward-model:{model_fingerprint(path)}"
        self.row_fields = ("prompt",)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def render(self, prompt, text: str) -> str:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        messages = messages + [{"role": "assistant", "content": text}]
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return "\n\n".join(m["content"] for m in messages)

    def score(self, rows, texts):
        import torch

        rendered = [self.render(row["prompt"], text) for row, text in zip(rows, texts)]
        scores = []
        for start in range(0, len(rendered), self.batch_size):
            batch = self.tokenizer(rendered[start:start + self.batch_size], return_tensors="pt", padding=True,
                                   truncation=True)
            with torch.no_grad():
                logits = self.model(**batch).logits  # (B, num_labels)
            scores += logits[:, 0].float().tolist()
        return scores


# --- verifiable instructions (IFEval-style) ---------------------------------------------------------------------------

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


@register_scorer("constraints")
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


# --- the official IFEval / IFBench checkers ---------------------------------------------------------------------------


@register_scorer("if-official")
class OfficialInstructionScorer(Scorer):
    """The official IFEval (`if-official:ifeval`) or IFBench (`if-official:ifbench`) instruction checkers, from the
    `if-verifiable` package (`pip install 'rapref[ifeval]'`). Rows carry the benchmarks' own `instruction_id_list` and
    `kwargs` (rapref generate keeps them). Score = 1 + 9 x the fraction of the row's instructions met (strict).

    A checker that needs data the machine lacks (nltk's punkt tokenizers for sentence counts and word tokenization,
    which cannot be downloaded offline) is *unavailable*: its instruction is left out of the row's fraction and
    counted in the aggregate, never scored as a failure; a row whose every instruction is unavailable is refused.
    """

    def __init__(self, benchmark: str = "", **_):
        import contextlib
        import importlib
        import io

        benchmark = benchmark or "ifeval"
        if benchmark not in ("ifeval", "ifbench"):
            raise InputError(f"scorer if-official:{benchmark}: choose if-official:ifeval or if-official:ifbench")
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # its nltk.download attempt fails offline; we check below
                registry = importlib.import_module(f"if_verifiable.{benchmark}.instructions_registry")
        except ImportError:
            raise InputError("scorer if-official needs the if-verifiable package: pip install 'rapref[ifeval]'") \
                from None
        from importlib import metadata

        self.registry, self.id = registry.INSTRUCTION_DICT, f"if-official:{benchmark}"
        self.fingerprint = source_fingerprint(__file__, f"if-verifiable=={metadata.version('if-verifiable')}")
        self.row_fields = ("prompt", "instruction_id_list", "kwargs")
        self.unavailable: dict[str, str] = {}  # instruction id -> what it lacks

    def check(self, row: dict, text: str, where: str) -> list[bool | None]:
        """Per instruction: met (strict), not met, or None where the checker cannot run here."""
        from rapref.prompting import instruction_text

        ids, kwargs = row.get("instruction_id_list"), row.get("kwargs") or []
        if not ids:
            raise InputError(f"scorer {self.id}: {where} has no 'instruction_id_list' (generate from the benchmark's "
                             "own prompt file, which carries it)")
        text = text.split("</think>", 1)[-1].strip()
        out = []
        for i, instruction in enumerate(ids):
            if instruction not in self.registry:
                raise InputError(f"scorer {self.id}: {where}: unknown instruction {instruction!r}")
            checker = self.registry[instruction](instruction)
            checker.build_description(**{k: v for k, v in (kwargs[i] if i < len(kwargs) else {}).items()
                                         if v is not None})
            if "prompt" in (checker.get_instruction_args() or {}):
                checker.build_description(prompt=instruction_text(row["prompt"]))
            try:
                out.append(bool(text) and bool(checker.check_following(text)))
            except LookupError as err:  # nltk data missing
                resource = re.search(r"Resource\W+(\w+)", str(err))
                self.unavailable[instruction] = f"nltk data '{resource.group(1) if resource else 'unknown'}'"
                out.append(None)
        if all(v is None for v in out):
            raise InputError(f"scorer {self.id}: {where}: every instruction needs data this machine lacks "
                             f"({', '.join(sorted(set(self.unavailable.values())))}); install it where the internet is "
                             "reachable (python -m nltk.downloader punkt punkt_tab) or leave these prompts out")
        return out

    def score(self, rows, texts):
        scores = []
        for i, (row, text) in enumerate(zip(rows, texts)):
            met = [v for v in self.check(row, text, f"row {i} ({row.get('prompt_id')})") if v is not None]
            scores.append(1 + 9 * sum(met) / len(met))
        return scores

    def aggregate(self, rows, texts) -> dict:
        """Prompt-level and instruction-level strict accuracy over the available instructions, and what was not
        available."""
        results = [self.check(row, text, f"row {i}") for i, (row, text) in enumerate(zip(rows, texts))]
        available = [[v for v in r if v is not None] for r in results]
        left_out: dict[str, int] = {}
        for row, r in zip(rows, results):
            for instruction, v in zip(row["instruction_id_list"], r):
                if v is None:
                    left_out[instruction] = left_out.get(instruction, 0) + 1
        return {"prompt_level_strict": sum(all(a) for a in available) / len(available),
                "instruction_level_strict": sum(map(sum, available)) / sum(map(len, available)),
                "instructions_scored": sum(map(len, available)),
                "instructions_unavailable": left_out,
                "unavailable_because": {k: self.unavailable[k] for k in left_out}}
