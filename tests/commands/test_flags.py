"""rapref.commands.flags: the command line derived from the settings (`rapref.settings`): a flag for each setting,
its default in --help from the dataclass, the config built back from flags, a --config file and the environment, and
errors that name each setting as the user gave it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from helpers import Study, one_line_error
from rapref.commands.flags import add_flags, from_args
from rapref.io import InputError
from rapref.settings import check, load, setting, show_config


def parse(argv):
    parser = argparse.ArgumentParser()
    parser.error = lambda message: (_ for _ in ()).throw(SystemExit(message))  # argparse's message, no exit
    add_flags(parser, Study, config=True)
    return parser, parser.parse_args(argv)


def built(argv, **kw):
    return from_args(Study, parse(argv)[1], **kw).config


def test_help_shows_every_default_from_the_dataclass():
    text = " ".join(parse([])[0].format_help().split())
    assert "sampling temperature (default: 1.0)" in text  # the default the enclosing config gives
    assert "samples per prompt (default: 4)" in text and "seeds (default: 1,2)" in text
    assert "a free note (default: none)" in text
    assert "--tokens TOKENS longest answer, in tokens (default: 256)" in text  # a nested field under its own flag
    assert "--seed SEED" not in text  # not among the nested fields given a flag here
    assert "a smoke run (default" not in text  # a switch has no default to show


def test_flags_build_the_config_and_an_alias_works():
    cfg = built(["--out", "o", "--num-samples", "3", "--seeds", "4,5", "--temperature", "0.2", "--tokens", "9"])
    assert cfg.samples == 3 and cfg.seeds == (4, 5) and cfg.out == "o"
    assert cfg.sampling.temperature == 0.2 and cfg.sampling.max_new_tokens == 9 and cfg.sampling.seed == 0
    assert built(["--out", "o"]).sampling.temperature == 1.0


def test_a_broken_rule_names_the_flag_as_typed():
    with pytest.raises(InputError, match=r"^--num-samples must be at least 2, got 1$"):
        built(["--out", "o", "--num-samples", "1"])
    with pytest.raises(InputError, match=r"^--samples must be at least 2"):
        built(["--out", "o", "--samples", "1"])
    with pytest.raises(InputError, match=r"^--temperature must be at least 0, got -1$"):
        built(["--out", "o", "--temperature", "-1"])
    with pytest.raises(InputError, match=r"^--top-k must be at least 1, got 0$"):  # a check written before
        built(["--out", "o", "--top-k", "0"])
    with pytest.raises(InputError, match=r"^--workers and --quick do not go together$"):
        built(["--out", "o", "--workers", "2", "--quick"])
    with pytest.raises(SystemExit, match="invalid choice"):
        built(["--out", "o", "--mode", "other"])
    with pytest.raises(SystemExit, match="argument --seeds: expected comma-separated whole numbers"):
        built(["--out", "o", "--seeds", "1,x"])


def test_a_broken_rule_names_the_key_in_the_file(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text("out: o\nsampling:\n  temperature: -1\n")
    with pytest.raises(InputError, match=r"^.*study.yaml: sampling.temperature must be at least 0, got -1$"):
        built(["--config", str(study)])
    study.write_text("out: o\nsampling.max_new_tokens: 0\n")  # a dotted key: named as written
    with pytest.raises(InputError, match=r"study.yaml: sampling.max_new_tokens must be at least 1"):
        built(["--config", str(study)])
    study.write_text("out: o\nnum_samples: 1\n")  # an alias is a key too
    with pytest.raises(InputError, match=r"study.yaml: num_samples must be at least 2, got 1"):
        built(["--config", str(study)])
    study.write_text("out: o\nsamples: many\n")
    with pytest.raises(InputError, match=r"study.yaml: samples: expected a whole number, got 'many'"):
        built(["--config", str(study)])
    study.write_text("out: o\ntemperature: 1\n")
    with pytest.raises(InputError, match=r"unknown key 'temperature' \(did you mean 'sampling.temperature'\?\)"):
        built(["--config", str(study)])


def test_a_study_file_sets_defaults_that_the_command_line_overrides(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text("out: from-file\nsamples: 6\nseeds: [7, 8]\nsampling: {temperature: 0.3, seed: 5}\n")
    cfg = built(["--config", str(study), "--samples", "3"])
    assert cfg.out == "from-file" and cfg.samples == 3 and cfg.seeds == (7, 8)
    assert cfg.sampling.temperature == 0.3 and cfg.sampling.seed == 5  # a file sets settings that have no flag
    again = tmp_path / "again.yaml"
    again.write_text(show_config(cfg))  # --show-config's output is a file --config takes back
    assert built(["--config", str(again)]) == cfg
    assert load(Study, study, samples=5).samples == 5  # from Python: the file, then keyword overrides


def test_a_required_setting_is_named_by_its_flag(tmp_path):
    with pytest.raises(InputError, match=r"^--out is required"):
        built([])
    parser = argparse.ArgumentParser()
    add_flags(parser, Study)  # without --config a required setting is required by argparse itself
    assert [a for a in parser._actions if a.dest == "out"][0].required


def test_an_environment_variable_gives_a_default_named_with_its_flag(monkeypatch):
    @dataclass
    class Kernels:
        kernels: str = setting("pinned", "kernels", choices=("pinned", "native"), env="X_KERNELS",
                               switches=(("native-kernels", "native", "the same as --kernels native"),))

        def __post_init__(self):
            check(self)

    parser = argparse.ArgumentParser()
    add_flags(parser, Kernels)
    assert "(default: pinned, or $X_KERNELS when set)" in " ".join(parser.format_help().split())
    monkeypatch.setenv("X_KERNELS", "native")
    assert from_args(Kernels, parser.parse_args([])).config.kernels == "native"
    monkeypatch.setenv("X_KERNELS", "fast")
    with pytest.raises(InputError, match=r"^--kernels \(or \$X_KERNELS\) must be one of pinned, native"):
        from_args(Kernels, parser.parse_args([]))
    assert from_args(Kernels, parser.parse_args(["--native-kernels"])).config.kernels == "native"


def test_every_flag_that_takes_a_value_shows_its_default_in_help():
    """Each command's optional flags that take a value say their default ("none" where there is none) or that they
    are required."""
    from rapref.cli import HelpFormatter, build_parser

    def flags(parser, name):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, child in action.choices.items():
                    yield from flags(child, f"{name} {sub}")
            elif action.option_strings and action.nargs != 0 and action.help is not argparse.SUPPRESS:
                yield name, action

    silent = [(name, action.option_strings[0]) for name, action in flags(build_parser()[0], "rapref")
              if not action.required and not any(word in HelpFormatter("rapref")._get_help_string(action).lower()
                                                 for word in ("default", "required"))]
    assert silent == []


def test_positionals_with_choices_and_a_list_of_overrides():
    """What `rapref diagnose KIND` and `rapref export FORMAT` need: a positional with choices, then the rest."""
    @dataclass
    class Export:
        format: str = setting(help="benchmark", positional=True, choices=("alpaca-eval", "mt-bench"))
        rest: list[str] = setting(help="more", positional=True, factory=list, metavar="ITEM")
        name: str = setting("rapref-model", "model name written into the files")

    parser = argparse.ArgumentParser()
    parser.error = lambda message: (_ for _ in ()).throw(SystemExit(message))
    add_flags(parser, Export)
    cfg = from_args(Export, parser.parse_args(["mt-bench", "a", "b"])).config
    assert (cfg.format, cfg.rest, cfg.name) == ("mt-bench", ["a", "b"], "rapref-model")
    assert from_args(Export, parser.parse_args(["mt-bench"])).config.rest == []
    with pytest.raises(SystemExit, match="invalid choice"):
        parser.parse_args(["arena"])


# --- the commands built on rapref.settings: generate, judge, diagnose, export, alpaca-eval-judge ---------------------

COMMANDS = ("generate", "judge", "diagnose", "export", "alpaca-eval-judge")


@pytest.mark.parametrize("command", COMMANDS)
def test_each_commands_help_shows_a_default_for_every_optional_flag_taking_a_value(command):
    """In the text `rapref COMMAND --help` prints: every optional flag that takes a value ends its help with
    "(default: ...)", the dataclass's default or "none"."""
    from rapref.cli import build_parser

    parser = build_parser()[0]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    text = sub.format_help()
    flags = [a for a in sub._actions if a.option_strings and a.nargs != 0 and not a.required
             and a.help is not argparse.SUPPRESS]
    assert flags
    for action in flags:  # compared without spaces: --help wraps lines, after a hyphen too
        help_text = action.help.replace("%%", "%")
        assert "".join(help_text.split()) in "".join(text.split()), (command, action.option_strings)
        assert "(default: " in help_text, (command, action.option_strings, help_text)


