"""Against a real vLLM server (vLLM's CPU build in its own environment, `make serving-env`) on SmolLM2-135M-Instruct:
generation (K samples, reruns, a kill and a resume), the token ids the server sees, the LLM judge, and an on-policy
iteration through `--serve`. Marked `serving` (deselected by default); `make test-serving` runs it, about 5 minutes
on 2 cores, most of it two engine starts. Only localhost is contacted."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rapref.cli import main as cli
from rapref.inference.serving import VLLM_CPU_SERVE, Endpoint, Server
from rapref.io import read_jsonl, read_jsonl_prefix
from rapref.io import write_jsonl_atomic as write_jsonl

pytestmark = pytest.mark.serving
VLLM_PYTHON = os.environ.get("RAPREF_VLLM_PYTHON", ".venv-vllm/bin/python")
SERVE = VLLM_CPU_SERVE.replace("{python}", str(Path(VLLM_PYTHON).absolute()))  # not resolved: a venv's python is a link


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> Path:
    if not Path(VLLM_PYTHON).is_file():
        pytest.fail(f"{VLLM_PYTHON}: no vLLM environment; run `make serving-env` (or set RAPREF_VLLM_PYTHON)")
    out = tmp_path_factory.mktemp("serving") / "smollm2"
    assert cli(["model", "smollm2", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def server(smollm2, tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "vllm.log"
    with Server(SERVE, str(smollm2), log=log, timeout=600) as url:
        yield url


@pytest.fixture
def prompts(tmp_path) -> Path:
    path = tmp_path / "prompts.jsonl"
    write_jsonl(path, [{"prompt_id": str(i), "prompt": text} for i, text in enumerate(
        ["Name a colour.", "What is 7 times 6?", "Write one sentence about rain.", "Give a word that rhymes with cat.",
         "Say hello in French.", "What is the capital of Italy?"])])
    return path


def idle(url: str, timeout: float = 120.0) -> None:
    """Wait until the engine runs and queues no request (vLLM's /metrics): a request whose client was killed runs on
    until the server notices, and a request batched with it is computed in another batch shape."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = urllib.request.urlopen(url.removesuffix("/v1") + "/metrics", timeout=10).read().decode()
        busy = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                if line.startswith(("vllm:num_requests_running", "vllm:num_requests_waiting"))]
        if busy and not any(busy):
            return
        time.sleep(0.2)
    raise AssertionError(f"{url}: still busy after {timeout:.0f} s")


def test_k_samples_differ_and_a_rerun_repeats_them(tmp_path, smollm2, server, prompts):
    argv = ["generate", str(smollm2), "--prompts", str(prompts), "--no-goal", "--num-samples", "3",
            "--max-new-tokens", "24", "--temperature", "1.0", "--endpoint", server]
    assert cli([*argv, "--out", str(tmp_path / "a.jsonl"), "--concurrency", "32"]) == 0
    # A rerun repeats the texts where the engine computes alike: the same seeds, each request in a batch of its own
    # on an idle engine whose prefix cache holds these prompts (from the run above). vLLM is not batch-invariant:
    # with every request in flight at once, which requests share a scheduler step depends on when each arrives, and
    # a batch of another shape (or a prompt prefilled afresh rather than from the cache) moves bf16 logits in the last
    # bits, so a sampled text can part after some tokens. That made this test fail about once in four runs.
    idle(server)
    assert cli([*argv, "--out", str(tmp_path / "b.jsonl"), "--concurrency", "1"]) == 0
    idle(server)
    assert cli([*argv, "--out", str(tmp_path / "c.jsonl"), "--concurrency", "1"]) == 0
    a, b, c = (read_jsonl(tmp_path / f"{name}.jsonl") for name in "abc")
    assert len(a) == 18 and [r["text"] for r in b] == [r["text"] for r in c]
    distinct = [len({r["text"] for r in a if r["prompt_id"] == pid}) for pid in {r["prompt_id"] for r in a}]
    assert sum(distinct) >= 2 * len(distinct) + 2, distinct  # samples of one prompt differ (rare exact repeats)


def test_a_large_batch_of_seeded_prompts_runs(tmp_path, smollm2, server):
    """vllm-cpu 0.32 crashed ("CPU Generator does not use offset") when seeded prompts were split across scheduler
    steps by chunked prefill: 64 prompts of ~100 tokens at once exceed one step's token budget. The shipped settings
    (VLLM_CPU_SERVE: chunked prefill off) must take them."""
    prompts = tmp_path / "long.jsonl"
    words = "river stone cloud paper light garden window music"
    write_jsonl(prompts, [{"prompt_id": str(i), "prompt": f"Summarise in one word ({i}): " + " ".join(
        words.split()[(i + j) % 8] for j in range(80))} for i in range(64)])
    assert cli(["generate", str(smollm2), "--prompts", str(prompts), "--no-goal", "--max-new-tokens", "4",
                "--endpoint", server, "--concurrency", "64", "--out", str(tmp_path / "g.jsonl")]) == 0
    assert len(read_jsonl(tmp_path / "g.jsonl")) == 64


