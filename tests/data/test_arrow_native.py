"""The Arrow-native path of `rapref augment` equals the per-row path: same tables, same counted drops, same errors."""

import math
import re

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rapref.data.augment as augment
from helpers import write_jsonl
from rapref.data.augment import AugmentConfig
from rapref.io import InputError
from rapref.data.schemas import SchemaOptions
from rapref.formats.dataset import SPLIT_FILES


def run(src, out, per_row: bool, monkeypatch, **kw):
    used = []
    real = augment._arrow_native

    def spy(cfg):
        result = None if per_row else real(cfg)
        used.append(result is not None)
        return result

    monkeypatch.setattr(augment, "_arrow_native", spy)
    summary = augment.main(AugmentConfig(source=str(src), out=str(out), overwrite=True, **kw))
    tables = {p.name: pq.read_table(p).to_pylist() for p in sorted((out / "data").glob("*.parquet"))}
    for key in ("provenance", "input"):
        summary.pop(key)
    return used[0], summary, tables


def both(tmp_path, src, monkeypatch, **kw):
    fast = run(src, tmp_path / "fast", False, monkeypatch, **kw)
    slow = run(src, tmp_path / "slow", True, monkeypatch, **kw)
    assert slow[0] is False
    return fast, slow


BAD_ROWS = [
    {"prompt": "Q1", "chosen": "a", "rejected": "b", "score_chosen": 8, "score_rejected": 3},
    {"prompt": None, "chosen": "a", "rejected": "b", "score_chosen": 8, "score_rejected": 3},
    {"prompt": "  ", "chosen": "a", "rejected": "b", "score_chosen": 8, "score_rejected": 3},
    {"prompt": "Q2", "chosen": None, "rejected": "b", "score_chosen": 8, "score_rejected": 3},
    {"prompt": "Q3", "chosen": "a", "rejected": "\n", "score_chosen": 8, "score_rejected": 3},
    {"prompt": "Q4", "chosen": "same", "rejected": "same", "score_chosen": 8, "score_rejected": 3},
    {"prompt": "Q5", "chosen": "a", "rejected": "b", "score_chosen": None, "score_rejected": 3},
    {"prompt": "Q6", "chosen": "a", "rejected": "b", "score_chosen": 11, "score_rejected": 3},
    {"prompt": "Q7", "chosen": "a", "rejected": "b", "score_chosen": 7.5, "score_rejected": -1},
    {"prompt": "Q8", "chosen": "", "rejected": "", "score_chosen": 99, "score_rejected": None},
] + [{"prompt": f"Q{i % 7}", "chosen": f"c{i}", "rejected": f"r{i}", "score_chosen": 1 + i % 10,
      "score_rejected": 1 + (i * 3) % 10} for i in range(40)]


@pytest.mark.parametrize("placement", ["system", "user", "user-suffix"])
def test_every_drop_reason_counted_alike(tmp_path, monkeypatch, placement):
    src = write_jsonl(tmp_path / "pairs.jsonl", BAD_ROWS)
    (used, fast, fast_tables), (_, slow, slow_tables) = both(tmp_path, src, monkeypatch, placement=placement)
    assert used, "the Arrow path was not taken"
    assert fast == slow
    assert fast_tables == slow_tables
    assert fast["rows_dropped"] == 9 and len(fast["dropped_by_reason"]) == 6


@pytest.mark.parametrize("name", ["argilla.jsonl", "pairs_custom_columns.jsonl", "ultrafeedback_binarized.jsonl"])
def test_fixtures_give_the_same_folder(tmp_path, monkeypatch, fixtures, name):
    """Text columns, messages with the prompt inside chosen / rejected (binarized), and beside them (argilla)."""
    kw = {"schema": "pairs", "schema_options": SchemaOptions(
        prompt_column="question", chosen_column="good", rejected_column="bad", score_chosen_column="s_good",
        score_rejected_column="s_bad", test_size=1)} if name.startswith("pairs_custom") else {}
    fast, slow = both(tmp_path, fixtures / name, monkeypatch, **kw)
    assert fast[0], "the Arrow path was not taken"
    assert fast[1:] == slow[1:]


def msgs(*pairs):
    return [{"role": role, "content": text} for role, text in pairs]


