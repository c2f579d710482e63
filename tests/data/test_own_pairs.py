"""A researcher's own file: pairs scored by a reward model (any sign), some inverted, some tied.

`tests/fixtures/pairs_reward_model.jsonl` has columns question, better, worse, s_better, s_worse; twelve rows with
scores from -3.9 to 3.9; rows 4 and 7 are inverted (better scored below worse), rows 3 and 6 tied. Expected goals are
worked out by hand from the min-max rule: goal = round(1 + (s + 3.9) / 7.8 * 9).
"""

import json

import pyarrow.parquet as pq
import pytest

from helpers import OWN_PAIRS_COLUMNS, OWN_PAIRS_ROWS, write_jsonl
from rapref.cli import main
from rapref.formats.dataset import SPLIT_FILES

COLUMNS = OWN_PAIRS_COLUMNS
INVERTED, TIED = {"train:4", "train:7"}, {"train:3", "train:6"}


def augment(fixtures, out, *flags, capsys=None):
    code = main(["augment", str(fixtures / "pairs_reward_model.jsonl"), *COLUMNS, "--test-size", "0",
                 "--out", str(out), *flags])
    err = capsys.readouterr().err if capsys else ""
    assert code == 0, err
    rows = pq.read_table(out / SPLIT_FILES["train"]).to_pylist()
    return json.loads((out / "summary.json").read_text()), rows


def by_pair(rows):
    out = {}
    for r in rows:
        out.setdefault(r["source_id"], {})[r["copy"]] = r
    return out


def test_reward_model_scores_are_mapped_and_inverted_pairs_swapped(fixtures, tmp_path, capsys):
    summary, rows = augment(fixtures, tmp_path / "out", "--score-mapping", "min-max", capsys=capsys)
    pairs = by_pair(rows)
    # by hand: row 0 scored 2.5 / -1.0 -> 1 + 6.4/7.8*9 = 8.38 -> 8 and 1 + 2.9/7.8*9 = 4.35 -> 4
    assert (pairs["train:0"]["positive"]["goal"], pairs["train:0"]["negative"]["goal"]) == (8.0, 4.0)
    assert pairs["train:0"]["positive"]["chosen"][-1]["content"] == "3 times 4 is 12."
    assert pairs["train:0"]["negative"]["chosen"][-1]["content"] == "It is probably 13."
    # row 4 inverted (-1.5 < 2.0 -> 4 and 8): swapped, so the positive copy's chosen is the higher-scored "worse"
    assert pairs["train:4"]["positive"]["goal"] == 8.0 and pairs["train:4"]["negative"]["goal"] == 4.0
    assert pairs["train:4"]["positive"]["chosen"][-1]["content"] == "It is probably 57."
    # every goal follows the rule, from the raw scores, whichever way the pair came
    raw = {f"train:{i}": json.loads(line) for i, line in
           enumerate((fixtures / "pairs_reward_model.jsonl").read_text().splitlines())}
    for sid, copies in pairs.items():
        expected = sorted(round(1 + (raw[sid][k] + 3.9) / 7.8 * 9) for k in ("s_better", "s_worse"))
        assert sorted(c["goal"] for c in copies.values()) == expected, sid
        assert copies["positive"]["score_chosen"] >= copies["positive"]["score_rejected"]
    assert summary["pair_checks"] == {"inverted": 2, "inverted_rule": "swap", "ties": 2, "ties_rule": "keep"}
    assert summary["score_mapping"]["method"] == "min-max"
    assert summary["score_mapping"]["raw_range"] == [-3.9, 3.9] and summary["score_mapping"]["fitted_on"] == 24
    assert summary["rows_kept"] == 12 and summary["rows_dropped"] == 0
    # ties: both copies share one goal (6.65 -> 7 for row 3; 10 for row 6)
    assert {c["goal"] for c in pairs["train:3"].values()} == {7.0}
    assert {c["goal"] for c in pairs["train:6"].values()} == {10.0}


def test_the_summary_shows_the_counts_and_the_rules(fixtures, tmp_path, capsys):
    main(["augment", str(fixtures / "pairs_reward_model.jsonl"), *COLUMNS, "--score-mapping", "quantile",
          "--test-size", "0", "--out", str(tmp_path / "out")])
    shown = capsys.readouterr().out
    assert "inverted pairs" in shown and "swapped" in shown and "ties" in shown
    assert "score mapping: quantile onto 1-10" in shown


