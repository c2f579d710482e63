"""`rapref train --resume` on a run that is already finished: a no-op that says so, never a step past max_steps.

A pipeline that always passes `--resume` (to be idempotent) must get the same model, record, metrics and card back
however often it reruns; changed settings are still refused, and a folder of another command is no run to resume.
A killed run resumes from its newest complete checkpoint, without transformers' warning about the tied embedding.
"""

import hashlib
import json
import logging

from helpers import one_line_error
from rapref.cli import main as cli


def recipe(model, data, out, **extra):
    base = {"model.name_or_path": model, "data.path": data, "output_dir": out, "data.max_prompt_length": 160,
            "training.max_length": 224, "training.per_device_train_batch_size": 4, "training.max_steps": 2,
            "training.learning_rate": 1e-3, "training.lr_scheduler_type": "constant", "training.disable_tqdm": True}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def snapshot(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_of_a_finished_run_changes_nothing_and_says_so(tmp_path, tiny_model_dir, relabeled_dir, capsys):
    out = tmp_path / "run"
    assert cli(["train", *recipe(tiny_model_dir, relabeled_dir, out)]) == 0
    before = snapshot(out)
    assert json.loads((out / "rapref_train.json").read_text())["result"]["steps"] == 2
    for extra in ({}, {"training.logging_steps": 5}):  # again, and with a setting that changes no step
        capsys.readouterr()
        assert cli(["train", *recipe(tiny_model_dir, relabeled_dir, out, **extra), "--resume"]) == 0
        said = capsys.readouterr()
        lines = said.out.strip().splitlines()
        assert len(lines) == 1 and "finished (2 steps); nothing to do" in lines[0], said
        assert snapshot(out) == before  # weights, record, metrics, card and launches.jsonl byte for byte
    capsys.readouterr()
    assert cli(["train", *recipe(tiny_model_dir, relabeled_dir, out, **{"training.max_steps": 3}), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "training.max_steps 2 -> 3" in err
    assert snapshot(out) == before
    # killed after saving the last checkpoint, before the record: resuming writes the run's files, no further step
    (out / ".rapref").rename(out / ".rapref-unfinished")
    (out / "rapref_train.json").unlink()
    (out / "model.safetensors").unlink()
    assert cli(["train", *recipe(tiny_model_dir, relabeled_dir, out), "--resume"]) == 0
    assert json.loads((out / "rapref_train.json").read_text())["result"]["steps"] == 2
    assert snapshot(out)["model.safetensors"] == before["model.safetensors"]
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(line)] == [1, 2]
    assert not (out / "checkpoint-3").exists()


def test_resume_into_another_commands_folder_is_refused(tmp_path, tiny_model_dir, relabeled_dir, capsys):
    out = tmp_path / "judged"
    out.mkdir()
    (out / ".rapref").write_text(json.dumps({"command": "judge", "version": "0"}))
    (out / "scores.jsonl").write_text("{}\n")
    before = snapshot(out)
    assert cli(["train", *recipe(tiny_model_dir, relabeled_dir, out), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a rapref `judge` output, not a `train` run to continue" in err
    assert err.endswith("without --resume")
    assert snapshot(out) == before


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


def test_resume_falls_back_to_the_newest_complete_checkpoint(tmp_path, tiny_model_dir, relabeled_dir):
    from rapref.train.config import load_config
    from rapref.train.run import main

    out = tmp_path / "run"
    base = [f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}", f"output_dir={out}",
            "training.max_length=224", "data.max_prompt_length=160", "training.disable_tqdm=true",
            "training.save_steps=1", "training.save_total_limit=3"]
    main(load_config(None, base + ["training.max_steps=3"]))
    weights = out / "checkpoint-3" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a kill in the middle of writing checkpoint-3
    (out / ".rapref").rename(out / ".rapref-unfinished")  # (so the run never finished)
    result = main(load_config(None, base + ["training.max_steps=3"]), resume=True)
    assert result["resumed_from"].endswith("checkpoint-2") and result["steps"] == 3


def test_train_resume_with_other_settings_is_refused(tmp_path, capsys, tiny_model_dir, relabeled_dir):
    base = ["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}",
            f"output_dir={tmp_path / 'run'}", "training.max_steps=2", "training.max_length=224",
            "data.max_prompt_length=160", "training.disable_tqdm=true"]
    assert cli(base + ["--quiet"]) == 0
    for change, needle in (("algorithm.beta=0.5", "algorithm.beta 0.1 -> 0.5"),
                           ("training.max_steps=4", "training.max_steps 2 -> 4"),
                           ("training.learning_rate=1e-3", "training.learning_rate")):
        err = one_line_error(capsys, base + [change, "--resume"], needle)
        assert "--overwrite" in err and "output_dir=NEW" in err
    run = tmp_path / "run"
    (run / ".rapref").rename(run / ".rapref-unfinished")  # as if killed: a finished run's resume is a no-op
    assert cli(base + ["training.logging_steps=5", "--resume", "--quiet"]) == 0  # logging changes no step
    launches = (run / "launches.jsonl").read_text().splitlines()
    assert [json.loads(line)["command"] for line in launches] == ["train", "train --resume"]
    assert all("git_hash" in json.loads(line) and "created" in json.loads(line) for line in launches)