BAD_MESSAGES = [  # ultrafeedback_binarized's layout: the prompt turns repeated inside chosen and rejected
    {"prompt": "Q0", "chosen": msgs(("user", "Q0"), ("assistant", "A")), "rejected": msgs(("user", "Q0"), ("assistant", "B")),
     "score_chosen": 8.0, "score_rejected": 3.0},
    {"prompt": "Q1", "chosen": [], "rejected": msgs(("user", "Q1"), ("assistant", "B")), "score_chosen": 8, "score_rejected": 3},
    {"prompt": "Q2", "chosen": None, "rejected": msgs(("user", "Q2"), ("assistant", "B")), "score_chosen": 8, "score_rejected": 3},
    {"prompt": "Q3", "chosen": msgs(("user", "Q3"), ("robot", "A")), "rejected": msgs(("user", "Q3"), ("assistant", "B")),
     "score_chosen": 8, "score_rejected": 3},
    {"prompt": "Q4", "chosen": msgs(("user", "Q4"), ("assistant", " ")), "rejected": msgs(("user", "Q4"), ("assistant", "B")),
     "score_chosen": 8, "score_rejected": 3},
    {"prompt": "Q5", "chosen": msgs(("user", None), ("assistant", "A")), "rejected": msgs(("user", "Q5"), ("assistant", "B")),
     "score_chosen": 8, "score_rejected": 3},
    {"prompt": "Q6", "chosen": msgs(("user", "Q6"), ("user", "A")), "rejected": msgs(("user", "Q6"), ("assistant", "B")),
     "score_chosen": 8, "score_rejected": 3},
    {"prompt": "Q7", "chosen": msgs(("user", "Q7"), ("assistant", "A")), "rejected": msgs(("user", "other"), ("assistant", "B")),
     "score_chosen": 8, "score_rejected": 3},
    {"prompt": "Q8", "chosen": msgs(("user", "Q8"), ("assistant", "A")), "rejected": msgs(("user", "Q8"), ("assistant", "B"), ("assistant", "C")),
     "score_chosen": 8, "score_rejected": 3},
    {"prompt": "Q9", "chosen": msgs(("assistant", "x"), ("assistant", "A")), "rejected": msgs(("assistant", "x"), ("assistant", "B")),
     "score_chosen": 8, "score_rejected": 3},
    {"prompt": "Q10", "chosen": msgs(("user", "Q10"), ("assistant", "same")), "rejected": msgs(("user", "Q10"), ("assistant", "same")),
     "score_chosen": 8, "score_rejected": 3},
    {"prompt": "Q11", "chosen": msgs(("system", "S"), ("user", "Q11"), ("assistant", "A")),
     "rejected": msgs(("system", "S"), ("user", "Q11"), ("assistant", "B")), "score_chosen": 8, "score_rejected": float("inf")},
] + [{"prompt": f"Q{i % 7}", "chosen": msgs(("user", f"Q{i % 7}"), ("assistant", f"c{i}")),
      "rejected": msgs(("user", f"Q{i % 7}"), ("assistant", f"r{i}")), "score_chosen": 1 + i % 10,
      "score_rejected": 1 + (i * 3) % 10} for i in range(30)]


@pytest.mark.parametrize("placement", ["system", "user"])
def test_message_lists_drop_alike(tmp_path, monkeypatch, placement):
    import pyarrow as pa

    src = tmp_path / "pairs.parquet"  # Parquet: JSON has no infinity
    pq.write_table(pa.Table.from_pylist(BAD_MESSAGES), src)
    (used, fast, fast_tables), (_, slow, slow_tables) = both(tmp_path, src, monkeypatch, placement=placement)
    assert used, "the Arrow path was not taken"
    assert fast == slow and fast_tables == slow_tables
    assert fast["rows_dropped"] == 11


