"""`rapref export` takes only the benchmark's own generations, matched on the questions' content: MT-Bench,
Arena-Hard and AlpacaEval files are told apart by what their question files leave in the generations, and a file
from another benchmark, or one whose questions do not agree with their ids, is refused in one line naming where it
came from (exit 2, nothing written)."""

import json

import pytest

from rapref.cli import main as cli
from rapref.evaluate.generate import SOURCE_FIELDS, load_prompts

SOURCES = {"mt-bench": "mt_bench_question.jsonl", "arena-hard": "arena_hard_question.jsonl",
           "alpaca-eval": "alpaca_eval.json"}
NAMES = {"mt-bench": "MT-Bench", "arena-hard": "Arena-Hard", "alpaca-eval": "AlpacaEval"}


def generations(questions, samples: int = 1) -> list[dict]:
    """Rows as `rapref generate` writes them for a benchmark's question file (every turn, the question's fields)."""
    rows = []
    for q in load_prompts(str(questions)):
        for k in range(samples):
            conversation = q["prompt"]
            for turn, text in enumerate(q.get("turns") or [q["prompt"]]):
                if turn:
                    conversation = ([{"role": "user", "content": conversation}] if isinstance(conversation, str)
                                    else conversation) + [{"role": "assistant", "content": f"A{turn - 1}"},
                                                          {"role": "user", "content": text}]
                rows.append({"prompt_id": q["prompt_id"], "goal": 10.0, "sample": k, "turn": turn,
                             "prompt": conversation, "text": f"A{turn}", "model": "m", "sampling": {},
                             **{key: q[key] for key in SOURCE_FIELDS if key in q}})
    return rows


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def export(fmt, gens, out, tokenizer="unused"):
    return cli(["export", fmt, gens, "--name", "m", "--tokenizer", str(tokenizer), "--out", str(out)])


@pytest.mark.parametrize("came", list(SOURCES))
@pytest.mark.parametrize("fmt", list(SOURCES))
def test_each_export_takes_only_its_own_benchmarks_generations(tmp_path, capsys, fixtures, tiny_model_dir, came,
                                                                fmt):
    gens = write(tmp_path / "gens.jsonl", generations(fixtures / SOURCES[came]))
    out = tmp_path / "answers.jsonl"
    if came == fmt:
        assert export(fmt, gens, out, tiny_model_dir) == 0 and out.exists()
        return
    assert export(fmt, gens, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"is a {NAMES[came]} generation" in err and f"`rapref export {came}`" in err, err
    assert not out.exists()


def test_questions_that_do_not_agree_with_their_ids_are_refused(tmp_path, capsys, fixtures):
    mt = generations(fixtures / "mt_bench_question.jsonl")
    other = [dict(r, prompt="Something else entirely?") for r in mt if r["question_id"] == 81 and r["turn"] == 0]
    renamed = [dict(r, question_id=99, prompt_id="99") for r in mt if r["question_id"] == 81]
    alpaca = generations(fixtures / "alpaca_eval.json")
    cases = [
        ("mt-bench", mt + other, "give question_id 81 two different questions"),       # two question files joined
        ("mt-bench", mt + renamed, "ask the same question under two ids (81 and 99)"),  # one question, two ids
        ("mt-bench", [r for r in mt if not (r["question_id"] == 82 and r["turn"] == 0)], "question_id 82, sample 0: "
                                                                                         "turns [1]"),
        ("arena-hard", [dict(r, turn=1) for r in generations(fixtures / "arena_hard_question.jsonl")],
         "field 'turn': 1"),
        ("alpaca-eval", generations(fixtures / "alpaca_eval.json", samples=2), "answer the same instruction"),
        ("alpaca-eval", [dict(alpaca[0], instruction="Edited."), *alpaca[1:]], "field 'instruction': differs"),
    ]
    for fmt, rows, needle in cases:
        out = tmp_path / "answers.jsonl"
        assert export(fmt, write(tmp_path / "gens.jsonl", rows), out) == 2, needle
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
        assert not out.exists()
