"""What a newcomer trips on, fixed: counts that say what was counted, held-out ids named by their split, one training
summary, no warnings a user cannot act on, headline numbers from diagnose, one-line refusals that name the fix."""

import json
import logging
import sys
import warnings

from rapref.cli import main as cli


def pairs(path, prompts):
    path.write_text("".join(json.dumps({"prompt": p, "chosen": "good.", "rejected": "bad.", "score_chosen": 8,
                                        "score_rejected": 3}) + "\n" for p in prompts))
    return path


def test_augment_says_what_it_held_out(tmp_path, capsys):
    src = pairs(tmp_path / "p.jsonl", ["Q1?", "Q1?", "Q2?", "Q3?"])  # four rows, three distinct prompts
    assert cli(["augment", str(src), "--test-size", "1", "--out", str(tmp_path / "a")]) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    note = next(n for n in summary["notes"] if "held out" in n)
    assert "held out 1 of 3 distinct prompts" in note and "of 4 pairs" in note
    assert cli(["augment", str(src), "--test-size", "0", "--out", str(tmp_path / "b")]) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert any("no prompts held out for test (--test-size 0); all 4 pairs train" in n for n in summary["notes"])


def test_held_out_rows_are_named_by_their_split(relabeled_dir):
    from rapref.formats.prompts import load_prompts

    rows = load_prompts(str(relabeled_dir), "test")
    assert rows and all(r["prompt_id"].startswith("test:") for r in rows)


def test_train_prints_one_summary_with_rounded_losses(tmp_path, capsys, tiny_model_dir, relabeled_dir):
    import re

    assert cli(["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}",
                f"output_dir={tmp_path / 'run'}", "training.max_steps=2", "training.max_length=224",
                "data.max_prompt_length=160", "training.disable_tqdm=true"]) == 0
    out = capsys.readouterr().out
    summaries = [line for line in out.splitlines() if re.match(r"rapref train: \d+ steps", line)]
    assert len(summaries) == 1 and re.search(r"loss \d\.\d{4} -> \d\.\d{4}$", summaries[0]), out
    assert "trained 2 steps" not in out


def test_a_raw_file_as_training_data_is_refused_at_once(tmp_path, capsys, tiny_model_dir):
    src = pairs(tmp_path / "pairs.jsonl", ["Q?"])
    capsys.readouterr()
    assert cli(["train", f"model.name_or_path={tiny_model_dir}", f"data.path={src}",
                f"output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "reads a folder written by `rapref augment`" in err, err


def test_resume_does_not_warn_about_the_tied_output_embedding():
    from rapref.tiny import DEFAULT_CORPUS  # noqa: F401 - the package imports cleanly
    from rapref.train.run import _quiet_tied_keys

    class Config:
        def get_text_config(self):
            return self

        tie_word_embeddings = True

    class Model:
        config = Config()

    seen = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    log = logging.getLogger("transformers.trainer")
    handler = Collect()
    log.addHandler(handler)
    try:
        with _quiet_tied_keys(Model()):
            log.warning("There were missing keys in the checkpoint model loaded: ['lm_head.weight'].")
            log.warning("There were missing keys in the checkpoint model loaded: ['model.norm.weight'].")
    finally:
        log.removeHandler(handler)
    assert seen == ["There were missing keys in the checkpoint model loaded: ['model.norm.weight']."]


def test_simpo_shows_no_warning_a_user_cannot_act_on(tiny_model_dir, relabeled_dir):
    from rapref.train.algorithms import _load
    from rapref.train.config import load_config
    from rapref.train.run import trl_args

    for name in [m for m in sys.modules if m.startswith("trl.experimental")]:
        sys.modules.pop(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _load("trl.experimental.cpo:CPOConfig")
    assert not [w for w in caught if "trl.experimental" in str(w.message)]
    cfg = load_config(None, [f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}",
                             "algorithm.name=simpo", "algorithm.beta=2.0"])
    cfg.validate()
    assert trl_args(cfg, on_gpu=False).remove_unused_columns is False  # TRL's hint would otherwise be printed


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