def test_prompt_messages_beside_answer_only_lists(tmp_path, monkeypatch):
    """argilla-like: chosen / rejected hold only the answer; the prompt column holds messages (some bad)."""
    rows = [{"prompt": msgs(("user", f"Q{i}")), "chosen": msgs(("assistant", f"a{i}")),
             "rejected": msgs(("assistant", f"b{i}")), "score_chosen": 9.0, "score_rejected": 2.0} for i in range(12)]
    rows[3]["prompt"] = msgs(("assistant", "Q3"))
    rows[4]["prompt"] = []
    rows[5]["prompt"] = None
    rows[6]["prompt"] = msgs(("user", ""))
    src = write_jsonl(tmp_path / "p.jsonl", rows)
    (used, fast, fast_tables), (_, slow, slow_tables) = both(tmp_path, src, monkeypatch)
    assert used and fast == slow and fast_tables == slow_tables and fast["rows_dropped"] == 4


def test_parquet_input_takes_the_arrow_path(tmp_path, monkeypatch):
    import pyarrow as pa

    src = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(BAD_ROWS), src)
    (used, fast, fast_tables), (_, slow, slow_tables) = both(tmp_path, src, monkeypatch)
    assert used and fast == slow and fast_tables == slow_tables


def test_strict_mode_stops_at_the_same_row_with_the_same_words(tmp_path, monkeypatch):
    src = write_jsonl(tmp_path / "pairs.jsonl", BAD_ROWS)
    errors = []
    for per_row in (False, True):
        with pytest.raises(InputError) as err:
            run(src, tmp_path / f"strict{per_row}", per_row, monkeypatch,
                schema_options=SchemaOptions(strict=True))
        errors.append(str(err.value))
    assert errors[0] == errors[1] and "row train:1, field 'prompt': missing prompt" in errors[0]


def test_files_arrow_cannot_read_as_they_are_take_the_per_row_path(tmp_path, monkeypatch):
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [BAD_ROWS[0], {**BAD_ROWS[0], "score_chosen": "8"}])
    used, _, _ = run(mixed, tmp_path / "out", False, monkeypatch)
    assert used is False  # a score written as text: the per-row reader parses it


def small_blocks(monkeypatch, calls):
    """Read input in blocks of ~5 rows and write the relabeled split in blocks of 7 pairs; count the blocks read."""
    import rapref.io

    real = rapref.io.iter_arrow_tables

    def counted(path):
        for table in real(path):
            calls.append(table.num_rows)
            yield table

    monkeypatch.setattr(rapref.io, "ARROW_BLOCK_BYTES", 400)
    monkeypatch.setattr(rapref.io, "ARROW_BLOCK_ROWS", 5)
    monkeypatch.setattr(augment, "iter_arrow_tables", counted)
    monkeypatch.setattr(augment, "WRITE_BLOCK_ROWS", 7)


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
@pytest.mark.parametrize("mode", ["relabeled", "half", "duplicated"])
def test_block_by_block_reading_and_writing_give_the_same_folder(tmp_path, monkeypatch, suffix, mode):
    """1M pairs are read, cleaned and written in blocks; the folder is the per-row path's, row numbers included."""
    import pyarrow as pa

    from rapref.data.relabel import RelabelOptions

    src = tmp_path / f"pairs.{suffix}"
    write_jsonl(src, BAD_ROWS) if suffix == "jsonl" else pq.write_table(pa.Table.from_pylist(BAD_ROWS), src)
    blocks = []
    small_blocks(monkeypatch, blocks)
    fast = run(src, tmp_path / "fast", False, monkeypatch, relabel=RelabelOptions(mode=mode))
    monkeypatch.undo()  # the per-row path, with the default block sizes
    slow = run(src, tmp_path / "slow", True, monkeypatch, relabel=RelabelOptions(mode=mode))
    assert fast[0] and len(blocks) >= 5 and sum(blocks) == len(BAD_ROWS)
    assert fast[1] == slow[1] and fast[2] == slow[2]
    assert pq.ParquetFile(tmp_path / "fast" / SPLIT_FILES["train"]).num_row_groups > 2


def test_strict_mode_names_the_files_row_in_a_later_block(tmp_path, monkeypatch):
    rows = BAD_ROWS[10:] + BAD_ROWS[:10]  # the first bad row is row 41, many blocks in
    src = write_jsonl(tmp_path / "pairs.jsonl", rows)
    errors, blocks = [], []
    small_blocks(monkeypatch, blocks)
    for per_row in (False, True):
        with pytest.raises(InputError) as err:
            run(src, tmp_path / f"strict{per_row}", per_row, monkeypatch, schema_options=SchemaOptions(strict=True))
        errors.append(str(err.value))
        monkeypatch.undo()
    assert len(blocks) > 3 and errors[0] == errors[1] and "row train:41, field 'prompt'" in errors[0]


