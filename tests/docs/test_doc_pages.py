"""The README's and the docs pages' commands, as shown: the pages in `PAGES` are every page there is; in `LONG_RUNS`
(runs of minutes to hours: the demo, the real model, the benchmarks) blocks are rapref commands, not run; every
`rapref` command in any block of any page, run or shown, parses with rapref's own parser (the flags exist as
written); a smoke run (`--quick`) never writes into a folder a full run of the same command uses (the settings guard
would refuse the full run); every page says how the environment is entered; the pages cover the walkthrough and every
stage. (The pages' commands run as written in tests/e2e/test_walkthrough.py.)
"""

import re
import shlex

import pytest

from helpers import LONG_RUNS, PAGES, ROOT, page_commands

ENTER = ("source .venv/bin/activate", ".venv/bin/rapref")


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
