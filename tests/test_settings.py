"""rapref.settings: flags, --help defaults, YAML keys and error names all derived from one dataclass field."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from rapref.io import InputError
from rapref.settings import (SettingError, add_flags, at_least, check, comma_separated, from_args, load, nested,
        setting, show_config)


@dataclass
class Sampling:
    temperature: float = setting(0.7, "sampling temperature", rule=at_least(0))
    max_new_tokens: int = setting(256, "longest answer, in tokens", rule=at_least(1))
    seed: int = setting(0, "sampling seed")

    def __post_init__(self):
        check(self)


@dataclass
class Legacy:
    """A config whose check predates rapref.settings: its message names a flag."""
    top_k: int = setting(5, "top-k")

    def __post_init__(self):
        if self.top_k < 1:
            raise InputError(f"--top-k must be at least 1, got {self.top_k}")


@dataclass
class Study:
    out: str = setting(help="run folder")
    samples: int = setting(4, "samples per prompt", aliases=("num-samples",), rule=at_least(2))
    mode: str = setting("relabeled", "which data", choices=("relabeled", "original"))
    seeds: tuple[int, ...] = setting((1, 2), "seeds", parse=comma_separated(int))
    quick: bool = setting(False, "a smoke run")
    note: str | None = setting(None, "a free note")
    sampling: Sampling = nested(Sampling, flags={"temperature": None, "max_new_tokens": "tokens"}, temperature=1.0)
    legacy: Legacy = nested(Legacy)
    workers: int = setting(1, "processes", rule=at_least(1))

    def __post_init__(self):
        check(self)
        if self.workers > 1 and self.quick:
            raise SettingError("{} and {} do not go together", "workers", "quick")


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


def test_from_python_a_broken_rule_names_the_field():
    with pytest.raises(InputError, match=r"^samples must be at least 2, got 1$"):
        Study(out="o", samples=1)
    with pytest.raises(InputError, match=r"^temperature must be at least 0"):
        Sampling(temperature=-1)
    with pytest.raises(InputError, match=r"^mode must be one of relabeled, original, got 'x'$"):
        Study(out="o", mode="x")


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
