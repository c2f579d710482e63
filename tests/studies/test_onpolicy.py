"""`rapref onpolicy` on a tiny model: every stage, iterations, resume; multi-sample scores used as they are; a rerun
with other settings refused; LoRA iterations compound."""

import json
import shutil

import pytest

from helpers import one_line_error
from rapref.cli import main as cli


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture()
def reward_model(tmp_path):
    assert cli(["model", "tiny", "--kind", "reward-model", "--out", str(tmp_path / "rm"), "--quiet"]) == 0
    return tmp_path / "rm"


def test_onpolicy_loop_every_stage_iterations_and_resume(tmp_path, tiny_model_dir, reward_model):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt_id": f"p{i}", "prompt": f"What is {i} plus {i}?"}) + "\n"
                               for i in range(6)))
    out = tmp_path / "loop"
    argv = ["onpolicy", "--policy", str(tiny_model_dir), "--prompts", str(prompts), "--scorer",
            f"reward-model:{reward_model}", "--samples", "3", "--iterations", "2", "--max-new-tokens", "6",
            "--out", str(out), f"model.name_or_path={tiny_model_dir}", "data.path=unused",
            "training.max_steps=2", "training.per_device_train_batch_size=2", "training.max_length=224",
            "data.max_prompt_length=160"]
    assert cli(argv) == 0
    for i in (1, 2):
        root = out / f"iter-{i}"
        for stage in ("samples.jsonl", "judge/scores.jsonl", "multi_sample.jsonl", "data/relabeled/summary.json",
                      "data/original/summary.json", "policy/rapref_train.json", "policy/rapref_goal.json"):
            assert (root / stage).is_file(), (i, stage)
        samples = read_jsonl(root / "samples.jsonl")
        assert len(samples) == 6 * 3 and {s["sample"] for s in samples} == {0, 1, 2}
        grouped = read_jsonl(root / "multi_sample.jsonl")
        assert len(grouped) == 6 and all(len(g["all_rm_scores"]) == 3 for g in grouped)
    first, second = (read_jsonl(out / f"iter-{i}" / "samples.jsonl") for i in (1, 2))
    assert {s["model"] for s in first} == {str(tiny_model_dir)} and {s["goal"] for s in first} == {None}
    assert {s["model"] for s in second} == {str(out / "iter-1" / "policy")} and {s["goal"] for s in second} == {10.0}
    # every mode of an iteration pairs the same samples: the relabeled positive copies are the original pairs
    from rapref.formats.dataset import read_split

    relabeled = read_split(out / "iter-1" / "data" / "relabeled", "train").to_pylist()
    original = read_split(out / "iter-1" / "data" / "original", "train").to_pylist()
    positive = sorted((r["source_id"], str(r["chosen"]), str(r["rejected"])) for r in relabeled
                      if r["copy"] == "positive")
    assert positive == sorted((r["source_id"], str(r["chosen"]), str(r["rejected"])) for r in original)
    history = json.loads((out / "history.json").read_text())
    assert [h["iteration"] for h in history] == [1, 2] and history[1]["policy_in"].endswith("iter-1/policy")
    # a rerun reuses every finished stage; an interrupted stage (no rapref_train.json) is redone
    stamp = (out / "iter-1" / "policy" / "model.safetensors").stat().st_mtime_ns
    # as a kill would leave them: the stages' outputs cut short and no completion markers (written last)
    (out / "iter-2" / "policy" / "rapref_train.json").unlink()
    (out / "iter-2" / ".stages" / "train.json").unlink()
    (out / "iter-2" / "judge" / "scores.jsonl").unlink()
    (out / "iter-2" / ".stages" / "judge_samples.json").unlink()
    assert cli(argv) == 0
    assert (out / "iter-1" / "policy" / "model.safetensors").stat().st_mtime_ns == stamp
    assert (out / "iter-2" / "policy" / "rapref_train.json").is_file()
    assert (out / "iter-2" / "judge" / "scores.jsonl").is_file()


