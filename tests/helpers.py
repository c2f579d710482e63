"""The tests' shared helpers, one module for every folder of tests/ (pytest puts tests/ on the import path: `from
helpers import ...`); fixtures shared by all tests are in tests/conftest.py. Here: the repository's paths; small input
files (`write_jsonl`, `synthetic_pair_rows`, a researcher's own reward-model pairs, scored pairs to augment
(`pairs_file`, `pairs`), a prompt file, a judged goal sweep); a Python scorer (`length`); a stand-in OpenAI-compatible
server that misbehaves on purpose and the check of a one-line refusal; a goal-conditioned copy of the tiny model; a
tiny rapref training run; small configs declared with `rapref.settings` (`Study`, `Sampling`, `Legacy`) for the
settings and flags tests; TRL's padded DPO forward on a tiny Llama (the packing tests' reference); the pages whose
`rapref` commands run as written; a script loaded as a module.

The stand-in server, in this process, misbehaves one fault at a time. (The stand-in run as its own process, as
`--serve` starts one, is `tests/fixtures/stand_in_server.py`; a real vLLM is `tests/inference/test_serving.py`.)

    with FaultyServer(model_dir, fault="no-text", times=2) as server:   # the first 2 POSTs fault, then good replies
        cli(["generate", ..., "--endpoint", server.url])
        server.posts                                                      # completion and chat requests

Faults (on completions and chat; the model list always answers, /tokenize never): hang (accepts, never answers), trickle (a
byte at a time, never finishing), not-json, html, empty-body, no-choices, no-text, wrong-type, bad-utf8, cut (closed
mid-body), reset (closed before any reply), 429 (with Retry-After), 503, 400, no-content and content-int (chat),
empty-text (a valid empty answer), endless (a body without end, no
Content-Length), huge-length (Content-Length 10^12), long-text (100 KB of text whatever max_tokens asked). `after=N` lets N requests through before the fault starts. Good replies: a
completion's text is drawn from its seed; a chat reply follows `judge`: grade, a, b, tie, none, alternate (a grade
for even-numbered requests, none for odd) or a-or-none (alike, with "Output (a)"),
neither-b ("Neither output addresses the question, but (b) is better."), exponent ("Rating: 1e3"). Bound to 127.0.0.1; stopped on exit or after `lifetime` seconds.

A hosted server's manners, each off by default: `require_key=KEY` answers `key_status` (401, or 403) to any request
without the header `Authorization: Bearer KEY`, quoting the key it was given in its error body as some providers do
(`authorizations` lists the header each request carried); `usage="all"` adds
`usage: {prompt_tokens: 7, completion_tokens: 3}` to every chat reply (`"even"`: to even-numbered requests only);
`log=PATH` appends each request's line and body to PATH, as a server's request log does.
"""

from __future__ import annotations

import json
import random
import re
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rapref.io import InputError
from rapref.settings import SettingError, at_least, check, comma_separated, nested, setting

ROOT = Path(__file__).resolve().parents[1]  # the repository
FIXTURES = ROOT / "tests" / "fixtures"
STAND_IN = FIXTURES / "stand_in_server.py"  # the stand-in server as its own process (`--serve`)


