"""Exports of `rapref generate` output for the standard benchmarks' judges (run them where you have API access).

    rapref export alpaca-eval runs/gen.jsonl --name my-model --out model_outputs.json
    rapref export mt-bench runs/gen.jsonl --name my-model --out my-model.jsonl      (FastChat llm_judge answers)
    rapref export arena-hard runs/gen.jsonl --name my-model --out my-model.jsonl    (arena-hard-auto answers)
    rapref export mt-bench sweep.jsonl --goal 10 --name my-model-g10 --out g10.jsonl (one goal of a sweep)
    rapref export lm-eval runs/train --goal 10                                      (prints the rapref lm-eval command)

The prompts come from the benchmark's own question file (`rapref generate --prompts question.jsonl`), whose ids and
fields the generations carry back: MT-Bench and Arena-Hard `question_id` (and every turn, the second asked with the
first answer in context), AlpacaEval `instruction` and `dataset`. Arena-Hard's `token_len` is counted with the
policy's tokenizer (`--tokenizer` to count with another). A goal sweep is exported one goal per file.
"""

from __future__ import annotations

import re
import shlex
import sys
import time
import uuid
from dataclasses import dataclass

from rapref.formats.generations import read_generations
from rapref.goals import check_goals
from rapref.inference.sampler import finite_number
from rapref.io import InputError, write_json_atomic, write_jsonl_atomic
from rapref.models import load_tokenizer, model_goal_spec
from rapref.prompting import has_chat_template, instruction_text
from rapref.runs.folder import RunFile
from rapref.settings import SettingError, check, setting

FORMATS = ("alpaca-eval", "mt-bench", "arena-hard", "lm-eval")


@dataclass
class ExportConfig:
    """What `rapref export FORMAT` writes (its flags are derived from these fields, `rapref.settings`)."""

    format: str = setting(help="the benchmark whose answer file to write", positional=True, choices=FORMATS)
    source: str = setting(help="generations JSONL (lm-eval: the trained model folder)", positional=True)
    out: str | None = setting(None, "output file (every format but lm-eval, which prints a command)")
    name: str = setting("rapref-model", "model name written into the files")
    tasks: str = setting("ifeval", "lm-eval: task list")
    goal: float | None = setting(None, "the goal to export from a goal sweep (one file per goal); lm-eval: the goal "
                                       "the printed command asks for", rule=finite_number(),
                                 shown="the top of the scale")
    tokenizer: str | None = setting(None, "arena-hard: tokenizer that counts token_len", shown="the policy's")
    overwrite: bool = setting(False, "replace an answer file that rapref export wrote")

    def __post_init__(self):
        check(self)
        if self.format == "lm-eval":
            given = [n for n in ("out", "tokenizer") if getattr(self, n) is not None]
            if given:
                raise SettingError("export lm-eval prints the `rapref lm-eval` command to run; it writes no file and "
                                   "counts no tokens: leave out {}", given[0])
            return
        if not self.out:
            raise SettingError(f"export {self.format} needs {{}} (the answer file to write)", "out")


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
    unconditioned = sum(r.get("goal") is None for r in rows)
    if unconditioned:  # counted, never dropped unseen: they are another policy's answers (no goal given)
        print(f"export: {len(picked)} rows at goal {goal:g}; left out {unconditioned} rows without a goal "
              f"(unconditioned samples) and {len(rows) - len(picked) - unconditioned} at other goals",
              file=sys.stderr, flush=True)
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
    """The `rapref lm-eval` command (lm-evaluation-harness's own flags, model `rapref`:
    `rapref.export.lm_eval_model`) that runs `tasks` on this policy with its goal where training put it: `goal`
    checked against the policy's scale (default its top), `--apply_chat_template` where the policy has a chat
    template (lm-eval refuses a chat policy without it).

    e.g. `rapref lm-eval --model rapref --model_args pretrained=runs/train,goal=10 --tasks ifeval
    --apply_chat_template --batch_size auto`
    """
    if "," in str(model_dir):
        raise InputError(f"{model_dir}: the path holds a comma, which lm-eval's --model_args reads as the end of "
                         "pretrained=...; move or link the policy to a path without one")
    spec = model_goal_spec(str(model_dir), no_goal=False)
    goal = check_goals([spec.top if goal is None else goal], spec)[0]
    argv = ["rapref", "lm-eval", "--model", "rapref", "--model_args", f"pretrained={model_dir},goal={goal:g}",
            "--tasks", tasks]
    if has_chat_template(load_tokenizer(str(model_dir))):
        argv.append("--apply_chat_template")
    return shlex.join([*argv, "--batch_size", "auto"])


