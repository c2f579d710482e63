"""`rapref judge` (`rapref.judge.run`): win rates and their standard errors by hand, clustered by prompt; pairwise
judging compares like with like (rows matched by prompt content, goal, sample and turn; files of different prompts, or
a sweep against a no-goal baseline, refused; different goals and sampling said and recorded); caches keyed by what
computes the score (a reward model replaced in place, an edited Python scorer); a Python scorer that fails, or a judge
that crashes, is one line and leaves no finished marker."""

import importlib
import json
import math
import sys
from pathlib import Path

import pytest

from helpers import one_line_error
from rapref.cli import main as cli
from rapref.judge.run import JudgeConfig, win_rate
from rapref.judge.run import main as judge
from rapref.stats import summary


def test_win_rate_and_stderr_by_hand():
    result = win_rate([3, 2, 1, 5], [1, 2, 4, 0])
    # outcomes 1, 0.5, 0, 1: mean 0.625; sample variance ((.375)^2 + (.125)^2 + (.625)^2 + (.375)^2) / 3
    var = (0.375 ** 2 + 0.125 ** 2 + 0.625 ** 2 + 0.375 ** 2) / 3
    assert result["win_rate"] == 0.625 and result["stderr"] == pytest.approx(math.sqrt(var / 4))
    assert (result["wins"], result["ties"], result["losses"]) == (2, 1, 1)
    assert summary([1.0, 3.0]) == {"n": 2, "mean": 2.0, "stderr": 1.0}


CALLS = {"n": 0}


def length_score(row, text):
    CALLS["n"] += 1
    return float(len(text))


def test_judge_aggregate_pairwise_and_cache(tmp_path):
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"prompt_id": f"q{i}", "goal": 10.0, "prompt": "p", "text": "x" * k}) + "\n"
                         for i, k in enumerate([3, 2, 1, 5])))
    b.write_text("".join(json.dumps({"prompt_id": f"q{i}", "goal": None, "prompt": "p", "text": "y" * k}) + "\n"
                         for i, k in enumerate([1, 2, 4, 0])))
    CALLS["n"] = 0
    cfg = JudgeConfig(generations=str(a), scorer="python:test_judge:length_score", out=str(tmp_path / "j"),
                      against=str(b))
    result = judge(cfg)
    assert result["mean"] == 2.75 and result["pairwise"]["win_rate"] == 0.625
    assert CALLS["n"] == 8
    cfg.overwrite = True  # the folder is rapref's own: replacing it is allowed, and --overwrite re-asks everything
    assert judge(cfg) == {**result} | {"pairwise": result["pairwise"]}
    assert CALLS["n"] == 16  # the folder's cache went with it: every score asked again, the same result
    saved = json.loads((tmp_path / "j" / "aggregate.json").read_text())
    assert saved["by_goal"]["10"]["n"] == 4
    assert len((tmp_path / "j" / "scores.jsonl").read_text().splitlines()) == 4


def _gens(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps({"prompt_id": p, "goal": g, "sample": k, "prompt": "p", "text": t}) + "\n"
                            for p, g, k, t in rows))
    return path


def test_win_rate_matches_prompt_goal_and_sample_whatever_the_file_order(tmp_path):
    from rapref.judge.run import JudgeConfig
    from rapref.judge.run import main as judge

    # the sweep is better than the baseline at goal 10 (longer) and worse at goal 1
    sweep = [(f"q{i}", g, 0, "x" * (9 if g == 10.0 else 1)) for i in range(4) for g in (1.0, 10.0)]
    base = [(f"q{i}", g, 0, "y" * 5) for i in range(4) for g in (1.0, 10.0)]
    results = []
    for order, rows in (("asc", base), ("desc", list(reversed(base)))):
        cfg = JudgeConfig(generations=str(_gens(tmp_path / "s.jsonl", sweep)), scorer="python:helpers:length",
                          out=str(tmp_path / f"j-{order}"), against=str(_gens(tmp_path / f"b-{order}.jsonl", rows)))
        results.append(judge(cfg)["pairwise"])
    assert results[0]["win_rate"] == results[1]["win_rate"] == 0.5  # 4 wins at goal 10, 4 losses at goal 1
    assert results[0]["n"] == 8 and results[0]["prompts"] == 4  # clustered by prompt: two goals per prompt