def test_drop_and_keep_rules_for_inverted_and_tied_pairs(fixtures, tmp_path, capsys):
    summary, rows = augment(fixtures, tmp_path / "drop", "--score-mapping", "min-max", "--inverted", "drop",
                            "--ties", "drop", capsys=capsys)
    kept = {r["source_id"] for r in rows}
    assert not kept & (INVERTED | TIED) and len(kept) == 8
    assert summary["dropped_by_reason"] == {"inverted_pair": 2} and summary["rows_kept"] == 10
    assert summary["relabel"]["dropped"] == {"tie": 2}
    # --mode original with --inverted keep trains two pairs against their own scores: said, in a note
    summary, rows = augment(fixtures, tmp_path / "keep", "--scale", "-4-4", "--mode", "original", "--inverted",
                            "keep", capsys=capsys)
    original = by_pair(rows)
    kept_as_given = original["train:4"]["original"]
    assert kept_as_given["chosen"][-1]["content"] == "7 times 8 is 56."
    assert (kept_as_given["score_chosen"], kept_as_given["score_rejected"]) == (-1.5, 2.0)
    assert any("2 pairs train with a chosen answer scored below" in n for n in summary["notes"])
    assert any("2 tied pairs train chosen over rejected" in n for n in summary["notes"])
    # the default (swap) in --mode original: every pair trains the way its scores point
    _, rows = augment(fixtures, tmp_path / "swap", "--scale", "-4-4", "--mode", "original", capsys=capsys)
    assert all(r["score_chosen"] >= r["score_rejected"] for r in rows)


@pytest.mark.parametrize("scale", [["--scale", "-4-4"], ["--scale=-4-4"], ["--scale", "-4,4"], ["--scale", "-4:4"],
                                   ["--scale", "-4 to 4"], ["--scale", "[-4, 4]"]])
def test_a_negative_scale_reads_in_every_spelling(fixtures, tmp_path, capsys, scale):
    summary, rows = augment(fixtures, tmp_path / "out", *scale, capsys=capsys)
    assert summary["goal"]["scale"] == [-4.0, 4.0] and summary["rows_kept"] == 12
    system = rows[0]["prompt"][0]["content"]
    assert "on a scale of -4 to 4, where -4 is lowest and 4 is highest" in system
    assert system.endswith(f"Overall score: {rows[0]['goal']:g}.")