BENCHMARKS = {"alpaca-eval": "AlpacaEval", "mt-bench": "MT-Bench", "arena-hard": "Arena-Hard"}
MT_BENCH_CATEGORIES = {"writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"}
ALPACA_EVAL_DATASETS = {"helpful_base", "koala", "oasst", "selfinstruct", "vicuna"}


ARENA_HARD_UID = re.compile(r"[0-9a-f]{32}")  # arena-hard-auto's question_id: a uuid4 hex, lowercase


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def origin(row: dict) -> str | None:
    """The benchmark whose question file a generation came from, read from what that file leaves in it (rapref
    generate carries the question's own fields): AlpacaEval's `instruction` or `dataset` (either one: no other
    benchmark has them), Arena-Hard's `cluster`, `arena-hard` categories and 32-hex-digit ids, MT-Bench's integer
    ids, categories and second turns. None for rapref's own prompt files. The official question sets are not
    shipped (rapref works offline), so this reads the fields' shapes, not the questions' text.

    >>> origin({"question_id": 81, "category": "writing"}), origin({"instruction": "Hi", "dataset": "koala"})
    ('mt-bench', 'alpaca-eval')
    >>> origin({"question_id": 81, "instruction": "Hi", "dataset": "helpful_base"})  # an id added: still AlpacaEval
    'alpaca-eval'
    """
    qid, category = row.get("question_id"), row.get("category")
    if row.get("instruction") is not None or row.get("dataset") is not None:
        return "alpaca-eval"
    if "cluster" in row or str(category or "").startswith("arena-hard") or \
            (isinstance(qid, str) and ARENA_HARD_UID.fullmatch(qid)):
        return "arena-hard"
    turn = row.get("turn")
    if category in MT_BENCH_CATEGORIES or (_whole(turn) and turn > 0) or _whole(qid):
        return "mt-bench"
    return None


def field_problem(row: dict, fmt: str) -> tuple[str, str] | None:
    """(field, what is wrong) for a row that does not have `fmt`'s own fields with their own types, or None.

    >>> field_problem({"question_id": [81]}, "mt-bench")
    ('question_id', "expected MT-Bench's whole-number question id, got [81]")
    >>> field_problem({"question_id": "328C149ED45A41C0B9D6F14659E63599"}, "arena-hard")[1][:40]
    "expected Arena-Hard's question uid (32 l"
    """
    qid, category = row.get("question_id"), row.get("category")
    if fmt == "mt-bench":
        if not _whole(qid):
            return "question_id", f"expected MT-Bench's whole-number question id, got {qid!r}"
        if category is not None and category not in MT_BENCH_CATEGORIES:
            return "category", (f"{category!r} is not an MT-Bench category ({', '.join(sorted(MT_BENCH_CATEGORIES))})")
    elif fmt == "arena-hard":
        if not (isinstance(qid, str) and ARENA_HARD_UID.fullmatch(qid)):
            return "question_id", f"expected Arena-Hard's question uid (32 lowercase hexadecimal digits), got {qid!r}"
        if category is not None and not str(category).startswith("arena-hard"):
            return "category", f"{category!r} is not an Arena-Hard category (arena-hard-v0.1, ...)"
    else:
        for key in ("question_id", "cluster"):
            if row.get(key) is not None:
                return key, (f"{row[key]!r}; AlpacaEval's questions have no {key} (MT-Bench's and Arena-Hard's do): "
                             "rows of two question files joined?")
        if category in MT_BENCH_CATEGORIES or str(category or "").startswith("arena-hard"):
            return "category", f"{category!r} is an MT-Bench or Arena-Hard category, not an AlpacaEval field"
        marked = [k for k in ("instruction", "dataset") if row.get(k) is not None]
        if marked and len(marked) < 2:
            missing = ({"instruction", "dataset"} - set(marked)).pop()
            return missing, f"missing; AlpacaEval's questions carry both instruction and dataset (found {marked[0]})"
        for key in marked:
            if not isinstance(row[key], str) or not row[key].strip():
                return key, f"expected text, got {row[key]!r}"
    return None