def test_generates_flags_keep_their_names_and_build_the_nested_configs():
    from rapref.cli import build_parser
    from rapref.commands.generate import config_from_args

    args = build_parser()[0].parse_args([
        "generate", "m", "--prompts", "p.jsonl", "--out", "o.jsonl", "--max-new-tokens", "9", "--temperature", "0",
        "--top-p", "0.5", "--num-samples", "2", "--seed", "3", "--batch-size", "4", "--endpoint",
        "http://127.0.0.1:1/v1", "--connect-timeout", "2", "--request-timeout", "30", "--retry-time", "0",
        "--api-key-env", "MY_KEY", "--concurrency", "3", "--goals", "1,5"])
    cfg = config_from_args(args)
    assert (cfg.sampling.max_new_tokens, cfg.sampling.temperature, cfg.sampling.top_p, cfg.sampling.num_samples,
            cfg.sampling.seed, cfg.sampling.batch_size) == (9, 0.0, 0.5, 2, 3, 4)
    assert (cfg.network.connect_timeout, cfg.network.request_timeout, cfg.network.retry_time,
            cfg.network.api_key_env) == (2.0, 30.0, 0.0, "MY_KEY")
    assert cfg.goals == (1.0, 5.0) and cfg.requests_in_flight == 3
    plain = config_from_args(build_parser()[0].parse_args(["generate", "m", "--prompts", "p", "--out", "o"]))
    assert plain.sampling == type(plain.sampling)() and plain.requests_in_flight == 8 and plain.network.given() == []


