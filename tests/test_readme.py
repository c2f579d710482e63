"""The README's and the docs pages' examples run as written, as a user runs them: the README's walkthrough, then
every docs page in order, in one folder (the pages chain); and each page on its own from a fresh checkout.

Each line is a `rapref` command (continuations joined, comments skipped), run in-process through the CLI in a
scratch copy of the repository layout; a command that fails, or a line that is not a `rapref` command, fails the
test, so the pages cannot drift from what rapref does. Blocks tagged `sh` or `text` are shown, not run. The pages in
`LONG_RUNS` start runs of minutes to hours (the demo, the real model, the benchmarks): their blocks are checked to be
rapref commands, not run.
"""

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("README.md", "docs/data.md", "docs/training.md", "docs/evaluation.md", "docs/reliability.md",
         "docs/demo.md", "docs/real-model.md", "docs/performance.md")
LONG_RUNS = ("docs/demo.md", "docs/real-model.md", "docs/performance.md")
CHAIN = tuple(p for p in PAGES if p not in LONG_RUNS)  # the order a reader follows
ENTER = ("source .venv/bin/activate", ".venv/bin/rapref")


def page_commands(page: str) -> list[str]:
    text = (ROOT / page).read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
            if line:
                commands.append(line)
    return commands


def run_pages(pages, folder: Path, monkeypatch, capsys) -> None:
    from rapref.cli import main

    for name in ("recipes", "examples", "tests", "configs", "docs/demo-grid.yaml"):
        if not (folder / name).exists():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).symlink_to(ROOT / name)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for page in pages:
        for command in page_commands(page):
            argv = shlex.split(command)
            assert argv[0] == "rapref", f"{page}: not a rapref command: {command}"
            code = main(argv[1:])
            captured = capsys.readouterr()
            assert code == 0, f"{page}: {command}\n{captured.err[-2000:]}"


def test_every_page_is_listed():
    pages = {"README.md", *(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))}
    assert pages == set(PAGES)


def test_the_walkthrough_then_every_page_in_order_in_one_folder(tmp_path, monkeypatch, capsys):
    """What a reader does: the README, then data, training, evaluation, reliability, in the same folder."""
    run_pages(CHAIN, tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize("page", [p for p in CHAIN[1:] if page_commands(p)])
def test_page_runs_on_its_own(page, tmp_path, monkeypatch, capsys):
    run_pages([page], tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize("page", LONG_RUNS)
def test_long_run_pages_show_rapref_commands(page):
    for command in page_commands(page):
        assert command.split()[0] in ("rapref", "python"), f"{page}: {command}"


@pytest.mark.parametrize("page", [p for p in PAGES if page_commands(p)])
def test_every_page_says_how_to_enter_the_environment(page):
    text = (ROOT / page).read_text()
    assert any(e in text for e in ENTER) or "same as `make demo`" in text or "make setup" in text, page


def test_the_pages_cover_the_walkthrough_and_every_stage():
    walkthrough = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[0]
    stages = [line.split()[1] for line in walkthrough.splitlines() if line.startswith("rapref")]
    assert stages[2:] == ["augment", "show", "train", "generate", "judge", "diagnose"]
    commands = " ".join(c for page in PAGES for c in page_commands(page))
    for command in ("augment", "train", "generate", "judge", "diagnose", "export", "prompts", "onpolicy", "model",
                    "show"):
        assert f"rapref {command} " in commands, command