def _check_indices(rows: list[dict], source: str) -> None:
    """`sample` and `turn` are whole numbers of 0 or more (0 when absent): they order an answer's turns."""
    for i, row in enumerate(rows, start=1):
        for key in ("sample", "turn"):
            value = row.get(key, 0)
            if not _whole(value) or value < 0:
                raise InputError(f"{source}: row {i}, field {key!r}: expected a whole number of 0 or more, got "
                                 f"{value!r}")


def first_question(row: dict) -> str:
    """The text of the question's first turn, from the prompt the generation was asked with."""
    prompt = row["prompt"]
    if isinstance(prompt, list):
        users = [m.get("content") for m in prompt if m.get("role") == "user"]
        return str(users[0]) if users else ""
    return prompt


def check_source(rows: list[dict], fmt: str, source: str) -> None:
    """Only the benchmark's own generations, matched on the questions' content: every row from that benchmark's
    question file (or from a plain prompt file, where the format allows), one question per id (the same first turn
    in every row of an id), no question under two ids, the turns the benchmark has, and for AlpacaEval one answer
    per instruction, equal to the prompt it was asked with. A refusal says which benchmark the file came from."""
    name = BENCHMARKS[fmt]
    _check_indices(rows, source)
    for i, row in enumerate(rows, start=1):
        came = origin(row)
        if came is not None and came != fmt:
            fields = ", ".join(f"{k} {row[k]!r}" for k in ("question_id", "category", "cluster", "dataset", "turn")
                               if row.get(k) is not None)
            raise InputError(f"{source}: row {i} is a {BENCHMARKS[came]} generation ({fields}); `export {fmt}` takes "
                             f"only {name}'s own: generate from {name}'s question file, or export this file with "
                             f"`rapref export {came}`")
    if fmt in ("mt-bench", "arena-hard"):
        check_questions(rows, fmt, source)
    for i, row in enumerate(rows, start=1):
        problem = field_problem(row, fmt)
        if problem:
            raise InputError(f"{source}: row {i}, field {problem[0]!r}: {problem[1]}; `export {fmt}` takes only "
                             f"generations of {name}'s own question file")
    if fmt in ("mt-bench", "arena-hard"):
        by_id, by_text = {}, {}
        for i, row in enumerate(rows, start=1):
            qid, text = row["question_id"], first_question(row)
            key = (type(qid).__name__, str(qid))
            if key in by_id and by_id[key][1] != text:
                raise InputError(f"{source}: rows {by_id[key][0]} and {i} give question_id {qid!r} two different "
                                 f"questions ({by_id[key][1][:40]!r} / {text[:40]!r}); generations of two question "
                                 "files joined? Export each one alone")
            by_id.setdefault(key, (i, text))
            if text in by_text and by_text[text][1] != key:
                raise InputError(f"{source}: rows {by_text[text][0]} and {i} ask the same question under two ids "
                                 f"({by_text[text][2]!r} and {qid!r}); the judge would count it twice")
            by_text.setdefault(text, (i, key, qid))
        if fmt == "arena-hard":
            later = next((i for i, r in enumerate(rows, start=1) if (r.get("turn") or 0) > 0), None)
            if later is not None:
                raise InputError(f"{source}: row {later}, field 'turn': {rows[later - 1]['turn']}; Arena-Hard "
                                 "questions have one turn (a second turn is MT-Bench's)")
        else:
            _check_turns(rows, source)
    else:
        seen = {}
        for i, row in enumerate(rows, start=1):
            asked = first_question(row)
            if row.get("instruction") is not None and row["instruction"] != asked:
                raise InputError(f"{source}: row {i}, field 'instruction': differs from the prompt it was asked "
                                 f"with ({row['instruction'][:40]!r} / {asked[:40]!r}); AlpacaEval matches outputs to "
                                 "its references by instruction")
            instruction = row.get("instruction") or asked
            if instruction in seen:
                raise InputError(f"{source}: rows {seen[instruction]} and {i} answer the same instruction "
                                 f"({instruction[:40]!r}); AlpacaEval takes one output per instruction: generate with "
                                 "--num-samples 1 (and one goal: --goal G)")
            seen[instruction] = i