def test_win_rate_stderr_is_clustered_by_prompt_and_absent_for_one(tmp_path):
    from rapref.judge.run import win_rate

    # two prompts, two samples each: prompt a wins both, prompt b loses both
    clustered = win_rate([2, 2, 0, 0], [1, 1, 1, 1], clusters=["a", "a", "b", "b"])
    assert clustered["stderr"] == pytest.approx(0.5)  # sqrt(2/1 * (1^2 + 1^2)) / 4, not the naive 0.289
    assert win_rate([2, 2, 0, 0], [1, 1, 1, 1])["stderr"] == pytest.approx((1 / 3) ** 0.5 / 2)
    assert win_rate([2], [1])["stderr"] is None


def test_a_sweep_against_a_no_goal_baseline_is_refused(tmp_path, capsys):
    sweep = _gens(tmp_path / "s.jsonl", [("q0", 1.0, 0, "a"), ("q0", 10.0, 0, "b")])
    base = _gens(tmp_path / "b.jsonl", [("q0", None, 0, "c")])
    one_line_error(capsys, ["judge", str(sweep), "--against", str(base), "--scorer", "python:helpers:length",
                            "--out", str(tmp_path / "j")], "goal by goal")


def test_reward_model_without_a_trained_head_is_refused(tmp_path, capsys, tiny_model_dir):
    gens = _gens(tmp_path / "g.jsonl", [("q0", None, 0, "text")])
    one_line_error(capsys, ["judge", str(gens), "--scorer", f"reward-model:{tiny_model_dir}", "--out",
                            str(tmp_path / "j")], "not a trained reward model")


def gens_file(path: Path, rows, sampling=None) -> Path:
    """rows: (prompt_id, prompt, goal, text)."""
    path.write_text("".join(json.dumps({"prompt_id": p, "prompt": q, "goal": g, "sample": 0, "turn": 0, "text": t,
                                        "sampling": sampling or {"temperature": 0.7, "max_new_tokens": 32}}) + "\n"
                            for p, q, g, t in rows))
    return path


def test_files_from_different_prompt_files_are_refused(tmp_path, capsys):
    a = gens_file(tmp_path / "a.jsonl", [("0", "What is 2+2?", 10.0, "four"), ("1", "Name a colour.", 10.0, "red")])
    b = gens_file(tmp_path / "b.jsonl", [("0", "Write a poem.", None, "x"), ("1", "Translate cat.", None, "y")])
    err = one_line_error(capsys, ["judge", str(a), "--against", str(b), "--scorer", "python:helpers:length",
                                  "--out", str(tmp_path / "j")], "prompt_id '0' holds different prompts")
    assert "What is 2+2?" in err and "Write a poem." in err


def test_rows_are_matched_by_prompt_content_not_row_order(tmp_path):
    from rapref.judge.run import JudgeConfig, main

    prompts = [f"Question {i}?" for i in range(4)]
    a = gens_file(tmp_path / "a.jsonl", [(f"a{i}", q, 10.0, "x" * (i + 1)) for i, q in enumerate(prompts)])
    # the baseline comes from a file in another order, with other ids, and one prompt more
    b = gens_file(tmp_path / "b.jsonl", [(f"b{i}", q, None, "y" * 2) for i, q in reversed(list(enumerate(prompts)))]
                  + [("b9", "Unrelated?", None, "zzzz")])
    result = main(JudgeConfig(generations=str(a), against=str(b), scorer="python:helpers:length",
                              out=str(tmp_path / "j")))["pairwise"]
    # lengths 1, 2, 3, 4 against 2: one loss, one tie, two wins
    assert result["n"] == 4 and result["wins"] == 2 and result["ties"] == 1 and result["losses"] == 1
    assert result["matched_on"] == ["prompt", "goal", "sample", "turn"]
    assert result["unmatched"] == 0 and result["unmatched_against"] == 1
    saved = json.loads((tmp_path / "j" / "aggregate.json").read_text())["pairwise"]
    assert saved["unmatched_against"] == 1 and saved["goals"] == ["10", "none"]


def test_different_goals_and_sampling_are_said_and_recorded(tmp_path, capsys):
    a = gens_file(tmp_path / "a.jsonl", [("0", "Q?", 10.0, "aa")], sampling={"temperature": 0.7, "top_p": 1.0})
    b = gens_file(tmp_path / "b.jsonl", [("0", "Q?", 8.0, "a")], sampling={"temperature": 1.0, "top_p": 1.0})
    capsys.readouterr()
    assert cli(["judge", str(a), "--against", str(b), "--scorer", "python:helpers:length", "--out",
                str(tmp_path / "j")]) == 0
    out = capsys.readouterr().out
    assert "different goals: 10" in out and "against 8" in out and "temperature 0.7 vs 1.0" in out
    pairwise = json.loads((tmp_path / "j" / "aggregate.json").read_text())["pairwise"]
    assert pairwise["sampling_differences"] == {"temperature": [0.7, 1.0]}
    assert len(pairwise["notes"]) == 2


