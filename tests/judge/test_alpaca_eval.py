"""alpaca_eval (the `alpaca-eval` package's own code and command line) on files written by `rapref export alpaca-eval`,
judged by a stand-in OpenAI-compatible judge through `rapref alpaca-eval-judge`'s config: its raw win rate agrees
with `rapref judge --scorer llm-judge-pairwise` on the same answers, judge and template; its length-controlled win
rate runs offline from a local instruction-difficulty file."""

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers import FIXTURES

N = 80


class JudgeServer:
    """A deterministic pairwise judge on 127.0.0.1: it reads rapref's template (the two outputs between its
    "## Output (a)" / "## Output (b)" headings) and names the output with the larger content hash, except on one pair
    in four (by the pair's content, whatever its order), where it names the first position it was shown."""

    def __init__(self):
        self.requests = []

    @staticmethod
    def verdict(first: str, second: str) -> str:
        def quality(text):
            return hashlib.sha256(text.strip().encode()).hexdigest()

        if int(hashlib.sha256("|".join(sorted((first.strip(), second.strip()))).encode()).hexdigest(), 16) % 4 == 0:
            return "Output (a)"  # position bias
        return "Output (a)" if quality(first) > quality(second) else "Output (b)"

    def __enter__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def send(self, body):
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self.send({"object": "list", "data": [{"id": "judge", "object": "model", "owned_by": "test"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                content = body["messages"][-1]["content"]
                first, second = re.search(r"## Output \(a\)\n\n(.*?)\n\n## Output \(b\)\n\n(.*?)\n\n## Your answer",
                                          content, re.S).groups()
                self.send({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                           "choices": [{"index": 0, "finish_reason": "stop", "message": {
                               "role": "assistant", "content": JudgeServer.verdict(first, second)}}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _answers(rng, n_words):
    words = "red green blue amber violet quick lazy fox river stone".split()
    return " ".join(rng.choice(words) for _ in range(n_words))


def _generations(path: Path, seed: int, longer: int) -> None:
    rng = random.Random(seed)
    rows = [{"prompt_id": str(i), "prompt": f"Instruction {i}: describe item {i}.", "instruction":
             f"Instruction {i}: describe item {i}.", "dataset": "helpful_base", "text": _answers(rng, 3 + rng.randint(0, longer)),
             "goal": None, "sample": 0, "turn": 0} for i in range(N)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _df_gamed(path: Path, n: int, difficulty_seed: int = 0) -> Path:
    """A stand-in for AlpacaEval's df_gamed.csv (its columns; two gamed baselines per instruction)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(difficulty_seed)
    difficulty = rng.normal(0, 1, n)
    frames = []
    for model, shift in (("gpt4_1106_preview_verbose", 1.0), ("gpt4_1106_preview_concise", -1.0)):
        delta = rng.normal(shift, 0.5, n)
        frames.append(pd.DataFrame({"model": model, "index": range(n), "preference": 1 / (1 + np.exp(-(
            difficulty + delta))), "std_delta_len": delta, "instruction_difficulty": difficulty,
            "not_gamed_baseline": False}))
    pd.concat(frames).to_csv(path, index=False)
    return path


def test_alpaca_eval_raw_win_rate_agrees_with_rapref_judge(tmp_path, capsys):
    from rapref.cli import main as cli

    _generations(tmp_path / "mine.jsonl", seed=1, longer=8)
    _generations(tmp_path / "base.jsonl", seed=2, longer=4)
    for side in ("mine", "base"):
        assert cli(["export", "alpaca-eval", str(tmp_path / f"{side}.jsonl"), "--name", side, "--out",
                    str(tmp_path / f"{side}.json")]) == 0
    with JudgeServer() as judge:
        assert cli(["judge", str(tmp_path / "mine.jsonl"), "--against", str(tmp_path / "base.jsonl"),
                    "--scorer", f"llm-judge-pairwise:{judge.url}", "--out", str(tmp_path / "rapref")]) == 0
        rapref_requests = list(judge.requests)
        assert cli(["alpaca-eval-judge", judge.url, "--out", str(tmp_path / "ae-judge"), "--lc-reference",
                    str(_df_gamed(tmp_path / "df_gamed.csv", N)), "--hub-cache", str(tmp_path / "hub")]) == 0
        config = tmp_path / "ae-judge" / "rapref_pairwise" / "configs.yaml"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "OPENAI_API_KEY": "",
               "IS_ALPACA_EVAL_2": "True"}
        ae = Path(sys.executable).parent / "alpaca_eval"
        run = subprocess.run([str(ae), "evaluate", "--model_outputs", str(tmp_path / "mine.json"),
                              "--reference_outputs", str(tmp_path / "base.json"), "--annotators_config", str(config),
                              "--output_path", str(tmp_path / "ae"), "--precomputed_leaderboard", "None",
                              "--metric_kwargs", "{'save_weights_dir': None}", "--is_cache_leaderboard", "False"],
                             env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        ae_requests = judge.requests[len(rapref_requests):]
    pairwise = json.loads((tmp_path / "rapref" / "aggregate.json").read_text())["pairwise"]
    leaderboard = _leaderboard(tmp_path / "ae" / "leaderboard.csv")
    annotations = json.loads((tmp_path / "ae" / "annotations.json").read_text())

    # the same question: the same judge model, template text, decoding settings; one order there, both here
    assert len(ae_requests) == N and len(rapref_requests) == 2 * N
    for key in ("model", "max_tokens", "temperature", "seed"):
        assert {r[key] for r in ae_requests} == {r[key] for r in rapref_requests}, key
    assert {r["messages"][0]["content"].strip() for r in ae_requests} <= \
        {r["messages"][0]["content"].strip() for r in rapref_requests}

    # per instruction: where the judge reads content, alpaca_eval's verdict is rapref's outcome exactly
    outcomes = {r["prompt_id"]: r["score"] for r in _scores(tmp_path / "rapref")}  # 1, 1/2 (orders disagree), 0
    biased = 0
    for a in annotations:
        i = re.match(r"Instruction (\d+):", a["instruction"]).group(1)
        ae_outcome = a["preference"] - 1  # 1: the model (output_2) wins
        if JudgeServer.verdict(a["output_1"], a["output_2"]) == JudgeServer.verdict(a["output_2"], a["output_1"]):
            biased += 1
            assert outcomes[i] == 0.5  # rapref's two orders disagree: a tie; alpaca_eval saw one order
        else:
            assert ae_outcome == outcomes[i], i
    assert 0 < biased < N
    ae_rate = leaderboard["win_rate"] / 100
    assert leaderboard["n_total"] == N and pairwise["n"] == N
    assert pairwise["low"] <= ae_rate <= pairwise["high"], (ae_rate, pairwise)
    assert 0 <= leaderboard["length_controlled_winrate"] <= 100  # alpaca_eval's LC ran, offline, on the local file
    print(f"alpaca_eval raw win rate {ae_rate:.4f} (se {leaderboard['standard_error'] / 100:.4f}); rapref "
          f"{pairwise['win_rate']:.4f} [{pairwise['low']:.4f}, {pairwise['high']:.4f}]", file=sys.__stderr__)


def _scores(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "scores.jsonl").read_text().splitlines()]


def _leaderboard(path: Path) -> dict:
    import pandas as pd

    return pd.read_csv(path, index_col=0).iloc[0].to_dict()


def _lc(monkeypatch, hub: Path, glm: str) -> float:
    """alpaca_eval's own get_length_controlled_winrate on the committed fixture's outcomes and lengths."""
    import pandas as pd
    from alpaca_eval import constants
    from alpaca_eval.metrics import get_length_controlled_winrate

    monkeypatch.setattr(constants, "DEFAULT_CACHE_DIR", str(hub))
    ref = json.loads((FIXTURES / "lc_winrate_reference.json").read_text())
    df = pd.DataFrame({"preference": [1 + o for o in ref["outcomes"]],  # 2: the model (output_2) wins
                       "output_1": ["x" * n for n in ref["len_baseline"]],
                       "output_2": ["x" * n for n in ref["len_model"]],
                       "generator_1": "baseline", "generator_2": "model", "annotator": "rapref_pairwise"})
    return get_length_controlled_winrate(df, glm_name=glm, save_weights_dir=None)["length_controlled_winrate"] / 100


def test_length_controlled_win_rate_runs_offline_from_a_local_file(tmp_path, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    from rapref.judge.alpaca_eval_judge import seed_lc_reference
    from rapref.judge.llm_judge import length_controlled_win_rate

    ref = json.loads((FIXTURES / "lc_winrate_reference.json").read_text())
    n = len(ref["outcomes"])
    with pytest.raises(LocalEntryNotFoundError):  # offline, nothing cached: alpaca_eval cannot run
        _lc(monkeypatch, tmp_path / "empty", "length_controlled_minimal")
    seed_lc_reference(_df_gamed(tmp_path / "a.csv", n, 0), tmp_path / "hub")
    minimal = _lc(monkeypatch, tmp_path / "hub", "length_controlled_minimal")
    assert minimal == pytest.approx(ref["lc_win_rate"], abs=1e-4)  # scripts/lc_reference.py's figure
    mine = length_controlled_win_rate(ref["outcomes"], ref["len_model"], ref["len_baseline"])["lc_win_rate"]
    assert mine == pytest.approx(minimal, abs=2e-3)
    # the published GLM reads the file's instruction difficulties: other difficulties, another figure
    v1 = _lc(monkeypatch, tmp_path / "hub", "length_controlled_v1")
    seed_lc_reference(_df_gamed(tmp_path / "b.csv", n, 1), tmp_path / "hub2")
    assert _lc(monkeypatch, tmp_path / "hub2", "length_controlled_v1") != pytest.approx(v1, abs=1e-4)


def test_alpaca_eval_judge_config_refusals(tmp_path, capsys):
    from rapref.cli import main as cli

    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with JudgeServer() as judge:
        for argv, needle in [(["--judge-model", "other"], "not --judge-model 'other'"),
                             (["--lc-reference", str(tmp_path / "bad.csv")], "no column index"),
                             (["--judge-template", str(tmp_path / "none.txt")], "no such file")]:
            capsys.readouterr()
            assert cli(["alpaca-eval-judge", judge.url, "--out", str(tmp_path / "cfg")] + argv) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and needle in err[0], err


def test_a_hosted_judges_config_reads_the_key_alpaca_eval_reads_and_writes_none(tmp_path, capsys, monkeypatch):
    """For a judge not on this machine, rapref asks its model list with OPENAI_API_KEY (the variable alpaca_eval's own
    client reads), refuses at once without it, and writes the key into no file of the annotator folder."""
    from rapref.cli import main as cli
    from rapref.judge import alpaca_eval_judge
    from helpers import FaultyServer

    key = "sk-hosted-7d3e9b1f5a2c4e6d8f0a"
    monkeypatch.setattr(alpaca_eval_judge, "_local", lambda url: False)  # the stand-in on 127.0.0.1, as if hosted
    with FaultyServer("judge", require_key=key) as server:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        capsys.readouterr()
        assert cli(["alpaca-eval-judge", server.url, "--out", str(tmp_path / "none")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "api key env OPENAI_API_KEY: the environment variable is unset" in err[0], err
        assert server.authorizations == []  # refused before any request
        monkeypatch.setenv("OPENAI_API_KEY", key)
        assert cli(["alpaca-eval-judge", server.url, "--out", str(tmp_path / "cfg")]) == 0
        assert server.authorizations == [f"Bearer {key}"]
    import yaml

    client = yaml.safe_load((tmp_path / "cfg" / "rapref_pairwise" / "client.yaml").read_text())
    assert client == {"default": [{"base_url": server.url}]}  # no key: alpaca_eval's client reads the variable
    assert [p for p in tmp_path.rglob("*") if p.is_file() and key.encode() in p.read_bytes()] == []


def test_a_judges_key_is_read_from_the_variable_named_by_api_key_env_and_only_its_name_is_written(tmp_path, capsys,
                                                                                                  monkeypatch):
    """`--api-key-env NAME`, as `rapref judge` takes it: rapref asks the model list with NAME's key (refused at once
    while NAME is unset), and the client alpaca_eval builds from client.yaml (as alpaca_eval builds it) sends that
    key; client.yaml holds NAME, never the key."""
    import yaml
    from alpaca_eval import utils

    from rapref.cli import main as cli
    from rapref.judge import alpaca_eval_judge
    from helpers import FaultyServer

    key = "sk-judge-0c4f2a9e7b1d3f5a6e8c"
    monkeypatch.setattr(alpaca_eval_judge, "_local", lambda url: False)  # the stand-in on 127.0.0.1, as if hosted
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("MY_JUDGE_KEY", raising=False)
    with FaultyServer("judge", require_key=key) as server:
        argv = ["alpaca-eval-judge", server.url, "--out", str(tmp_path / "cfg"), "--api-key-env", "MY_JUDGE_KEY"]
        capsys.readouterr()
        assert cli(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "api key env MY_JUDGE_KEY: the environment variable is unset" in err[0], err
        assert server.authorizations == []  # refused before any request
        monkeypatch.setenv("MY_JUDGE_KEY", key)
        assert cli(argv) == 0
        assert server.authorizations == [f"Bearer {key}"]
    client_path = tmp_path / "cfg" / "rapref_pairwise" / "client.yaml"
    assert yaml.safe_load(client_path.read_text()) == {"default": [{
        "base_url": server.url, "client_class": "rapref.judge.alpaca_eval_judge.openai_client",
        "api_key_env": "MY_JUDGE_KEY"}]}
    assert [p for p in tmp_path.rglob("*") if p.is_file() and key.encode() in p.read_bytes()] == []
    clients = utils.get_all_clients(client_path, model_name="judge", default_client_class="openai.OpenAI",
                                    get_backwards_compatible_configs=lambda **_: [])
    assert len(clients) == 1 and clients[0].api_key == key and str(clients[0].base_url).rstrip("/") == server.url


@pytest.mark.parametrize("reply, theirs, ours", [
    ("Output (a)", [1], 1),
    ("Output (b)", [2], 2),
    ("Output (a) is better than Output (b).", [1, 2], None),  # both named: missing in both tools
    ("I cannot decide.", [], None),
    ("Output (a). I choose Output (a).", [1, 1], 1),  # the same output twice: two answers for alpaca_eval
    ("(a)", [], 1),
    ("[[B]]", [], 2),
    ("Tie.", [], 0),
])
def test_the_two_parsers_differ_only_at_the_edges(reply, theirs, ours):
    """alpaca_eval's parser on rapref's annotator config (one answer expected: anything else is missing) against
    rapref's parse_choice, as the evaluation page states."""
    from alpaca_eval.completion_parsers import regex_parser

    from rapref.judge.alpaca_eval_judge import NAME, annotator_config
    from rapref.judge.llm_judge import parse_choice

    config = annotator_config("judge", "http://127.0.0.1:8000/v1", "c.yaml")[NAME]
    assert config["batch_size"] == 1
    assert regex_parser(reply, dict(config["completion_parser_kwargs"]["outputs_to_match"])) == theirs
    assert parse_choice(reply) == ours


def test_rapref_judges_win_rate_interval_stays_within_zero_and_one(tmp_path):
    """A t-interval on a handful of comparisons reaches past 0 and 1 (the serving test's SmolLM2 judge gave
    [-1.10, 1.77] on three); a win rate's interval is held within [0, 1]."""
    from rapref.cli import main as cli
    from rapref.stats import interval

    rows = {"mine": [], "base": []}
    i = 0
    while len(rows["mine"]) < 3:  # three prompts whose outcomes differ (the stand-in judge reads content hashes)
        mine, base = f"answer {i} one", f"answer {i} two"
        if JudgeServer.verdict(mine, base) != JudgeServer.verdict(base, mine):  # no position bias on this pair
            for side, text in (("mine", mine), ("base", base)):
                rows[side].append({"prompt_id": str(i), "prompt": f"Instruction {i}: say it.", "text": text})
        i += 1
    for side in rows:
        (tmp_path / f"{side}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[side]))
    with JudgeServer() as judge:
        assert cli(["judge", str(tmp_path / "mine.jsonl"), "--against", str(tmp_path / "base.jsonl"), "--scorer",
                    f"llm-judge-pairwise:{judge.url}", "--out", str(tmp_path / "w")]) == 0
    pairwise = json.loads((tmp_path / "w" / "aggregate.json").read_text())["pairwise"]
    outcomes = [r["score"] for r in _scores(tmp_path / "w")]
    assert sorted(outcomes) == [0.0, 0.0, 1.0]  # spread: the unclipped t-interval passes both ends
    raw = interval(outcomes)
    assert raw["low"] < 0 and raw["high"] > 1
    assert (pairwise["low"], pairwise["high"]) == (0.0, 1.0) and pairwise["win_rate"] == pytest.approx(1 / 3)
