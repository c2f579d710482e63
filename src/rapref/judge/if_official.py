"""`if-official:ifeval` / `if-official:ifbench`: the official IFEval / IFBench instruction checkers (the
`if-verifiable` package) as a scorer; fingerprinted by that package's version and this module's source."""

from __future__ import annotations

import contextlib
import importlib
import io
import re
from importlib import metadata

from rapref.io import InputError
from rapref.judge.base import Scorer, source_fingerprint
from rapref.prompting import instruction_text


class OfficialInstructionScorer(Scorer):
    """The official IFEval (`if-official:ifeval`) or IFBench (`if-official:ifbench`) instruction checkers, from the
    `if-verifiable` package (`pip install 'rapref[ifeval]'`). Rows carry the benchmarks' own `instruction_id_list` and
    `kwargs` (rapref generate keeps them). Score = 1 + 9 x the fraction of the row's instructions met (strict).

    A checker that needs data the machine lacks (nltk's punkt tokenizers for sentence counts and word tokenization,
    which cannot be downloaded offline) is *unavailable*: its instruction is left out of the row's fraction and
    counted in the aggregate, never scored as a failure; a row whose every instruction is unavailable is refused.
    """

    def __init__(self, benchmark: str = "", **_):
        benchmark = benchmark or "ifeval"
        if benchmark not in ("ifeval", "ifbench"):
            raise InputError(f"scorer if-official:{benchmark}: choose if-official:ifeval or if-official:ifbench")
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # its nltk.download attempt fails offline; we check below
                registry = importlib.import_module(f"if_verifiable.{benchmark}.instructions_registry")
        except ImportError:
            raise InputError("scorer if-official needs the if-verifiable package: pip install 'rapref[ifeval]'") \
                from None
        self.registry, self.id = registry.INSTRUCTION_DICT, f"if-official:{benchmark}"
        self.fingerprint = source_fingerprint(__file__, f"if-verifiable=={metadata.version('if-verifiable')}")
        self.row_fields = ("prompt", "instruction_id_list", "kwargs")
        self.unavailable: dict[str, str] = {}  # instruction id -> what it lacks

    def check(self, row: dict, text: str, where: str) -> list[bool | None]:
        """Per instruction: met (strict), not met, or None where the checker cannot run here."""
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
