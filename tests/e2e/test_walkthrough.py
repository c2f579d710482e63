"""The README's and the docs pages' examples run as written, as a user runs them: the README's walkthrough, then
every docs page in order, in one folder (the pages chain); and each page on its own from a fresh checkout.

Each line is a `rapref` command (continuations joined, comments skipped), run in-process through the CLI in a
scratch copy of the repository layout; a command that fails, or a line that is not a `rapref` command, fails the
test, so the pages cannot drift from what rapref does. Blocks tagged `sh` or `text` are shown, not run. The pages
that start runs of minutes to hours (`LONG_RUNS`: the demo, the real model, the benchmarks) are not run; their
commands are checked in tests/docs/test_doc_pages.py.
"""

import shlex
from pathlib import Path

import pytest

from helpers import CHAIN, ROOT, page_commands


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


def test_the_walkthrough_then_every_page_in_order_in_one_folder(tmp_path, monkeypatch, capsys):
    """What a reader does: the README, then data, training, evaluation, reliability, in the same folder."""
    run_pages(CHAIN, tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize("page", [p for p in CHAIN[1:] if page_commands(p)])
def test_page_runs_on_its_own(page, tmp_path, monkeypatch, capsys):
    run_pages([page], tmp_path, monkeypatch, capsys)