def test_a_type_that_changes_between_blocks_reads_the_file_whole(tmp_path, monkeypatch):
    """Arrow's block reader fixes column types on the first block: a column null there and text later is read whole."""
    rows = [{**row, "note": None if i < 30 else f"n{i}"} for i, row in enumerate(BAD_ROWS)]
    src = write_jsonl(tmp_path / "pairs.jsonl", rows)
    blocks = []
    small_blocks(monkeypatch, blocks)
    fast = run(src, tmp_path / "fast", False, monkeypatch)
    monkeypatch.undo()
    slow = run(src, tmp_path / "slow", True, monkeypatch)
    assert fast[0] and fast[1] == slow[1] and fast[2] == slow[2]
    assert 0 < sum(blocks) < len(rows)  # the block reader gave up part-way


texts = st.one_of(st.none(), st.sampled_from(["", " ", "a", "b", "Q", "same"]), st.text(max_size=6))


scores = st.one_of(st.none(), st.integers(-2, 12), st.floats(-2, 12, allow_nan=False))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(texts, texts, texts, scores, scores), min_size=1, max_size=10))
def test_property_random_rows_clean_alike(tmp_path_factory, rows):
    tmp = tmp_path_factory.mktemp("prop")
    good = [{"prompt": "P", "chosen": "x", "rejected": "y", "score_chosen": 9.0, "score_rejected": 2.0},
            {"prompt": "R", "chosen": "x", "rejected": "y", "score_chosen": 9.0, "score_rejected": 2.0}]
    records = good + [dict(zip(("prompt", "chosen", "rejected", "score_chosen", "score_rejected"), r)) for r in rows]
    if any(isinstance(r["score_chosen"], float) and not math.isfinite(r["score_chosen"]) for r in records):
        return
    src = write_jsonl(tmp / "p.jsonl", records)
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast, slow = both(tmp, src, monkeypatch, schema_options=SchemaOptions(test_size=1, out_of_scale="drop"))
    if fast[0]:
        assert fast[1:] == slow[1:]


roles = st.sampled_from(["user", "assistant", "system", "robot", None])


contents = st.one_of(st.none(), st.sampled_from(["", " ", "Q", "A", "B"]))


message_lists = st.one_of(st.none(), st.lists(st.fixed_dictionaries({"role": roles, "content": contents}),
                                              max_size=3))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(message_lists, message_lists, scores, scores), min_size=1, max_size=10))
def test_property_random_message_rows_clean_alike(tmp_path_factory, rows):
    import pyarrow as pa

    tmp = tmp_path_factory.mktemp("prop")
    good = [{"prompt": "P", "chosen": msgs(("user", "P"), ("assistant", "x")),
             "rejected": msgs(("user", "P"), ("assistant", "y")), "score_chosen": 9.0, "score_rejected": 2.0},
            {"prompt": "R", "chosen": msgs(("user", "R"), ("assistant", "x")),
             "rejected": msgs(("user", "R"), ("assistant", "y")), "score_chosen": 9.0, "score_rejected": 2.0}]
    records = good + [{"prompt": "P", "chosen": c, "rejected": r, "score_chosen": a, "score_rejected": b}
                      for c, r, a, b in rows]
    src = tmp / "p.parquet"
    pq.write_table(pa.Table.from_pylist(records), src)
    with pytest.MonkeyPatch.context() as monkeypatch:
        try:
            fast = run(src, tmp / "fast", False, monkeypatch, schema_options=SchemaOptions(test_size=1, out_of_scale="drop"))
        except InputError as err:  # e.g. no usable training pairs: the per-row path must say the same
            with pytest.raises(InputError, match=re.escape(str(err))):
                run(src, tmp / "slow", True, monkeypatch, schema_options=SchemaOptions(test_size=1, out_of_scale="drop"))
            return
        slow = run(src, tmp / "slow", True, monkeypatch, schema_options=SchemaOptions(test_size=1, out_of_scale="drop"))
    assert fast[0]
    assert fast[1:] == slow[1:]
