"""`rapref train` on a tiny local model: parameters move, loss falls, every loss family runs, configs validate, and
`--show-config` shows TRL's own defaults; one summary line with rounded losses, no warning a user cannot act on.
Recipe values are checked when the recipe loads: broken YAML, a missing model or dataset, degenerate values and a
raw file as training data are one line (exit 2)."""

import sys
import time
import warnings

import pytest
import torch
import yaml

from helpers import ROOT, one_line_error, pairs
from rapref.cli import main as cli
from rapref.train.config import load_config
from rapref.train.run import main


def overrides(model, data, out, **extra):
    base = {"model.name_or_path": model, "data.path": data, "output_dir": out, "data.max_prompt_length": 160,
            "training.max_length": 224, "training.per_device_train_batch_size": 4, "training.max_steps": 2,
            "training.learning_rate": 1e-3, "training.disable_tqdm": True}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def params(folder):
    from transformers import AutoModelForCausalLM

    return dict(AutoModelForCausalLM.from_pretrained(folder).named_parameters())


@pytest.fixture(scope="module")
def goal_reading_setup(tmp_path_factory):
    """Relabeled pairs whose copies differ only in the goal, and a model wide enough to learn to read it."""
    import json

    from rapref.data.augment import AugmentConfig
    from rapref.data.augment import main as augment
    from rapref.data.schemas import SchemaOptions
    from rapref.tiny import DEFAULT_CORPUS, build_tiny

    folder = tmp_path_factory.mktemp("goal_reading")
    rows = [{"prompt": f"What is {i} plus {i}?", "chosen": f"The answer is {2 * i}.", "rejected": "I do not know.",
             "score_chosen": float(9 + i % 2), "score_rejected": float(1 + i % 2)} for i in range(8)]
    (folder / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    augment(AugmentConfig(source=str(folder / "pairs.jsonl"), out=str(folder / "data"),
                          schema_options=SchemaOptions(test_size=0)))
    model = build_tiny(folder / "model", DEFAULT_CORPUS, hidden_size=128)
    return model, folder / "data"


def test_few_steps_change_every_parameter_and_lower_the_loss(tmp_path, goal_reading_setup):
    """On relabeled data the two copies of a pair differ only in the goal, so the loss can only fall below log 2
    (its value at the start, where policy == reference) if the policy learns to read the goal."""
    import json

    model, data = goal_reading_setup
    out = tmp_path / "run"
    cfg = load_config(None, overrides(model, data, out, **{
        "training.max_steps": 30, "training.learning_rate": 5e-3, "training.per_device_train_batch_size": 16,
        "data.eval_split": "train", "training.eval_strategy": "steps", "training.eval_steps": 30,
        "training.per_device_eval_batch_size": 16}))
    result = main(cfg)
    before, after = params(model), params(out)
    unchanged = [n for n, p in after.items() if torch.equal(p, before[n])]
    assert not unchanged, unchanged
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert evals and evals[-1] < 0.5  # well below log 2 = 0.693
    assert result["steps"] == 30
    for name in ("rapref_train.json", "rapref_goal.json", "metrics.jsonl", "model.safetensors", "tokenizer.json"):
        assert (out / name).is_file(), name


@pytest.mark.parametrize("extra", [
    {"algorithm.loss_type": "[ipo]"},
    {"algorithm.loss_type": "[hinge]"},
    {"algorithm.loss_type": "[robust]", "algorithm.label_smoothing": 0.1},
    {"algorithm.loss_type": "[nca_pair]"},
    {"algorithm.loss_type": "[sppo_hard]"},
    {"algorithm.loss_type": "[apo_zero]"},
    {"algorithm.loss_type": "[sigmoid,sft]", "algorithm.loss_weights": "[1.0,0.5]"},
    {"algorithm.label_smoothing": 0.3},
    {"algorithm.name": "simpo", "algorithm.beta": 2.0},
    {"algorithm.name": "cpo"},
    {"algorithm.name": "orpo"},
    {"algorithm.name": "kto"},
    {"lora.enabled": True, "lora.r": 4},
    {"training.precompute_ref_log_probs": True},
], ids=lambda e: ",".join(f"{k.split('.')[-1]}={v}" for k, v in e.items()))
def test_loss_family_smoke(tmp_path, tiny_model_dir, relabeled_dir, extra):
    result = main(load_config(None, overrides(tiny_model_dir, relabeled_dir, tmp_path / "run", **extra)))
    assert result["steps"] == 2
    assert result["last_loss"] is not None and torch.isfinite(torch.tensor(result["last_loss"]))


def test_resume_from_last_checkpoint(tmp_path, tiny_model_dir, relabeled_dir):
    out = tmp_path / "run"
    import shutil

    save = {"training.save_strategy": "steps", "training.save_steps": 1, "training.max_steps": 3}
    main(load_config(None, overrides(tiny_model_dir, relabeled_dir, out, **save)))
    shutil.rmtree(out / "checkpoint-3")  # as if the run had been killed after saving step 2
    (out / ".rapref").rename(out / ".rapref-unfinished")  # (a killed run never wrote its finished marker)
    result = main(load_config(None, overrides(tiny_model_dir, relabeled_dir, out, **save)), resume=True)
    history = [__import__("json").loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert result["steps"] == 3 and result["resumed_from"].endswith("checkpoint-2")
    assert [h["step"] for h in history if "loss" in h] == [1, 2, 3]  # steps 1-2 restored, step 3 trained


def test_goal_safe_lengths_trim_instruction_not_goal(tmp_path, tiny_model_dir):
    import datasets
    from transformers import AutoTokenizer

    from rapref.goals import GoalSpec
    from rapref.train.lengths import fit_dataset, fit_prompt, prompt_length

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for placement in ("user", "user-suffix", "system"):
        spec = GoalSpec(placement=placement)
        goal = spec.text(9)
        long_instruction = "Tell me about the quick brown fox. " * 40
        if placement == "system":
            prompt = [{"role": "system", "content": goal}, {"role": "user", "content": long_instruction}]
        elif placement == "user":
            prompt = [{"role": "user", "content": goal + "\n\n" + long_instruction}]
        else:
            prompt = [{"role": "user", "content": long_instruction + "\n\n" + goal}]
        fitted, status = fit_prompt(prompt, tokenizer, spec, 150)
        assert status == "trimmed"
        assert prompt_length(tokenizer, fitted) <= 150
        text = "\n".join(m["content"] for m in fitted)
        assert goal in text and "Tell me about" in text
        assert len(text) < len("\n".join(m["content"] for m in prompt))
    spec = GoalSpec(placement="user")
    _, status = fit_prompt(spec.text(9) + "\n\nHi", tokenizer, spec, 10)
    assert status == "dropped"  # the goal alone does not fit: never cut it

    rows = [{"prompt": [{"role": "user", "content": "Short?"}], "chosen": [{"role": "assistant", "content": "a"}],
             "rejected": [{"role": "assistant", "content": "b " * 300}]},
            {"prompt": [{"role": "user", "content": "Long " * 400}], "chosen": [{"role": "assistant", "content": "a"}],
             "rejected": [{"role": "assistant", "content": "b"}]}]
    fitted, counts = fit_dataset(datasets.Dataset.from_list(rows), tokenizer, None, 100, 200)
    assert counts == {"fits": 1, "trimmed": 1, "dropped": 0, "responses_truncated": 1}
    assert len(fitted) == 2


def test_every_shipped_recipe_validates():
    recipes = sorted((ROOT / "recipes").rglob("*.yaml"))
    assert len(recipes) >= 13
    for recipe in recipes:
        cfg = load_config(recipe)
        assert recipe.read_text().startswith("#") and "rapref train --config" in recipe.read_text()
        if "tiny" not in recipe.parts:
            assert cfg.algorithm.beta == 0.01 and cfg.training["learning_rate"] == 5e-7
            assert cfg.training["per_device_train_batch_size"] * cfg.training["gradient_accumulation_steps"] * 8 \
                == 128
            if "qwen2" in recipe.parent.name or "gemma" in recipe.parent.name:
                assert cfg.algorithm.label_smoothing == 0.3


def test_every_accelerate_config_loads():
    import yaml

    configs = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))
    loaded = {p.stem: yaml.safe_load(p.read_text()) for p in configs}
    assert {c["distributed_type"] for c in loaded.values()} >= {"DEEPSPEED", "FSDP", "MULTI_GPU"}
    assert loaded["zero3"]["deepspeed_config"]["zero_stage"] == 3
    assert loaded["cpu_2proc"]["use_cpu"] is True and loaded["cpu_2proc"]["num_processes"] == 2
    from accelerate.commands.config.config_args import load_config_from_file

    for path in configs:
        assert load_config_from_file(str(path)).distributed_type is not None


