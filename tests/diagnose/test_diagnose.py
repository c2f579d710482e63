"""`rapref diagnose`: controllability reads what `rapref judge` writes, unscored rows included, and writes only
finite, meaningful numbers: every bad row is one line naming the file, row and field (exit 2), never a traceback or
a NaN in the report; Spearman's rho and the goal curve by hand. The unlearning, accuracy and implicit-relabel
diagnoses write their reports (the relabeled file feeds `rapref augment`), print their headline, name their own flags
and refuse models that do not match."""

import json
import math

import pytest

from helpers import one_line_error, sweep_rows
from rapref.cli import main as cli
from rapref.diagnose.run import controllability


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


def test_controllability_by_hand():
    rows = [{"goal": g, "score": s} for g, s in [(1, 0.1), (1, 0.2), (5, 0.4), (5, 0.5), (10, 0.9), (10, 0.8)]]
    result = controllability(rows)
    # goal ranks (ties averaged) 1.5 1.5 3.5 3.5 5.5 5.5; score ranks 1 2 3 4 6 5; deviations from 3.5:
    # (-2 -2 0 0 2 2) . (-2.5 -1.5 -.5 .5 2.5 1.5) = 16; |g|^2 = 16, |s|^2 = 17.5 -> rho = 16 / sqrt(280)
    assert result["spearman_rho"] == pytest.approx(16 / math.sqrt(280), abs=1e-9)
    assert [c["mean"] for c in result["curve"]] == pytest.approx([0.15, 0.45, 0.85])


def test_diagnose_commands_write_reports(tmp_path, trained_dir, tiny_model_dir, relabeled_dir, capsys):
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps({"goal": g, "score": g / 10 + 0.01 * k}) + "\n"
                              for g in (1, 4, 7, 10) for k in range(3)))
    assert cli(["diagnose", "controllability", "--scores", str(scores), "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "controllability.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "c" / "controllability.json").read_text())
    assert saved["spearman_rho"] > 0.95 and [c["goal"] for c in saved["curve"]] == [1, 4, 7, 10]
    common = ["--policy", str(trained_dir), "--reference", str(tiny_model_dir), "--data", str(relabeled_dir)]
    assert cli(["diagnose", "unlearning", *common, "--dpo", str(trained_dir), "--out", str(tmp_path / "u")]) == 0
    report = json.loads((tmp_path / "u" / "unlearning.json").read_text())
    assert {(r["policy"], r["condition"]) for r in report["rows"]} == {
        ("relabeled", "own"), ("relabeled", "top"), ("relabeled", "none"), ("dpo", "none")}
    assert (tmp_path / "u" / "unlearning.md").read_text().startswith("# unlearning")
    assert cli(["diagnose", "accuracy", *common, "--out", str(tmp_path / "a")]) == 0
    accuracy = json.loads((tmp_path / "a" / "accuracy.json").read_text())
    assert 0 <= accuracy["top"]["accuracy"] <= 1 and accuracy["top"]["n"] == 4


def test_implicit_relabel_feeds_augment(tmp_path, trained_dir, tiny_model_dir, capsys):
    pairs = tmp_path / "binary.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Q{i}?", "chosen": f"Good {i}.", "rejected": f"Bad {i}!"})
                             + "\n" for i in range(6)))
    out = tmp_path / "implicit.jsonl"
    assert cli(["diagnose", "implicit-relabel", "--policy", str(trained_dir), "--reference", str(tiny_model_dir),
                "--data", str(pairs), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(1 <= r["score_chosen"] <= 10 and "implicit_reward_chosen" in r for r in rows)
    assert cli(["augment", str(out), "--out", str(tmp_path / "aug"), "--test-size", "0"]) == 0
    assert json.loads((tmp_path / "aug" / "summary.json").read_text())["rows_kept"] == 6


def test_diagnose_prints_its_headline_and_names_its_own_flags(tmp_path, capsys, tiny_model_dir, relabeled_dir,
                                                              trained_dir):
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps({"prompt_id": f"p{i}", "goal": g, "prompt": "Q", "text": "A",
                                          "score": g + i % 2}) + "\n" for i in range(4) for g in (1.0, 5.0, 10.0)))
    capsys.readouterr()
    assert cli(["diagnose", "controllability", "--scores", str(scores), "--out", str(tmp_path / "c")]) == 0
    assert "Spearman rho 0.9" in capsys.readouterr().out
    assert cli(["diagnose", "accuracy", "--policy", str(trained_dir), "--reference", str(tiny_model_dir), "--data",
                str(relabeled_dir), "--out", str(tmp_path / "a")]) == 0
    assert "implicit-reward accuracy top goal" in capsys.readouterr().out
    assert cli(["diagnose", "accuracy", "--policy", str(tiny_model_dir), "--reference", str(tiny_model_dir),
                "--data", str(relabeled_dir), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "goal-conditioned policy" in err and "--no-goal" not in err


def test_diagnose_refuses_mismatched_models(tmp_path, capsys, tiny_model_dir, trained_dir, relabeled_dir):
    from rapref.tiny import DEFAULT_CORPUS, build_tiny

    other_vocab = build_tiny(tmp_path / "other-vocab", DEFAULT_CORPUS, vocab_size=300)
    wider = build_tiny(tmp_path / "wider", DEFAULT_CORPUS, hidden_size=32)
    assert cli(["model", "tiny", "--kind", "reward-model", "--out", str(tmp_path / "rm"), "--quiet"]) == 0
    probe = ["diagnose", "unlearning", "--policy", str(trained_dir), "--data", str(relabeled_dir)]
    one_line_error(capsys, probe + ["--reference", str(other_vocab), "--out", str(tmp_path / "d1")],
                   "different tokenizers")
    one_line_error(capsys, probe + ["--reference", str(tmp_path / "rm"), "--out", str(tmp_path / "d2")],
                   "not a causal language model checkpoint")
    one_line_error(capsys, probe + ["--reference", str(tiny_model_dir), "--dpo", str(wider), "--out",
                                    str(tmp_path / "d3")], "different hidden_size")