def _check_turns(rows: list[dict], source: str) -> None:
    """MT-Bench: every sample of a question answers the same turns, 0, 1, ... without a gap or a repeat."""
    turns: dict = {}
    for i, row in enumerate(rows, start=1):
        turns.setdefault((str(row["question_id"]), row.get("sample", 0)), []).append((row.get("turn", 0), i))
    for (qid, sample), found in turns.items():
        numbers = sorted(t for t, _ in found)
        if numbers != list(range(len(numbers))):
            raise InputError(f"{source}: question_id {qid}, sample {sample}: turns {numbers} (rows "
                             f"{', '.join(str(i) for _, i in found)}); expected 0, 1, ... once each")


def check_questions(rows: list[dict], fmt: str, source: str) -> None:
    """MT-Bench and Arena-Hard judge answers by the benchmark's own `question_id`: generations of other prompts
    have none, and ids made up from rapref's row ids would match the wrong questions (or none)."""
    missing = next((i for i, r in enumerate(rows, start=1) if r.get("question_id") is None), None)
    if missing is not None:
        raise InputError(f"{source}: row {missing}, field 'question_id': missing; {fmt} answers must answer the "
                         f"benchmark's own questions: generate with `--prompts question.jsonl` (the {fmt} question "
                         "file)")


def main(cfg: ExportConfig) -> str:
    """The answer file written (its path), or for lm-eval the command to run."""
    if cfg.format == "lm-eval":
        return lm_eval_command(cfg.source, cfg.tasks, cfg.goal)
    run = RunFile(cfg.out, f"export {cfg.format}", overwrite=cfg.overwrite, inputs=(cfg.source,))
    rows = select_goal(read_generations(cfg.source), cfg.goal, cfg.source)
    check_source(rows, cfg.format, cfg.source)
    with run:
        _write(cfg.format, rows, cfg.source, str(run.path), cfg.name, cfg.tokenizer)
    return cfg.out


def _write(fmt: str, rows: list[dict], source: str, out: str, name: str, tokenizer: str | None) -> None:
    if fmt == "alpaca-eval":
        write_json_atomic(out, alpaca_eval(rows, name))
    elif fmt == "mt-bench":
        write_jsonl_atomic(out, mt_bench(rows, name))
    elif fmt == "arena-hard":
        tokenizer = tokenizer or rows[0].get("model")
        if not tokenizer:
            raise InputError(f"{source}: no `model` field to count token_len with; pass --tokenizer PATH")
        write_jsonl_atomic(out, arena_hard(rows, name, load_tokenizer(tokenizer)))


__all__ = ["FORMATS", "ExportConfig", "alpaca_eval", "mt_bench", "arena_hard", "lm_eval_command", "main"]
