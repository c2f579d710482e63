"""`rapref train --resume` on a run that is already finished: a no-op that says so, never a step past max_steps.

A pipeline that always passes `--resume` (to be idempotent) must get the same model, record, metrics and card back
however often it reruns; changed settings are still refused, and a folder of another command is no run to resume.
"""

import hashlib
import json

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
    assert len(err.splitlines()) == 1 and "holds a rapref `judge` output, not a training run" in err
    assert snapshot(out) == before
