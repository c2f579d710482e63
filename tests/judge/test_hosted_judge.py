"""A hosted judge (`--api-key-env NAME`) against `tests/helpers.py`'s stand-in in a hosted server's manners: the
key goes out as `Authorization: Bearer` and into no file, log or message; a missing or refused key is one line
before (or at) the first request; a 429's Retry-After is waited out within the retry time or refused at once; the
judge model and the tokens its replies report are recorded and printed."""

import json
import time
from pathlib import Path

import pytest

from helpers import ROOT, FaultyServer, one_line_error
from rapref.cli import main as cli
from rapref.inference import serving
from rapref.inference.hosted import TokenUsage, add_usage
from rapref.io import write_jsonl_atomic as write_jsonl

VAR = "RAPREF_TEST_JUDGE_KEY"
KEY = "sk-test-4f9c2a7e1b3d5a6c8e0f2b4d"  # distinctive: found by a plain search wherever it is written
MODEL = "judge-mini-2026"  # a hosted judge: a name, no local folder
QUICK = ["--request-timeout", "2", "--retry-time", "5"]


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(serving, "BACKOFF_S", 0.05)


@pytest.fixture
def gens(tmp_path) -> dict[str, Path]:
    """Two generation files of four answers each."""
    paths = {}
    for name, texts in (("mine", ["a long answer"] * 4), ("base", ["short"] * 4)):
        paths[name] = tmp_path / f"{name}.jsonl"
        write_jsonl(paths[name], [{"prompt_id": str(i), "prompt": f"q{i}", "text": f"{t} {i}"}
                                  for i, t in enumerate(texts)])
    return paths


def judge(gens, url, out, *extra, pairwise=False) -> list[str]:
    scorer = f"llm-judge-pairwise:{url}" if pairwise else f"llm-judge:{url}"
    return ["judge", str(gens["mine"]), *(["--against", str(gens["base"])] if pairwise else []), "--scorer", scorer,
            "--out", str(out), "--api-key-env", VAR, *QUICK, *extra]


def files_holding(root: Path, text: str) -> list[str]:
    """Every file under `root` whose bytes hold `text`."""
    return [str(p) for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def test_the_key_goes_only_into_the_header_never_into_a_file_a_log_or_a_message(tmp_path, capsys, monkeypatch, gens,
                                                                                tiny_model_dir):
    monkeypatch.setenv(VAR, KEY)
    log = tmp_path / "server.log"
    for kind, verdict in (("graded", "grade"), ("won", "a")):
        with FaultyServer(MODEL, require_key=KEY, usage="all", log=log, judge=verdict) as server:
            assert cli(judge(gens, server.url, tmp_path / kind, pairwise=kind == "won")) == 0
            assert server.authorizations and set(server.authorizations) == {f"Bearer {KEY}"}  # every request, GETs too
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, [{"prompt_id": "0", "prompt": "sort: b a c"}])
    with FaultyServer(tiny_model_dir, require_key=KEY, log=log) as server:  # generate --endpoint shares the client
        assert cli(["generate", str(tiny_model_dir), "--prompts", str(prompts), "--no-goal", "--max-new-tokens", "4",
                    "--endpoint", server.url, "--api-key-env", VAR, "--out", str(tmp_path / "g.jsonl")]) == 0
        assert set(server.authorizations) == {f"Bearer {KEY}"}
    said = "".join(capsys.readouterr())
    # the log holds every request (the model list and 4 grades; the list and 8 verdicts; the list, /tokenize and a
    # completion), bodies included, and no key
    assert len(log.read_text().splitlines()) == (1 + 4) + (1 + 8) + (1 + 1 + 1)
    assert files_holding(tmp_path, KEY) == [] and KEY not in said
    records = [json.loads(p.read_text()) for p in (tmp_path / "graded" / "requests.json",
                                                   tmp_path / "g.jsonl.requests.json")]
    records.append(json.loads((tmp_path / "graded" / "aggregate.json").read_text())["requests"])
    assert [r["api_key_env"] for r in records] == [VAR] * 3  # the variable's name is what is recorded
    # the key is in no cache key: another key in the same variable is answered from the cache, asking nothing
    monkeypatch.setenv(VAR, KEY[::-1])
    with FaultyServer(MODEL, require_key=KEY[::-1]) as server:
        assert cli(judge(gens, server.url, tmp_path / "again", "--cache", str(tmp_path / "graded" / "cache.jsonl"))) \
            == 0
        assert server.posts == 0


