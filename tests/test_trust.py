"""Trust in the data path: rapref never loses a user's files, never trains on stale rows, compares like with like,
survives crashes, and refuses what it would misuse with one line (exit 2)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rapref.formats.dataset import SPLIT_FILES
from rapref.cli import main as cli
from tests.standin_server import one_line_error

ROOT = Path(__file__).resolve().parents[1]


def pairs_file(folder: Path, n: int = 12, tag: str = "") -> Path:
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Question {tag}{i}?", "chosen": f"Good {tag}{i}.",
                                        "rejected": f"Bad {tag}{i}.", "score_chosen": 8.0,
                                        "score_rejected": 3.0}) + "\n" for i in range(n)))
    return path


# --- 1. --out never deletes what rapref did not write ---------------------------------------------------------------


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


def test_every_folder_command_refuses_a_users_folder(tmp_path, capsys, tiny_model_dir, trained_dir,
                                                     relabeled_dir):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    gens = tmp_path / "g.jsonl"
    gens.write_text(json.dumps({"prompt_id": "q", "goal": None, "sample": 0, "prompt": "p", "text": "t",
                                "sampling": {}}) + "\n")
    one_line_error(capsys, ["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}",
                            f"output_dir={mine}", "--overwrite"], "not written by rapref")
    one_line_error(capsys, ["judge", str(gens), "--scorer", "python:test_trust:length", "--out", str(mine),
                            "--overwrite"], "not written by rapref")
    one_line_error(capsys, ["diagnose", "controllability", "--scores", str(gens), "--out", str(mine),
                            "--overwrite"], "not written by rapref")
    one_line_error(capsys, ["demo", "--quick", "--out", str(mine), "--overwrite"], "not written by rapref")
    users_file = tmp_path / "results.jsonl"
    users_file.write_text('{"mine": 1}\n')
    one_line_error(capsys, ["generate", str(trained_dir), "--prompts", str(gens), "--out", str(users_file),
                            "--overwrite"], "not written by rapref")
    assert (mine / "keep.txt").read_text() == "x" and users_file.read_text() == '{"mine": 1}\n'


def test_train_into_an_earlier_run_needs_overwrite(tmp_path, capsys, tiny_model_dir, relabeled_dir):
    args = ["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}",
            f"output_dir={tmp_path / 'run'}", "training.max_steps=1", "training.max_length=224",
            "data.max_prompt_length=160", "training.disable_tqdm=true"]
    assert cli(args) == 0
    one_line_error(capsys, args, "--overwrite")
    assert cli(args + ["--overwrite"]) == 0


def length(row, text):
    return float(len(text))


# --- 2. each output loads its own rows ------------------------------------------------------------------------------


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


# --- 4. win rates compare like with like ----------------------------------------------------------------------------


def _gens(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps({"prompt_id": p, "goal": g, "sample": k, "prompt": "p", "text": t}) + "\n"
                            for p, g, k, t in rows))
    return path


def test_win_rate_matches_prompt_goal_and_sample_whatever_the_file_order(tmp_path):
    from rapref.judge.run import JudgeConfig
    from rapref.judge.run import main as judge

    # the sweep is better than the baseline at goal 10 (longer) and worse at goal 1
    sweep = [(f"q{i}", g, 0, "x" * (9 if g == 10.0 else 1)) for i in range(4) for g in (1.0, 10.0)]
    base = [(f"q{i}", g, 0, "y" * 5) for i in range(4) for g in (1.0, 10.0)]
    results = []
    for order, rows in (("asc", base), ("desc", list(reversed(base)))):
        cfg = JudgeConfig(generations=str(_gens(tmp_path / "s.jsonl", sweep)), scorer="python:test_trust:length",
                          out=str(tmp_path / f"j-{order}"), against=str(_gens(tmp_path / f"b-{order}.jsonl", rows)))
        results.append(judge(cfg)["pairwise"])
    assert results[0]["win_rate"] == results[1]["win_rate"] == 0.5  # 4 wins at goal 10, 4 losses at goal 1
    assert results[0]["n"] == 8 and results[0]["prompts"] == 4  # clustered by prompt: two goals per prompt


def test_win_rate_stderr_is_clustered_by_prompt_and_absent_for_one(tmp_path):
    from rapref.judge.run import win_rate

    # two prompts, two samples each: prompt a wins both, prompt b loses both
    clustered = win_rate([2, 2, 0, 0], [1, 1, 1, 1], clusters=["a", "a", "b", "b"])
    assert clustered["stderr"] == pytest.approx(0.5)  # sqrt(2/1 * (1^2 + 1^2)) / 4, not the naive 0.289
    assert win_rate([2, 2, 0, 0], [1, 1, 1, 1])["stderr"] == pytest.approx((1 / 3) ** 0.5 / 2)
    assert win_rate([2], [1])["stderr"] is None


def test_a_sweep_against_a_no_goal_baseline_is_refused(tmp_path, capsys):
    sweep = _gens(tmp_path / "s.jsonl", [("q0", 1.0, 0, "a"), ("q0", 10.0, 0, "b")])
    base = _gens(tmp_path / "b.jsonl", [("q0", None, 0, "c")])
    one_line_error(capsys, ["judge", str(sweep), "--against", str(base), "--scorer", "python:test_trust:length",
                            "--out", str(tmp_path / "j")], "goal by goal")


# --- 5. crashes leave a usable state ---------------------------------------------------------------------------------


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


def test_long_recipes_save_checkpoints_by_default(tiny_model_dir, relabeled_dir):
    import yaml

    from rapref.train.config import load_config
    from rapref.train.run import trl_args

    args = trl_args(load_config(None, [f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}"]), False)
    assert args.save_strategy == "steps" and args.save_steps == 200
    for recipe in (ROOT / "recipes").glob("*/*.yaml"):
        training = yaml.safe_load(recipe.read_text()).get("training", {})
        assert training.get("save_strategy", "steps") != "no", recipe


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


# --- 6. refusals: one line, exit 2 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("override,needle", [
    ("algorithm.beta=abc", "algorithm.beta: expected a number"),
    ("model.dtype=bf16", "model.dtype must be one of"),
    ("training.report_to=tensorboard", "'tensorboard' package is not installed"),
    ("training.push_to_hub=true", "hub cannot be reached"),
    ("algorithm.loss_type=[sigmiod]", "did you mean 'sigmoid'"),
    ("algorithm.loss_type=[ipo] algorithm.label_smoothing=0.3", "has no effect"),
    ("algorithm.loss_type=[sigmoid_norm] algorithm.label_smoothing=0.3", "has no effect"),
    ("algorithm.name=kto algorithm.label_smoothing=0.3", "has no effect"),
    ("algorithm.name=orpo algorithm.label_smoothing=0.3", "has no effect"),
    ("training.max_steps=2.5", "expected a whole number"),
])
def test_recipe_values_are_checked_when_the_recipe_loads(override, needle, tmp_path, capsys, tiny_model_dir,
                                                         relabeled_dir):
    one_line_error(capsys, ["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}",
                            f"output_dir={tmp_path / 'run'}", *override.split()], needle)
    assert not (tmp_path / "run").exists()


def test_a_single_loss_type_is_a_one_element_list(tiny_model_dir, relabeled_dir):
    from rapref.train.config import load_config

    cfg = load_config(None, [f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}",
                             "algorithm.loss_type=sigmoid"])
    assert cfg.algorithm.loss_type == ["sigmoid"]


def test_broken_yaml_is_one_line(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  name_or_path: x\n data: [unclosed\n")
    one_line_error(capsys, ["train", "--config", str(recipe)], "not valid YAML")


def test_a_missing_local_model_is_reported_at_once(tmp_path, capsys, relabeled_dir, tiny_model_dir):
    start = time.perf_counter()
    one_line_error(capsys, ["train", "model.name_or_path=runs/no-such-model", f"data.path={relabeled_dir}",
                            f"output_dir={tmp_path / 'run'}"], "no such local folder")
    one_line_error(capsys, ["train", f"model.name_or_path={tmp_path / 'gone'}", f"data.path={relabeled_dir}",
                            f"output_dir={tmp_path / 'run'}"], "no such model folder")
    one_line_error(capsys, ["train", f"model.name_or_path={tiny_model_dir}", "data.path=runs/no-such-data",
                            f"output_dir={tmp_path / 'run2'}"], "no such local dataset folder")
    one_line_error(capsys, ["augment", "runs/no-such-data", "--out", str(tmp_path / "d")], "no such local file")
    assert time.perf_counter() - start < 20


def test_reward_model_without_a_trained_head_is_refused(tmp_path, capsys, tiny_model_dir):
    gens = _gens(tmp_path / "g.jsonl", [("q0", None, 0, "text")])
    one_line_error(capsys, ["judge", str(gens), "--scorer", f"reward-model:{tiny_model_dir}", "--out",
                            str(tmp_path / "j")], "not a trained reward model")


def test_goal_flags_are_checked(tmp_path, capsys, trained_dir):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "Hi?"}) + "\n")
    base = ["generate", str(trained_dir), "--prompts", str(prompts), "--out", str(tmp_path / "g.jsonl")]
    one_line_error(capsys, base + ["--goals", "15"], "outside the policy's score scale 1-10")
    one_line_error(capsys, base + ["--goals", "10", "--no-goal"], "contradict")
    src = pairs_file(tmp_path)
    one_line_error(capsys, ["augment", str(src), "--out", str(tmp_path / "d"), "--scale", "10-1"], "low end")
    one_line_error(capsys, ["augment", str(src), "--out", str(tmp_path / "d"), "--prompt-column", "promt"],
                   "no such column 'promt'")


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


def test_scores_print_at_the_datas_precision():
    from rapref.goals import GoalSpec, format_score

    assert format_score(0.1 + 0.2) == "0.3" and format_score(7.5) == "7.5" and format_score(8.0) == "8"
    assert GoalSpec().text(0.1 + 0.2).endswith("Overall score: 0.3.")
