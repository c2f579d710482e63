"""Faults of the network and of the server, one class per test, against `tests/helpers.py`'s stand-in: every
outcome is a correct result or a one-line refusal (exit 2), within seconds; never a hang, a traceback, an empty answer
saved as data or a number that means nothing."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import FaultyServer, one_line_error, wait_for
from rapref.cli import main as cli
from rapref.inference import serving
from rapref.io import read_jsonl, read_jsonl_prefix
from rapref.io import write_jsonl_atomic as write_jsonl

QUICK = ["--request-timeout", "1", "--retry-time", "3"]


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(serving, "BACKOFF_S", 0.05)


@pytest.fixture
def prompts(tmp_path) -> Path:
    path = tmp_path / "prompts.jsonl"
    write_jsonl(path, [{"prompt_id": str(i), "prompt": f"sort: {'abcdef'[i]} a c"} for i in range(4)])
    return path


def generate(model, prompts, url, out, *extra) -> list[str]:
    return ["generate", str(model), "--prompts", str(prompts), "--no-goal", "--max-new-tokens", "4", "--endpoint",
            url, "--concurrency", "1", "--out", str(out), *extra]


def strict_json(path: Path):
    """JSON that holds only finite numbers (Python writes NaN and Infinity, which are not JSON)."""
    return json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{path}: {name} written"))


def test_a_server_that_never_finishes_a_reply_is_refused_within_the_timeouts(tmp_path, capsys, tiny_model_dir,
                                                                               prompts):
    for fault in ("hang", "trickle"):  # silent, and a byte at a time (a per-read timeout alone would wait forever)
        with FaultyServer(tiny_model_dir, fault) as server:
            start = time.monotonic()
            err = one_line_error(capsys, generate(tiny_model_dir, prompts, server.url, tmp_path / "g.jsonl",
                                                  "--request-timeout", "0.5", "--retry-time", "1"),
                                 "no complete reply within 0.")
            assert time.monotonic() - start < 8 and server.url in err and "prompt 0" in err and "kept in" in err
            assert "retry time" in err and "<class" not in err  # which limit ran out, in words
        assert not (tmp_path / "g.jsonl").exists()
    write_jsonl(tmp_path / "gen.jsonl", [{"prompt_id": "0", "prompt": "hi", "text": "hello"}])
    with FaultyServer(tiny_model_dir, "hang") as server:
        one_line_error(capsys, ["judge", str(tmp_path / "gen.jsonl"), "--scorer", f"llm-judge:{server.url}", "--out",
                                str(tmp_path / "j"), "--request-timeout", "0.5", "--retry-time", "0"],
                       "grading prompt_id '0': no complete reply within 0.5 s (request timeout)")


# `python -m rapref` as a terminal starts it: Ctrl-C raises KeyboardInterrupt even where the test runner was started
# with SIGINT ignored (a background job of a script: `pytest &`), which a child would inherit and keep (Python installs
# no handler for a signal ignored at its start); -X faulthandler prints every thread's stack on SIGABRT
RAPREF = [sys.executable, "-X", "faulthandler", "-c", "import runpy, signal; signal.signal(signal.SIGINT, "
          "signal.default_int_handler); runpy.run_module('rapref', run_name='__main__', alter_sys=True)"]


def exit_code(process, timeout: float = 20) -> int:
    """The exit code of a process told to stop; one that hangs is aborted, and its threads' stacks (RAPREF prints
    them on SIGABRT) are the failure message."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        _, err = process.communicate(timeout=30)
        pytest.fail(f"no exit within {timeout:g} s of the signal; its threads:\n{err[-12000:]}")