@pytest.mark.parametrize("argv, needle", [
    (["generate", "M", "--prompts", "P", "--out", "O", "--temperature", "-1"], "--temperature must be 0 (greedy)"),
    (["generate", "M", "--prompts", "P", "--out", "O", "--top-p", "0"], "--top-p must lie in (0, 1], got 0"),
    (["generate", "M", "--prompts", "P", "--out", "O", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    (["generate", "M", "--prompts", "P", "--out", "O", "--limit", "-1"], "--limit must be at least 1"),
    (["generate", "M", "--prompts", "P", "--out", "O", "--endpoint", "http://127.0.0.1:1/v1", "--concurrency", "0"],
     "--concurrency must be at least 1, got 0"),
    (["generate", "M", "--prompts", "P", "--out", "O", "--endpoint", "http://127.0.0.1:1/v1", "--request-timeout",
      "inf"], "--request-timeout must be a finite number of seconds, got inf"),
    (["generate", "M", "--prompts", "P", "--out", "O", "--request-timeout", "30"],
     "--request-timeout is for sampling through a server; give --endpoint URL"),
    (["generate", "M", "--prompts", "P", "--out", "P", "--no-goal"], "P: is the input of this command"),
    (["judge", "G", "--scorer", "constraints", "--out", "J", "--request-timeout", "inf"],
     "--request-timeout must be a finite number of seconds, got inf"),
    (["judge", "G", "--scorer", "constraints", "--out", "J", "--judge-model", "x"], "--judge-model is for the LLM "
                                                                                    "judges (scorers llm-judge:URL"),
    (["judge", "G", "--scorer", "constraints", "--out", "G"], "--out G is the generations file of this run"),
    (["diagnose", "accuracy", "--out", "D", "--policy", "p", "--reference", "r", "--data", "d", "--limit", "-1"],
     "--limit must be at least 1"),
    (["diagnose", "accuracy", "--out", "D", "--policy", "p", "--reference", "r", "--data", "d", "--beta", "0"],
     "--beta must be above 0, got 0"),
    (["diagnose", "accuracy", "--out", "D", "--policy", "p", "--reference", "r"],
     "diagnose accuracy needs --policy, --reference and --data"),
    (["diagnose", "controllability", "--scores", "G", "--out", "D", "--dpo", "x"],
     "--dpo is not read by diagnose controllability (it is for unlearning)"),
    (["diagnose", "controllability", "--scores", "G", "--out", "G"], "--out G is the --scores input of this run"),
    (["export", "mt-bench", "G", "--out", "G"], "G: is the input of this command"),
    (["export", "mt-bench", "G"], "export mt-bench needs --out"),
    (["export", "mt-bench", "G", "--out", "O", "--goal", "inf"], "--goal must be a finite number, got inf"),
    (["export", "lm-eval", "M", "--out", "O"], "it writes no file and counts no tokens: leave out --out"),
    (["alpaca-eval-judge", "http://127.0.0.1:1/v1", "--out", "A", "--api-key-env", "sk-secret-1234"],
     "--api-key-env must be the NAME of an environment variable"),
    (["alpaca-eval-judge", "http://127.0.0.1:1/v1", "--out", "A", "--judge-template", "T"],
     "--judge-template T: no such file"),
], ids=lambda v: " ".join(v[:1] + v[-2:]) if isinstance(v, list) else None)
def test_what_a_hurried_user_types_is_one_clear_line_naming_the_flag(tmp_path, monkeypatch, capsys, argv, needle):
    from rapref.cli import main as cli

    monkeypatch.chdir(tmp_path)
    for name in ("P", "G"):
        (tmp_path / name).write_text('{"prompt_id": "a", "prompt": "Hi", "text": "x", "score": 1}\n')
    capsys.readouterr()
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err
    assert "sk-secret" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["G", "P"]  # nothing written


# --- review of the command line: suggestions, overrides among flags, values no setting means, switches, round trips -


def test_a_mistyped_flag_is_matched_only_against_the_flags_of_the_command_typed(capsys):
    """`rapref train --temprature` suggested generate's --temperature, which train does not take."""
    err = one_line_error(capsys, ["train", "--temprature", "0.3"], "unrecognized arguments: --temprature")
    assert err.startswith("rapref train: error: ") and "did you mean" not in err and "see rapref train --help" in err
    err = one_line_error(capsys, ["train", "--overwirte"], "did you mean --overwrite?")
    assert err.startswith("rapref train: error: ")
    err = one_line_error(capsys, ["model", "tiny", "--out", "t", "--bogus"], "unrecognized arguments: --bogus")
    assert err.startswith("rapref model tiny: error: ")
    assert one_line_error(capsys, ["--bogus"], "unrecognized arguments: --bogus").startswith("rapref: error: ")


@pytest.mark.parametrize("argv, dest, expected", [
    (["train", "--config", "r.yaml", "a=1", "--quiet", "b=2"], "overrides", ["a=1", "b=2"]),
    (["train", "a=1", "--resume", "b=2", "--quiet", "c=3"], "overrides", ["a=1", "b=2", "c=3"]),
    (["train", "--quiet", "a=1"], "overrides", ["a=1"]),
    (["onpolicy", "--policy", "p", "a=1", "--quiet", "b=2"], "overrides", ["a=1", "b=2"]),
    (["experiment", "ifeval", "a.b=1", "--quick", "c.d=2"], "training", [{"a.b": "1"}, {"c.d": "2"}]),
    (["experiment", "--quick", "ifeval", "a.b=1"], "training", [{"a.b": "1"}]),
], ids=["train-config", "train-switches", "train-after", "onpolicy", "experiment", "experiment-after"])
def test_key_value_overrides_may_stand_anywhere_among_the_flags(argv, dest, expected):
    """argparse gives a list positional only its first run of items: `a=1 --quiet b=2` left b=2 unrecognized."""
    from rapref.cli import build_parser

    args = build_parser()[0].parse_args(argv)
    assert getattr(args, dest) == expected and getattr(args, "quiet", False) is ("--quiet" in argv)


@pytest.mark.parametrize("argv, needle", [
    (["show", ""], "argument path: must not be empty"),
    (["augment", "", "--out", "A"], "argument source: must not be empty"),
    (["augment", "P", "--out", ""], "argument --out: must not be empty"),
    (["generate", "M", "--prompts", "", "--out", "O"], "argument --prompts: must not be empty"),
    (["generate", "M", "--prompts", "P", "--out", "O", "--endpoint", ""], "argument --endpoint: must not be empty"),
    (["generate", "M", "--prompts", "P", "--out", "O", "--goals", "1,,2"],
     "argument --goals: expected comma-separated numbers, got '1,,2' (item 2 is empty)"),
    (["export", "lm-eval", "M", "--tasks", ""], "argument --tasks: must not be empty"),
    (["augment", "P", "--out", "A", "--attribute-weights", "helpfulness=nan"],
     "argument --attribute-weights: expected finite numbers, got helpfulness=nan"),
    (["augment", "P", "--out", "A", "--exclude-sources", "a,,b"],
     "argument --exclude-sources: expected comma-separated names, got 'a,,b' (item 2 is empty)"),
    (["train", "--config", ""], "argument --config: must not be empty"),
    (["demo", "--config", "", "--show-config"], "argument --config: must not be empty"),
    (["demo", "--config", "S", "--show-config"], "S: out: must not be empty"),
], ids=["show", "augment-source", "augment-out", "generate-prompts", "generate-endpoint", "generate-goals",
        "export-tasks", "attribute-weights", "exclude-sources", "train-config",
        "demo-config", "demo-config-key"])
def test_an_empty_path_or_item_is_refused_naming_the_flag(tmp_path, monkeypatch, capsys, argv, needle):
    """An empty path was read as the current folder (`rapref show ''` showed it), an endpoint '' as none (sampling
    locally), `--goals 1,,2` as 1,2, a weight nan as a weight."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "P").write_text('{"prompt": "Hi", "chosen": "a", "rejected": "b", "score_chosen": 8, '
                                '"score_rejected": 3}\n')
    (tmp_path / "S").write_text("out: ''\n")
    err = one_line_error(capsys, argv, needle)
    assert err.startswith(f"rapref {argv[0]}: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P", "S"]  # nothing written


@pytest.mark.parametrize("argv, needle", [
    (["demo", "--kernels", "pinned", "--native-kernels"], "argument --native-kernels: contradicts --kernels pinned"),
    (["demo", "--native-kernels", "--kernels", "pinned"], "argument --kernels: contradicts --native-kernels"),
    (["experiment", "ifeval", "--model", "m", "--out", "o", "--native-kernels", "--kernels", "pinned"],
     "argument --kernels: contradicts --native-kernels"),
], ids=["demo", "demo-reversed", "experiment"])
def test_contradicting_switches_are_refused(capsys, argv, needle):
    """`--kernels pinned --native-kernels` ran native: the last of two spellings of one setting won, silently."""
    assert one_line_error(capsys, [*argv, "--show-config"], needle).startswith(f"rapref {argv[0]}: error: ")


def test_spellings_of_one_setting_that_agree_are_taken_and_one_flag_twice_is_the_last(capsys, monkeypatch):
    from rapref.cli import build_parser
    from rapref.commands.demo import config_from_args

    monkeypatch.delenv("RAPREF_KERNELS", raising=False)
    parser = build_parser()[0]
    assert config_from_args(parser.parse_args(["demo", "--kernels", "native", "--native-kernels"])).kernels == \
        "native"
    assert config_from_args(parser.parse_args(["demo", "--kernels", "native", "--kernels", "pinned"])).kernels == \
        "pinned"
    assert built(["--out", "o", "--samples", "3", "--samples", "5"]).samples == 5
    with pytest.raises(SystemExit, match=r"argument --num-samples: contradicts --samples 3: choose one"):
        built(["--out", "o", "--samples", "3", "--num-samples", "5"])


SHOW_CONFIG = {  # every command with --show-config, and the least it needs to print one
    "demo": [],
    "experiment": ["ifeval", "--model", "M", "--out", "O"],
    "onpolicy": ["--policy", "M", "--prompts", "P", "--scorer", "constraints", "--out", "O"],
    "train": ["model.name_or_path={model}", "data.path={data}"],
}


def test_every_command_with_show_config_is_in_the_round_trip():
    from rapref.cli import build_parser

    parser = build_parser()[0]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(n for n, p in sub.choices.items() if "--show-config" in p._option_string_actions) == \
        sorted(SHOW_CONFIG)


@pytest.mark.parametrize("command", SHOW_CONFIG)
def test_show_configs_output_reads_back_as_the_same_settings(command, tmp_path, monkeypatch, capsys,
                                                             tiny_model_dir, relabeled_dir):
    """--show-config printed `sweep_goals: [1, 2, ...]` and onpolicy's `test_size: 0`; given back as --config they
    came back as floats and printed `1.0`. The settings it prints are the settings a --config file gives again.
    train's output ends with the TRL config the recipe becomes, which is not a recipe key: the recipe above it
    reads back."""
    import importlib

    from rapref.cli import build_parser
    from rapref.cli import main as cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "P").write_text('{"prompt": "Hi"}\n')
    argv = [command, *(a.format(model=tiny_model_dir, data=relabeled_dir) for a in SHOW_CONFIG[command])]

    def shown(args):
        capsys.readouterr()
        assert cli([*args, "--show-config"]) == 0
        out = capsys.readouterr().out
        return out.split("\n# the ")[0] if command == "train" else out

    first = shown(argv)
    (tmp_path / "shown.yaml").write_text(first)
    again = [command, *(["ifeval"] if command == "experiment" else []), "--config", "shown.yaml"]
    assert shown(again) == first
    if command != "train":
        read = importlib.import_module(f"rapref.commands.{command}").config_from_args
        parser = build_parser()[0]
        assert read(parser.parse_args(again)) == read(parser.parse_args(argv))