def test_without_a_key_or_with_a_refused_one_it_is_one_line_naming_the_variable(tmp_path, capsys, monkeypatch, gens):
    with FaultyServer(MODEL, require_key=KEY) as server:  # no --api-key-env: 401 on the first contact, not retried
        err = one_line_error(capsys, [a for a in judge(gens, server.url, tmp_path / "a") if a not in ("--api-key-env",
                                                                                                      VAR)],
                             "the server answered 401 (You didn't provide an API key.)")
        assert server.url in err and "--api-key-env NAME" in err and len(server.authorizations) == 1
    wrong = "sk-wrong-0123456789abcdef0123"
    monkeypatch.setenv(VAR, wrong)
    for status in (401, 403):  # the server quotes the key it was given: blanked in the message
        with FaultyServer(MODEL, require_key=KEY, key_status=status) as server:
            err = one_line_error(capsys, judge(gens, server.url, tmp_path / f"b{status}"),
                                 f"the server answered {status} (Incorrect API key provided: [key hidden])")
            assert f"check that the environment variable {VAR} holds a valid key" in err and server.url in err
            assert wrong not in err and wrong[:12] not in err and len(server.authorizations) == 1


def test_an_unset_empty_or_misnamed_key_variable_is_refused_before_any_request(tmp_path, capsys, monkeypatch, gens):
    with FaultyServer(MODEL, require_key=KEY) as server:
        monkeypatch.delenv(VAR, raising=False)
        err = one_line_error(capsys, judge(gens, server.url, tmp_path / "a"), f"api key env {VAR}: the environment "
                                                                              "variable is unset")
        assert f"export {VAR}=" in err
        monkeypatch.setenv(VAR, "  ")
        one_line_error(capsys, judge(gens, server.url, tmp_path / "b"), f"api key env {VAR}: the environment "
                                                                        "variable is empty")
        for given in (KEY, "openai_api_key", "MY-KEY"):  # a key pasted in the name's place is not repeated
            argv = judge(gens, server.url, tmp_path / "c")
            argv[argv.index(VAR)] = given
            err = one_line_error(capsys, argv, "--api-key-env must be the NAME of an environment variable")
            assert given not in err
        argv = judge(gens, server.url, tmp_path / "d")
        argv[argv.index("--scorer") + 1] = "constraints"  # no server to send a key to
        one_line_error(capsys, argv, "--api-key-env are for the LLM judges")
        assert server.authorizations == []  # not one request


def test_a_429_retry_after_is_waited_out_within_the_retry_time_or_refused_at_once(tmp_path, capsys, monkeypatch,
                                                                                  gens):
    monkeypatch.setenv(VAR, KEY)
    with FaultyServer(MODEL, "429", times=2, retry_after="1", require_key=KEY, usage="all") as server:
        start = time.monotonic()
        assert cli(judge(gens, server.url, tmp_path / "a")) == 0
        waited = time.monotonic() - start
    record = json.loads((tmp_path / "a" / "requests.json").read_text())
    assert record["retried_for"] == {"429": 2} and record["refused"] == 0 and 1.0 <= waited < 5, (record, waited)
    assert record["usage"]["replies"] == 4  # a 429 is no reply: only the four answers' usage is counted
    with FaultyServer(MODEL, "429", retry_after="30", require_key=KEY) as server:  # beyond the bound: at once
        start = time.monotonic()
        err = one_line_error(capsys, judge(gens, server.url, tmp_path / "b"), "it asked to wait 30 s (Retry-After), "
                                                                              "more than the")
        assert time.monotonic() - start < 2 and "of the 5 s retry time: refused rather than waited" in err
        assert server.posts <= 4  # each call asked once (up to four in flight), none waited 30 s


