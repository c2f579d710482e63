"""The command line itself (`rapref.cli`): a broken import inside rapref is shown, a missing third-party package makes
its command unavailable; `--quiet` and `--log-level`; every command's help renders, and teaches; a smoke run's
default folder. Bad input and bad flags (a policy without goal settings, an unknown or unloadable scorer, goals
outside the scale) are one line (exit 2); a bug is shown as a bug, with its traceback (exit 1)."""

import json

import pytest

from helpers import one_line_error, pairs_file, write_prompts
from rapref.cli import main as cli


def _failing_train_import(monkeypatch, error: ImportError) -> None:
    """Make importing `rapref.commands.train` raise `error`, as a broken module or a missing package would."""
    import importlib

    real = importlib.import_module

    def fake(name, *args, **kwargs):
        if name == "rapref.commands.train":
            raise error
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake)


def test_an_import_error_inside_rapref_is_not_hidden(monkeypatch):
    """A broken import in rapref is a bug to show, not "command not available"."""
    from rapref import cli

    _failing_train_import(monkeypatch, ImportError("cannot import name 'gone' from 'rapref.train.run'",
                                                   name="rapref.train.run"))
    with pytest.raises(ImportError, match="gone"):
        cli.build_parser()


def test_a_missing_third_party_package_makes_its_command_unavailable(monkeypatch, capsys):
    from rapref import cli

    _failing_train_import(monkeypatch, ModuleNotFoundError("No module named 'trl'", name="trl"))
    assert cli.main(["train"]) == 2
    assert "not available" in capsys.readouterr().err


def test_quiet_flag_leaves_only_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAPREF_QUIET", raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert cli(["model", "tiny", "--out", str(tmp_path / "t"), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert cli(["model", "tiny", "--out", str(tmp_path / "u"), "--log-level", "info"]) == 0
    assert "rapref model tiny" in capsys.readouterr().out


def test_every_commands_help_renders():
    """argparse expands `%` in help texts when --help is asked: a bare one (a share written as 10%) is a traceback."""
    import argparse

    from rapref.cli import build_parser

    def walk(parser, name):
        parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, child in action.choices.items():
                    yield from walk(child, f"{name} {sub}")
        yield name

    assert len(list(walk(build_parser()[0], "rapref"))) > 15


def test_help_that_teaches(capsys, tmp_path, tiny_model_dir, relabeled_dir):
    from rapref import __version__

    assert cli(["--version"]) == 0 and capsys.readouterr().out.strip() == f"rapref {__version__}"
    assert cli(["--help"]) == 0
    top = capsys.readouterr().out
    assert "relabel scored pairs with goals" in top and "make a tiny local model" in top
    assert cli(["generate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.7)" in text and "(default: 256)" in text
    assert cli(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert "algorithm:" in text and "beta: 0.1" in text and "max_prompt_length: 512" in text
    assert cli(["generate", "x", "--prompts", "p", "--out", "o", "--temprature", "1"]) == 2
    assert "did you mean --temperature?" in capsys.readouterr().err
    assert cli(["trian"]) == 2 and "did you mean 'train'?" in capsys.readouterr().err
    assert cli(["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}", "algorithm.beta=0.3",
                "--show-config"]) == 0
    import yaml

    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["algorithm"]["beta"] == 0.3 and shown["lora"]["r"] == 16 and shown["seed"] == 42


def test_a_smoke_run_has_its_own_default_folder():
    from rapref.cli import build_parser
    from rapref.commands.demo import config_from_args

    parser, _ = build_parser()
    assert config_from_args(parser.parse_args(["demo", "--quick"])).out == "runs/demo-quick"
    assert config_from_args(parser.parse_args(["demo"])).out == "runs/demo"


def test_bad_input_one_line_errors(tmp_path, tiny_model_dir, trained_dir, capsys):
    prompts = write_prompts(tmp_path / "p.jsonl")
    gens = tmp_path / "g.jsonl"
    gens.write_text(json.dumps({"prompt_id": "q0", "goal": None, "sample": 0, "prompt": "p", "text": "t"}) + "\n")
    cases = [
        (["generate", str(tiny_model_dir), "--prompts", str(prompts), "--out", str(tmp_path / "x.jsonl")],
         "no rapref_goal.json"),
        (["generate", str(trained_dir), "--prompts", str(tmp_path / "empty.jsonl"), "--out",
          str(tmp_path / "x.jsonl")], "empty.jsonl"),
        (["judge", str(gens), "--scorer", "reward-model:" + str(tmp_path / "missing"), "--out",
          str(tmp_path / "j")], "no such model folder"),
        (["judge", str(gens), "--scorer", "python:nowhere:fn", "--out", str(tmp_path / "j")], "cannot load"),
        (["judge", str(gens), "--scorer", "oracle", "--out", str(tmp_path / "j")], "unknown scorer"),
        (["judge", str(prompts), "--scorer", "oracle", "--out", str(tmp_path / "j")], "not a generations file"),
    ]
    (tmp_path / "empty.jsonl").write_text("")
    for argv, needle in cases:
        capsys.readouterr()
        assert cli(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err


def test_goal_flags_are_checked(tmp_path, capsys, trained_dir):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "Hi?"}) + "\n")
    base = ["generate", str(trained_dir), "--prompts", str(prompts), "--out", str(tmp_path / "g.jsonl")]
    one_line_error(capsys, base + ["--goals", "15"], "outside the policy's score scale 1-10")
    one_line_error(capsys, base + ["--goals", "10", "--no-goal"], "contradict")
    src = pairs_file(tmp_path)
    one_line_error(capsys, ["augment", str(src), "--out", str(tmp_path / "d"), "--scale", "10-1"], "low end")
    one_line_error(capsys, ["augment", str(src), "--out", str(tmp_path / "d"), "--prompt-column", "promt"],
                   "no such column 'promt'")


def test_a_bug_is_not_reported_as_bad_input(monkeypatch, capsys):
    import rapref.cli as cli_module

    real = cli_module.build_parser

    def build():
        parser, runners = real()
        runners["prompts"] = lambda args: {}["a bug"]
        return parser, runners

    monkeypatch.setattr(cli_module, "build_parser", build)
    capsys.readouterr()
    code = cli_module.main(["prompts", "--split", "train", "--out", "x.jsonl"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" in err and "KeyError" in err and "this is a bug" in err


def test_a_commands_flag_before_the_command_is_said_to_go_after_it(capsys):
    one_line_error(capsys, ["--quiet", "train"], "rapref: error: --quiet goes after the command: rapref train --quiet")
    one_line_error(capsys, ["--quiet", "model", "tiny", "--out", "t"], "after the command: rapref model tiny --quiet")
    one_line_error(capsys, ["model", "--overwrite", "tiny", "--out", "t"],
                   "--overwrite goes after the command: rapref model tiny --overwrite")
    err = one_line_error(capsys, ["--bogus", "train"], "rapref: error: unrecognized arguments: --bogus")
    assert "did you mean" not in err