def test_a_study_file_gives_settings_the_flags_override_and_a_recipe_still_reads(tmp_path, capsys):
    """`--config` takes a study file (OnPolicyConfig's keys, nested as --show-config prints them) or, as before, a
    `rapref train` recipe, told apart by its keys; a bad value names the key in the file, or the flag typed."""
    import yaml

    study = tmp_path / "study.yaml"
    study.write_text("policy: p\nprompts: q.jsonl\nscorer: constraints\nout: o\nsampling: {temperature: 0.5, "
                     "num_samples: 3}\nschema: {pairing: all-pairs}\n")
    assert cli(["onpolicy", "--config", str(study), "--temperature", "0.2", "--show-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["sampling"]["temperature"] == 0.2 and shown["sampling"]["num_samples"] == 3
    assert shown["schema"]["pairing"] == "all-pairs" and shown["schema"]["scale"] == [1.0, 10.0]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("algorithm: {beta: 0.2}\nseed: 3\n")
    assert cli(["onpolicy", "--policy", "p", "--prompts", "q", "--scorer", "s", "--out", "o", "--config",
                str(recipe), "--show-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["recipe"] == str(recipe)
    study.write_text("policy: p\nprompts: q.jsonl\nscorer: constraints\nout: o\nsampling: {num_samples: 1}\n")
    from helpers import one_line_error

    one_line_error(capsys, ["onpolicy", "--config", str(study)], "study.yaml: sampling.num_samples must be at least 2")
    one_line_error(capsys, ["onpolicy", "--config", str(study), "--samples", "1"], "--samples must be at least 2")
    one_line_error(capsys, ["onpolicy", "--config", str(study), "--samples", "2", "--temperature", "-1"],
                   "--temperature must be 0 (greedy) or from 0.01 to 100")
    study.write_text("policy: p\nlora: {r: 4}\n")
    one_line_error(capsys, ["onpolicy", "--config", str(study)], "holds recipe keys (lora) beside onpolicy settings")


def test_multi_sample_scores_on_the_scale_are_used_as_they_are(tmp_path):
    from rapref.data.augment import AugmentConfig, main
    from rapref.formats.dataset import read_split
    from rapref.data.schemas import SchemaOptions

    src = tmp_path / "ms.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": "a?", "all_generated_responses": ["x", "y", "z"], "all_rm_scores": [2.5, 10, 7]},
        {"prompt": "b?", "all_generated_responses": ["x", "y"], "all_rm_scores": [1, 11]},  # 11 is off the scale
    ]))
    summary = main(AugmentConfig(source=str(src), out=str(tmp_path / "out"), schema="multi-sample",
                                 schema_options=SchemaOptions(test_size=0, pairing="best-vs-worst",
                                                              score_mapping="none", out_of_scale="drop")))
    rows = read_split(tmp_path / "out", "train").to_pylist()
    assert {(r["score_chosen"], r["score_rejected"]) for r in rows if r["copy"] == "positive"} == {(10.0, 2.5)}
    assert summary["dropped_by_reason"] == {"score_outside_scale": 1}


def test_tied_pairs_are_dropped_from_every_mode_when_asked(tmp_path):
    """Verifier scores tie often: `--ties drop` leaves those pairs out of original and relabeled data alike."""
    from rapref.settings import build
    from rapref.studies.onpolicy import OnPolicyConfig, _augment

    grouped = tmp_path / "ms.jsonl"
    grouped.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt_id": "a", "prompt": "a?", "all_generated_responses": ["x", "y"], "all_rm_scores": [10, 1]},
        {"prompt_id": "b", "prompt": "b?", "all_generated_responses": ["x", "y"], "all_rm_scores": [5.5, 5.5]},
    ]))
    cfg = build(OnPolicyConfig, {"policy": "unused", "prompts": "unused", "scorer": "unused", "out": str(tmp_path),
                                 "schema.score_mapping": "none", "schema.pairing": "best-vs-worst",
                                 "relabel.ties": "drop"})
    for mode, rows in (("original", 1), ("relabeled", 2)):
        _augment(cfg, grouped, tmp_path / mode, mode, seed=0)
        summary = json.loads((tmp_path / mode / "summary.json").read_text())
        assert summary["relabel"]["dropped"] == {"tie": 1} and summary["rows_out"]["train"] == rows


