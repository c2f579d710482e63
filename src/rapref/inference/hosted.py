"""A hosted server's key and the tokens its replies report (used by `rapref.inference.serving.Endpoint`).

    OPENAI_API_KEY=... rapref judge gen.jsonl --scorer llm-judge:https://api.openai.com/v1 \
        --judge-model gpt-4o-mini --api-key-env OPENAI_API_KEY --out runs/graded

- **The key is read from an environment variable the user names** (`api_key_env`, `--api-key-env NAME`), never from
  the command line, and sent only as the `Authorization: Bearer` header: never in a URL or a request body (what a
  server logs), never in a cache key, a record, a log line or an error message. Outputs record the variable's NAME.
  A name that is not one (`[A-Z_][A-Z0-9_]*`, capitals as variables are written) is refused without repeating it:
  a key pasted in its place must not reach a record. A named variable that is unset or empty is refused before any
  request.
- **A 401 or 403 is one line, not retried**: the server refused the key (or there was none): it names the variable
  to set or check. Any text a server sends back (an error body quoting the key it was given) has the key blanked.
- **Token usage**: the replies' `usage.prompt_tokens` / `usage.completion_tokens`, summed over the run; a server
  that reports none is recorded as "not reported", never as zero.
"""

from __future__ import annotations

import os
import re
import threading

from rapref.io import InputError

KEY_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
AUTH_REFUSED = (401, 403)
HIDDEN = "[key hidden]"


def check_key_name(name: str) -> None:
    """Refuse a value that is not an environment variable's name, without repeating it (it may be the key itself).

    >>> check_key_name("OPENAI_API_KEY")  # passes; "sk-abc123" or "openai_key" is refused
    """
    if not isinstance(name, str) or not KEY_NAME.fullmatch(name):
        raise InputError("api key env: expected the NAME of an environment variable that holds the key (capitals, "
                         "digits and _, e.g. OPENAI_API_KEY), not the key itself; the value given is not one and is "
                         "not repeated here")


def read_api_key(name: str | None) -> str | None:
    """The key held by the environment variable `name` (None: no key is sent); unset or empty is refused."""
    if name is None:
        return None
    check_key_name(name)
    key = os.environ.get(name, "")
    if not key.strip():
        raise InputError(f"api key env {name}: the environment variable is {'empty' if name in os.environ else 'unset'}"
                         f"; export {name}=<the server's key> before running (rapref reads the key from it and "
                         "never writes it anywhere)")
    return key.strip()


def auth_headers(key: str | None) -> dict:
    return {"Authorization": f"Bearer {key}"} if key else {}


def auth_refusal(status: int, said: str, name: str | None) -> str:
    """Why a 401 / 403 ends the run, and what to do: set the key's variable, or check the one named."""
    if name:
        todo = (f"check that the environment variable {name} holds a valid key for this server"
                + (" and that the key may use this model" if status == 403 else ""))
    else:
        todo = ("it wants an API key: put the key in an environment variable and name it with --api-key-env NAME "
                "(e.g. --api-key-env OPENAI_API_KEY)")
    return f"the server answered {status} ({said}): the key was refused, not retried; {todo}"


def redact(text: str, key: str | None) -> str:
    """`text` with every occurrence of the key (and of its long pieces a server may quote) blanked.

    >>> redact("Incorrect API key provided: sk-abcdef0123456789", "sk-abcdef0123456789")
    'Incorrect API key provided: [key hidden]'
    """
    if not key:
        return text
    text = text.replace(key, HIDDEN)
    if len(key) >= 16:  # a provider quoting the key's start or end ("sk-abcd...6789"): long pieces hidden too
        for piece in {key[:12], key[-12:]}:
            text = text.replace(piece, HIDDEN)
    return text


class TokenUsage:
    """The tokens the replies report (`usage.prompt_tokens`, `usage.completion_tokens`), summed; thread-safe.

    >>> u = TokenUsage(); u.add({"prompt_tokens": 7, "completion_tokens": 3}); u.add(None); u.line()
    '7 prompt + 3 completion tokens (1 of 2 replies reported no usage)'
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.replies = self.reported = self.prompt_tokens = self.completion_tokens = 0

    def add(self, usage) -> None:
        prompt, completion = (usage.get("prompt_tokens"), usage.get("completion_tokens")) \
            if isinstance(usage, dict) else (None, None)
        counted = all(type(n) is int and n >= 0 for n in (prompt, completion))
        with self._lock:
            self.replies += 1
            if counted:
                self.reported += 1
                self.prompt_tokens += prompt
                self.completion_tokens += completion

    def as_dict(self) -> dict:
        with self._lock:
            known = self.reported > 0
            return {"replies": self.replies, "replies_reporting_usage": self.reported,
                    "prompt_tokens": self.prompt_tokens if known else "not reported",
                    "completion_tokens": self.completion_tokens if known else "not reported"}

    def line(self) -> str:
        return usage_line(self.as_dict())


def usage_line(usage: dict) -> str:
    """A usage record in words: sums, "not reported", or no replies at all (every answer from the cache)."""
    if not usage.get("replies"):
        return "no replies, no tokens"
    if usage["prompt_tokens"] == "not reported":
        return "tokens not reported by the server"
    missing = usage["replies"] - usage["replies_reporting_usage"]
    return (f"{usage['prompt_tokens']:,} prompt + {usage['completion_tokens']:,} completion tokens"
            + (f" ({missing} of {usage['replies']} replies reported no usage)" if missing else ""))


def add_usage(before: dict | None, now: dict) -> dict:
    """Two sessions' usage records summed (a run resumed from an earlier session's answers)."""
    if not before:
        return dict(now)
    total = {k: before.get(k, 0) + now[k] for k in ("replies", "replies_reporting_usage")}
    for k in ("prompt_tokens", "completion_tokens"):
        counts = [v for v in (before.get(k), now[k]) if isinstance(v, int)]
        total[k] = sum(counts) if counts else "not reported"
    return total