def write_jsonl(path, rows):
    """Rows (dicts, or lines given as text as they are) to a JSONL file; returns its path."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def synthetic_pair_rows(n: int = 24, long_every: int = 0) -> list[dict]:
    rows = []
    for i in range(n):
        prompt = f"Question number {i}: what is {i} plus {i}?"
        if long_every and i % long_every == 0:
            prompt += " Please explain carefully." * 40
        rows.append({"prompt": prompt, "chosen": f"It is {2 * i}.", "rejected": f"Maybe {i + 3}?",
                     "score_chosen": float(6 + i % 5), "score_rejected": float(1 + i % 5)})
    return rows


# A researcher's own pairs scored by a reward model (`fixtures/pairs_reward_model.jsonl` has these columns): the
# flags that name them, and twelve rows of that layout with scores of either sign
OWN_PAIRS_COLUMNS = ["--prompt-column", "question", "--chosen-column", "better", "--rejected-column", "worse",
                     "--score-chosen-column", "s_better", "--score-rejected-column", "s_worse"]
OWN_PAIRS_ROWS = [{"question": f"q{i}", "better": f"b{i}", "worse": f"w{i}", "s_better": i / 3, "s_worse": -i / 2}
                  for i in range(12)]


def pairs_file(folder: Path, n: int = 12, tag: str = "") -> Path:
    """`folder/pairs.jsonl`: n scored pairs (chosen 8, rejected 3) whose prompts, `Question {tag}{i}?`, differ."""
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Question {tag}{i}?", "chosen": f"Good {tag}{i}.",
                                        "rejected": f"Bad {tag}{i}.", "score_chosen": 8.0,
                                        "score_rejected": 3.0}) + "\n" for i in range(n)))
    return path


def pairs(path, prompts):
    """One scored pair (chosen 8, rejected 3) per prompt given, repeats kept, to `path`."""
    path.write_text("".join(json.dumps({"prompt": p, "chosen": "good.", "rejected": "bad.", "score_chosen": 8,
                                        "score_rejected": 3}) + "\n" for p in prompts))
    return path


def write_prompts(path, n=3):
    """A prompt file of n prompts, `q0`: `Question 0?` and on."""
    path.write_text("".join(json.dumps({"prompt_id": f"q{i}", "prompt": f"Question {i}?"}) + "\n" for i in range(n)))
    return path


def sweep_rows(unscored: int = 0) -> list[dict]:
    """4 prompts x goals 1, 5, 10; the first `unscored` rows without a grade, as an LLM judge writes them."""
    rows = [{"prompt_id": f"p{i}", "goal": g, "sample": 0, "turn": 0, "prompt": "Q", "text": "A",
             "score": g / 2 + i / 10, "scorer": "llm"} for i in range(4) for g in (1.0, 5.0, 10.0)]
    for row in rows[:unscored]:
        row["score"] = None
    return rows


def length(row, text):
    """A Python scorer, `--scorer python:helpers:length`: the answer's length."""
    return float(len(text))


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client that hung up mid-fault is the point of the fault
        pass