def test_multi_turn_rows_match_their_own_question(tmp_path):
    """A second turn's prompt holds the model's own first answer, which differs between the two sets."""
    from rapref.judge.run import JudgeConfig, main

    def turns(path, answer, text2):
        rows = [{"prompt_id": "81", "prompt": "First?", "goal": None, "sample": 0, "turn": 0, "text": answer},
                {"prompt_id": "81", "prompt": [{"role": "user", "content": "First?"},
                                               {"role": "assistant", "content": answer},
                                               {"role": "user", "content": "Second?"}],
                 "goal": None, "sample": 0, "turn": 1, "text": text2}]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    result = main(JudgeConfig(generations=str(turns(tmp_path / "a.jsonl", "aaa", "bbbb")),
                              against=str(turns(tmp_path / "b.jsonl", "a", "b")),
                              scorer="python:helpers:length", out=str(tmp_path / "j")))["pairwise"]
    assert result["n"] == 2 and result["wins"] == 2 and result["prompts"] == 1  # both turns cluster on one question


def test_a_reward_model_replaced_in_place_is_scored_again(tmp_path, capsys):
    rm = tmp_path / "rm"
    gens = gens_file(tmp_path / "g.jsonl", [(str(i), f"Question {i}?", None, f"Answer {i}.") for i in range(3)])
    assert cli(["model", "tiny", "--kind", "reward-model", "--seed", "0", "--out", str(rm), "--quiet"]) == 0
    judge = ["judge", str(gens), "--scorer", f"reward-model:{rm}", "--out", str(tmp_path / "j"), "--quiet"]
    assert cli(judge) == 0
    first = [r["score"] for r in map(json.loads, (tmp_path / "j" / "scores.jsonl").read_text().splitlines())]
    assert cli(judge + ["--overwrite"]) == 0  # --overwrite re-asks everything (the folder cache goes with it)
    cached = (tmp_path / "j" / "cache.jsonl").read_text().splitlines()
    assert len(cached) == 3
    assert cli(["model", "tiny", "--kind", "reward-model", "--seed", "1", "--out", str(rm), "--overwrite",
                "--quiet"]) == 0
    assert cli(judge + ["--overwrite"]) == 0
    second = [r["score"] for r in map(json.loads, (tmp_path / "j" / "scores.jsonl").read_text().splitlines())]
    assert second != first and len((tmp_path / "j" / "cache.jsonl").read_text().splitlines()) == 3


def test_an_edited_python_scorer_is_scored_again(tmp_path, monkeypatch):
    from rapref.judge.run import JudgeConfig, main

    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "my_scorer.py"
    gens = gens_file(tmp_path / "g.jsonl", [("0", "Q?", None, "abc")])
    cache = tmp_path / "cache.jsonl"
    scores = []
    for body in ("return 1.0", "return 2.0"):
        module.write_text(f"def score(row, text):\n    {body}\n")
        sys.modules.pop("my_scorer", None)
        importlib.invalidate_caches()
        result = main(JudgeConfig(generations=str(gens), scorer="python:my_scorer:score", out=str(tmp_path / "j"),
                                  cache=str(cache), overwrite=True))
        scores.append(result["mean"])
    assert scores == [1.0, 2.0]


def wrong_signature(text):
    return 1.0


def broken(row, text):
    return row["no such field"]


def test_python_scorers_fail_with_one_line(tmp_path, capsys):
    gens = gens_file(tmp_path / "g.jsonl", [("0", "Q", None, "a")])
    one_line_error(capsys, ["judge", str(gens), "--scorer", "python:test_judge:wrong_signature", "--out",
                            str(tmp_path / "j")], "expected a function f(row, text) -> float")
    one_line_error(capsys, ["judge", str(gens), "--scorer", "python:test_judge:broken", "--out",
                            str(tmp_path / "j")], "failed on prompt '0' (KeyError")


def test_a_crashed_judge_leaves_no_finished_marker_and_reruns_without_flags(tmp_path, capsys):
    gens = gens_file(tmp_path / "g.jsonl", [("0", "Q", None, "a"), ("1", "R", None, "bb")])
    out = tmp_path / "j"
    one_line_error(capsys, ["judge", str(gens), "--scorer", "python:test_judge:broken", "--out", str(out)],
                   "failed on prompt")
    assert not (out / ".rapref").exists()
    assert cli(["judge", str(gens), "--scorer", "python:helpers:length", "--out", str(out)]) == 0
    assert json.loads((out / ".rapref").read_text())["command"] == "judge"
    assert not (out / ".rapref-unfinished").exists()