@pytest.mark.parametrize("usage, recorded, line", [
    ("all", (4, 4, 28, 12), "judge judge-mini-2026: 28 prompt + 12 completion tokens"),
    ("even", (4, 2, 14, 6),
     "judge judge-mini-2026: 14 prompt + 6 completion tokens (2 of 4 replies reported no usage)"),
    (None, (4, 0, "not reported", "not reported"), "judge judge-mini-2026: tokens not reported by the server"),
])
def test_the_judge_model_and_its_token_usage_are_recorded_and_printed(tmp_path, capsys, monkeypatch, gens, usage,
                                                                      recorded, line):
    monkeypatch.setenv(VAR, KEY)
    with FaultyServer(MODEL, require_key=KEY, usage=usage) as server:
        capsys.readouterr()
        assert cli(judge(gens, server.url, tmp_path / "j")) == 0  # four answers graded: 7 + 3 tokens each reported
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("rapref judge: n=") and summary.endswith(line), summary
    aggregate = json.loads((tmp_path / "j" / "aggregate.json").read_text())
    expected = dict(zip(("replies", "replies_reporting_usage", "prompt_tokens", "completion_tokens"), recorded))
    assert aggregate["requests"]["usage"] == expected and aggregate["requests"]["model"] == MODEL
    assert aggregate["scorer"] == f"llm-judge:{MODEL}"
    assert json.loads((tmp_path / "j" / "requests.json").read_text())["usage"] == expected
    with FaultyServer(MODEL, require_key=KEY, usage=usage, judge="a") as server:  # pairwise: both orders of four
        assert cli(judge(gens, server.url, tmp_path / "w", pairwise=True)) == 0
    assert json.loads((tmp_path / "w" / "aggregate.json").read_text())["requests"]["usage"]["replies"] == 8
    assert "judge judge-mini-2026: " in capsys.readouterr().out.strip().splitlines()[-1]


def test_a_resumed_runs_usage_is_summed_over_its_sessions(tmp_path):
    path = tmp_path / "requests.json"
    for session, usage in enumerate(({"prompt_tokens": 7, "completion_tokens": 3}, None), start=1):
        endpoint = serving.Endpoint("http://127.0.0.1:8000/v1")
        endpoint.usage.add(usage)
        record = serving.record_requests(endpoint, path, "rapref judge", resumed=session > 1)
    assert record["usage"]["prompt_tokens"] == "not reported"  # this session's
    assert record["all_sessions"]["usage"] == {"replies": 2, "replies_reporting_usage": 1, "prompt_tokens": 7,
                                               "completion_tokens": 3}
    none = TokenUsage().as_dict()
    assert add_usage(none, none)["prompt_tokens"] == "not reported"


def test_a_key_in_the_url_is_refused_without_repeating_it(tmp_path, capsys, gens):
    for url in (f"https://user:{KEY}@api.example.com/v1", f"http://{KEY}@127.0.0.1:8000/v1"):
        argv = judge(gens, url, tmp_path / "j")
        argv.remove("--api-key-env")
        argv.remove(VAR)
        err = one_line_error(capsys, argv, "the URL holds a user name or password (USER:KEY@HOST)")
        assert KEY not in err and "--api-key-env NAME" in err


def test_a_bad_judge_url_is_named_as_the_user_gave_it(tmp_path, capsys, gens):
    one_line_error(capsys, ["judge", str(gens["mine"]), "--scorer", "llm-judge:notaurl", "--out", str(tmp_path / "j")],
                   "--scorer llm-judge:URL 'notaurl': expected an http(s) URL")
    one_line_error(capsys, ["alpaca-eval-judge", "notaurl", "--out", str(tmp_path / "a")],
                   "the judge's url 'notaurl': expected an http(s) URL")


def test_only_the_hosted_module_builds_the_key_header():
    """One home for the key: read from its variable and put into the header by `rapref.inference.hosted` alone."""
    import re

    src = ROOT / "src" / "rapref"
    builders = [p.relative_to(src).as_posix() for p in sorted(src.rglob("*.py"))
                if re.search(r"[\"']Authorization[\"']|Bearer \{", p.read_text())]
    assert builders == ["inference/hosted.py"]
