"""The README's examples run as written: every command block of "Using rapref", in order, from a fresh checkout.

Each line is a `rapref` command (continuations joined, comments skipped), run in-process through the CLI in a
scratch copy of the repository layout; a command that fails, or a line that is not a `rapref` command, fails the
test, so the README cannot drift from what rapref does.
"""

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Using rapref\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
            if line:
                commands.append(line)
    return commands


def test_using_rapref_runs_as_written(tmp_path, monkeypatch, capsys):
    from rapref.cli import main

    commands = readme_commands()
    assert len(commands) >= 25 and commands[0].startswith("rapref model tiny")
    for name in ("recipes", "examples", "tests", "configs"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "rapref", f"README command is not a rapref command: {command}"
        code = main(argv[1:])
        captured = capsys.readouterr()
        assert code == 0, f"{command}\n{captured.err[-2000:]}"
    assert (tmp_path / "runs/mt_bench/model_answer/my-model.jsonl").is_file()
    assert "## How to prompt it" in captured.out  # the last block prints the model card