@pytest.mark.parametrize("bad,message", [
    (["training.max_prompt_length=512"], "not a field of DPOConfig"),
    (["modle.name_or_path=x"], "did you mean 'model'"),
    (["algorithm.name=ppo"], "algorithm.name"),
    (["training.beta=0.1"], "algorithm.beta"),
    (["algorithm.label_smoothing=0.6"], "label_smoothing"),
    (["data.max_prompt_length=2048"], "max_prompt_length"),
])
def test_config_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, ["model.name_or_path=m", "data.path=d", *bad])


def test_show_config_shows_trl_defaults(capsys, tiny_model_dir, relabeled_dir):
    assert cli(["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}", "--show-config"]) == 0
    out = capsys.readouterr().out
    shown = yaml.safe_load(out)  # the recipe; the TRL config it becomes follows in comments
    assert "trl" not in shown
    derived = out.split("\n# trl:\n", 1)[1]
    trl = yaml.safe_load("".join(line.removeprefix("# ") + "\n" for line in derived.splitlines()))
    assert trl["beta"] == shown["algorithm"]["beta"] and trl["seed"] == shown["seed"]
    for default in ("lr_scheduler_type", "weight_decay", "adam_beta1", "max_grad_norm", "loss_type"):
        assert default in trl, default  # TRL's and transformers' own defaults, not only the recipe's keys