class FaultyServer:
    def __init__(self, model: str, fault: str | None = None, times: int | None = None, after: int = 0,
                 judge: str = "grade", retry_after: str = "1", lifetime: float = 120.0, require_key: str | None = None,
                 key_status: int = 401, usage: str | None = None, log=None):
        self.model, self.fault, self.times, self.after = str(model), fault, times, after
        self.judge, self.retry_after, self.lifetime = judge, retry_after, lifetime
        self.require_key, self.key_status, self.usage, self.log = require_key, key_status, usage, log
        self.authorizations: list[str | None] = []
        self.posts = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def __enter__(self) -> FaultyServer:
        self.httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self._timer = threading.Timer(self.lifetime, self.stop)  # a bounded lifetime, whatever the test does
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._timer.cancel()
        self._stop.set()  # releases hanging handlers
        self.httpd.shutdown()
        self.httpd.server_close()

    def _faulty(self) -> tuple[int, bool]:
        with self._lock:
            self.posts += 1
            n = self.posts
        faulty = self.fault is not None and n > self.after and (self.times is None or n <= self.after + self.times)
        return n, faulty

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send(self, code: int, data: bytes, ctype: str = "application/json", headers: dict | None = None,
                     length: int | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data) if length is None else length))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

            def refuse_key(self, body: dict | None = None) -> bool:
                """The hosted manners: the request logged, its key checked (True: refused)."""
                given = self.headers.get("Authorization")
                with server._lock:
                    server.authorizations.append(given)
                    if server.log:
                        with open(server.log, "a", encoding="utf-8") as log:
                            log.write(f"{self.command} {self.path} {json.dumps(body)}\n")
                if server.require_key is None or given == f"Bearer {server.require_key}":
                    return False
                said = f"Incorrect API key provided: {given.removeprefix('Bearer ')}" if given else \
                    "You didn't provide an API key."
                self.send(server.key_status, json.dumps({"error": {"message": said}}).encode())
                return True

            def do_GET(self):
                if self.refuse_key():
                    return
                if self.path == "/v1/models":
                    return self.send(200, json.dumps({"data": [{"id": server.model, "root": server.model}]}).encode())
                self.send(404, b'{"message": "not found"}')

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.refuse_key(body):
                    return
                if self.path not in ("/v1/completions", "/v1/chat/completions"):  # /tokenize: not vLLM
                    return self.send(404, b'{"message": "not found"}')
                n, faulty = server._faulty()
                if faulty:
                    return self.fault(server.fault, body)
                if self.path == "/v1/completions":
                    rng = random.Random(f"{body.get('seed')}-{sum(body['prompt'])}")
                    text = " " + " ".join(rng.choice("red green blue amber violet".split()) for _ in range(3))
                    return self.send(200, json.dumps({"choices": [{"text": text, "prompt_token_ids": body["prompt"]}],
                                                      "usage": {"completion_tokens": 3}}).encode())
                judge = {"alternate": "grade", "a-or-none": "a"}.get(server.judge, server.judge) if n % 2 == 0 else \
                    "none" if server.judge in ("alternate", "a-or-none") else server.judge
                answer = {"grade": f"Fine. Rating: [[{1 + len(body['messages'][-1]['content']) % 10}]]",
                          "a": "Output (a)", "b": "Output (b)", "tie": "Tie.", "none": "I cannot decide.",
                          "neither-b": "Neither output addresses the question, but (b) is better.",
                          "exponent": "Fine. Rating: 1e3"}[judge]
                reply = {"choices": [{"message": {"role": "assistant", "content": answer}}]}
                if server.usage == "all" or server.usage == "even" and n % 2 == 0:
                    reply["usage"] = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
                self.send(200, json.dumps(reply).encode())

            def fault(self, fault: str, body: dict) -> None:
                chat = self.path.endswith("chat/completions")
                if fault == "hang":
                    server._stop.wait()
                    return
                if fault == "trickle":
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    while not server._stop.wait(0.05):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                    return
                if fault in ("endless", "huge-length"):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    if fault == "huge-length":
                        self.send_header("Content-Length", str(10 ** 12))
                    else:
                        self.send_header("Connection", "close")  # the body ends when the connection does: never
                    self.end_headers()
                    block = b'{"choices": [{"text": "' + b"x" * 65536
                    try:
                        while not server._stop.is_set():
                            self.wfile.write(block)
                    except OSError:  # the client stopped reading
                        pass
                    self.close_connection = True
                    return
                if fault == "long-text":
                    return self.send(200, json.dumps({"choices": [{"text": "y" * 100_000,
                                                                   "message": {"content": "y" * 100_000}}]}).encode())
                if fault in ("cut", "reset"):
                    if fault == "cut":
                        self.send(200, b'{"choices": [{"te', length=200)  # promised 200 bytes, sent 16
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault in ("429", "503", "400"):
                    return self.send(int(fault), b'{"error": {"message": "not now"}}',
                                     headers={"Retry-After": server.retry_after} if fault == "429" else None)
                replies = {
                    "not-json": b'{"choices": [{"text": "half',
                    "html": b"<!DOCTYPE html><html><body>Welcome to nginx!</body></html>",
                    "empty-body": b"",
                    "no-choices": b'{"choices": []}',
                    "no-text": b'{"choices": [{"index": 0, "message": {"content": "chat"}}]}' if not chat else
                               b'{"choices": [{"index": 0, "text": "completion"}]}',
                    "wrong-type": b'{"choices": [{"text": 42, "message": {"content": ["x"]}}]}',
                    "bad-utf8": b'{"choices": [{"text": "\xff\xfe", "message": {"content": "\xff"}}]}',
                    "no-content": b'{"choices": [{"message": {"role": "assistant", "content": null}}]}',
                    "content-int": b'{"choices": [{"message": {"role": "assistant", "content": 7}}]}',
                    "empty-text": b'{"choices": [{"text": "", "message": {"content": ""}}]}',
                }
                self.send(200, replies[fault], ctype="text/html" if fault == "html" else "application/json")

        return Handler


