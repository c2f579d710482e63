"""The README's and the docs pages' examples run as written, as a user runs them: the README's walkthrough, then
every docs page in order, in one folder (the pages chain); and each page on its own from a fresh checkout.

Each line is a `rapref` command (continuations joined, comments skipped), run in-process through the CLI in a
scratch copy of the repository layout; a command that fails, or a line that is not a `rapref` command, fails the
test, so the pages cannot drift from what rapref does. Blocks tagged `sh` or `text` are shown, not run. The pages in
`LONG_RUNS` start runs of minutes to hours (the demo, the real model, the benchmarks): their blocks are checked to be
rapref commands, not run. Every `rapref` command in any block of any page, run or shown, parses with rapref's own
parser (the flags exist as written); a smoke run (`--quick`) never writes into a folder a full run of the same
command uses (the settings guard would refuse the full run); and every page says how the environment is entered.
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


def shown_commands(page: str) -> list[tuple[str, list[str]]]:
    """(block language, argv after `rapref`) of every rapref command in any fenced block of the page, run or shown:
    after environment settings and `nohup`, or behind `-m rapref` (accelerate, torchrun); redirections cut."""
    text = re.sub(r"<!-- ([\w-]+):start.*?<!-- \1:end -->", "", (ROOT / page).read_text(), flags=re.S)
    found = []
    for lang, block in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
            for part in line.split(" && "):
                command = re.match(r"(?:[A-Z_]+=\S*\s+)*(?:nohup\s+)?(?:\S+\s+-m\s+|\.venv/bin/)?rapref\s+(.*)",
                                   re.sub(r"^.*?\s-m rapref\s", "rapref ", part))
                if command:
                    argv = shlex.split(command.group(1))
                    cut = [i for i, word in enumerate(argv) if word in (">", "2>&1", "&", "|")]
                    found.append((lang, argv[:cut[0]] if cut else argv))
    return found


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


@pytest.mark.parametrize("page", PAGES)
def test_every_page_says_how_to_enter_the_environment(page):
    text = (ROOT / page).read_text()
    assert all(e in text for e in ENTER), f"{page}: say how the environment is entered ({' or '.join(ENTER)})"


@pytest.mark.parametrize("page", PAGES)
def test_every_command_shown_parses_as_written(page, capsys):
    from rapref.cli import build_parser

    parser, _ = build_parser()
    for lang, argv in shown_commands(page):
        if argv[:1] == ["lm-eval"]:  # lm-eval's own flags, handed on unparsed
            continue
        try:
            parser.parse_args(argv)
        except SystemExit:
            raise AssertionError(f"{page} ({lang} block): rapref {shlex.join(argv)}\n{capsys.readouterr().err}")


def test_smoke_runs_use_their_own_folders():
    """A `--quick` run into a folder a full run of the same command also uses would have the full run refused by the
    settings guard (or, with --overwrite, the smoke run's stages thrown away): every page gives each its own."""
    from rapref.cli import build_parser
    from rapref.commands.demo import default_out

    parser, _ = build_parser()
    runs = {True: set(), False: set()}
    for page in PAGES:
        inline = [("inline", shlex.split(c)) for c in re.findall(r"`rapref ([^`]*--quick[^`]*)`", (ROOT / page).read_text())]
        for lang, argv in shown_commands(page) + inline:
            if argv[:1] == ["lm-eval"]:
                continue
            args = parser.parse_args(argv)
            out = default_out(args) if args.command == "demo" else getattr(args, "out", None)
            key = (args.command, getattr(args, "grid", None), out)
            runs[bool(getattr(args, "quick", False))].add(key)
    runs[False].add(("demo", None, default_out(parser.parse_args(["demo"]))))  # `make demo`
    assert runs[True], "no smoke run found on the pages"
    assert not runs[True] & runs[False], runs[True] & runs[False]


def test_the_pages_cover_the_walkthrough_and_every_stage():
    walkthrough = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[0]
    stages = [line.split()[1] for line in walkthrough.splitlines() if line.startswith("rapref")]
    assert stages[2:] == ["augment", "show", "train", "generate", "judge", "diagnose"]
    commands = " ".join(c for page in PAGES for c in page_commands(page))
    for command in ("augment", "train", "generate", "judge", "diagnose", "export", "prompts", "onpolicy", "model",
                    "show"):
        assert f"rapref {command} " in commands, command
