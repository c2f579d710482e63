"""`rapref show`: a relabeled folder's pairs as both copies with the goal text (and as the model's template renders
them), a source file with the flags it needs, what it cannot render, a closed pipe."""

import pyarrow.parquet as pq

from helpers import OWN_PAIRS_COLUMNS, OWN_PAIRS_ROWS, one_line_error, write_jsonl
from rapref.cli import main
from rapref.formats.dataset import SPLIT_FILES


def test_show_prints_both_copies_with_the_goal_text(fixtures, tmp_path, capsys, tiny_model_dir):
    code = main(["augment", str(fixtures / "pairs_reward_model.jsonl"), *OWN_PAIRS_COLUMNS, "--test-size", "0",
                 "--score-mapping", "min-max", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert main(["show", str(tmp_path / "out"), "-n", "1"]) == 0
    shown = capsys.readouterr().out
    assert "pair train:0, positive copy, goal 8" in shown and "pair train:0, negative copy, goal 4" in shown
    assert "[system]\nYou are an assistant" in shown and "Overall score: 4." in shown
    assert main(["show", str(tmp_path / "out"), "-n", "1", "--model", str(tiny_model_dir)]) == 0
    templated = capsys.readouterr().out
    from rapref.models import load_tokenizer
    from rapref.prompting import prompt_text

    rows = pq.read_table(tmp_path / "out" / SPLIT_FILES["train"]).to_pylist()
    assert prompt_text(load_tokenizer(str(tiny_model_dir)), rows[0]["prompt"]) in templated
    assert main(["show", str(fixtures / "pairs_reward_model.jsonl"), "-n", "2"]) == 0
    raw = capsys.readouterr().out
    assert "What is 3 times 4?" in raw and "--prompt-column question" in raw


def test_show_says_what_it_cannot_render(tmp_path, capsys, tiny_model_dir):
    """A generations file whose model has no goal settings: the prompt is labelled as shown without its goal; an
    empty file says "no rows"; --model on an input file is refused; a closed pipe ends quietly."""
    gen = write_jsonl(tmp_path / "gen.jsonl", [{"prompt_id": "0", "goal": 10.0, "sample": 0, "goal_text": "GOAL 10",
                                                 "prompt": "What is 2+2?", "text": "4", "model": "gone/policy"}])
    assert main(["show", str(gen), "--model", str(tiny_model_dir)]) == 0
    assert "WITHOUT its goal" in capsys.readouterr().out
    (tmp_path / "empty.jsonl").write_text("")
    one_line_error(capsys, ["show", str(tmp_path / "empty.jsonl")], "no rows")
    source = write_jsonl(tmp_path / "in.jsonl", OWN_PAIRS_ROWS)
    one_line_error(capsys, ["show", str(source), "--model", str(tiny_model_dir)], "--model applies to")


def test_show_into_a_closed_pipe_is_quiet(tmp_path):
    import subprocess
    import sys

    source = write_jsonl(tmp_path / "rm.jsonl", OWN_PAIRS_ROWS * 500)
    run = subprocess.run(f"{sys.executable} -m rapref show {source} -n 5000 | head -2", shell=True,
                         capture_output=True, text=True, timeout=120)
    assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr, run.stderr
