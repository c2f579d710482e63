"""`rapref diagnose controllability` reads what `rapref judge` writes, unscored rows included, and writes only
finite, meaningful numbers: every bad row is one line naming the file, row and field (exit 2), never a traceback or
a NaN in the report."""

import json
import math

import pytest

from rapref.cli import main as cli


def sweep_rows(unscored: int = 0) -> list[dict]:
    """4 prompts x goals 1, 5, 10; the first `unscored` rows without a grade, as an LLM judge writes them."""
    rows = [{"prompt_id": f"p{i}", "goal": g, "sample": 0, "turn": 0, "prompt": "Q", "text": "A",
             "score": g / 2 + i / 10, "scorer": "llm"} for i in range(4) for g in (1.0, 5.0, 10.0)]
    for row in rows[:unscored]:
        row["score"] = None
    return rows


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_an_llm_judges_scores_with_unscored_rows_are_read_and_counted(tmp_path, capsys):
    scores = write(tmp_path / "scores.jsonl", sweep_rows(unscored=3) + [{**sweep_rows()[0], "goal": None,
                                                                         "prompt_id": "plain"}])
    assert cli(["diagnose", "controllability", "--scores", scores, "--out", str(tmp_path / "d")]) == 0
    result = json.loads((tmp_path / "d" / "controllability.json").read_text())
    assert result["n"] == 9 and result["unscored"] == 3 and result["without_goal"] == 1
    # goals 5, 10, 1, 5, 10, 1, 5, 10, 1 (p1..p3) against their scores: every number finite, the curve by hand
    assert math.isfinite(result["spearman_rho"]) and 0 < result["p_value"] < 1
    assert [c["n"] for c in result["curve"]] == [3, 3, 3]
    assert result["curve"][0]["mean"] == pytest.approx(0.5 + (0.1 + 0.2 + 0.3) / 3)
    assert "3 unscored, 1 without goal" in (tmp_path / "d" / "controllability.md").read_text()


def change(rows, index, **fields):
    rows = [dict(r) for r in rows]
    rows[index].update(fields)
    return rows


@pytest.mark.parametrize("rows,needle", [
    (change(sweep_rows(), 4, score=float("inf")), "row 5, field 'score': inf is not a finite number"),
    (change(sweep_rows(), 4, score=float("nan")), "row 5, field 'score': nan is not a finite number"),
    (change(sweep_rows(), 4, score="7"), "row 5, field 'score': expected a number, got '7'"),
    (change(sweep_rows(), 4, goal=float("-inf")), "row 5, field 'goal': -inf is not a finite number"),
    (change(sweep_rows(), 4, score=True), "row 5, field 'score': expected a number"),
    (sweep_rows() + sweep_rows()[2:3], "row 13 repeats row 3 (prompt_id 'p0', goal 10"),  # two files joined
    ([{k: v for k, v in r.items() if k != "score"} for r in sweep_rows()], "row 1, field 'score': missing"),
    (sweep_rows(unscored=12), "no row has a score (12 unscored"),
    ([{**r, "score": 7.0} for r in sweep_rows()], "every scored sample has the score 7"),  # a constant
    ([r for r in sweep_rows() if r["goal"] == 1.0], "at least two goals, found 1"),
    (sweep_rows()[:2], "2 scored samples"),
    # finite scores whose mean or spread overflows: refused, never written as Infinity
    ([{**r, "score": 1e308} if r["goal"] == 10.0 else r for r in sweep_rows()],
     "field 'score' at goal 10: the mean or standard error of 4 values overflows"),
    ([{**r, "score": (-1) ** i * 1e160} if r["goal"] == 1.0 else r for i, r in enumerate(sweep_rows())],
     "field 'score' at goal 1: the mean or standard error of 4 values overflows"),
    (change(sweep_rows(), 4, score=10 ** 400), "row 5, field 'score': a 401-digit integer is too large"),
    (change(sweep_rows(), 4, goal=10 ** 400), "row 5, field 'goal': a 401-digit integer is too large"),
    # mistyped fields of a row
    (change(sweep_rows(), 4, sample=[0]), "row 5, field 'sample': expected a whole number of 0 or more, got [0]"),
    (change(sweep_rows(), 4, turn={"a": 1}), "row 5, field 'turn': expected a whole number of 0 or more"),
    (change(sweep_rows(), 4, turn=-1), "row 5, field 'turn': expected a whole number of 0 or more, got -1"),
], ids=["inf", "nan", "text", "goal-inf", "bool", "duplicate", "generations", "all-unscored", "constant",
        "one-goal", "two-points", "mean-overflows", "spread-overflows", "huge-int-score", "huge-int-goal",
        "sample-list", "turn-dict", "turn-negative"])
def test_degenerate_scores_are_refused_in_one_line(tmp_path, capsys, rows, needle):
    scores = write(tmp_path / "scores.jsonl", rows)
    assert cli(["diagnose", "controllability", "--scores", scores, "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "scores.jsonl" in err, err
    assert not (tmp_path / "d" / "controllability.json").exists()


def test_a_score_outside_the_given_range_is_refused(tmp_path, capsys):
    scores = write(tmp_path / "scores.jsonl", sweep_rows())
    assert cli(["diagnose", "controllability", "--scores", scores, "--score-range", "0-1", "--out",
                str(tmp_path / "d")]) == 2
    assert "row 2, field 'score': 2.5 lies outside the score range 0-1" in capsys.readouterr().err


def test_no_result_is_written_with_a_non_finite_number(tmp_path):
    from rapref.diagnose.run import refuse_non_finite
    from rapref.io import InputError

    refuse_non_finite({"curve": [{"mean": 1.0, "stderr": None}]}, "s")
    with pytest.raises(InputError, match=r"s: the curve\[1\].mean is inf, not a finite number"):
        refuse_non_finite({"curve": [{"mean": 1.0}, {"mean": math.inf}]}, "s")


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