def test_the_loop_sets_its_training_config_as_typed_values(tmp_path, monkeypatch):
    """What the loop sets itself (policy, pairs, output folder, seed) goes onto the TrainConfig as typed values, never
    as text read back: a policy folder named `no` or a pairs folder `1e3` stays that text. The user's overrides (text,
    as `rapref train` reads them) still apply, and the recipe under them."""
    import rapref.train.config
    from rapref.settings import build
    from rapref.studies.onpolicy import OnPolicyConfig, train_config

    def no_text(text):
        raise AssertionError(f"read as text: {text!r}")

    cfg = build(OnPolicyConfig, {"policy": "no", "prompts": "q", "scorer": "s", "out": str(tmp_path)})
    with monkeypatch.context() as patched:  # no overrides and no recipe: nothing is read as text
        patched.setattr(rapref.train.config, "_yaml", no_text)
        made = train_config(cfg, "no", tmp_path / "1e3", tmp_path / "null", 7)
    assert made.model.name_or_path == "no" and made.data.path == str(tmp_path / "1e3")
    assert made.output_dir == str(tmp_path / "null") and made.seed == 7
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("algorithm: {beta: 0.2}\ntraining: {learning_rate: 1.0e-5}\nseed: 3\n")
    cfg = build(OnPolicyConfig, {"policy": "1e3", "prompts": "q", "scorer": "s", "out": str(tmp_path),
                                 "recipe": str(recipe), "overrides": ["training.max_steps=2", "seed=5",
                                                                      "model.name_or_path=other"]})
    made = train_config(cfg, "1e3", tmp_path / "data", tmp_path / "policy", 11)
    assert made.model.name_or_path == "1e3" and made.seed == 11  # the loop's own values win, as before
    assert made.algorithm.beta == 0.2 and type(made.training["learning_rate"]) is float
    assert made.training["max_steps"] == 2 and type(made.training["max_steps"]) is int


def test_samples_that_all_score_the_same_are_refused_with_the_scores_file(tmp_path):
    from rapref.io import InputError
    from rapref.studies.onpolicy import refuse_equal_scores

    rows = [{"prompt_id": str(i), "sample": s, "score": 0.0} for i in range(3) for s in range(2)]
    with pytest.raises(InputError, match=r"scores.jsonl: the scorer python:m:f gave all 6 samples the same score \(0\)"):
        refuse_equal_scores(rows, tmp_path / "scores.jsonl", "python:m:f")
    refuse_equal_scores([*rows, {"prompt_id": "9", "sample": 0, "score": 1.0}], tmp_path / "scores.jsonl", "python:m:f")


@pytest.fixture()
def loop(tmp_path, tiny_model_dir):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt_id": f"p{i}", "prompt": f"What is {i} plus {i}?"}) + "\n"
                               for i in range(4)))
    return ["onpolicy", "--policy", str(tiny_model_dir), "--prompts", str(prompts), "--scorer",
            "python:helpers:length", "--samples", "2", "--max-new-tokens", "4", "--out",
            str(tmp_path / "loop"), "--quiet", "training.max_steps=1", "training.per_device_train_batch_size=2",
            "training.max_length=224", "data.max_prompt_length=160"]


