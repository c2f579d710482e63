"""The run-folder objects (`rapref.runs.folder.RunFolder`, `RunFile`): the output rule in one place, for every writer;
and the refusals that protect finished work: a fresh `--out` named first, `output_dir=` for `rapref train`, a
link or an unwritable folder as `--out`, a user's folder (with or without `--overwrite`), `--out .`, an earlier run.
Locks, kills and temporaries: two runs to one output (one wins, the other is one line), a held lock, a SIGTERM or
SIGKILL that leaves nothing behind (the next run sweeps only rapref's own temporaries); outputs follow the umask."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import one_line_error, pairs_file
from rapref.cli import main
from rapref.cli import main as cli
from rapref.formats.dataset import SPLIT_FILES
from rapref.io import InputError
from rapref.runs.folder import BEGUN, MARKER, RunFile, RunFolder, is_rapref_file


def test_a_run_folder_is_begun_on_entry_and_finished_last_on_a_normal_exit(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out, "diagnose", settings={"k": 1}) as run:
        assert (out / BEGUN).is_file() and not (out / MARKER).is_file()
        (run.path / "result.json").write_text("{}")
    assert (out / MARKER).is_file() and not (out / BEGUN).is_file()
    assert json.loads((out / "launches.jsonl").read_text().splitlines()[0])["settings"] == {"k": 1}
    with pytest.raises(InputError, match="already holds a finished rapref `diagnose` output"):
        RunFolder(out, "diagnose")  # refused when made, before any work


def test_an_error_leaves_the_folder_unfinished_and_the_lock_free(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError), RunFolder(out, "judge") as run:
        (run.path / "cache.jsonl").write_text("{}\n")  # work done before the error is kept
        raise RuntimeError("killed mid-run")
    assert (out / BEGUN).is_file() and not (out / MARKER).is_file()
    with RunFolder(out, "judge", continue_unfinished=True):  # the same command continues it; the lock was let go
        pass
    assert (out / MARKER).is_file()


def test_a_run_that_fails_before_writing_leaves_no_folder_and_the_corrected_rerun_uses_it(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(InputError), RunFolder(out, "model merge", settings={"k": 1}):
        raise InputError("not a LoRA run")
    assert not out.exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / BEGUN).write_text("{}")  # a folder this run did not make is left as it was
    (tmp_path / "users").mkdir()  # even empty
    for begin in (True, False):
        with pytest.raises(InputError), RunFolder(tmp_path / "users", "augment", begin=begin, settings={"k": 1}):
            raise InputError("no training rows left")
        assert (tmp_path / "users").is_dir() and not any((tmp_path / "users").iterdir())  # kept, as empty as it was
    with RunFolder(tmp_path / "users", "train", settings={"k": 2}):  # and the corrected rerun may use it
        pass
    with pytest.raises(InputError), RunFolder(tmp_path / "kept", "judge", continue_unfinished=True):
        raise InputError("bad row")
    assert (tmp_path / "kept" / BEGUN).is_file()
    not_lora = tmp_path / "not-lora"
    not_lora.mkdir()
    assert cli(["model", "merge", str(not_lora), "--out", str(out)]) == 2
    assert "not a LoRA run" in capsys.readouterr().err and not out.exists()


def test_a_run_that_never_begins_writes_nothing(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out, "train", begin=False):  # e.g. train --resume on a finished run: a no-op
        pass
    assert not out.exists() or not any(out.iterdir())


def test_overwrite_empties_only_when_the_run_begins(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out, "model tiny") as run:
        (run.path / "old.bin").write_text("old")
    with RunFolder(out, "model tiny", overwrite=True, empty=True, begin=False) as run:
        assert (out / "old.bin").is_file()  # a run that fails before it begins keeps the old output
        run.begin()
        assert not (out / "old.bin").exists()


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out, "augment", begin=False):
        with pytest.raises(InputError, match="another rapref run is writing this output"):
            with RunFolder(out, "augment", begin=False):
                pass


def test_written_whole_puts_a_finished_folder_in_place_at_once(tmp_path):
    out = tmp_path / "data"
    with RunFolder(out, "augment", begin=False) as run:
        with run.written_whole() as tmp:
            (tmp / "train.parquet").write_text("x")
            assert not out.exists()
    assert (out / MARKER).is_file() and (out / "train.parquet").is_file()


def test_a_run_file_is_owned_by_its_content_only_after_a_normal_exit(tmp_path):
    out = tmp_path / "g.jsonl"
    with pytest.raises(RuntimeError), RunFile(out, "generate") as run:
        run.path.write_text("half\n")
        raise RuntimeError
    assert not is_rapref_file(out)  # not recorded: a later run refuses to replace it, as any user file
    out.unlink()
    with RunFile(out, "generate") as run:
        run.path.write_text("rows\n")
    assert is_rapref_file(out)
    with pytest.raises(InputError, match="--overwrite replaces it"):
        RunFile(out, "generate")
    with RunFile(out, "generate", overwrite=True) as run:
        run.path.write_text("new rows\n")
    assert is_rapref_file(out)


def test_a_refusal_names_a_fresh_out_before_overwrite(tmp_path, capsys):
    from rapref.runs.folder import finish_output

    done = tmp_path / "runs" / "gen.jsonl"
    finish_output(tmp_path / "runs" / "data", "augment")
    (tmp_path / "runs" / "data" / "x").write_text("finished work")
    assert main(["augment", "examples/none.jsonl", "--out", str(tmp_path / "runs" / "data")]) == 2
    err = capsys.readouterr().err
    assert err.index("give a fresh --out (e.g.") < err.index("--overwrite deletes it")
    assert str(tmp_path / "runs" / "data-2") in err
    from rapref.runs.folder import fresh_name

    assert fresh_name(done) == str(tmp_path / "runs" / "gen-2.jsonl")  # a file keeps its extension
    (tmp_path / "runs" / "gen-2.jsonl").write_text("x")
    assert fresh_name(done) == str(tmp_path / "runs" / "gen-3.jsonl")


def test_the_train_refusal_names_output_dir(tmp_path):
    """`rapref train` takes `output_dir=PATH`, not --out: its refusal says so."""
    from rapref.io import InputError
    from rapref.runs.folder import claim_output, finish_output

    out = tmp_path / "run"
    out.mkdir()
    finish_output(out, "train")
    with pytest.raises(InputError, match=r"output_dir=.*run-2\)") as err:
        claim_output(out, "train")
    assert "--out" not in str(err.value)


def test_an_out_that_is_a_link_or_cannot_be_written_is_one_line(tmp_path, monkeypatch, capsys):
    """A symbolic link as --out (dangling or to a rapref folder) and an --out under a folder that cannot be written
    are refused in one line (exit 2); nothing is written through the link."""
    from rapref.io import InputError
    from rapref.runs.folder import claim_output, claim_output_file, output_lock

    monkeypatch.chdir(tmp_path)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(InputError, match="is a symbolic link"):
        claim_output_file("dangling", "export")
    with pytest.raises(InputError, match="is a symbolic link"):
        claim_output("link", "diagnose")
    assert not (tmp_path / "nowhere").exists()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not __import__("os").access(locked, __import__("os").W_OK):  # root may write anyway
            with pytest.raises(InputError, match="cannot be written here"), output_lock(locked / "sub" / "out"):
                pass
    finally:
        locked.chmod(0o700)
    with pytest.raises(InputError, match="cannot be written here"), output_lock("/proc/rapref-test/out"):
        pass


def test_augment_refuses_a_users_folder_with_or_without_overwrite(tmp_path, capsys):
    src = pairs_file(tmp_path)
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    for extra in ([], ["--overwrite"]):
        one_line_error(capsys, ["augment", str(src), "--out", str(mine), *extra], "not written by rapref")
    assert (mine / "thesis.txt").read_text() == "years of work" and len(list(mine.iterdir())) == 1


def test_out_dot_never_wipes_the_working_directory(tmp_path, capsys, monkeypatch):
    src = pairs_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    for extra in ([], ["--overwrite"]):
        one_line_error(capsys, ["augment", "pairs.jsonl", "--out", ".", *extra], "current directory")
        one_line_error(capsys, ["augment", "pairs.jsonl", "--out", "..", *extra], "current directory")
    assert src.is_file()


def test_overwrite_replaces_only_a_rapref_folder(tmp_path, capsys):
    src = pairs_file(tmp_path)
    out = tmp_path / "data"
    assert cli(["augment", str(src), "--out", str(out)]) == 0
    assert (out / ".rapref").is_file()
    assert cli(["augment", str(src), "--out", str(out)]) == 0  # the same input and settings: the finished folder reused
    one_line_error(capsys, ["augment", str(src), "--out", str(out), "--test-size", "2"], "--overwrite")
    assert cli(["augment", str(src), "--out", str(out), "--test-size", "2", "--overwrite"]) == 0


def test_train_into_an_earlier_run_needs_overwrite(tmp_path, capsys, tiny_model_dir, relabeled_dir):
    args = ["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}",
            f"output_dir={tmp_path / 'run'}", "training.max_steps=1", "training.max_length=224",
            "data.max_prompt_length=160", "training.disable_tqdm=true"]
    assert cli(args) == 0
    one_line_error(capsys, args, "--overwrite")
    assert cli(args + ["--overwrite"]) == 0


def test_concurrent_augment_runs_one_wins_or_the_other_stops_with_one_line(tmp_path):
    src = pairs_file(tmp_path, n=400)
    cmd = [sys.executable, "-m", "rapref", "augment", str(src), "--out", str(tmp_path / "data")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in outcomes) == [0, 2], outcomes
    err = next(e for code, e in outcomes if code == 2).strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "another rapref run" in err or "--overwrite" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "pairs.jsonl"]  # no temporaries, no lock


def test_held_lock_stops_a_second_run(tmp_path, capsys):
    from rapref.runs.folder import output_lock

    src = pairs_file(tmp_path)
    with output_lock(tmp_path / "data"):
        one_line_error(capsys, ["augment", str(src), "--out", str(tmp_path / "data")], "another rapref run")


KILL_SCRIPT = """
import os, signal, sys
import pyarrow.parquet as pq
real = pq.write_table
def write_then_die(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))
pq.write_table = write_then_die
from rapref.cli import main
sys.exit(main(["augment", sys.argv[2], "--out", sys.argv[3]]))
"""


def test_a_kill_leaves_no_temporaries(tmp_path):
    src = pairs_file(tmp_path)
    out = tmp_path / "data"
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, "SIGTERM", str(src), str(out)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]
    # SIGKILL cannot be caught: the next run to this output sweeps what the killed one left
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, "SIGKILL", str(src), str(out)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert any(p.name.startswith(".data.") for p in tmp_path.iterdir())
    assert cli(["augment", str(src), "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "pairs.jsonl"]


def test_the_sweep_only_removes_rapref_temporaries(tmp_path):
    """A user's file that merely looks like a sibling of the output (`.data.bak`) is never swept."""
    src = pairs_file(tmp_path)
    (tmp_path / ".data.bak").write_text("mine")
    (tmp_path / ".data.rapref-x1y2z3").mkdir()  # what a SIGKILLed run leaves
    assert cli(["augment", str(src), "--out", str(tmp_path / "data")]) == 0
    assert (tmp_path / ".data.bak").read_text() == "mine" and not (tmp_path / ".data.rapref-x1y2z3").exists()


