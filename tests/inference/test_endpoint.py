"""Sampling and judging through an OpenAI-compatible server, against a stand-in server on localhost
(`tests/fixtures/stand_in_server.py`); the same paths against a real vLLM server are `tests/inference/test_serving.py`."""

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import FIXTURES, STAND_IN, one_line_error
from rapref.cli import main as cli
from rapref.inference import serving
from rapref.inference.serving import Endpoint, Server
from rapref.io import InputError, read_jsonl
from rapref.io import write_jsonl_atomic as write_jsonl


def stand_in(model, judge="a", fail_first=0) -> Server:
    return Server(f"{{python}} {STAND_IN} --model {{model}} --port {{port}} --judge {judge} --fail-first {fail_first}",
                  str(model), timeout=60)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(serving, "BACKOFF_S", 0.05)


@pytest.fixture
def prompts(tmp_path) -> Path:
    path = tmp_path / "prompts.jsonl"
    write_jsonl(path, [{"prompt_id": str(i), "prompt": f"sort: {'abcdef'[i]} a c"} for i in range(5)])
    return path


def test_generate_through_a_server_k_samples_differ_and_a_rerun_repeats(tmp_path, tiny_model_dir, prompts):
    with stand_in(tiny_model_dir, fail_first=2) as url:  # the first two requests answer 503: retried
        argv = ["generate", str(tiny_model_dir), "--prompts", str(prompts), "--no-goal", "--num-samples", "3",
                "--max-new-tokens", "6", "--endpoint", url, "--concurrency", "4"]
        assert cli([*argv, "--out", str(tmp_path / "a.jsonl")]) == 0
        assert cli([*argv, "--out", str(tmp_path / "b.jsonl"), "--concurrency", "1"]) == 0
    a, b = read_jsonl(tmp_path / "a.jsonl"), read_jsonl(tmp_path / "b.jsonl")
    assert len(a) == 15 and [r["text"] for r in a] == [r["text"] for r in b]  # same seeds, any concurrency
    for pid in {r["prompt_id"] for r in a}:
        texts = [r["text"] for r in a if r["prompt_id"] == pid]
        assert len(set(texts)) == 3, texts  # each sample its own seed


def test_the_server_sees_the_token_ids_training_saw(tiny_model_dir):
    from rapref.inference.sampler import SamplingConfig
    from rapref.goals import GoalSpec
    from rapref.models import load_tokenizer
    from rapref.prompting import goal_prompt, prompt_ids

    tokenizer = load_tokenizer(str(tiny_model_dir))
    prompt = goal_prompt("sort: c a b", GoalSpec(scale=(1, 10)), 10)
    with stand_in(tiny_model_dir) as url:
        endpoint = Endpoint(url)
        endpoint.check(str(tiny_model_dir), tokenizer=tokenizer)
        echoed = endpoint.complete(prompt_ids(tokenizer, prompt), SamplingConfig(max_new_tokens=4), seed=0)
    assert echoed["prompt_token_ids"] == prompt_ids(tokenizer, prompt)


def test_generate_resumes_after_an_interruption(tmp_path, tiny_model_dir, prompts, monkeypatch):
    argv = ["generate", str(tiny_model_dir), "--prompts", str(prompts), "--no-goal", "--num-samples", "2",
            "--max-new-tokens", "6", "--concurrency", "1"]
    with stand_in(tiny_model_dir) as url:
        assert cli([*argv, "--endpoint", url, "--out", str(tmp_path / "full.jsonl")]) == 0
        real = serving.Endpoint.complete
        calls = {"n": 0}

        def dies_after_four(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] > 4:
                raise KeyboardInterrupt
            return real(self, *args, **kwargs)

        monkeypatch.setattr(serving.Endpoint, "complete", dies_after_four)
        assert cli([*argv, "--endpoint", url, "--out", str(tmp_path / "cut.jsonl")]) == 130  # as Ctrl-C
        partial = read_jsonl(tmp_path / "cut.jsonl.partial")
        assert len(partial) == 1 + 4  # the settings line and four answers
        monkeypatch.setattr(serving.Endpoint, "complete", real)
        assert cli([*argv, "--endpoint", url, "--out", str(tmp_path / "cut.jsonl")]) == 0
    assert read_jsonl(tmp_path / "cut.jsonl") == read_jsonl(tmp_path / "full.jsonl")
    assert not (tmp_path / "cut.jsonl.partial").exists()


