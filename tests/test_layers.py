"""The package's layers, read from its imports (those inside functions included):

    core        rapref's own modules at the top of the package (io, settings, goals, prompting, models, stats, ...)
    runs        rapref.runs: the run-folder protocol every writer follows
    formats     rapref.formats: the files one stage hands to another, one module each
    inference   rapref.inference: engines shared by the stages (local sampling, servers, hosted APIs, log-probs)
    stages      rapref.data, train, generate, judge, diagnose, export: each meets the others only through formats
    studies     rapref.studies: the experiments, composed from the stages
    cli         rapref.cli, rapref.commands, rapref.__main__

A module may import its own layer and the layers below it; a stage imports no other stage; nothing imports in a
cycle; and few of rapref's own imports hide inside function bodies, each with its reason in a comment.
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
LAYERS = ("core", "runs", "formats", "inference", "stages", "studies", "cli")
STAGES = ("data", "train", "generate", "judge", "diagnose", "export")
NAMED = re.compile(r"rapref(\.\w+)+(:\w+)?$")  # "rapref.judge.llm_judge:LLMJudge", importlib.import_module("...")
MAX_INNER = 1  # imports of rapref's own modules inside function bodies (the issue allows 15; kept at what there is),
# each with a `# ...` reason on one of its lines


def modules(src: Path = SRC) -> dict[str, Path]:
    found = {}
    for path in sorted((src / "rapref").rglob("*.py")):
        name = ".".join(path.relative_to(src).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def layer(module: str) -> tuple[str, str | None]:
    """(layer, stage) of a module."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    if top in ("cli", "commands", "__main__"):
        return "cli", None
    if top in ("runs", "formats", "inference", "studies"):
        return top, None
    if top in STAGES:
        return "stages", top
    return "core", None