def test_the_server_sees_exactly_the_token_ids_training_saw(smollm2, server):
    from rapref.inference.sampler import SamplingConfig
    from rapref.goals import GoalSpec
    from rapref.models import load_tokenizer
    from rapref.prompting import goal_prompt, prompt_ids

    tokenizer = load_tokenizer(str(smollm2))
    endpoint = Endpoint(server)
    endpoint.check(str(smollm2), tokenizer=tokenizer)  # includes /tokenize: the same tokenizer on both sides
    for placement in ("system", "user", "user-suffix"):
        spec = GoalSpec(scale=(1, 10), placement=placement)
        for prompt in ("Sort: c a b", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                                       {"role": "user", "content": "And now?"}]):
            ids = prompt_ids(tokenizer, goal_prompt(prompt, spec, 10))
            echoed = endpoint.complete(ids, SamplingConfig(max_new_tokens=2, temperature=0), seed=0)
            assert echoed["prompt_token_ids"] == ids


def test_generate_resumes_after_a_kill(tmp_path, smollm2, server, prompts):
    argv = [str(smollm2), "--prompts", str(prompts), "--no-goal", "--num-samples", "2", "--max-new-tokens", "48",
            "--endpoint", server, "--concurrency", "1"]
    assert cli(["generate", *argv, "--out", str(tmp_path / "full.jsonl")]) == 0
    cut = tmp_path / "cut.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "rapref", "generate", *argv, "--out", str(cut)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = Path(f"{cut}.partial")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (partial.is_file() and len(read_jsonl_prefix(partial)) >= 4):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not cut.exists() and 4 <= len(read_jsonl_prefix(partial)) < 13
    idle(server)  # the killed client's last request runs on; batched with the resumed run's first, it would differ
    assert cli(["generate", *argv, "--out", str(cut)]) == 0
    assert [r["text"] for r in read_jsonl(cut)] == [r["text"] for r in read_jsonl(tmp_path / "full.jsonl")]


def test_llm_judge_plumbing_with_smollm2_as_the_judge(tmp_path, smollm2, server, prompts):
    """SmolLM2-135M is a stand-in judge: the calls, parsing, counting and caching, not the verdicts."""
    argv = ["generate", str(smollm2), "--prompts", str(prompts), "--no-goal", "--max-new-tokens", "24",
            "--endpoint", server]
    assert cli([*argv, "--out", str(tmp_path / "hot.jsonl"), "--temperature", "1.0"]) == 0
    assert cli([*argv, "--out", str(tmp_path / "cold.jsonl"), "--temperature", "0"]) == 0
    code = cli(["judge", str(tmp_path / "hot.jsonl"), "--scorer", f"llm-judge:{server}", "--out", str(tmp_path / "g")])
    assert len(read_jsonl(tmp_path / "g" / "cache.jsonl")) == 6  # one call per answer: a grade, or the reply without
    if code == 0:
        result = json.loads((tmp_path / "g" / "aggregate.json").read_text())
        assert result["n"] + result["unscored"] == 6 and 1 <= result["mean"] <= 10
    else:
        assert code == 2  # no reply held a grade: counted and refused, never scored
    assert cli(["judge", str(tmp_path / "hot.jsonl"), "--against", str(tmp_path / "cold.jsonl"), "--scorer",
                f"llm-judge-pairwise:{server}", "--out", str(tmp_path / "w")]) in (0, 2)
    assert len(read_jsonl(tmp_path / "w" / "cache.jsonl")) == 12  # both orders of six comparisons
    if (tmp_path / "w" / "aggregate.json").is_file():
        pairwise = json.loads((tmp_path / "w" / "aggregate.json").read_text())["pairwise"]
        assert pairwise["n"] + pairwise["unscored"] == 6 and 0 <= pairwise["lc_win_rate"] <= 1


def length(row, text: str) -> float:
    """A scorer that tells SmolLM2's sampled answers apart (the demo world's reward scores every one of them 0, and
    scores that are all equal carry no preference: `onpolicy` refuses them)."""
    return float(len(text))


def test_onpolicy_iteration_through_a_server_it_starts(tmp_path, smollm2, prompts):
    out = tmp_path / "loop"
    assert cli(["onpolicy", "--policy", str(smollm2), "--prompts", str(prompts), "--scorer", "python:test_serving:length", "--samples", "3", "--max-new-tokens", "16",
                "--out", str(out), "--serve", SERVE, "lora.enabled=true", "lora.r=4", "training.max_steps=1",
                "training.max_length=256", "data.max_prompt_length=192"]) == 0
    samples = read_jsonl(out / "iter-1" / "samples.jsonl")
    assert len(samples) == 18
    distinct = [len({r["text"] for r in samples if r["prompt_id"] == pid}) for pid in {r["prompt_id"] for r in samples}]
    assert sum(distinct) >= 2 * len(distinct) + 2, distinct
    assert (out / "iter-1" / "policy-merged").is_dir()
    log = (out / "iter-1" / "samples.server.log").read_text()
    assert "vllm" in log.lower()


