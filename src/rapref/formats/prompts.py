"""Prompt files and the prompts of a dataset folder, as `rapref generate`, `diagnose` and the studies read
them: rapref's own files, `rapref augment` folders and the benchmarks' question files."""

from __future__ import annotations

from rapref.formats.dataset import is_augment_folder, read_split
from rapref.io import InputError, read_rows

# Fields of benchmark question files carried into the generations, so `rapref export` can write them back.
SOURCE_FIELDS = ("question_id", "category", "cluster", "dataset", "instruction", "constraints", "answer", "key",
                 "instruction_id_list", "kwargs")  # the last two: IFEval / IFBench checkers


def load_prompts(source: str, split: str = "test", limit: int | None = None) -> list[dict]:
    """Prompt rows {prompt_id, prompt, turns, ...}; prompts are strings or message lists without any goal.

    Besides rapref's own files (`prompt`, optional `prompt_id`) and `rapref augment` folders, the benchmarks' own
    question files are read as they are: MT-Bench `question.jsonl` (`question_id`, `turns`: strings),
    Arena-Hard (`question_id`, `turns`: {content}) and AlpacaEval (`instruction`, `dataset`).
    """

    if is_augment_folder(source):
        table = read_split(source, split)
        rows = [{"prompt_id": split_id(r["source_id"], split), "prompt": r["prompt"], "chosen": r["chosen"],
                 "rejected": r["rejected"], "score_chosen": r["score_chosen"], "score_rejected": r["score_rejected"]}
                for r in table.to_pylist()]
    else:
        rows = [_prompt_row(source, i, r) for i, r in enumerate(next(iter(read_rows(source).values())))]
    if not rows:
        raise InputError(f"{source}: no prompts")
    for i, row in enumerate(rows):
        prompt = row.get("prompt")
        if not prompt or (isinstance(prompt, str) and not prompt.strip()):
            raise InputError(f"{source}: row {i}, field 'prompt': empty or missing (a prompt file needs `prompt`; "
                             "benchmark files need `turns` (MT-Bench, Arena-Hard) or `instruction` (AlpacaEval))")
    return rows[:limit] if limit else rows


def split_id(source_id: str, split: str) -> str:
    """A held-out row's id named by the split it is read from: `test:4` for the input's row `train:4` held out for
    test (the number still points at the input row).

    >>> split_id("train:4", "test"), split_id("test:7", "test"), split_id("q12", "test")
    ('test:4', 'test:7', 'test:q12')
    """
    source_id = str(source_id)
    _, sep, rest = source_id.partition(":")
    return f"{split}:{rest if sep and '|' not in source_id else source_id}"


def _prompt_row(source: str, i: int, row: dict) -> dict:
    if "prompt" not in row and isinstance(row.get("turns"), list):  # MT-Bench / Arena-Hard questions
        turns = [t.get("content") if isinstance(t, dict) else t for t in row["turns"]]
        if not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            raise InputError(f"{source}: row {i}, field 'turns': every turn must be non-empty text")
        qid = row.get("question_id", i)
        return {**row, "prompt_id": str(qid), "question_id": qid, "prompt": turns[0], "turns": turns}
    if "prompt" not in row and "instruction" in row:  # AlpacaEval
        return {**row, "prompt_id": str(row.get("prompt_id", i)), "prompt": row["instruction"]}
    return dict(row, prompt_id=str(row.get("prompt_id", i)))