def test_onpolicy_rerun_with_other_settings_is_refused(tmp_path, capsys, loop):
    assert cli(loop) == 0
    samples = (tmp_path / "loop" / "iter-1" / "samples.jsonl").read_bytes()
    for change, needle in ((["--samples", "3"], "samples 2 -> 3"), (["--max-new-tokens", "8"], "max_new_tokens"),
                           (["--temperature", "0.5"], "temperature"), (["training.max_steps=2"], "overrides")):
        argv = loop[:-4] + change + loop[-4:] if change[0].startswith("--") else loop + change
        err = one_line_error(capsys, argv, needle)
        assert "--overwrite" in err
    assert (tmp_path / "loop" / "iter-1" / "samples.jsonl").read_bytes() == samples
    assert cli(loop + ["--workers", "2"]) == 0  # workers change no result
    assert (tmp_path / "loop" / "iter-1" / "samples.jsonl").read_bytes() == samples
    launches = (tmp_path / "loop" / "launches.jsonl").read_text().splitlines()
    assert len(launches) == 2 and json.loads(launches[1])["settings"]["workers"] == 2
    assert cli(loop + ["--samples", "3", "--overwrite"]) == 0  # start over
    assert len((tmp_path / "loop" / "launches.jsonl").read_text().splitlines()) == 1


def test_a_mistake_found_up_front_leaves_no_run_folder_and_the_corrected_rerun_runs(tmp_path, capsys, loop):
    """The inputs, the recipe and the overrides are read and checked, as the stages read them, before the run folder is
    claimed: a mistake the train stage would find only after sampling is one line and leaves nothing behind, so the
    corrected command runs into the same --out."""
    out = tmp_path / "loop"
    missing = str(tmp_path / "missing")
    no_weights = tmp_path / "no-weights"
    shutil.copytree(loop[2], no_weights, ignore=shutil.ignore_patterns("*.safetensors"))
    recipe_a, recipe_b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    for recipe in (recipe_a, recipe_b):
        recipe.write_text("algorithm: {beta: 0.2}\n")
    for argv, needle in (
            (loop + ["training.max_stepz=1"], "training.max_stepz: not a field of DPOConfig (did you mean 'max_steps'"),
            (loop + ["training.max_steps=0"], "training.max_steps=0 with training.num_train_epochs=3 trains for 0"),
            (loop + ["--recipe", f"{missing}.yaml"], "missing.yaml: no such recipe"),
            (loop + ["--seed", "-1"], "seed must lie in [0, 2**32), got -1"),
            ([*loop[:4], f"{missing}.jsonl", *loop[5:]], "missing.jsonl: no such file or folder"),
            ([*loop[:2], missing, *loop[3:]], "missing: no such model folder"),
            ([*loop[:2], str(tmp_path), *loop[3:]], "not a model folder"),
            ([*loop[:2], str(no_weights), *loop[3:]], "no weights (*.safetensors, *.bin)"),
            ([*loop[:2], str(loop[4]), *loop[3:]], "is a file, not a model folder"),
            (loop + ["--config", str(recipe_a), "--recipe", str(recipe_b)], "is a training recipe, and so is"),
            ([*loop[:6], f"reward-model:{missing}", *loop[7:]], "missing: no such model folder")):
        one_line_error(capsys, argv, needle)
        assert not out.exists(), argv
    assert cli(loop) == 0


def test_an_override_of_what_the_loop_sets_is_said_to_be_replaced(tmp_path, capsys):
    from rapref.progress import configure
    from rapref.settings import build
    from rapref.studies.onpolicy import OnPolicyConfig, check_recipe

    configure(quiet=False)  # (an earlier command in this process may have asked for --quiet)
    check_recipe(build(OnPolicyConfig, {"policy": "p", "prompts": "q", "scorer": "s", "out": str(tmp_path),
                                        "overrides": ["seed=5", "output_dir=x", "training.max_steps=2"]}))
    out = capsys.readouterr().out
    assert "override 'seed=5' is replaced: the loop sets seed itself (--seed plus the iteration)" in out
    assert "override 'output_dir=x' is replaced: the loop sets output_dir itself" in out