def test_a_server_on_another_model_or_none_is_one_line(tmp_path, capsys, tiny_model_dir, prompts):
    argv = ["generate", str(tiny_model_dir), "--prompts", str(prompts), "--no-goal", "--out", str(tmp_path / "g.jsonl")]
    other = tmp_path / "other"
    other.mkdir()
    with stand_in(other) as url:
        one_line_error(capsys, [*argv, "--endpoint", url], f"not {tiny_model_dir}")
        one_line_error(capsys, [*argv, "--endpoint", url, "--served-model", "nope"], "not --served-model 'nope'")
    one_line_error(capsys, [*argv, "--endpoint", f"http://127.0.0.1:{serving.free_port()}/v1"], "no server answers")
    one_line_error(capsys, [*argv, "--endpoint", "localhost:8000"], "expected an http(s) URL")
    one_line_error(capsys, [*argv, "--endpoint", "http://127.0.0.1:1/v1", "--concurrency", "0"],
                   "--concurrency must be at least 1")
    one_line_error(capsys, [*argv, "--endpoint", "http://127.0.0.1:1/v1", "--backend", "transformers"],
                   "leave out --backend")
    assert not (tmp_path / "g.jsonl").exists()


def test_server_stops_its_whole_process_group_and_reports_an_early_exit(tmp_path, tiny_model_dir):
    template = f"sh -c 'sleep 300 & exec {{python}} {STAND_IN} --model {{model}} --port {{port}}'"
    server = Server(template, str(tiny_model_dir), timeout=60)
    with server:
        group = server.process.pid
        os.killpg(group, 0)  # alive, with its `sleep` child
    deadline = time.monotonic() + 10  # a killed process is gone once the kernel has run it (a loaded machine: later)
    while _living(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _living(group) == []  # the leader and its child are gone (at most zombies await their reaper)
    failing = Server("{python} -c 'import sys; print(\"no GPU here\"); sys.exit(3)' {model} {port}", "m",
                     log=tmp_path / "server.log", timeout=30)
    with pytest.raises(InputError, match="exited with code 3.*no GPU here"):
        with failing:
            pass
    with pytest.raises(InputError, match="needs the placeholder {port}"):
        Server("{python} serve {model}", "m")


def _stat(pid_dir: Path) -> list[str]:
    """A process's /proc stat fields after its name (state first, group third); [] when it has ended."""
    try:
        return (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _living(group: int) -> list[int]:
    return [int(d.name) for d in Path("/proc").glob("[0-9]*")
            if (fields := _stat(d)) and int(fields[2]) == group and fields[0] != "Z"]


def length(row, text):
    """A scorer that varies with the answer (the stand-in's answers all score 0 under the demo's true reward, and a
    score mapping fitted on one distinct score is refused)."""
    return float(len(text))


def test_onpolicy_samples_through_a_server_it_starts_and_stops(tmp_path, tiny_model_dir, prompts):
    serve = f"{{python}} {STAND_IN} --model {{model}} --port {{port}}"
    out = tmp_path / "loop"
    assert cli(["onpolicy", "--policy", str(tiny_model_dir), "--prompts", str(prompts), "--scorer",
                "python:test_endpoint:length", "--samples", "3", "--max-new-tokens", "6",
                "--out", str(out), "--serve", serve, "training.max_steps=1", "training.max_length=224",
                "data.max_prompt_length=160"]) == 0
    samples = read_jsonl(out / "iter-1" / "samples.jsonl")
    assert len(samples) == 15
    for pid in {r["prompt_id"] for r in samples}:
        assert len({r["text"] for r in samples if r["prompt_id"] == pid}) == 3
    assert (out / "iter-1" / "samples.server.log").is_file() and (out / "iter-1" / "policy").is_dir()
    settings = json.loads((out / "onpolicy.json").read_text())
    assert settings["serve"] == serve


def _generations(path, texts, prompt="Say hi."):
    write_jsonl(path, [{"prompt_id": str(i), "prompt": f"{prompt} {i}", "text": t, "goal": None, "sample": 0,
                        "turn": 0} for i, t in enumerate(texts)])


def test_llm_judge_pairwise_both_orders_cancel_position_bias(tmp_path, tiny_model_dir, capsys):
    _generations(tmp_path / "mine.jsonl", ["long answer here"] * 6)
    _generations(tmp_path / "base.jsonl", ["short"] * 6)
    with stand_in(tiny_model_dir, judge="a") as url:  # a judge that always names the first output
        assert cli(["judge", str(tmp_path / "mine.jsonl"), "--against", str(tmp_path / "base.jsonl"),
                    "--scorer", f"llm-judge-pairwise:{url}", "--out", str(tmp_path / "w")]) == 0
    pairwise = json.loads((tmp_path / "w" / "aggregate.json").read_text())["pairwise"]
    assert pairwise["win_rate"] == 0.5 and pairwise["ties"] == 6  # position bias cancelled: every comparison a tie
    assert "length-controlled" in capsys.readouterr().out
    with stand_in(tiny_model_dir, judge="longer") as url:
        assert cli(["judge", str(tmp_path / "mine.jsonl"), "--against", str(tmp_path / "base.jsonl"),
                    "--scorer", f"llm-judge-pairwise:{url}", "--out", str(tmp_path / "w2")]) == 0
        cached = len(read_jsonl(tmp_path / "w2" / "cache.jsonl"))
        assert cli(["judge", str(tmp_path / "mine.jsonl"), "--against", str(tmp_path / "base.jsonl"),
                    "--scorer", f"llm-judge-pairwise:{url}", "--out", str(tmp_path / "w2"), "--overwrite"]) == 0
        assert len(read_jsonl(tmp_path / "w2" / "cache.jsonl")) == cached == 12  # both orders, cached
    assert json.loads((tmp_path / "w2" / "aggregate.json").read_text())["pairwise"]["win_rate"] == 1.0


def test_llm_judge_grades_and_counts_unparseable_replies(tmp_path, tiny_model_dir, capsys):
    _generations(tmp_path / "g.jsonl", ["one", "two words", "three words here"])
    with stand_in(tiny_model_dir, judge="grade") as url:
        assert cli(["judge", str(tmp_path / "g.jsonl"), "--scorer", f"llm-judge:{url}", "--out",
                    str(tmp_path / "j")]) == 0
        one_line_error(capsys, ["judge", str(tmp_path / "g.jsonl"), "--scorer", f"llm-judge-pairwise:{url}",
                                "--out", str(tmp_path / "j2")], "give the baseline with --against")
        bad = tmp_path / "bad.txt"
        bad.write_text("Grade this: {output}")
        one_line_error(capsys, ["judge", str(tmp_path / "g.jsonl"), "--scorer", f"llm-judge:{url}", "--out",
                                str(tmp_path / "j3"), "--judge-template", str(bad)], "missing {instruction}")
    scores = [r["score"] for r in read_jsonl(tmp_path / "j" / "scores.jsonl")]
    assert all(1 <= s <= 10 for s in scores)
    with stand_in(tiny_model_dir, judge="none") as url:
        one_line_error(capsys, ["judge", str(tmp_path / "g.jsonl"), "--scorer", f"llm-judge:{url}", "--out",
                                str(tmp_path / "j4")], "no sample could be scored (3 unscored)")


def test_length_controlled_win_rate_removes_a_pure_length_preference():
    from rapref.judge.llm_judge import length_controlled_win_rate

    rng = np.random.default_rng(0)
    n = 600
    delta = rng.normal(80, 100, n)  # the model writes longer answers
    # a judge that only likes length: P(win) = sigmoid(2 tanh(delta / std)); raw win rate well above 1/2
    p = 1 / (1 + np.exp(-2 * np.tanh(delta / delta.std())))
    wins = (rng.random(n) < p).astype(float)
    result = length_controlled_win_rate(list(wins), list(500 + delta), [500] * n)
    assert wins.mean() > 0.65
    assert result["low"] < 0.5 < result["high"] and abs(result["lc_win_rate"] - 0.5) < 0.06
    assert 1.5 < result["length_coefficient"] < 2.5
    # quality beyond length survives: theta = 0.8 gives sigmoid(0.8) = 0.69 at equal lengths
    p = 1 / (1 + np.exp(-(0.8 + 2 * np.tanh(delta / delta.std()))))
    wins = (rng.random(n) < p).astype(float)
    result = length_controlled_win_rate(list(wins), list(500 + delta), [500] * n)
    assert result["low"] < 1 / (1 + np.exp(-0.8)) < result["high"]


def test_length_controlled_win_rate_matches_alpaca_evals_own_fit():
    """The figure in the fixture comes from the alpaca-eval package's own GLM code (`scripts/lc_reference.py`; its
    L1-penalized cross-validated fit shrinks a little, hence the tolerance)."""
    from rapref.judge.llm_judge import length_controlled_win_rate

    reference = json.loads((FIXTURES / "lc_winrate_reference.json").read_text())
    ours = length_controlled_win_rate(reference["outcomes"], reference["len_model"], reference["len_baseline"])
    assert abs(ours["lc_win_rate"] - reference["lc_win_rate"]) < 0.003
    assert ours["low"] < reference["lc_win_rate"] < ours["high"]


def test_flags_that_would_be_ignored_are_refused(tmp_path, capsys, tiny_model_dir, prompts):
    argv = ["generate", str(tiny_model_dir), "--prompts", str(prompts), "--no-goal", "--out", str(tmp_path / "g.jsonl")]
    one_line_error(capsys, [*argv, "--concurrency", "4"], "give --endpoint URL")
    one_line_error(capsys, [*argv, "--served-model", "x"], "give --endpoint URL")
    one_line_error(capsys, [*argv, "--endpoint", "http://127.0.0.1:1/v1", "--workers", "2"], "use --concurrency")
    one_line_error(capsys, [*argv, "--backend", "vllm"], "through its server")
    one_line_error(capsys, ["onpolicy", "--policy", str(tiny_model_dir), "--prompts", str(prompts), "--scorer",
                            "constraints", "--out", str(tmp_path / "o"), "--serve", "x {model} {port}", "--workers",
                            "2"], "with --serve the server batches")


def test_a_killed_onpolicy_run_stops_the_server_it_started(tmp_path, tiny_model_dir, prompts):
    """SIGTERM (or Ctrl-C) while the server samples: rapref exits 130 and the server's process group is gone."""
    import subprocess
    import time

    out = tmp_path / "loop"
    marker = str(tmp_path / "policy-copy")
    import shutil

    shutil.copytree(tiny_model_dir, marker)  # a path only this test's server has on its command line
    process = subprocess.Popen([sys.executable, "-m", "rapref", "onpolicy", "--policy", marker, "--prompts",
                                str(prompts), "--scorer", "constraints", "--samples", "2", "--max-new-tokens", "4",
                                "--out", str(out), "--serve",
                                f"{{python}} {STAND_IN} --model {{model}} --port {{port}} --delay 5"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = out / "iter-1" / "samples.server.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.is_file() and "completion request" in log.read_text()):
        time.sleep(0.2)
    assert log.is_file(), "the server never started"
    process.send_signal(signal.SIGTERM)  # while requests are in flight
    assert process.wait(timeout=60) == 130, process.stderr.read()
    time.sleep(0.5)
    left = [p.parent.name for p in Path("/proc").glob("[0-9]*/cmdline")
            if marker.encode() in _read(p) and _living_pid(int(p.parent.name))]
    assert left == []


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended meanwhile
        return b""


def _living_pid(pid: int) -> bool:
    fields = _stat(Path(f"/proc/{pid}"))
    return bool(fields) and fields[0] != "Z"


def test_a_server_outlives_no_rapref_killed_outright(tmp_path, tiny_model_dir):
    """SIGKILL leaves rapref no chance to stop its server: the kernel sends the server SIGTERM (PR_SET_PDEATHSIG)."""
    import subprocess
    import time

    marker = str(tmp_path / "policy-copy")
    import shutil

    shutil.copytree(tiny_model_dir, marker)
    script = (f"from rapref.inference.serving import Server; import time\n"
              f"with Server('{{python}} {STAND_IN} --model {{model}} --port {{port}}', {marker!r}):\n"
              f"    print('up', flush=True); time.sleep(300)\n")
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    while process.stdout.readline().strip() != "up":  # past rapref's own lines
        assert process.poll() is None
    assert any(marker.encode() in _read(p) for p in Path("/proc").glob("[0-9]*/cmdline"))
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and [p for p in Path("/proc").glob("[0-9]*/cmdline")
                                           if marker.encode() in _read(p) and _living_pid(int(p.parent.name))]:
        time.sleep(0.2)
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline")
                if marker.encode() in _read(p) and _living_pid(int(p.parent.name))]