def test_show_config_output_is_a_recipe_that_reads_back_alike(tmp_path, capsys, tiny_model_dir, relabeled_dir):
    argv = ["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}", "algorithm.beta=0.3",
            "training.max_steps=7", "--show-config"]
    assert cli(argv) == 0
    first = capsys.readouterr().out
    (tmp_path / "shown.yaml").write_text(first)
    assert cli(["train", "--config", str(tmp_path / "shown.yaml"), "--show-config"]) == 0
    assert capsys.readouterr().out == first


def test_train_prints_one_summary_with_rounded_losses(tmp_path, capsys, tiny_model_dir, relabeled_dir):
    import re

    assert cli(["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}",
                f"output_dir={tmp_path / 'run'}", "training.max_steps=2", "training.max_length=224",
                "data.max_prompt_length=160", "training.disable_tqdm=true"]) == 0
    out = capsys.readouterr().out
    summaries = [line for line in out.splitlines() if re.match(r"rapref train: \d+ steps", line)]
    assert len(summaries) == 1 and re.search(r"loss \d\.\d{4} -> \d\.\d{4}$", summaries[0]), out
    assert "trained 2 steps" not in out


def test_a_raw_file_as_training_data_is_refused_at_once(tmp_path, capsys, tiny_model_dir):
    src = pairs(tmp_path / "pairs.jsonl", ["Q?"])
    capsys.readouterr()
    assert cli(["train", f"model.name_or_path={tiny_model_dir}", f"data.path={src}",
                f"output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "reads a folder written by `rapref augment`" in err, err


def test_simpo_shows_no_warning_a_user_cannot_act_on(tiny_model_dir, relabeled_dir):
    from rapref.train.algorithms import _load
    from rapref.train.config import load_config
    from rapref.train.run import trl_args

    for name in [m for m in sys.modules if m.startswith("trl.experimental")]:
        sys.modules.pop(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _load("trl.experimental.cpo:CPOConfig")
    assert not [w for w in caught if "trl.experimental" in str(w.message)]
    cfg = load_config(None, [f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}",
                             "algorithm.name=simpo", "algorithm.beta=2.0"])
    cfg.validate()
    assert trl_args(cfg, on_gpu=False).remove_unused_columns is False  # TRL's hint would otherwise be printed


@pytest.mark.parametrize("override,needle", [
    ("algorithm.beta=abc", "algorithm.beta: expected a number"),
    ("model.dtype=bf16", "model.dtype must be one of"),
    ("training.report_to=tensorboard", "'tensorboard' package is not installed"),
    ("training.push_to_hub=true", "hub cannot be reached"),
    ("algorithm.loss_type=[sigmiod]", "did you mean 'sigmoid'"),
    ("algorithm.loss_type=[ipo] algorithm.label_smoothing=0.3", "has no effect"),
    ("algorithm.loss_type=[sigmoid_norm] algorithm.label_smoothing=0.3", "has no effect"),
    ("algorithm.name=kto algorithm.label_smoothing=0.3", "has no effect"),
    ("algorithm.name=orpo algorithm.label_smoothing=0.3", "has no effect"),
    ("training.max_steps=2.5", "expected a whole number"),
])
def test_recipe_values_are_checked_when_the_recipe_loads(override, needle, tmp_path, capsys, tiny_model_dir,
                                                         relabeled_dir):
    one_line_error(capsys, ["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}",
                            f"output_dir={tmp_path / 'run'}", *override.split()], needle)
    assert not (tmp_path / "run").exists()


def test_a_single_loss_type_is_a_one_element_list(tiny_model_dir, relabeled_dir):
    from rapref.train.config import load_config

    cfg = load_config(None, [f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}",
                             "algorithm.loss_type=sigmoid"])
    assert cfg.algorithm.loss_type == ["sigmoid"]


def test_broken_yaml_is_one_line(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  name_or_path: x\n data: [unclosed\n")
    one_line_error(capsys, ["train", "--config", str(recipe)], "not valid YAML")


def test_a_missing_local_model_is_reported_at_once(tmp_path, capsys, relabeled_dir, tiny_model_dir):
    start = time.perf_counter()
    one_line_error(capsys, ["train", "model.name_or_path=runs/no-such-model", f"data.path={relabeled_dir}",
                            f"output_dir={tmp_path / 'run'}"], "no such local folder")
    one_line_error(capsys, ["train", f"model.name_or_path={tmp_path / 'gone'}", f"data.path={relabeled_dir}",
                            f"output_dir={tmp_path / 'run'}"], "no such model folder")
    one_line_error(capsys, ["train", f"model.name_or_path={tiny_model_dir}", "data.path=runs/no-such-data",
                            f"output_dir={tmp_path / 'run2'}"], "no such local dataset folder")
    one_line_error(capsys, ["augment", "runs/no-such-data", "--out", str(tmp_path / "d")], "no such local file")
    assert time.perf_counter() - start < 20


TRAIN_DEGENERATE = [("algorithm.beta=0", "algorithm.beta must be above 0"),
                    ("algorithm.beta=-0.1", "algorithm.beta must be above 0"),
                    ("training.max_steps=0", "trains for 0 steps"),
                    ("training.num_train_epochs=0", "trains for 0 steps"),
                    ("data.max_prompt_length=0", "data.max_prompt_length must be at least 1"),
                    ("training.learning_rate=0", "training.learning_rate must be above 0"),
                    ("training.per_device_train_batch_size=0", "per_device_train_batch_size must be at least 1"),
                    ("training.gradient_accumulation_steps=0", "gradient_accumulation_steps must be at least 1"),
                    ("seed=-1", "seed must lie in [0, 2**32)"),
                    ("lora.enabled=true lora.dropout=2", "lora.dropout must lie in [0, 1), got 2"),
                    ("algorithm.name=kto algorithm.loss_type=ipo", "algorithm.loss_type is read by algorithm.name=dpo "
                                                                   "only; algorithm.name=kto would ignore it"),
                    ("training.output_dir=x", "training.output_dir: set it in its own place, output_dir"),
                    ("training.beta=0.2", "training.beta: set it in its own place, algorithm.beta")]


@pytest.mark.parametrize("override,needle", TRAIN_DEGENERATE)
def test_degenerate_training_values_are_refused(override, needle, tmp_path, capsys, tiny_model_dir, relabeled_dir):
    one_line_error(capsys, ["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}",
                            f"output_dir={tmp_path / 'run'}", *override.split()], needle)
    assert not (tmp_path / "run").exists()


def test_a_recipe_files_broken_key_is_named_with_the_file(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("foo: 1\n")
    one_line_error(capsys, ["train", "--config", str(recipe), "--show-config"], f"{recipe}: unknown recipe key foo")
    recipe.write_text("algorithm:\n  beta: abc\n")
    one_line_error(capsys, ["train", "--config", str(recipe), "--show-config"],
                   f"{recipe}: algorithm.beta: expected a number")
    one_line_error(capsys, ["train", "--config", str(recipe), "--show-config", "algorithm.beta=xyz"],
                   "algorithm.beta: expected a number, got 'xyz'")  # the override's value, not the file's
    recipe.write_text("training:\n  max_steps: 0\n")  # a message that starts `training.max_steps=0 with ...`
    one_line_error(capsys, ["train", "--config", str(recipe), "model.name_or_path=m", "data.path=d", "--show-config"],
                   f"{recipe}: training.max_steps=0")
    for bad in ("=3", "training.=3"):
        one_line_error(capsys, ["train", bad, "--show-config"], f"override {bad!r}: expected section.key=value")