def test_show_config_checks_the_recipe_and_overrides_as_a_run_does(tmp_path, capsys, loop):
    one_line_error(capsys, loop + ["training.max_steps=0", "--show-config"], "training.max_steps=0 with")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("algorithm: {beta: 0}\n")
    one_line_error(capsys, loop + ["--recipe", str(recipe), "--show-config"], "algorithm.beta must be above 0")


def test_a_config_file_is_told_apart_by_keys_only_one_kind_has(tmp_path, capsys):
    """`seed` is both a study setting and a recipe key (where the loop replaces it): a file of only `seed` is a study
    file; a file with a recipe-only key is a recipe, its unknown keys named as recipe keys with the file; a file that
    is not a mapping is refused as such, naming the file."""
    import yaml

    given = ["onpolicy", "--policy", "p", "--prompts", "q", "--scorer", "s", "--out", "o", "--show-config", "--config"]
    path = tmp_path / "f.yaml"
    path.write_text("seed: 5\n")
    assert cli([*given, str(path)]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["seed"] == 5 and shown["recipe"] is None
    path.write_text("seed: 5\nbogus: 1\n")
    one_line_error(capsys, [*given, str(path)], "f.yaml: unknown key 'bogus'")
    path.write_text("lora: {r: 4}\nbogus: 1\n")
    one_line_error(capsys, [*given, str(path)], "f.yaml: unknown recipe key bogus")
    for text, kind in (("- policy: p\n", "list"), ("policy\n", "str")):
        path.write_text(text)
        err = one_line_error(capsys, ["onpolicy", "--config", str(path)], "f.yaml: must be a mapping of settings")
        assert err.endswith(f"got a {kind}")


def test_onpolicy_lora_iterations_compound(tmp_path, loop):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert cli(loop + ["lora.enabled=true", "lora.r=2", "training.learning_rate=0.05", "--iterations", "2"]) == 0
    out = tmp_path / "loop"
    history = json.loads((out / "history.json").read_text())
    assert history[1]["policy_in"] == str(out / "iter-1" / "policy-merged")
    assert history[1]["policy_out"] == str(out / "iter-2" / "policy-merged")
    second_base = json.loads((out / "iter-2" / "policy" / "adapter_config.json").read_text())
    assert second_base["base_model_name_or_path"] == str(out / "iter-1" / "policy-merged")

    def load(path):
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

    # base + adapter 1 + adapter 2, merged by hand, equals the saved final policy
    by_hand = PeftModel.from_pretrained(load(loop[2]), out / "iter-1" / "policy").merge_and_unload()
    by_hand = PeftModel.from_pretrained(by_hand, out / "iter-2" / "policy").merge_and_unload()
    final = load(out / "iter-2" / "policy-merged")
    for (name, a), (_, b) in zip(by_hand.state_dict().items(), final.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    start = load(loop[2])
    assert any(not torch.equal(a, b) for a, b in zip(start.state_dict().values(), final.state_dict().values()))
    # the trained model (iteration 1's policy with adapter 2, unmerged) computes what the saved policy computes
    trained = PeftModel.from_pretrained(load(out / "iter-1" / "policy-merged"), out / "iter-2" / "policy").eval()
    ids = torch.tensor([[1, 5, 9, 12, 7]])
    with torch.no_grad():
        torch.testing.assert_close(trained(ids).logits, final(ids).logits, rtol=1e-4, atol=1e-5)


def test_the_old_scorer_name_and_the_new_define_the_same_loop(tmp_path):
    from rapref.settings import build
    from rapref.studies.onpolicy import OnPolicyConfig, defining_settings

    def settings(scorer):
        cfg = build(OnPolicyConfig, {"policy": str(tmp_path), "prompts": str(tmp_path), "scorer": scorer,
                                     "out": str(tmp_path / "o")})
        return defining_settings(cfg)

    assert settings("ifeval") == settings("constraints") and settings("ifeval")["scorer"] == "constraints"
