"""Exports of `rapref generate` output for the standard benchmarks' judges (run them where you have API access).

    rapref export alpaca-eval runs/gen.jsonl --name my-model --out model_outputs.json
    rapref export mt-bench runs/gen.jsonl --name my-model --out my-model.jsonl      (FastChat llm_judge answers)
    rapref export arena-hard runs/gen.jsonl --name my-model --out my-model.jsonl    (arena-hard-auto answers)
    rapref export lm-eval runs/train                                                (prints the command)

For benchmarks the prompts come from the benchmark: generate with `--prompts` pointing at its questions, keeping
their ids (AlpacaEval `instruction`, MT-Bench / Arena-Hard `question_id`).
"""

from __future__ import annotations

import shlex
import time
import uuid

from rapref.evaluate.generate import read_generations
from rapref.prompting import instruction_text
from rapref.goals import GoalSpec
from rapref.io import write_json_atomic, write_jsonl_atomic

FORMATS = ("alpaca-eval", "mt-bench", "arena-hard", "lm-eval")


def alpaca_eval(rows: list[dict], name: str) -> list[dict]:
    """AlpacaEval 2.0 `model_outputs.json`: a list of {instruction, output, generator, dataset}."""
    return [{"instruction": instruction_text(r["prompt"]), "output": r["text"], "generator": name,
             "dataset": r.get("dataset", "helpful_base")} for r in rows]


def mt_bench(rows: list[dict], name: str) -> list[dict]:
    """FastChat llm_judge answer file: one line per question, turns in order (single-turn generations: one turn).

    Rows sharing a `question_id` (or prompt_id) with a `turn` field become one multi-turn answer.
    """
    grouped: dict[str, list] = {}
    for r in rows:
        qid = r.get("question_id", r["prompt_id"])
        grouped.setdefault(qid, []).append(r)
    out = []
    for qid, items in grouped.items():
        items = sorted(items, key=lambda r: r.get("turn", 0))
        out.append({"question_id": _maybe_int(qid), "answer_id": uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{qid}").hex,
                    "model_id": name, "choices": [{"index": 0, "turns": [r["text"] for r in items]}],
                    "tstamp": time.time()})
    return out


def arena_hard(rows: list[dict], name: str, tokenizer=None) -> list[dict]:
    """arena-hard-auto answer file: turns are {content, token_len}."""
    out = []
    for answer in mt_bench(rows, name):
        turns = [{"content": t, "token_len": len(tokenizer(t)["input_ids"]) if tokenizer else len(t.split())}
                 for t in answer["choices"][0]["turns"]]
        out.append({**answer, "choices": [{"index": 0, "turns": turns}]})
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


def _maybe_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def main(fmt: str, source: str, out: str | None, name: str, tasks: str = "ifeval") -> str:
    if fmt == "lm-eval":
        return lm_eval_command(source, tasks)
    rows = read_generations(source)
    if fmt == "alpaca-eval":
        write_json_atomic(out, alpaca_eval(rows, name))
    elif fmt == "mt-bench":
        write_jsonl_atomic(out, mt_bench(rows, name))
    elif fmt == "arena-hard":
        write_jsonl_atomic(out, arena_hard(rows, name))
    else:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {FORMATS}")
    return out


__all__ = ["FORMATS", "alpaca_eval", "mt_bench", "arena_hard", "lm_eval_command", "main"]