def one_line_error(capsys, argv: list[str], needle: str) -> str:
    """Run the CLI; it must refuse with exit 2 and one line (no traceback) holding `needle`."""
    from rapref.cli import main as cli

    capsys.readouterr()
    code = cli(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (argv, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err
    return err


def wait_for(condition, timeout: float = 60.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


def goal_policy(model_dir, folder, placement: str, chat: bool = True):
    """A copy of a tiny model as a policy trained with `placement` (its goal settings), with or without a chat
    template."""
    import shutil

    from rapref.goals import GoalSpec
    from rapref.models import load_tokenizer

    shutil.copytree(model_dir, folder)
    GoalSpec(placement=placement).save(folder)
    if not chat:
        tokenizer = load_tokenizer(str(folder))
        tokenizer.chat_template = None
        tokenizer.save_pretrained(folder)
        config = folder / "tokenizer_config.json"
        settings = json.loads(config.read_text())
        settings.pop("chat_template", None)
        config.write_text(json.dumps(settings))
        (folder / "chat_template.jinja").unlink(missing_ok=True)
    return folder


def train_tiny(tmp_path, tiny_model_dir, relabeled_dir, *overrides):
    """`rapref train` for 4 steps on the tiny model into tmp_path/run; returns the run folder."""
    from rapref.cli import main as cli

    out = tmp_path / "run"
    args = ["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}", f"output_dir={out}",
            "data.max_prompt_length=160", "training.max_length=224", "training.per_device_train_batch_size=2",
            "training.max_steps=4", "training.disable_tqdm=true", *overrides]
    assert cli(args) == 0
    return out


# --- TRL's padded DPO forward on a tiny Llama: the reference the packed forward is compared with ---------------------


def tiny_llama(seed=0, attn="sdpa"):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         attn_implementation=attn)
    return LlamaForCausalLM(config).eval()


def preference_batch(n_pairs, seed, max_length=None):
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    rng = random.Random(seed)

    def tokens(low, high):
        return [rng.randrange(1, 97) for _ in range(rng.randint(low, high))]

    examples = [{"prompt_ids": tokens(1, 12), "chosen_ids": tokens(1, 15), "rejected_ids": tokens(1, 15)}
                for _ in range(n_pairs)]
    batch = DataCollatorForPreference(pad_token_id=0, max_length=max_length)(examples)
    batch["labels"] = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    return batch


def fused(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1")):  # what TRL's DPO asks of the policy
    from trl.trainer.utils import add_fused_lm_head

    add_fused_lm_head(model, outputs=outputs)
    return model


def fused_forward(model, batch):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                 use_cache=False, fused_lm_head=True)


# --- the pages whose examples run as written ------------------------------------------------------------------------

PAGES = ("README.md", "docs/data.md", "docs/training.md", "docs/evaluation.md", "docs/reliability.md",
         "docs/demo.md", "docs/real-model.md", "docs/performance.md")
LONG_RUNS = ("docs/demo.md", "docs/real-model.md", "docs/performance.md")
CHAIN = tuple(p for p in PAGES if p not in LONG_RUNS)  # the order a reader follows


def page_commands(page: str) -> list[str]:
    text = (ROOT / page).read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
            if line:
                commands.append(line)
    return commands


def load_script(path):
    """A script of the repository (benchmarks/, scripts/) loaded as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# -- small configs for the settings and flags tests (tests/core/test_settings.py, tests/commands/test_flags.py) --

@dataclass
class Sampling:
    temperature: float = setting(0.7, "sampling temperature", rule=at_least(0))
    max_new_tokens: int = setting(256, "longest answer, in tokens", rule=at_least(1))
    seed: int = setting(0, "sampling seed")

    def __post_init__(self):
        check(self)


@dataclass
class Legacy:
    """A config whose check predates rapref.settings: its message names a flag."""
    top_k: int = setting(5, "top-k")

    def __post_init__(self):
        if self.top_k < 1:
            raise InputError(f"--top-k must be at least 1, got {self.top_k}")


@dataclass
class Study:
    out: str = setting(help="run folder")
    samples: int = setting(4, "samples per prompt", aliases=("num-samples",), rule=at_least(2))
    mode: str = setting("relabeled", "which data", choices=("relabeled", "original"))
    seeds: tuple[int, ...] = setting((1, 2), "seeds", parse=comma_separated(int))
    quick: bool = setting(False, "a smoke run")
    note: str | None = setting(None, "a free note")
    sampling: Sampling = nested(Sampling, flags={"temperature": None, "max_new_tokens": "tokens"}, temperature=1.0)
    legacy: Legacy = nested(Legacy)
    workers: int = setting(1, "processes", rule=at_least(1))

    def __post_init__(self):
        check(self)
        if self.workers > 1 and self.quick:
            raise SettingError("{} and {} do not go together", "workers", "quick")