def test_outputs_follow_the_users_umask(tmp_path):
    src = pairs_file(tmp_path)
    old = os.umask(0o022)
    try:
        assert cli(["augment", str(src), "--out", str(tmp_path / "data")]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "data" / SPLIT_FILES["train"]).stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "data" / "summary.json").stat().st_mode & 0o777 == 0o644


def test_a_file_output_inside_an_input_folder_is_refused(tmp_path, capsys, tiny_model_dir):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    inside = tmp_path / "model"
    inside.mkdir()
    with pytest.raises(InputError, match="is inside the input folder"):
        RunFile(inside / "gen.jsonl", "generate", inputs=(str(prompts), str(inside)))
    out = one_line_error(capsys, ["generate", str(tiny_model_dir), "--prompts", str(prompts),
                                  "--out", str(tiny_model_dir / "gen.jsonl")], "is inside the input folder")
    suggested = Path(out.rsplit("--out ", 1)[1]).resolve()  # written relative to the working folder
    assert suggested == (tiny_model_dir.parent / "gen.jsonl").resolve() and not (tiny_model_dir / "gen.jsonl").exists()


def test_a_study_never_continues_in_another_commands_folder(tmp_path, capsys):
    out = tmp_path / "judged"
    with RunFolder(out, "judge") as run:
        (run.path / "scores.jsonl").write_text("{}\n")
    with pytest.raises(InputError, match="holds a rapref `judge` output, not a `demo` run to continue"):
        RunFolder(out, "demo", reuse=True)
    with RunFolder(tmp_path / "shared", "demo --select-hparams", reuse=True):
        pass
    RunFolder(tmp_path / "shared", "demo", reuse=True)  # the same family shares runs/demo
    one_line_error(capsys, ["demo", "--quick", "--out", str(out)], "not a `demo` run to continue")
    assert sorted(p.name for p in out.iterdir()) == [".rapref", "scores.jsonl"]
