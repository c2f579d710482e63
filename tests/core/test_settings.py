"""rapref.settings: each setting declared once on a dataclass field, its rule checked wherever a config is built and
named as the caller gave it (the field from Python, the key in a file); lists written as text, values no setting
means, and --show-config's text read back alike. The command line built from the same fields is tested in
tests/commands/test_flags.py."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from helpers import Sampling, Study
from rapref.io import InputError
from rapref.settings import comma_separated, load, nested, read_settings, setting, show_config, well_formed


def test_from_python_a_broken_rule_names_the_field():
    with pytest.raises(InputError, match=r"^samples must be at least 2, got 1$"):
        Study(out="o", samples=1)
    with pytest.raises(InputError, match=r"^temperature must be at least 0"):
        Sampling(temperature=-1)
    with pytest.raises(InputError, match=r"^mode must be one of relabeled, original, got 'x'$"):
        Study(out="o", mode="x")


# --- the commands' configs: generate, judge, diagnose, export, alpaca-eval-judge -------------------------------------


@pytest.mark.parametrize("build, needle", [
    (lambda: __import__("rapref.inference.sampler").inference.sampler.SamplingConfig(temperature=-1),
     r"^temperature must be 0 \(greedy\) or from 0.01 to 100"),
    (lambda: __import__("rapref.inference.sampler").inference.sampler.SamplingConfig(top_p=0),
     r"^top_p must lie in \(0, 1\], got 0$"),
    (lambda: __import__("rapref.inference.sampler").inference.sampler.SamplingConfig(max_new_tokens=0),
     r"^max_new_tokens must be at least 1, got 0$"),
    (lambda: __import__("rapref.inference.serving").inference.serving.NetworkConfig(request_timeout=float("inf")),
     r"^request_timeout must be a finite number of seconds, got inf$"),
    (lambda: __import__("rapref.inference.serving").inference.serving.NetworkConfig(api_key_env="sk-secret"),
     r"^api_key_env must be the NAME of an environment variable"),
    (lambda: _config("rapref.generate.run", "GenerateConfig", model="m", prompts="p", out="o", limit=-1),
     r"^limit must be at least 1 \(leave it out for every prompt\), got -1$"),
    (lambda: _config("rapref.generate.run", "GenerateConfig", model="m", prompts="p", out="o", concurrency=0),
     r"^concurrency must be at least 1, got 0$"),
    (lambda: _config("rapref.generate.run", "GenerateConfig", model="m", prompts="p", out="o", concurrency=4),
     r"^concurrency is for sampling through a server; give endpoint URL$"),
    (lambda: _config("rapref.judge.run", "JudgeConfig", generations="g", scorer="constraints", out="o",
                     judge_model="x"), r"^judge_model is for the LLM judges \(scorers llm-judge:URL"),
    (lambda: _config("rapref.judge.run", "JudgeConfig", generations="g", scorer="constraints", out="g"),
     r"^out g is the generations file of this run"),
    (lambda: _config("rapref.diagnose.run", "DiagnoseConfig", kind="accuracy", out="o", policy="p", reference="r",
                     data="d", beta=0), r"^beta must be above 0, got 0$"),
    (lambda: _config("rapref.diagnose.run", "DiagnoseConfig", kind="controllability", out="o", scores="s",
                     limit=3), r"^limit is not read by diagnose controllability"),
    (lambda: _config("rapref.diagnose.run", "DiagnoseConfig", kind="sweep", out="o"),
     r"^kind must be one of unlearning, accuracy, controllability, implicit-relabel, got 'sweep'$"),
    (lambda: _config("rapref.export.run", "ExportConfig", format="mt-bench", source="g"),
     r"^export mt-bench needs out"),
    (lambda: _config("rapref.export.run", "ExportConfig", format="mt-bench", source="g", out="o",
                     goal=float("nan")), r"^goal must be a finite number, got nan$"),
    (lambda: _config("rapref.judge.alpaca_eval_judge", "AlpacaEvalJudgeConfig", url="http://x/v1", out="o",
                     api_key_env="openai_key"), r"^api_key_env must be the NAME"),
], ids=["temperature", "top-p", "max-new-tokens", "request-timeout", "api-key-env", "limit", "concurrency",
        "concurrency-without-endpoint", "judge-model", "judge-out", "beta", "diagnose-limit", "kind", "export-out",
        "goal", "ae-api-key-env"])
def test_from_python_each_commands_rules_name_the_field(build, needle):
    with pytest.raises(InputError, match=needle):
        build()


def _config(module: str, name: str, **values):
    import importlib

    return getattr(importlib.import_module(module), name)(**values)


def test_from_a_file_a_rule_names_the_key(tmp_path):
    """A file of a command's settings (`load`, as a study reads one): the key as written, nested or dotted."""
    from rapref.generate.run import GenerateConfig
    from rapref.judge.run import JudgeConfig

    path = tmp_path / "gen.yaml"
    path.write_text("model: m\nprompts: p\nout: o\nsampling:\n  temperature: -1\n")
    with pytest.raises(InputError, match=r"gen.yaml: sampling.temperature must be 0 \(greedy\)"):
        load(GenerateConfig, path)
    path.write_text("model: m\nprompts: p\nout: o\nnetwork.request_timeout: .inf\nendpoint: http://127.0.0.1:1/v1\n")
    with pytest.raises(InputError, match=r"gen.yaml: network.request_timeout must be a finite number of seconds"):
        load(GenerateConfig, path)
    path.write_text("generations: g\nscorer: constraints\nout: o\nnetwork: {api_key_env: MY_KEY}\n")
    with pytest.raises(InputError, match=r"gen.yaml: network.api_key_env is for the LLM judges \(scorers "
                                         r"llm-judge:URL"):
        load(JudgeConfig, path)
    assert load(GenerateConfig, None, model="m", prompts="p", out="o", **{"sampling.top_p": 0.5}).sampling.top_p == 0.5


