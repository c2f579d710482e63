"""`rapref augment` on bad input: a one-line error naming file, row and field, or a counted drop; never a traceback or a silent loss.
Files nested too deeply, not UTF-8, or with a key or column given twice are refused, not misread; so are held-out
sizes the data cannot give."""

import json
import math

import pytest

from helpers import one_line_error, write_jsonl
from rapref.cli import main
from rapref.cli import main as cli


def good(i, **over):
    row = {"prompt": f"Question {i}?", "chosen": f"Good answer {i}.", "rejected": f"Bad answer {i}.",
           "score_chosen": 8, "score_rejected": 3}
    row.update(over)
    return row


def run(args, capsys):
    code = main(["augment", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.err.strip()


def assert_one_line_error(code, err, *needles):
    assert code == 2
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_counted_drops_and_accounting(tmp_path, capsys):
    rows = [
        good(0), good(1),
        good(2, score_chosen=float("nan")), good(3, score_rejected="N/A"), good(4, score_chosen="high"),
        good(5, score_chosen=11), good(6, prompt="   "), good(7, rejected=""), good(8, rejected="Good answer 8."),
        good(9, score_rejected=None), good(10, score_chosen=math.inf),
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r).replace("NaN", "NaN").replace("Infinity", "Infinity") for r in rows))
    code, err = run([src, "--out", tmp_path / "out", "--test-size", "0"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows_in"] == 11 and summary["rows_kept"] == 2
    assert summary["rows_in"] == summary["rows_kept"] + summary["rows_dropped"]
    assert summary["dropped_by_reason"] == {"score_not_a_finite_number": 5, "score_outside_scale": 1,
                                            "empty_text": 2, "chosen_equals_rejected": 1}
    example = summary["drop_examples"]["score_outside_scale"][0]
    assert "row train:5" in example and "'score_chosen'" in example and "in.jsonl" in example


def test_wrong_message_roles_are_counted(tmp_path, capsys):
    def msgs(a, role="assistant"):
        return [{"role": "user", "content": "Q"}, {"role": role, "content": a}]

    rows = [{"prompt": "Q", "chosen": msgs("A"), "rejected": msgs("B"), "score_chosen": 9, "score_rejected": 2},
            {"prompt": "Q", "chosen": msgs("A", "robot"), "rejected": msgs("B"), "score_chosen": 9,
             "score_rejected": 2},
            {"prompt": "Q", "chosen": msgs("A", "user"), "rejected": msgs("B"), "score_chosen": 9,
             "score_rejected": 2}]
    src = write_jsonl(tmp_path / "m.jsonl", rows)
    code, err = run([src, "--out", tmp_path / "out", "--test-size", "0"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["dropped_by_reason"] == {"bad_message_role": 2} and summary["rows_kept"] == 1


def test_malformed_json_line(tmp_path, capsys):
    src = write_jsonl(tmp_path / "bad.jsonl", [good(0), '{"prompt": "x", ', good(2)])
    code, err = run([src, "--out", tmp_path / "out"], capsys)
    assert_one_line_error(code, err, "bad.jsonl:2", "malformed JSON")


def test_missing_column(tmp_path, capsys):
    src = write_jsonl(tmp_path / "cols.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b",
                                               "score_chosen": 1}])
    code, err = run([src, "--out", tmp_path / "out", "--schema", "pairs"], capsys)
    assert_one_line_error(code, err, "cols.jsonl", "row train:0", "'score_rejected'")


def test_missing_file(tmp_path, capsys):
    code, err = run([tmp_path / "nope.jsonl", "--out", tmp_path / "out"], capsys)
    assert_one_line_error(code, err, "nope.jsonl", "no such file")


def test_hub_dataset_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    code, err = run(["HuggingFaceH4/ultrafeedback_binarized", "--split", "train_prefs", "--out",
                     tmp_path / "out"], capsys)
    assert_one_line_error(code, err, "HuggingFaceH4/ultrafeedback_binarized", "hub", "offline")


def test_undetectable_schema(tmp_path, capsys):
    src = write_jsonl(tmp_path / "odd.jsonl", [{"text": "hello"}])
    code, err = run([src, "--out", tmp_path / "out"], capsys)
    assert_one_line_error(code, err, "odd.jsonl", "--schema")


def test_strict_mode_stops_at_first_bad_row(tmp_path, capsys):
    src = write_jsonl(tmp_path / "s.jsonl", [good(0), good(1, score_rejected=-4)])
    code, err = run([src, "--out", tmp_path / "out", "--strict"], capsys)
    assert_one_line_error(code, err, "s.jsonl", "row train:1", "'score_rejected'", "outside scale")


def test_everything_dropped_is_an_error_not_an_empty_dataset(tmp_path, capsys):
    src = write_jsonl(tmp_path / "e.jsonl", [good(0, score_chosen=99)])
    code, err = run([src, "--out", tmp_path / "out"], capsys)  # out of scale: stops, saying what to pass
    assert_one_line_error(code, err, "1 of 1 rows have a score outside the scale", "--score-mapping quantile")
    code, err = run([src, "--out", tmp_path / "out", "--out-of-scale", "drop"], capsys)
    assert_one_line_error(code, err, "no usable training pairs", "score_outside_scale")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("ext", ["csv", "parquet", "json"])
def test_other_file_types(tmp_path, capsys, ext):
    import pyarrow as pa

    rows = [good(i) for i in range(4)]
    path = tmp_path / f"in.{ext}"
    if ext == "csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(pa.Table.from_pylist(rows), path)
    elif ext == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text(json.dumps(rows))
    code, err = run([path, "--out", tmp_path / "out", "--test-size", "1", "--placement", "user"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows_out"] == {"train": 6, "test": 1, "test_goal": 1}


@pytest.mark.parametrize("name,content,needle", [
    ("deep.json", "[" * 100000 + "]" * 100000, "nested too deeply"),
    ("bad.jsonl", b'{"prompt": "caf\xe9"}\n', "not valid UTF-8"),
    ("dup.jsonl", '{"prompt": "a", "prompt": "b"}\n', "duplicate key 'prompt'"),
    ("dup.csv", "prompt,chosen,prompt\na,b,c\n", "column 'prompt' appears more than once"),
])
def test_bad_input_files_are_refused_not_misread(name, content, needle, tmp_path, capsys):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    err = one_line_error(capsys, ["augment", str(path), "--out", str(tmp_path / "d")], needle)
    assert name in err


@pytest.mark.parametrize("size,needle", [("-1", "--test-size must be"), ("2.5", "--test-size must be"),
                                         ("12", "holds out 12 prompts, but the data has 12"),
                                         ("100", "holds out 100 prompts")])
def test_impossible_test_sizes_are_refused(size, needle, tmp_path, capsys):
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"Q{i}?", "chosen": "a", "rejected": "b", "score_chosen": 8,
                                       "score_rejected": 3}) + "\n" for i in range(12)))
    one_line_error(capsys, ["augment", str(src), "--out", str(tmp_path / "d"), "--test-size", size], needle)
    assert cli(["augment", str(src), "--out", str(tmp_path / "d"), "--test-size", "11", "--quiet"]) == 0
