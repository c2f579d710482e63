"""Exports of `rapref generate` output for the standard benchmarks' judges (run them where you have API access).

    rapref export alpaca-eval runs/gen.jsonl --name my-model --out model_outputs.json
    rapref export mt-bench runs/gen.jsonl --name my-model --out my-model.jsonl      (FastChat llm_judge answers)
    rapref export arena-hard runs/gen.jsonl --name my-model --out my-model.jsonl    (arena-hard-auto answers)
    rapref export mt-bench sweep.jsonl --goal 10 --name my-model-g10 --out g10.jsonl (one goal of a sweep)
    rapref export lm-eval runs/train                                                (prints the command)

The prompts come from the benchmark's own question file (`rapref generate --prompts question.jsonl`), whose ids and
fields the generations carry back: MT-Bench and Arena-Hard `question_id` (and every turn, the second asked with the
first answer in context), AlpacaEval `instruction` and `dataset`. Arena-Hard's `token_len` is counted with the
policy's tokenizer (`--tokenizer` to count with another). A goal sweep is exported one goal per file.
"""

from __future__ import annotations

import shlex
import time
import uuid

from rapref.evaluate.generate import read_generations
from rapref.prompting import instruction_text
from rapref.goals import GoalSpec
from rapref.io import InputError, write_json_atomic, write_jsonl_atomic
from rapref.outputs import claim_output_file, finish_output_file, output_lock

FORMATS = ("alpaca-eval", "mt-bench", "arena-hard", "lm-eval")



def select_goal(rows: list[dict], goal: float | None, source: str = "generations") -> list[dict]:
    """The rows of one goal. A benchmark answer file holds one model's answers, so a goal sweep is exported one goal
    at a time (`--goal`), never merged."""
    goals = sorted({r.get("goal") for r in rows}, key=lambda g: (g is None, g))
    if goal is None:
        if len(goals) > 1:
            raise InputError(f"{source}: a goal sweep ({', '.join(format(g, 'g') for g in goals if g is not None)}); "
                             "export one goal per file with --goal G")
        return rows
    picked = [r for r in rows if r.get("goal") is not None and float(r["goal"]) == float(goal)]
    if not picked:
        raise InputError(f"{source}: no generations at goal {goal:g} (goals: {goals})")
    return picked


def alpaca_eval(rows: list[dict], name: str) -> list[dict]:
    """AlpacaEval 2.0 `model_outputs.json`: a list of {instruction, output, generator, dataset}, with the source's
    own instruction and dataset (AlpacaEval matches outputs to its references by instruction)."""
    out = []
    for r in rows:
        item = {"instruction": r.get("instruction") or instruction_text(r["prompt"]), "output": r["text"],
                "generator": name}
        if r.get("dataset") is not None:
            item["dataset"] = r["dataset"]
        out.append(item)
    return out


def mt_bench(rows: list[dict], name: str) -> list[dict]:
    """FastChat llm_judge answer file: one line per question with the source's `question_id`, one choice per sample,
    each holding the answers to the question's turns in order."""
    questions: dict = {}
    for r in rows:
        qid = r.get("question_id")
        questions.setdefault(str(qid), (qid, {}))[1].setdefault(r.get("sample", 0), []).append(r)
    out = []
    for key, (qid, samples) in questions.items():
        choices = [{"index": k, "turns": [r["text"] for r in sorted(items, key=lambda r: r.get("turn", 0))]}
                   for k, items in sorted(samples.items())]
        out.append({"question_id": qid, "answer_id": uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{key}").hex,
                    "model_id": name, "choices": choices, "tstamp": time.time()})
    return out


def arena_hard(rows: list[dict], name: str, tokenizer) -> list[dict]:
    """arena-hard-auto answer file: turns are {content, token_len}, token_len counted in tokens of `tokenizer`."""
    out = []
    for answer in mt_bench(rows, name):
        choices = [{"index": c["index"], "turns": [{"content": t, "token_len": len(tokenizer(t, add_special_tokens=False)
                                                                                  ["input_ids"])}
                                                   for t in c["turns"]]} for c in answer["choices"]]
        out.append({**answer, "choices": choices})
    return out


def lm_eval_command(model_dir: str, tasks: str = "ifeval", goal: float | None = None) -> str:
    """An lm-evaluation-harness command that puts the goal where the model was trained to read it."""
    spec = GoalSpec.load(model_dir)
    text = spec.text(spec.top if goal is None else goal)
    base = ["lm_eval", "--model", "hf", "--model_args", f"pretrained={model_dir}", "--tasks", tasks,
            "--apply_chat_template", "--batch_size", "auto"]
    if spec.placement == "system":
        return shlex.join([*base, "--system_instruction", text])
    # lm-eval has no user-turn prefix option; a system message is the nearest it offers.
    note = (f"# note: this model read its goal in the user turn ({spec.placement}); lm-eval can only pass a system "
            "instruction, so its results may differ from the trained placement\n")
    return note + shlex.join([*base, "--system_instruction", text])


def check_questions(rows: list[dict], fmt: str, source: str) -> None:
    """MT-Bench and Arena-Hard judge answers by the benchmark's own `question_id`: generations of other prompts
    have none, and ids made up from rapref's row ids would match the wrong questions (or none)."""
    missing = next((i for i, r in enumerate(rows, start=1) if r.get("question_id") is None), None)
    if missing is not None:
        raise InputError(f"{source}: row {missing}, field 'question_id': missing; {fmt} answers must answer the "
                         f"benchmark's own questions: generate with `--prompts question.jsonl` (the {fmt} question "
                         "file)")


def main(fmt: str, source: str, out: str | None, name: str, tasks: str = "ifeval", goal: float | None = None,
         tokenizer: str | None = None, overwrite: bool = False) -> str:
    if fmt == "lm-eval":
        return lm_eval_command(source, tasks, goal)
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    target = claim_output_file(out, f"export {fmt}", overwrite=overwrite, inputs=(source,))
    rows = select_goal(read_generations(source), goal, source)
    if fmt in ("mt-bench", "arena-hard"):
        check_questions(rows, fmt, source)
    with output_lock(target):
        _write(fmt, rows, source, str(target), name, tokenizer)
        finish_output_file(target, f"export {fmt}")
    return out


def _write(fmt: str, rows: list[dict], source: str, out: str, name: str, tokenizer: str | None) -> None:
    if fmt == "alpaca-eval":
        write_json_atomic(out, alpaca_eval(rows, name))
    elif fmt == "mt-bench":
        write_jsonl_atomic(out, mt_bench(rows, name))
    elif fmt == "arena-hard":
        from rapref.models import load_tokenizer

        tokenizer = tokenizer or rows[0].get("model")
        if not tokenizer:
            raise InputError(f"{source}: no `model` field to count token_len with; pass --tokenizer PATH")
        write_jsonl_atomic(out, arena_hard(rows, name, load_tokenizer(tokenizer)))


__all__ = ["FORMATS", "alpaca_eval", "mt_bench", "arena_hard", "lm_eval_command", "main"]
