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