def test_ctrl_c_and_sigterm_stop_requests_in_flight_and_keep_the_answers(tmp_path, tiny_model_dir, prompts):
    """With the default timeouts (minutes), a signal must still end the run within seconds, the answers kept."""
    out = tmp_path / "cut.jsonl"
    with FaultyServer(tiny_model_dir, "hang", after=2) as server:  # two answers, then silence
        process = subprocess.Popen([*RAPREF, *generate(tiny_model_dir, prompts, server.url, out)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        partial = Path(f"{out}.partial")
        assert wait_for(lambda: process.poll() is not None or partial.is_file() and
                        len(read_jsonl_prefix(partial)) == 3 and server.posts == 3)
        assert process.poll() is None, process.stderr.read()
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert exit_code(process) == 130, process.stderr.read()
        assert time.monotonic() - start < 15  # the timeouts are minutes; 15 s: a machine loaded 5-fold here
    assert len(read_jsonl_prefix(partial)) == 3 and not out.exists()
    record = strict_json(Path(f"{out}.requests.json"))  # the counts, however the run ended
    assert record["outcome"] == "interrupted" and record["requests"] >= 3
    with FaultyServer(tiny_model_dir) as server:
        assert cli(generate(tiny_model_dir, prompts, server.url, out)) == 0
        assert server.posts == 2  # only the two unanswered prompts were asked again
        assert cli(generate(tiny_model_dir, prompts, server.url, tmp_path / "full.jsonl")) == 0
    resumed = strict_json(Path(f"{out}.requests.json"))
    assert resumed["outcome"] == "finished" and resumed["requests"] == 3  # this session: the model list and two
    assert resumed["all_sessions"]["sessions"] == 2 and resumed["all_sessions"]["requests"] == record["requests"] + 3
    assert read_jsonl(out) == read_jsonl(tmp_path / "full.jsonl")
    write_jsonl(tmp_path / "gen.jsonl", [{"prompt_id": str(i), "prompt": "hi", "text": f"t{i}"} for i in range(40)])
    with FaultyServer(tiny_model_dir, "hang", after=32) as server:  # the judge: its first chunk of calls cached
        process = subprocess.Popen([*RAPREF, "judge", str(tmp_path / "gen.jsonl"), "--scorer",
                                    f"llm-judge:{server.url}", "--out", str(tmp_path / "j")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert wait_for(lambda: process.poll() is not None or server.posts >= 40)
        assert process.poll() is None, process.stderr.read()
        start = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert exit_code(process) == 130, process.stderr.read()
        assert time.monotonic() - start < 15  # the timeouts are minutes; 15 s: a machine loaded 5-fold here
    assert len(read_jsonl(tmp_path / "j" / "cache.jsonl")) == 32


@pytest.mark.parametrize("fault, times, reason", [("503", 2, "5xx"), ("429", 2, "429"), ("reset", 2, "connection cut"),
                                                  ("cut", 2, "connection cut"), ("not-json", 1, "unreadable reply"),
                                                  ("bad-utf8", 1, "unreadable reply")])
def test_faults_a_retry_can_fix_are_retried_to_the_same_result(tmp_path, tiny_model_dir, prompts, fault, times,
                                                                reason):
    with FaultyServer(tiny_model_dir) as server:
        assert cli(generate(tiny_model_dir, prompts, server.url, tmp_path / "clean.jsonl")) == 0
    with FaultyServer(tiny_model_dir, fault, times=times, retry_after="0.2") as server:
        assert cli(generate(tiny_model_dir, prompts, server.url, tmp_path / "g.jsonl", *QUICK)) == 0
    assert [r["text"] for r in read_jsonl(tmp_path / "g.jsonl")] == \
        [r["text"] for r in read_jsonl(tmp_path / "clean.jsonl")]
    record = strict_json(Path(f"{tmp_path / 'g.jsonl'}.requests.json"))
    assert record["retries"] == times and record["retried_for"] == {reason: times} and record["refused"] == 0
    assert record["requests"] == 4 + 1  # the model list and four completions


def test_replies_no_retry_fixes_are_refused_in_one_line_never_saved(tmp_path, capsys, tiny_model_dir, prompts):
    cases = {"html": "an HTML page", "no-choices": "an empty `choices` list", "no-text": "no choices[0].text",
             "wrong-type": "choices[0].text is int 42", "bad-utf8": "not UTF-8", "not-json": "not JSON",
             "empty-body": "the reply is empty", "400": "answered 400 (not now)", "cut": "closed before its reply",
             "endless": "ran past rapref's limit of", "huge-length": "1,000,000,000,000 bytes (Content-Length)",
             "long-text": "implausible for at most 4 tokens"}
    for fault, needle in cases.items():
        with FaultyServer(tiny_model_dir, fault) as server:
            start = time.monotonic()
            err = one_line_error(capsys, generate(tiny_model_dir, prompts, server.url, tmp_path / "g.jsonl", *QUICK),
                                 needle)
            assert time.monotonic() - start < 10, fault  # an endless body: refused at the size limit, not read on
        assert server.url in err and "completion of prompt 0 (seed 0)" in err, err
        record = strict_json(Path(f"{tmp_path / 'g.jsonl'}.requests.json"))  # recorded on a refusal too
        assert record["outcome"] == "refused" and record["refused"] >= 1, record
        # never retried (an unreadable reply: once); +1: the next prompt's request may start before the refusal stops it
        assert server.posts <= (3 if fault in ("bad-utf8", "not-json", "empty-body") else 2) or fault == "cut"
        assert not (tmp_path / "g.jsonl").exists()
        assert len(read_jsonl_prefix(Path(f"{tmp_path / 'g.jsonl'}.partial"))) == 1  # no answer saved, empty or not
    write_jsonl(tmp_path / "gen.jsonl", [{"prompt_id": "0", "prompt": "hi", "text": "hello"}])
    for fault, needle in {"no-content": "has no content", "content-int": "content is int 7",
                          "wrong-type": "content is list", "no-text": "message is missing",
                          "html": "an HTML page", "endless": "ran past rapref's limit of"}.items():
        with FaultyServer(tiny_model_dir, fault) as server:
            one_line_error(capsys, ["judge", str(tmp_path / "gen.jsonl"), "--scorer", f"llm-judge:{server.url}",
                                    "--out", str(tmp_path / f"j-{fault}"), *QUICK], needle)


def test_retries_end_within_the_retry_time(tmp_path, capsys, tiny_model_dir, prompts):
    with FaultyServer(tiny_model_dir, "503") as server:
        start = time.monotonic()
        one_line_error(capsys, generate(tiny_model_dir, prompts, server.url, tmp_path / "g.jsonl",
                                        "--retry-time", "1"), "gave up after")
        assert time.monotonic() - start < 6 and server.posts >= 3
    with FaultyServer(tiny_model_dir, "429", retry_after="3600") as server:  # asks for longer than the retry time
        one_line_error(capsys, generate(tiny_model_dir, prompts, server.url, tmp_path / "g.jsonl", *QUICK),
                       "it asked to wait 3600 s")
        assert server.posts == 1
    for asked in ("0", "-5", "Wed, 21 Oct 2015 07:28:00 GMT"):  # sooner than the backoff: the backoff still holds
        with FaultyServer(tiny_model_dir, "429", retry_after=asked) as server:
            one_line_error(capsys, generate(tiny_model_dir, prompts, server.url, tmp_path / "g.jsonl",
                                            "--retry-time", "1"), "gave up after")
            assert 3 <= server.posts <= 7, (asked, server.posts)  # 0.05 s doubling within 1 s: about 5, not 1000
    one_line_error(capsys, generate(tiny_model_dir, prompts, f"http://127.0.0.1:{serving.free_port()}/v1",
                                    tmp_path / "g.jsonl"), "no server answers")  # a first contact: at once
    for flags, needle in ((["--request-timeout", "0"], "--request-timeout must be a number of seconds above 0"),
                          (["--connect-timeout", "nan"], "--connect-timeout must be a finite number of seconds"),
                          (["--retry-time", "-1"], "--retry-time must be a number of seconds above 0 (or 0)"),
                          (["--request-timeout", "1e12"], "at most 86400"),
                          (["--connect-timeout", "1e12"], "at most 86400")):
        one_line_error(capsys, generate(tiny_model_dir, prompts, "http://127.0.0.1:1/v1", tmp_path / "g.jsonl",
                                        *flags), needle)
    for url, needle in (("http://127.0.0.1:99999/v1", "not a valid URL (Port out of range"),
                        ("http://[::1:18620/v1", "not a valid URL (Invalid IPv6 URL)"),
                        ("http://127.0.0.1:8000/v1?key=1", "takes no query"), ("http:///v1", "no host")):
        one_line_error(capsys, generate(tiny_model_dir, prompts, url, tmp_path / "g.jsonl"), needle)
    with FaultyServer(tiny_model_dir) as server:  # a request's URL copied whole: its root is used, with a note
        assert cli(generate(tiny_model_dir, prompts, server.url + "/completions", tmp_path / "u.jsonl")) == 0
    assert "using the API root" in capsys.readouterr().out and len(read_jsonl(tmp_path / "u.jsonl")) == 4
    argv = ["generate", str(tiny_model_dir), "--prompts", str(prompts), "--no-goal", "--out", str(tmp_path / "g.jsonl")]
    one_line_error(capsys, [*argv, "--retry-time", "5"], "give --endpoint URL")


def test_empty_answers_are_counted_and_recorded(tmp_path, capsys, tiny_model_dir, prompts):
    with FaultyServer(tiny_model_dir, "empty-text", after=1) as server:  # the model's own empty answers: data
        assert cli(generate(tiny_model_dir, prompts, server.url, tmp_path / "g.jsonl")) == 0
    assert [bool(r["text"]) for r in read_jsonl(tmp_path / "g.jsonl")] == [True, False, False, False]
    assert strict_json(Path(f"{tmp_path / 'g.jsonl'}.requests.json"))["empty_answers"] == 3
    assert "3 empty answers" in "".join(capsys.readouterr())


def test_the_judge_caches_only_verdicts_and_asks_again_for_the_rest(tmp_path, capsys, tiny_model_dir):
    write_jsonl(tmp_path / "gen.jsonl", [{"prompt_id": str(i), "prompt": f"q{i}", "text": f"answer {i}"}
                                         for i in range(4)])
    argv = ["judge", str(tmp_path / "gen.jsonl"), "--out", str(tmp_path / "j")]
    with FaultyServer(tiny_model_dir, judge="alternate") as server:  # two replies hold a grade, two do not
        assert cli([*argv, "--scorer", f"llm-judge:{server.url}"]) == 0
    scores = read_jsonl(tmp_path / "j" / "scores.jsonl")
    assert sum(r["score"] is None for r in scores) == 2
    assert all(r["judge_reply"] == "I cannot decide." for r in scores if r["score"] is None)
    assert strict_json(tmp_path / "j" / "aggregate.json")["unscored"] == 2
    said = "".join(capsys.readouterr())
    assert f"--cache {tmp_path / 'j' / 'cache.jsonl'}` asks only them again" in said
    with FaultyServer(tiny_model_dir, judge="grade") as server:  # what the line says: a new --out, the old cache
        assert cli(["judge", str(tmp_path / "gen.jsonl"), "--out", str(tmp_path / "j-new"), "--cache",
                    str(tmp_path / "j" / "cache.jsonl"), "--scorer", f"llm-judge:{server.url}"]) == 0
        assert server.posts == 2 and strict_json(tmp_path / "j-new" / "aggregate.json")["unscored"] == 0
    with FaultyServer(tiny_model_dir, judge="grade") as server:  # --overwrite asks everything again
        assert cli([*argv, "--scorer", f"llm-judge:{server.url}", "--overwrite"]) == 0
        assert server.posts == 4
    cache = tmp_path / "kept-cache.jsonl"  # a cache kept apart: only what held no grade is asked again
    with FaultyServer(tiny_model_dir, judge="alternate") as server:
        assert cli([*argv, "--scorer", f"llm-judge:{server.url}", "--overwrite", "--cache", str(cache)]) == 0
    with FaultyServer(tiny_model_dir, judge="grade") as server:
        assert cli([*argv, "--scorer", f"llm-judge:{server.url}", "--overwrite", "--cache", str(cache)]) == 0
        assert server.posts == 2
        assert cli([*argv, "--scorer", f"llm-judge:{server.url}", "--overwrite", "--cache", str(cache)]) == 0
        assert server.posts == 2  # every verdict cached now
    assert all(r["score"] is not None for r in read_jsonl(tmp_path / "j" / "scores.jsonl"))
    aggregate = strict_json(tmp_path / "j" / "aggregate.json")
    assert aggregate["unscored"] == 0 and aggregate["requests"]["requests"] == 1  # the model list only
    good = cache.read_bytes()  # a final line torn by a kill mid-append: dropped with a warning, asked again
    cache.write_bytes(good + b'{"key": "ab12", "sco')
    with FaultyServer(tiny_model_dir, judge="grade") as server:
        assert cli([*argv, "--scorer", f"llm-judge:{server.url}", "--overwrite", "--cache", str(cache)]) == 0
        assert server.posts == 0
    assert "dropped its last line" in capsys.readouterr().err and cache.read_bytes() == good
    gen_before = (tmp_path / "gen.jsonl").read_bytes()
    for given, needle in ((tmp_path / "gen.jsonl", "is the generations file"),
                          (tmp_path / "j" / "scores.jsonl", "is not a score cache entry")):
        with FaultyServer(tiny_model_dir, judge="grade") as server:  # never read as a cache, never appended to
            one_line_error(capsys, [*argv, "--scorer", f"llm-judge:{server.url}", "--overwrite", "--cache",
                                    str(given)], needle)
    assert (tmp_path / "gen.jsonl").read_bytes() == gen_before
    with FaultyServer(tiny_model_dir, judge="exponent") as server:  # "Rating: 1e3" is no grade (was 1.0)
        one_line_error(capsys, ["judge", str(tmp_path / "gen.jsonl"), "--out", str(tmp_path / "e"), "--scorer",
                                f"llm-judge:{server.url}"], "no sample could be scored")
    with FaultyServer(tiny_model_dir, judge="none") as server:
        one_line_error(capsys, ["judge", str(tmp_path / "gen.jsonl"), "--out", str(tmp_path / "k"), "--scorer",
                                f"llm-judge:{server.url}"], "the judge's replies are in")
    assert [e["reply"] for e in read_jsonl(tmp_path / "k" / "cache.jsonl")] == ["I cannot decide."] * 4


def test_pairwise_judge_position_bias_gives_no_interval_and_ties_count_half(tmp_path, capsys, tiny_model_dir):
    for name, texts in (("mine", ["a long answer"] * 5), ("base", ["short"] * 5)):
        write_jsonl(tmp_path / f"{name}.jsonl", [{"prompt_id": str(i), "prompt": f"q{i}", "text": t}
                                                 for i, t in enumerate(texts)])
    argv = ["judge", str(tmp_path / "mine.jsonl"), "--against", str(tmp_path / "base.jsonl")]
    for judge in ("b", "neither-b"):  # always the second position ("output addresses" names no output (a))
        with FaultyServer(tiny_model_dir, judge=judge) as server:
            assert cli([*argv, "--scorer", f"llm-judge-pairwise:{server.url}", "--out", str(tmp_path / judge)]) == 0
        pairwise = strict_json(tmp_path / judge / "aggregate.json")["pairwise"]
        assert pairwise["win_rate"] == 0.5 and pairwise["low"] is None and pairwise["lc_low"] is None
        assert "follow position" in pairwise["no_interval"] and pairwise["verdicts"]["second"] == 10
    assert "no interval" in "".join(capsys.readouterr())
    with FaultyServer(tiny_model_dir, judge="tie") as server:  # declared ties: half a win each, not failures
        assert cli([*argv, "--scorer", f"llm-judge-pairwise:{server.url}", "--out", str(tmp_path / "t")]) == 0
    pairwise = strict_json(tmp_path / "t" / "aggregate.json")["pairwise"]
    assert pairwise["ties"] == 5 and pairwise["unscored"] == 0 and pairwise["verdicts"]["tie"] == 10
    assert pairwise["low"] is None and "same outcome" in pairwise["no_interval"]
    with FaultyServer(tiny_model_dir, judge="a-or-none") as server:  # half the replies name nothing
        code = cli([*argv, "--scorer", f"llm-judge-pairwise:{server.url}", "--out", str(tmp_path / "x")])
    assert code == 0
    rows = read_jsonl(tmp_path / "x" / "scores.jsonl")
    assert all(r["score"] is None or 0 <= r["score"] <= 1 for r in rows)
    assert not any(e["score"] is None for e in read_jsonl(tmp_path / "x" / "cache.jsonl") if "reply" not in e)