# --- values no setting means; --show-config read back ----------------------------------------------------------------


def test_a_comma_list_with_an_empty_item_is_refused_not_shortened():
    """`--goals 1,,2` was read as (1, 2): a lost goal, not a shorter sweep; '' stays the empty list ('' for none)."""
    assert comma_separated(float)(" 1, 2 ") == (1.0, 2.0) and comma_separated()("") == comma_separated()(",") == ()
    for text in ("1,,2", "1,2,", ",1"):
        with pytest.raises(ValueError, match=r"^expected comma-separated numbers, got '.*' \(item \d is empty\)$"):
            comma_separated(float)(text)


@pytest.mark.parametrize("value, hint, needle", [
    ("", str, "must not be empty"),  # a path '' is the current folder to open() and Path()
    ("", str | None, "must not be empty"),  # an endpoint '' would read as none: sampling locally
    (("a", ""), tuple[str, ...], "expected no empty item"),
    ({"helpfulness": float("nan")}, dict[str, float] | None, "expected finite numbers, got helpfulness=nan"),
    ({"": 1.0}, dict[str, float], "expected no empty name"),
], ids=["text", "optional-text", "list-item", "weight", "weight-name"])
def test_what_no_setting_means_is_refused(value, hint, needle):
    with pytest.raises(ValueError, match=needle):
        well_formed(value, hint)


def test_values_that_mean_something_pass():
    """...or that a setting's own rule judges in its words (a number, a list of goals: "nan is not a finite number")."""
    for value, hint in (("x", str), (None, str | None), ((), tuple[str, ...]), ({"a": float("inf")}, dict),
                        (float("inf"), float), ({"a": ""}, dict[str, str]), ([0, float("nan")], list[float])):
        assert well_formed(value, hint) is value


def test_a_file_key_with_no_value_is_named_with_the_file(tmp_path):
    study = tmp_path / "study.yaml"
    for text, needle in (("out: ''\n", r"study.yaml: out: must not be empty$"),
                         ("out: o\nnote: ''\n", r"study.yaml: note: must not be empty$"),
                         ("out: o\nseeds: 1,,2\n", r"study.yaml: seeds: expected comma-separated whole numbers, got "
                                                     r"'1,,2' \(item 2 is empty\)$")):
        study.write_text(text)
        with pytest.raises(InputError, match=needle):
            read_settings(Study, study)


@dataclass
class Floats:
    """Whole numbers given to float settings, as a default is often written (a sweep `(1, 2, 3)`, a size `0`)."""
    goals: tuple[float, ...] = setting((1, 2, 3), "goals")
    size: float | None = setting(0, "a count or a fraction")
    scale: tuple[float, float] = setting((1, 10), "scale")
    weights: dict[str, float] = setting(help="weights", factory=lambda: {"a": 1})
    count: int = setting(2, "a count")
    sampling: Sampling = nested(Sampling, temperature=1)


def test_show_config_reads_back_as_it_was_printed(tmp_path):
    """--show-config printed `- 1` where the setting is a float; read back, the config printed `- 1.0`: numbers are
    written as their setting's type, so the text and the settings survive the round trip."""
    cfg = Floats()
    shown = show_config(cfg)
    assert "- 1.0\n" in shown and "size: 0.0\n" in shown and "a: 1.0\n" in shown and "count: 2\n" in shown
    path = tmp_path / "shown.yaml"
    path.write_text(shown)
    again = load(Floats, path)
    assert again == cfg and show_config(again) == shown
    assert [type(v) for v in again.goals] == [float] * 3 and type(again.size) is float and type(again.count) is int


def test_a_whole_number_past_floats_range_is_one_line():
    from rapref.io import InputError
    from rapref.settings import check_type

    with pytest.raises(InputError, match="band: expected a number, got a whole number past float's range"):
        check_type(10 ** 400, float, "band")


def test_a_file_with_a_number_past_pythons_digit_limit_is_one_line(tmp_path):
    from rapref.io import InputError
    from rapref.settings import read_yaml_file

    (tmp_path / "big.yaml").write_text("dpo_lr: " + "9" * 5000 + "\n")
    with pytest.raises(InputError, match="big.yaml: not readable"):
        read_yaml_file(tmp_path / "big.yaml")
