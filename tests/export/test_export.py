"""`rapref export` takes only the benchmark's own generations, matched on the questions' content: MT-Bench,
Arena-Hard and AlpacaEval files are told apart by what their question files leave in the generations, and a file
from another benchmark, or one whose questions do not agree with their ids, is refused in one line naming where it
came from (exit 2, nothing written). Generations from rapref's own prompt files export to AlpacaEval, not to the
benchmarks that need their question ids; `rapref export lm-eval` prints the `rapref lm-eval` command that runs."""

import json

import pytest

from helpers import ROOT, goal_policy
from rapref.cli import main as cli
from rapref.formats.prompts import SOURCE_FIELDS, load_prompts

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


def _rows(fixtures, name, **fields):
    """A benchmark's generations with `fields` set (a value None: the field removed) in every row."""
    rows = generations(fixtures / SOURCES[name])
    return [{k: v for k, v in {**r, **fields}.items() if v is not None or k not in fields} for r in rows]


@pytest.mark.parametrize("case, fmt, needle", [
    # an AlpacaEval marker (dataset, instruction) is AlpacaEval's, whatever else the row carries
    ("alpaca+int-id", "mt-bench", "row 1 is a AlpacaEval generation (question_id 80"),
    ("alpaca+int-id", "arena-hard", "row 1 is a AlpacaEval generation"),
    ("alpaca+int-id", "alpaca-eval", "row 1, field 'question_id': 80; AlpacaEval's questions have no question_id"),
    ("alpaca+category", "alpaca-eval", "field 'category': 'writing' is an MT-Bench or Arena-Hard category"),
    ("alpaca-dataset-only", "alpaca-eval", "row 1, field 'instruction': missing; AlpacaEval's questions carry both"),
    # Arena-Hard rows stripped of cluster and category, ids upper-cased: no benchmark's own
    ("arena-upper", "arena-hard", "field 'question_id': expected Arena-Hard's question uid (32 lowercase hexadecimal"),
    ("arena-upper", "mt-bench", "field 'question_id': expected MT-Bench's whole-number question id, got '5F3B"),
    ("arena-upper", "alpaca-eval", "field 'question_id': '5F3B"),
    # MT-Bench's first turns with string ids and no category
    ("mt-string-ids", "arena-hard", "expected Arena-Hard's question uid (32 lowercase hexadecimal digits), got '81'"),
    ("mt-string-ids", "alpaca-eval", "row 1, field 'question_id': '81'; AlpacaEval's questions have no"),
    ("mt-string-ids", "mt-bench", "expected MT-Bench's whole-number question id, got '81'"),
    # ids and fields of the wrong type
    ("mt-list-id", "mt-bench", "row 1, field 'question_id': expected MT-Bench's whole-number question id, got [81]"),
    ("mt-float-id", "mt-bench", "got 81.0"),
    ("mt-unknown-category", "mt-bench", "field 'category': 'poetry' is not an MT-Bench category"),
    ("mt-turn-null", "mt-bench", "row 1, field 'turn': expected a whole number of 0 or more, got None"),
    ("mt-turn-text", "mt-bench", "row 1, field 'turn': expected a whole number of 0 or more, got '0'"),
    ("mt-sample-text", "arena-hard", "row 1, field 'sample': expected a whole number of 0 or more, got 'a'"),
])
def test_rows_without_the_benchmarks_own_fields_and_types_are_refused(tmp_path, capsys, fixtures, case, fmt,
                                                                       needle):
    """The official question sets are not shipped (offline), so a file's origin is read from the fields its
    question file leaves in each row, with their exact types: any sign of another benchmark, or a field of the
    wrong type, is one line naming the row and field."""
    rows = {
        "alpaca+int-id": [dict(r, question_id=80 + i) for i, r in enumerate(_rows(fixtures, "alpaca-eval"))],
        "alpaca+category": _rows(fixtures, "alpaca-eval", category="writing"),
        "alpaca-dataset-only": _rows(fixtures, "alpaca-eval", instruction=None),
        "arena-upper": [dict(r, question_id=r["question_id"].upper()) for r in
                        _rows(fixtures, "arena-hard", cluster=None, category=None)],
        "mt-string-ids": [dict(r, question_id=str(r["question_id"])) for r in
                          _rows(fixtures, "mt-bench", category=None) if r["turn"] == 0],
        "mt-list-id": [dict(r, question_id=[r["question_id"]]) for r in _rows(fixtures, "mt-bench")],
        "mt-float-id": [dict(r, question_id=float(r["question_id"])) for r in _rows(fixtures, "mt-bench")],
        "mt-unknown-category": _rows(fixtures, "mt-bench", category="poetry"),
        "mt-turn-null": [dict(r, turn=None) for r in _rows(fixtures, "mt-bench")],
        "mt-turn-text": [dict(r, turn=str(r["turn"])) for r in _rows(fixtures, "mt-bench")],
        "mt-sample-text": _rows(fixtures, "arena-hard", sample="a"),
    }[case]
    out = tmp_path / "answers.jsonl"
    assert export(fmt, write(tmp_path / "gens.jsonl", rows), out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not out.exists()


def test_a_goal_picked_from_a_file_with_unconditioned_rows_says_what_it_left_out(tmp_path, capsys, fixtures):
    rows = generations(fixtures / SOURCES["alpaca-eval"])
    rows = [rows[0], dict(rows[1], goal=None), dict(rows[1], goal=3.0)]
    out = tmp_path / "model_outputs.json"
    assert cli(["export", "alpaca-eval", write(tmp_path / "gens.jsonl", rows), "--goal", "10", "--name", "m",
                "--out", str(out)]) == 0
    assert "1 rows at goal 10; left out 1 rows without a goal (unconditioned samples) and 1 at other goals" in \
        capsys.readouterr().err
    assert len(json.loads(out.read_text())) == 1


def test_export_lm_eval_prints_the_rapref_lm_eval_command_that_runs(tmp_path, capsys, monkeypatch, tiny_model_dir):
    import shlex

    from lm_eval._cli import HarnessCLI

    chat = goal_policy(tiny_model_dir, tmp_path / "chat", "user", chat=True)
    plain = goal_policy(tiny_model_dir, tmp_path / "plain", "user", chat=False)
    commands = {}
    for policy, goal in ((chat, "7.5"), (plain, None)):
        capsys.readouterr()
        assert cli(["export", "lm-eval", str(policy), "--tasks", "rapref_demo_mc",
                    *(["--goal", goal] if goal else [])]) == 0
        commands[policy] = shlex.split(capsys.readouterr().out.strip())
    expected = {chat: ["rapref", "lm-eval", "--model", "rapref", "--model_args", f"pretrained={chat},goal=7.5",
                       "--tasks", "rapref_demo_mc", "--apply_chat_template", "--batch_size", "auto"],
                plain: ["rapref", "lm-eval", "--model", "rapref", "--model_args", f"pretrained={plain},goal=10",
                        "--tasks", "rapref_demo_mc", "--batch_size", "auto"]}  # goal: the top; no template to apply
    assert commands == expected
    for argv in commands.values():  # every flag is lm-eval's own (`rapref lm-eval --help`)
        HarnessCLI()._parser.parse_args(["run", *argv[2:]])
    monkeypatch.chdir(ROOT)  # the local task's data is named from the repository root
    assert cli([*commands[chat][1:], "--include_path", "examples/lm_eval", "--device", "cpu", "--limit", "2",
                "--output_path", str(tmp_path / "results")]) == 0  # as printed, it runs (with the goal 7.5)
    results = json.loads(next((tmp_path / "results").rglob("results_*.json")).read_text())
    assert results["config"]["model_args"] == {"pretrained": str(chat), "goal": 7.5}
    assert set(results["results"]) == {"rapref_demo_mc"}
    capsys.readouterr()
    for argv, needle in ((["--goal", "11"], "goal 11 lies outside the policy's score scale 1-10"),
                         (["--out", str(tmp_path / "x.sh")], "it writes no file"),
                         ([], "no rapref_goal.json")):
        source = str(tiny_model_dir) if not argv else str(chat)
        assert cli(["export", "lm-eval", source, *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
    comma = tmp_path / "a,b"
    comma.symlink_to(chat)
    assert cli(["export", "lm-eval", str(comma)]) == 2
    assert "the path holds a comma" in capsys.readouterr().err


def test_exports_from_rapref_prompt_files(tmp_path, trained_dir, capsys):
    """Generations from rapref's own prompt files (no benchmark fields): AlpacaEval takes the instruction and no
    `dataset` is invented; MT-Bench and Arena-Hard answer the benchmark's own questions, so generations without a
    `question_id` are refused (ids made from row numbers would match the wrong questions); token_len needs a
    tokenizer (the policy's, or --tokenizer)."""
    gens = tmp_path / "g.jsonl"
    gens.write_text("".join(json.dumps({"prompt_id": str(i), "goal": 10.0, "prompt": [
        {"role": "user", "content": f"Q{i}"}], "text": f"A{i}"}) + "\n" for i in range(3)))
    assert cli(["export", "alpaca-eval", str(gens), "--name", "m", "--out", str(tmp_path / "ae.json")]) == 0
    alpaca = json.loads((tmp_path / "ae.json").read_text())
    assert alpaca[1] == {"instruction": "Q1", "output": "A1", "generator": "m"}
    for fmt in ("mt-bench", "arena-hard"):
        capsys.readouterr()
        assert cli(["export", fmt, str(gens), "--name", "m", "--out", str(tmp_path / f"{fmt}.jsonl")]) == 2
        assert "row 1, field 'question_id': missing" in capsys.readouterr().err
        assert not (tmp_path / f"{fmt}.jsonl").exists()
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"prompt_id": str(i), "question_id": 80 + i, "goal": 10.0, "prompt": [
        {"role": "user", "content": f"Q{i}"}], "text": f"A{i}"}) + "\n" for i in range(3)))
    assert cli(["export", "mt-bench", str(questions), "--name", "m", "--out", str(tmp_path / "mt.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "mt.jsonl").read_text().splitlines()]
    assert rows[2]["question_id"] == 82 and rows[2]["choices"] == [{"index": 0, "turns": ["A2"]}]
    capsys.readouterr()  # integer ids are MT-Bench's: no Arena-Hard question has one
    assert cli(["export", "arena-hard", str(questions), "--name", "m", "--out", str(tmp_path / "ah.jsonl")]) == 2
    assert "row 1 is a MT-Bench generation (question_id 80)" in capsys.readouterr().err
    hard = tmp_path / "hard.jsonl"
    hard.write_text("".join(json.dumps({"prompt_id": str(i), "question_id": f"{i:032x}", "goal": 10.0, "prompt": [
        {"role": "user", "content": f"Q{i}"}], "text": f"A{i}"}) + "\n" for i in range(3)))
    assert cli(["export", "arena-hard", str(hard), "--name", "m", "--out", str(tmp_path / "ah.jsonl")]) == 2
    assert "--tokenizer" in capsys.readouterr().err
    assert cli(["export", "arena-hard", str(hard), "--name", "m", "--tokenizer", str(trained_dir), "--out",
                str(tmp_path / "ah.jsonl")]) == 0
    capsys.readouterr()
    assert cli(["export", "lm-eval", str(trained_dir)]) == 0
    command = capsys.readouterr().out
    assert command.startswith(f"rapref lm-eval --model rapref --model_args pretrained={trained_dir},goal=10 ")
