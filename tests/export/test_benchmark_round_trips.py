"""Benchmark files in and out: MT-Bench, Arena-Hard and AlpacaEval questions through `rapref generate`, and back out
through `rapref export` in each benchmark's own layout (its ids with their type, turns, token counts, goal sweeps)."""

import json

from rapref.cli import main as cli


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_mt_bench_round_trip_keeps_ids_and_asks_turn_two_with_turn_one(tmp_path, trained_dir, fixtures):
    gens = tmp_path / "mt.jsonl"
    assert cli(["generate", str(trained_dir), "--prompts", str(fixtures / "mt_bench_question.jsonl"), "--num-samples",
                "2", "--max-new-tokens", "6", "--out", str(gens)]) == 0
    rows = read_jsonl(gens)
    assert len(rows) == 2 * 2 * 2  # questions x samples x turns
    second = next(r for r in rows if r["question_id"] == 81 and r["turn"] == 1 and r["sample"] == 1)
    first = next(r for r in rows if r["question_id"] == 81 and r["turn"] == 0 and r["sample"] == 1)
    assert [m["role"] for m in second["prompt"]] == ["user", "assistant", "user"]
    assert second["prompt"][1]["content"] == first["text"]  # turn two sees the answer to turn one
    assert second["prompt"][2]["content"].startswith("Rewrite your note") and second["category"] == "writing"
    out = tmp_path / "answer.jsonl"
    assert cli(["export", "mt-bench", str(gens), "--name", "m", "--out", str(out)]) == 0
    answers = read_jsonl(out)
    assert [a["question_id"] for a in answers] == [81, 82]  # the source's ids, with their type
    assert set(answers[0]) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
    assert [c["index"] for c in answers[0]["choices"]] == [0, 1]
    assert answers[0]["choices"][1]["turns"] == [first["text"], second["text"]]


def test_arena_hard_round_trip_counts_tokens(tmp_path, trained_dir, fixtures):
    from rapref.models import load_tokenizer

    gens, out = tmp_path / "ah.jsonl", tmp_path / "answer.jsonl"
    assert cli(["generate", str(trained_dir), "--prompts", str(fixtures / "arena_hard_question.jsonl"),
                "--max-new-tokens", "8", "--out", str(gens)]) == 0
    assert cli(["export", "arena-hard", str(gens), "--name", "m", "--out", str(out)]) == 0
    answers = read_jsonl(out)
    questions = read_jsonl(fixtures / "arena_hard_question.jsonl")
    assert [a["question_id"] for a in answers] == [q["question_id"] for q in questions]
    tokenizer = load_tokenizer(str(trained_dir))
    for answer, row in zip(answers, read_jsonl(gens)):
        turn = answer["choices"][0]["turns"][0]
        assert turn["content"] == row["text"]
        assert turn["token_len"] == len(tokenizer(row["text"], add_special_tokens=False)["input_ids"])
    assert read_jsonl(gens)[0]["cluster"] == "Sorting Puzzles"


def test_alpaca_eval_round_trip_and_goal_sweeps(tmp_path, trained_dir, fixtures, capsys):
    gens, out = tmp_path / "ae.jsonl", tmp_path / "model_outputs.json"
    assert cli(["generate", str(trained_dir), "--prompts", str(fixtures / "alpaca_eval.json"), "--max-new-tokens", "6",
                "--out", str(gens)]) == 0
    assert cli(["export", "alpaca-eval", str(gens), "--name", "m", "--out", str(out)]) == 0
    outputs = json.loads(out.read_text())
    source = json.loads((fixtures / "alpaca_eval.json").read_text())
    assert [(o["instruction"], o["dataset"], o["generator"]) for o in outputs] == \
        [(s["instruction"], s["dataset"], "m") for s in source]
    sweep = tmp_path / "sweep.jsonl"
    assert cli(["generate", str(trained_dir), "--prompts", str(fixtures / "mt_bench_question.jsonl"), "--goals",
                "3,10", "--max-new-tokens", "4", "--out", str(sweep)]) == 0
    capsys.readouterr()
    assert cli(["export", "mt-bench", str(sweep), "--name", "m", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "goal sweep" in capsys.readouterr().err and not (tmp_path / "x.jsonl").exists()
    assert cli(["export", "mt-bench", str(sweep), "--goal", "3", "--name", "m", "--out", str(tmp_path / "g3.jsonl")]) == 0
    answers = read_jsonl(tmp_path / "g3.jsonl")
    assert len(answers) == 2 and all(len(a["choices"][0]["turns"]) == 2 for a in answers)