def test_out_of_scale_scores_stop_the_run_with_what_to_pass(fixtures, tmp_path, capsys):
    code = main(["augment", str(fixtures / "pairs_reward_model.jsonl"), *COLUMNS, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "9 of 12 rows have a score outside the scale 1-10" in err
    for hint in ("--score-mapping quantile", "--scale LOW-HIGH", "--out-of-scale drop"):
        assert hint in err
    assert not (tmp_path / "out").exists()
    summary, _ = augment(fixtures, tmp_path / "dropped", "--out-of-scale", "drop", capsys=capsys)
    assert summary["dropped_by_reason"] == {"score_outside_scale": 9} and summary["rows_kept"] == 3


def test_column_flags_imply_pairs_and_an_unknown_layout_names_the_flags(fixtures, tmp_path, capsys):
    summary, _ = augment(fixtures, tmp_path / "out", "--score-mapping", "quantile", capsys=capsys)
    assert summary["schema"] == "pairs"
    code = main(["augment", str(fixtures / "pairs_reward_model.jsonl"), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert ("--prompt-column question --chosen-column better --rejected-column worse --score-chosen-column s_better "
            "--score-rejected-column s_worse") in err
    assert "--schema multi-sample" in err


def refused(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("flags", [[], ["--score-chosen-column", "question"], ["--chosen-column", "s_better"]])
def test_all_rows_dropped_is_one_line_naming_the_reasons(tmp_path, capsys, flags):
    """Every row dropped (the per-row loader's path): the count by reason, not a KeyError on an empty table."""
    if flags:
        source = write_jsonl(tmp_path / "rm.jsonl", OWN_PAIRS_ROWS)
        base = ["--prompt-column", "question", "--chosen-column", "better", "--rejected-column", "worse",
                "--score-chosen-column", "s_better", "--score-rejected-column", "s_worse"]
        base = [a for i, a in enumerate(base) if a not in flags[::2] and (i == 0 or base[i - 1] not in flags[::2])]
        argv = ["augment", str(source), *base, *flags]
    else:
        source = write_jsonl(tmp_path / "bad.jsonl", [
            {"prompt": "p", "chosen": "a", "rejected": "b", "score_chosen": "high", "score_rejected": "low"},
            {"prompt": "q", "chosen": "a", "rejected": "b", "score_chosen": None, "score_rejected": 2}])
        argv = ["augment", str(source)]
    err = refused([*argv, "--out", str(tmp_path / "out")], capsys)
    if flags:  # a text column as a score, a score column as text: each is one column given to two flags
        assert "both name the column" in err
    else:
        assert "no usable training pairs after cleaning (dropped:" in err


def test_pandas_parquet_with_large_strings_reads_in_every_placement(tmp_path, capsys):
    import pyarrow as pa

    rows = [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}", "score_chosen": 8, "score_rejected": 3}
            for i in range(10)]
    table = pa.Table.from_pylist(rows).cast(pa.schema([("prompt", pa.large_string()), ("chosen", pa.large_string()),
                                                       ("rejected", pa.large_string()),
                                                       ("score_chosen", pa.int64()), ("score_rejected", pa.int64())]))
    pq.write_table(table, tmp_path / "pandas.parquet")
    for placement in ("system", "user"):
        out = tmp_path / placement
        assert main(["augment", str(tmp_path / "pandas.parquet"), "--out", str(out), "--placement", placement,
                     "--test-size", "0"]) == 0, capsys.readouterr().err
        first = pq.read_table(out / SPLIT_FILES["train"]).to_pylist()[0]
        text = first["prompt"] if placement == "user" else first["prompt"][0]["content"]
        assert "Overall score: 8." in text


@pytest.mark.parametrize("size", ["nan", "inf", "1e400", "-inf"])
def test_a_non_finite_test_size_is_refused(tmp_path, capsys, size):
    source = write_jsonl(tmp_path / "rm.jsonl", OWN_PAIRS_ROWS)
    err = refused(["augment", str(source), *COLUMNS, "--score-mapping", "min-max", f"--test-size={size}",
                   "--out", str(tmp_path / "out")], capsys)
    assert "--test-size must be a fraction in [0, 1) or a whole number of prompts" in err


def test_a_mapping_that_makes_most_pairs_ties_is_warned_and_counted(tmp_path, capsys):
    close = [{**r, "s_better": float(i), "s_worse": i - 0.1} for i, r in enumerate(OWN_PAIRS_ROWS)]  # 0.1 apart on 0-11
    source = write_jsonl(tmp_path / "rm.jsonl", close)
    summary, _ = augment_file(source, tmp_path / "out", "--score-mapping", "min-max", capsys=capsys)
    mapping = summary["score_mapping"]
    assert mapping["ties_before"] == 0 and mapping["ties_after"] > mapping["pairs"] / 2
    assert any(n.startswith("warning: the min-max mapping made") for n in summary["notes"])
    err = refused(["augment", str(write_jsonl(tmp_path / "flat.jsonl", [{**r, "s_better": 1.5, "s_worse": 1.5}
                                                                        for r in OWN_PAIRS_ROWS])),
                   *COLUMNS, "--score-mapping", "quantile", "--out", str(tmp_path / "flat")], capsys)
    assert "one distinct score" in err


def augment_file(source, out, *flags, capsys=None):
    code = main(["augment", str(source), *COLUMNS, "--test-size", "0", "--out", str(out), *flags])
    assert code == 0, capsys.readouterr().err if capsys else ""
    return json.loads((out / "summary.json").read_text()), pq.read_table(out / SPLIT_FILES["train"]).to_pylist()


@pytest.mark.parametrize("flags,named", [
    (["--score-chosen-column", "s_better", "--score-rejected-column", "s_better"],
     "--score-chosen-column and --score-rejected-column"),
    (["--prompt-column", "better", "--chosen-column", "better"], "--prompt-column and --chosen-column"),
    (["--chosen-column", "better", "--rejected-column", "better"], "--chosen-column and --rejected-column"),
])
def test_one_column_given_to_two_flags_is_refused(tmp_path, capsys, flags, named):
    err = refused(["augment", str(write_jsonl(tmp_path / "rm.jsonl", OWN_PAIRS_ROWS)), *flags, "--out", str(tmp_path / "o")],
                  capsys)
    assert f"{named} both name the column 'better'" in err.replace("'s_better'", "'better'")


@pytest.mark.parametrize("row,expected", [
    ({"prompt": "p", "prompt_id": "0", "chosen": "c", "rejected": "r", "score_chosen": 8, "score_rejected": 3,
      "chosen-rating": 4, "rejected-rating": 2}, "--schema ultrafeedback-binarized or --schema argilla"),
    ({"prompt": "p", "chosen": "c", "rejected": "r", "chosen_score": 8, "rejected_score": 3, "score_chosen": 1,
      "score_rejected": 9}, "--score-chosen-column score_chosen --score-rejected-column score_rejected or "
                            "--score-chosen-column chosen_score --score-rejected-column rejected_score"),
])
def test_a_file_matching_two_layouts_names_the_candidates(tmp_path, capsys, row, expected):
    rows = [{**row, "prompt": f"p{i}"} for i in range(5)]
    for suffix in (".jsonl", ".parquet"):  # the per-row and the Arrow loader
        source = write_jsonl(tmp_path / "two.jsonl", rows)
        if suffix == ".parquet":
            import pyarrow as pa

            pq.write_table(pa.Table.from_pylist(rows), tmp_path / "two.parquet")
            source = tmp_path / "two.parquet"
        err = refused(["augment", str(source), "--out", str(tmp_path / "o")], capsys)
        assert expected in err and str(source) in err


@pytest.mark.parametrize("scale,expected", [
    ("0-0", "(e.g. 0-1)"), ("1e400-1e401", "both ends must be finite"), ("-inf-5", "two finite numbers"),
])
def test_scale_spellings_are_refused_with_a_correct_example(tmp_path, capsys, scale, expected):
    err = refused(["augment", str(write_jsonl(tmp_path / "rm.jsonl", OWN_PAIRS_ROWS)), *COLUMNS, f"--scale={scale}",
                   "--out", str(tmp_path / "o")], capsys)
    assert expected in err
    from rapref.goals import scale_field

    assert scale_field("1e1-2e1") == (10.0, 20.0)  # exponent notation reads
