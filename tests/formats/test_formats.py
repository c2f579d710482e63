"""The files one stage hands to another (`rapref.formats`), read through their one reader: a dataset folder's
held-out prompts named by their split, a generations file's bad row named by number and field, a judge folder read as
`rapref judge` wrote it."""

import json

from helpers import one_line_error, sweep_rows
from rapref.cli import main as cli


def test_held_out_rows_are_named_by_their_split(relabeled_dir):
    from rapref.formats.prompts import load_prompts

    rows = load_prompts(str(relabeled_dir), "test")
    assert rows and all(r["prompt_id"].startswith("test:") for r in rows)


def test_judge_names_a_bad_later_row(tmp_path, capsys):
    gens = tmp_path / "g.jsonl"
    gens.write_text(json.dumps({"prompt_id": "0", "prompt": "Q", "text": "a"}) + "\n"
                    + json.dumps({"prompt_id": "1", "prompt": "Q"}) + "\n")
    one_line_error(capsys, ["judge", str(gens), "--scorer", "python:helpers:length", "--out",
                            str(tmp_path / "j")], "row 2, field 'text': missing")
    gens.write_text(json.dumps({"prompt_id": "0", "prompt": "Q", "text": "a"}) + "\n"
                    + json.dumps({"prompt_id": "1", "text": "b"}) + "\n")
    one_line_error(capsys, ["judge", str(gens), "--scorer", "python:helpers:length", "--out",
                            str(tmp_path / "j")], "row 2, field 'prompt': missing")


def test_a_judge_folder_is_read_through_the_scores_format(tmp_path, capsys):
    """`--scores` takes a `rapref judge` folder as well as its scores.jsonl: both are read by `rapref.formats.scores`,
    the module the judge writes them with."""
    from rapref.formats.scores import read_aggregate, read_scores, write_aggregate, write_scores

    folder = tmp_path / "judge"
    folder.mkdir()
    write_scores(folder, sweep_rows())
    write_aggregate(folder, {"n": 12})
    assert read_scores(folder) == read_scores(folder / "scores.jsonl") == sweep_rows()
    assert read_aggregate(folder) == {"n": 12}
    assert cli(["diagnose", "controllability", "--scores", str(folder), "--out", str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "d" / "controllability.json").read_text())["n"] == 12
    capsys.readouterr()
    assert cli(["diagnose", "controllability", "--scores", str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no such scores file" in err, err