QUESTIONS = ["Name three primary colours.", "What is the capital of France?", "Give one tip for better sleep.",
             "Explain what a noun is in one sentence.", "What is 12 plus 30?", "Write a haiku about the sea.",
             "Name a fruit that is yellow.", "What does a thermometer measure?", "Why do leaves fall in autumn?",
             "How many days are in a week?"]


def test_alpaca_eval_and_rapref_judge_on_the_same_answers_with_smollm2_as_the_judge(tmp_path, smollm2, server,
                                                                                     capsys):
    """alpaca_eval's own annotation and win rate (its command line, on `rapref alpaca-eval-judge`'s config) against
    `rapref judge --scorer llm-judge-pairwise` on the same exported answers (SmolLM2's greedy 24-token answers against
    its sampled 8-token ones), the served SmolLM2 judging both. SmolLM2-135M is no judge: it names the first position
    it is shown, or both outputs at once (missing in both tools), so the two win rates agree only by chance. What
    holds whatever the judge: both tools asked the served model about every instruction and give a rate in [0, 1];
    where the judge reads content (each position named in a quarter of its verdicts or more) alpaca_eval's raw rate
    lies in rapref's 95% interval. Both numbers are printed."""
    prompts = tmp_path / "questions.jsonl"
    write_jsonl(prompts, [{"prompt_id": str(i), "prompt": q} for i, q in enumerate(QUESTIONS)])
    generate = ["generate", str(smollm2), "--prompts", str(prompts), "--no-goal", "--endpoint", server]
    assert cli([*generate, "--temperature", "0", "--max-new-tokens", "24", "--out", str(tmp_path / "mine.jsonl")]) == 0
    assert cli([*generate, "--temperature", "1.0", "--max-new-tokens", "8", "--out", str(tmp_path / "base.jsonl")]) == 0
    for side in ("mine", "base"):
        assert cli(["export", "alpaca-eval", str(tmp_path / f"{side}.jsonl"), "--name", side, "--out",
                    str(tmp_path / f"{side}.json")]) == 0
    code = cli(["judge", str(tmp_path / "mine.jsonl"), "--against", str(tmp_path / "base.jsonl"), "--scorer",
                f"llm-judge-pairwise:{server}", "--out", str(tmp_path / "rapref")])
    assert code in (0, 2)  # 2: no reply named exactly one output (counted and refused, never scored)
    assert cli(["alpaca-eval-judge", server, "--out", str(tmp_path / "ae-judge")]) == 0
    config = tmp_path / "ae-judge" / "rapref_pairwise" / "configs.yaml"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "", "IS_ALPACA_EVAL_2": "False"}  # raw win rate
    run = subprocess.run([str(Path(sys.executable).parent / "alpaca_eval"), "evaluate", "--model_outputs",
                          str(tmp_path / "mine.json"), "--reference_outputs", str(tmp_path / "base.json"),
                          "--annotators_config", str(config), "--output_path", str(tmp_path / "ae"),
                          "--precomputed_leaderboard", "None", "--is_cache_leaderboard", "False"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    import pandas as pd

    board = pd.read_csv(tmp_path / "ae" / "leaderboard.csv", index_col=0).iloc[0].to_dict()
    ae_rate = board["win_rate"] / 100
    assert 1 <= board["n_total"] <= len(QUESTIONS) and 0 <= ae_rate <= 1
    assert str(smollm2) in config.read_text()  # alpaca_eval asked the served model
    rate, interval = None, None
    if code == 0:
        pairwise = json.loads((tmp_path / "rapref" / "aggregate.json").read_text())["pairwise"]
        assert pairwise["n"] + pairwise["unscored"] == len(QUESTIONS) and 0 <= pairwise["win_rate"] <= 1
        assert sum(pairwise["verdicts"].values()) == 2 * len(QUESTIONS)  # every comparison asked in both orders
        rate, interval, named = pairwise["win_rate"], (pairwise["low"], pairwise["high"]), pairwise["verdicts"]
        reads_content = min(named["first"], named["second"]) >= 0.25 * (named["first"] + named["second"]) > 0
        if reads_content and None not in interval:
            assert interval[0] <= ae_rate <= interval[1], (ae_rate, pairwise)
    with capsys.disabled():  # shown in a plain `make test-serving` run
        print(f"\nalpaca_eval raw win rate {ae_rate:.4f} (se {board['standard_error'] / 100:.4f}, n_total "
              f"{board['n_total']:g} of {len(QUESTIONS)}); rapref judge {'-' if rate is None else f'{rate:.4f}'} "
              f"95% interval {interval} (verdicts {named if code == 0 else 'none parsed'})")
