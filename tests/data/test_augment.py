"""`rapref augment` end to end: the folder loads in `datasets` and TRL, is deterministic and written atomically; it says
what it held out; outputs with the same folder name load their own rows (in this process and a fresh one)."""

import json
import subprocess
import sys

import pytest

from helpers import pairs, pairs_file
from rapref.cli import main as cli
from rapref.formats.dataset import SPLIT_FILES
from rapref.data.augment import AugmentConfig, augment_dataset, main
from rapref.io import InputError
from rapref.data.relabel import RelabelOptions
from rapref.data.schemas import SchemaOptions


def synthetic_rows(n=40):
    return [{"prompt": f"Question number {i}?", "chosen": f"A careful answer {i}.", "rejected": f"Meh {i}.",
             "score_chosen": float(5 + i % 6), "score_rejected": float(1 + i % 5)} for i in range(n)]


def write(tmp_path, rows):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def cfg(src, out, **kw):
    return AugmentConfig(source=str(src), out=str(out), schema_options=SchemaOptions(test_size=0.25), **kw)


def test_output_loads_with_datasets_and_has_splits(tmp_path):
    import datasets

    src = write(tmp_path, synthetic_rows())
    summary = main(cfg(src, tmp_path / "out"))
    loaded = datasets.load_dataset(str(tmp_path / "out"))
    assert set(loaded) == {"train", "test", "test_goal"}
    assert len(loaded["train"]) == 2 * summary["pairs"]["train"] and len(loaded["test"]) == 10
    train_prompts = {r["prompt"][-1]["content"] for r in loaded["train"]}
    test_prompts = {r["prompt"][-1]["content"] for r in loaded["test"]}
    assert not train_prompts & test_prompts  # whole prompts held out
    assert all(r["goal"] is None and r["prompt"][0]["role"] == "user" for r in loaded["test"])
    assert all("Overall score: 10." in r["prompt"][0]["content"] for r in loaded["test_goal"])
    assert summary["input"]["fingerprint"] and summary["provenance"]["packages"]["pyarrow"]
    assert summary["score_histogram"]["chosen"]
    goal = json.loads((tmp_path / "out" / "rapref_goal.json").read_text())
    assert goal["placement"] == "system" and goal["scale"] == [1.0, 10.0]


def test_same_input_settings_and_seed_give_identical_files(tmp_path):
    src = write(tmp_path, synthetic_rows())
    for name in ("a", "b"):
        main(cfg(src, tmp_path / name, relabel=RelabelOptions(mode="half", seed=3)))
    for split in SPLIT_FILES.values():
        assert (tmp_path / "a" / split).read_bytes() == (tmp_path / "b" / split).read_bytes()


def test_existing_output_is_reused_with_the_same_settings_and_refused_with_others(tmp_path):
    src = write(tmp_path, synthetic_rows())
    main(cfg(src, tmp_path / "out"))
    made = (tmp_path / "out" / SPLIT_FILES["train"]).stat().st_mtime_ns
    again = main(cfg(src, tmp_path / "out"))  # a page run twice, or after the README: the same output, kept
    assert "reused" in again["notes"][0]
    assert (tmp_path / "out" / SPLIT_FILES["train"]).stat().st_mtime_ns == made
    with pytest.raises(InputError, match=r"give a fresh --out \(e\.g\. .*out-2\); --overwrite deletes it"):
        main(cfg(src, tmp_path / "out", relabel=RelabelOptions(ties="drop")))
    main(cfg(src, tmp_path / "out", relabel=RelabelOptions(ties="drop"), overwrite=True))
    src.write_text(src.read_text().replace("careful", "careless"))  # changed input: never reused
    with pytest.raises(InputError, match="fresh --out"):
        main(cfg(src, tmp_path / "out", relabel=RelabelOptions(ties="drop")))