def comments(source: str) -> dict[int, str]:
    """The comments of a file by line: real ones only (a `#` inside a string is none)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {t.start[0]: t.string for t in tokens if t.type == tokenize.COMMENT}


def imports(path: Path, known: dict[str, Path], src: Path = SRC) -> list[tuple[str, int, bool, str]]:
    """(imported module, line, inside a function, the statement and its reason) for each import of a rapref module;
    the reason is a comment on any line of the statement (a parenthesised import spans several)."""
    name = ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
    source = path.read_text()
    notes = comments(source)
    found = []

    def target(module: str, alias: str | None) -> str:
        candidate = f"{module}.{alias}" if alias else module
        return candidate if candidate in known else module

    def text(node) -> str:
        reason = next((notes[n] for n in range(node.lineno, node.end_lineno + 1) if n in notes), "")
        return f"{ast.unparse(node)}  {reason}".rstrip()

    def visit(node, inner: bool):
        for child in ast.iter_child_nodes(node):
            is_function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == "rapref":
                        found.append((alias.name, child.lineno, inner, text(child)))
            elif isinstance(child, ast.ImportFrom):
                module = child.module or ""
                if child.level:  # relative: resolve against this module's package
                    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    module = ".".join(base[:len(base) - child.level + 1] + ([module] if module else []))
                if module.split(".")[0] == "rapref":
                    for alias in child.names:
                        found.append((target(module, alias.name), child.lineno, inner, text(child)))
            elif isinstance(child, ast.Constant) and isinstance(child.value, str) and NAMED.match(child.value):
                # a module named in a string: a registry's "module:Class" or importlib's argument, imported later
                found.append((target(child.value.split(":")[0], None), child.lineno, inner,
                              f"{child.value!r}  # imported by name"))
            visit(child, inner or is_function)

    visit(ast.parse(source), False)
    return found


def graph(src: Path = SRC) -> dict[str, list[tuple[str, int, bool, str]]]:
    known = modules(src)
    return {name: [(t, line, inner, text) for t, line, inner, text in imports(path, known, src) if t != name]
            for name, path in known.items()}


def upward(edges: dict) -> list[str]:
    """Every import that reaches up a layer or across stages."""
    bad = []
    for module, targets in edges.items():
        here, stage = layer(module)
        for target, line, _, _ in targets:
            there, other = layer(target)
            if LAYERS.index(there) > LAYERS.index(here):
                bad.append(f"{module}:{line} ({here}) imports {target} ({there})")
            elif here == there == "stages" and stage != other:
                bad.append(f"{module}:{line} (stage {stage}) imports {target} (stage {other}); stages meet only "
                           "through rapref.formats")
    return bad


def cycles(edges: dict) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in {t for t, *_ in edges.get(v, ())}:
            if w not in edges:
                continue
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            strong(v)
    return found


def inner_imports(edges: dict) -> list[str]:
    """One entry per import statement inside a function body."""
    return sorted({f"{module}:{line}: {text.strip()}" for module, targets in edges.items()
                   for _, line, inner, text in targets if inner})


def test_no_import_reaches_up_a_layer_or_across_stages():
    assert upward(graph()) == []


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_few_imports_hide_in_functions_and_each_says_why():
    inner = inner_imports(graph())
    assert len(inner) <= MAX_INNER, "\n".join(inner)
    assert unexplained(inner) == []


def unexplained(inner: list[str]) -> list[str]:
    return [line for line in inner if "  #" not in line.split(": ", 1)[1]]


@pytest.mark.parametrize("source, explained", [
    ("def f():\n    from rapref.io import (  # lazy: a reason on the first line\n        InputError)\n", True),
    ("def f():\n    from rapref.io import (\n        InputError,  # lazy: a reason on a later line\n    )\n", True),
    ("def f():\n    from rapref.io import InputError; x = '# not a comment'\n", False),
    ("def f():\n    from rapref.io import InputError\n", False),
])
def test_an_inner_imports_reason_is_a_real_comment_on_one_of_its_lines(tmp_path, source, explained):
    module = tmp_path / "src" / "rapref" / "probe.py"
    module.parent.mkdir(parents=True)
    module.write_text(source)
    (module.parent / "io.py").write_text("")
    inner = inner_imports(graph(tmp_path / "src"))
    assert len(inner) == 1 and (unexplained(inner) == []) is explained, inner


def test_help_imports_no_torch():
    """`rapref --help` builds every command's flags without the heavy libraries (the inner imports' reason)."""
    import subprocess

    code = ("import sys\nfrom rapref import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'transformers', 'trl', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr[-2000:]


@pytest.mark.parametrize("source, want", [
    ("from rapref.studies.harness import Arm\n", "(core) imports rapref.studies.harness (studies)"),
    ("def f():\n    from rapref.cli import main  # a reason\n", "(core) imports rapref.cli (cli)"),
])
def test_an_upward_import_added_on_purpose_fails(tmp_path, source, want):
    """The checks see an upward import, at the top or inside a function, in a copy of the tree."""
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(SRC / "rapref", copy / "rapref", ignore=shutil.ignore_patterns("__pycache__"))
    goals = copy / "rapref" / "goals.py"
    goals.write_text(goals.read_text() + "\n\n" + source)
    bad = upward(graph(copy))
    assert any(want in line for line in bad), bad


def test_a_stage_importing_another_stage_fails(tmp_path):
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(SRC / "rapref", copy / "rapref", ignore=shutil.ignore_patterns("__pycache__"))
    judge = copy / "rapref" / "judge" / "run.py"
    judge.write_text(judge.read_text() + "\n\nfrom rapref.generate.run import GenerateConfig  # noqa\n")
    assert any("(stage judge) imports rapref.generate.run (stage generate)" in line
               for line in upward(graph(copy)))


def test_a_cycle_fails(tmp_path):
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(SRC / "rapref", copy / "rapref", ignore=shutil.ignore_patterns("__pycache__"))
    io = copy / "rapref" / "io.py"
    io.write_text(io.read_text() + "\n\nfrom rapref.goals import GoalSpec  # noqa\n")
    assert any({"rapref.io", "rapref.goals"} <= set(c) for c in cycles(graph(copy)))