def test_interrupted_write_leaves_no_half_folder(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    src = write(tmp_path, synthetic_rows())
    main(cfg(src, tmp_path / "out"))
    before = (tmp_path / "out" / SPLIT_FILES["train"]).read_bytes()
    calls = {"n": 0}
    real = pq.write_table

    def crash_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pq, "write_table", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        main(cfg(src, tmp_path / "out", overwrite=True, relabel=RelabelOptions(mode="duplicated")))
    assert (tmp_path / "out" / SPLIT_FILES["train"]).read_bytes() == before  # the old folder is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "pairs.jsonl"]  # no temp or lock leftovers
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        main(cfg(src, tmp_path / "new", relabel=RelabelOptions(mode="duplicated")))
    assert not (tmp_path / "new").exists()


def test_in_memory_dataset_api():
    import datasets

    ds = datasets.Dataset.from_list(synthetic_rows(10))
    tables, summary = augment_dataset(ds, AugmentConfig(source="", out="", placement="user",
                                                        schema_options=SchemaOptions(test_size=0)))
    assert summary["schema"] == "pairs" and tables["train"].num_rows == 20
    assert tables["train"]["prompt"].to_pylist()[0].endswith("\n\nQuestion number 0?")
    assert len(ds) == 10 and ds[0]["prompt"] == "Question number 0?"  # input untouched


def test_output_feeds_trl_dpo_pipeline(tmp_path, tiny_model_dir):
    """TRL's own DPO data pipeline tokenizes our folder and trains on it, with no adapter code."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    src = write(tmp_path, synthetic_rows(12))
    main(cfg(src, tmp_path / "out"))
    data = datasets.load_dataset(str(tmp_path / "out"))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), per_device_train_batch_size=4, max_steps=2, bf16=False,
                     gradient_checkpointing=False, report_to="none", use_cpu=True, max_length=256,
                     save_strategy="no")
    trainer = DPOTrainer(model=model, ref_model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), args=args,
                         train_dataset=data["train"], eval_dataset=data["test_goal"], processing_class=tokenizer)
    assert len(trainer.train_dataset) == len(data["train"])  # nothing silently dropped by TRL
    first = trainer.train_dataset[0]
    decoded = tokenizer.decode(first["prompt_ids"])
    assert "Overall score:" in decoded and decoded.startswith("<|im_start|>system")
    trainer.train()
    assert trainer.state.global_step == 2


def test_trl_dpo_cli_loads_the_folder(tmp_path, tiny_model_dir):
    """`trl dpo --dataset_name DIR` (TRL's own script) trains on our folder unchanged."""
    import os
    import subprocess
    import sys

    src = write(tmp_path, synthetic_rows(8))
    main(cfg(src, tmp_path / "data"))
    proc = subprocess.run(
        [sys.executable, "-m", "trl.cli.main", "dpo", "--model_name_or_path", str(tiny_model_dir), "--dataset_name",
         str(tmp_path / "data"), "--output_dir", str(tmp_path / "out"), "--max_steps", "1",
         "--per_device_train_batch_size", "2", "--bf16", "false", "--gradient_checkpointing", "false",
         "--use_cpu", "true", "--report_to", "none", "--save_strategy", "no"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_augment_says_what_it_held_out(tmp_path, capsys):
    src = pairs(tmp_path / "p.jsonl", ["Q1?", "Q1?", "Q2?", "Q3?"])  # four rows, three distinct prompts
    assert cli(["augment", str(src), "--test-size", "1", "--out", str(tmp_path / "a")]) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    note = next(n for n in summary["notes"] if "held out" in n)
    assert "held out 1 of 3 distinct prompts" in note and "of 4 pairs" in note
    assert cli(["augment", str(src), "--test-size", "0", "--out", str(tmp_path / "b")]) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert any("no prompts held out for test (--test-size 0); all 4 pairs train" in n for n in summary["notes"])


def _first_prompts(folder) -> list:
    import datasets

    return sorted(r["prompt"][-1]["content"] for r in datasets.load_dataset(str(folder))["train"])


def test_outputs_with_the_same_folder_name_load_their_own_rows(tmp_path):
    for name, tag in (("a", "A"), ("b", "B")):
        (tmp_path / name).mkdir()
        assert cli(["augment", str(pairs_file(tmp_path / name, tag=tag)), "--out", str(tmp_path / name / "data"),
                    "--test-size", "2"]) == 0
    a, b = _first_prompts(tmp_path / "a" / "data"), _first_prompts(tmp_path / "b" / "data")
    assert all("A" in p for p in a) and all("B" in p for p in b)
    # a rerun with --overwrite and other content, read in the same process ...
    assert cli(["augment", str(pairs_file(tmp_path / "a", tag="C")), "--out", str(tmp_path / "a" / "data"),
                "--test-size", "2", "--overwrite"]) == 0
    assert all("C" in p for p in _first_prompts(tmp_path / "a" / "data"))
    # ... and in a fresh one
    code = ("import datasets, sys; rows = datasets.load_dataset(sys.argv[1])['train']; "
            "print(sorted({r['prompt'][-1]['content'][9] for r in rows}))")
    for folder, tag in ((tmp_path / "a" / "data", "C"), (tmp_path / "b" / "data", "B")):
        out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=120)
        assert out.stdout.strip() == repr([tag]), out.stderr[-2000:]


def test_a_min_gap_that_drops_every_pair_is_refused_and_writes_nothing(tmp_path, capsys):
    src = write(tmp_path, synthetic_rows())
    with pytest.raises(InputError, match=r"no training rows left after relabeling: all 30 pairs dropped \(30 score"):
        main(cfg(src, tmp_path / "out", relabel=RelabelOptions(min_gap=100)))
    assert not (tmp_path / "out").exists()
    assert cli(["augment", str(src), "--out", str(tmp_path / "o2"), "--min-gap", "inf"]) == 2
    assert "--min-gap must be a finite number of at least 0, got inf" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_a_goal_line_without_its_score_names_the_flag(tmp_path, capsys):
    src = write(tmp_path, synthetic_rows())
    assert cli(["augment", str(src), "--out", str(tmp_path / "o"), "--goal-line", "Quality: {name}"]) == 2
    assert "--goal-line must contain '{score}', got 'Quality: {name}'" in capsys.readouterr().err


@pytest.mark.parametrize("flag, template, needle", [
    ("--goal-line", "{score} {x}", "unknown field {x}"), ("--goal-line", "{score} {", "Single '{'"),
    ("--goal-line", "{name}: {score:.1f}", "Unknown format code 'f'"), ("--goal-header", "{x}", "unknown field {x}"),
    ("--goal-header", "{lo", "expected '}'"), ("--goal-header", "{}", "out of range"),
])
def test_a_goal_template_that_cannot_be_filled_in_is_one_line_naming_the_flag(tmp_path, capsys, flag, template,
                                                                              needle):
    from helpers import one_line_error

    src = write(tmp_path, synthetic_rows())
    err = one_line_error(capsys, ["augment", str(src), "--out", str(tmp_path / "o"), flag, template], needle)
    assert f"{flag} cannot be filled in" in err and not (tmp_path / "o").exists()


def test_an_empty_goal_header_gives_the_score_lines_alone(tmp_path):
    from rapref.goals import GoalSpec

    assert GoalSpec(header="").text(8) == "Overall score: 8."
    src = write(tmp_path, synthetic_rows())
    assert cli(["augment", str(src), "--out", str(tmp_path / "o"), "--goal-header", ""]) == 0
    assert json.loads((tmp_path / "o" / "rapref_goal.json").read_text())["header"] == ""
