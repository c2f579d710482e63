"""The synthetic world by hand, the demo's statistics by hand, `rapref demo --quick` end to end, and the demo's quiet
mode putting everything back."""

import json
from pathlib import Path
import random

import pytest

from helpers import ROOT
from rapref.studies.demo.world import (WorldConfig, build_world, generate_answer, hard_item, judge_score, misconceived,
        true_reward, well_formed)


def test_true_reward_is_graded_by_hand():
    assert true_reward("sort: d b a c", "a b c d") == 1.0
    assert true_reward("sort: d b a c", "a b d c") == 0.75  # one swapped pair costs one letter's share
    assert true_reward("sort: d b a c", "b c d") == 0.75  # a dropped letter too, not the whole answer
    assert true_reward("sort: d b a c", "a b c d e") == 0.8  # an extra letter costs: 4 of 5
    assert true_reward({"prompt": [{"role": "user", "content": "sort: b a"}]}, "a b") == 1.0
    assert true_reward("sort: b a", "") == 0.0
    assert well_formed("sort: c a b", "a b c") and not well_formed("sort: c a b", "a b") \
        and not well_formed("sort: c a b", "a b cc")


def test_generators_share_the_same_mistake_on_hard_items():
    rng = random.Random(0)
    assert hard_item("sort: c b a") and not hard_item("sort: a c f")
    assert misconceived("sort: c b a") == ["a", "c", "b"]  # the pool's shared wrong answer
    assert generate_answer("sort: c b a", 1.0, rng, shared_mistake=1.0) == "a c b"
    assert generate_answer("sort: c b a", 1.0, rng, shared_mistake=0.0) == "a b c"
    assert generate_answer("sort: c f a", 1.0, rng, shared_mistake=1.0) == "a c f"  # an easy item: no mistake


def test_judge_by_hand():
    rng = random.Random(0)
    assert judge_score(1.0, 0.0, rng) == 10.0 and judge_score(0.0, 0.0, rng) == 1.0
    assert judge_score(0.5, 0.0, rng) == 6.0  # 1 + 9 * 0.5 = 5.5, rounded half to even -> 6
    assert judge_score(0.6, 0.0, rng, extra_letters=2, length_bias=1.0) == 8.0  # 6.4 + 2 points of length bias


def test_world_is_deterministic_and_its_scores_carry_information():
    cfg = WorldConfig(n_train_prompts=300, n_test_prompts=10, seed=4)
    a, b = build_world(cfg), build_world(cfg)
    assert a.train_rows == b.train_rows and len(a.test_rows) == 10
    row = a.train_rows[0]
    assert set(row) == {"source", "instruction", "completions"} and len(row["completions"]) == 4
    assert not {r["instruction"] for r in a.train_rows} & {r["instruction"] for r in a.test_rows}
    # on hard items the pool's most common answer is the shared mistake, and the judge ranks the right one higher
    hard = [r for r in a.train_rows if hard_item(r["instruction"])]
    assert len(hard) > 100
    right, wrong = [], []
    for r in hard:
        for c in r["completions"]:
            (right if c["response"].split() == sorted(r["instruction"].split()[1:]) else
             wrong if c["response"].split() == misconceived(r["instruction"]) else []).append(c["overall_score"])
    assert len(wrong) > len(right) > 50 and sum(right) / len(right) > sum(wrong) / len(wrong) + 1


def test_symbol_tokenizer_and_suppressed_tokens(tmp_path):
    from rapref.studies.demo.run import DemoConfig, build_base
    from rapref.studies.demo.world import corpus
    from rapref.models import load_model, load_tokenizer

    cfg = DemoConfig(hidden_size=16, num_layers=1)
    world = build_world(WorldConfig(n_train_prompts=50, n_test_prompts=5, seed=1))
    build_base(tmp_path, world, cfg.goal_spec(), cfg, seed=1)
    tokenizer, model = load_tokenizer(tmp_path), load_model(tmp_path)
    assert len(tokenizer) < 40  # the symbols that occur, not a 256-byte alphabet
    for text in corpus(world, cfg.goal_spec()):
        assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"], text
    allowed = set(range(len(tokenizer))) - set(model.generation_config.suppress_tokens)
    assert {tokenizer.decode([i]) for i in allowed} == set("abcdefghijkl") | {tokenizer.eos_token}

    from rapref.inference.sampler import SamplingConfig, generate_texts

    texts = generate_texts(str(tmp_path), ["sort: c a b"] * 64, SamplingConfig(max_new_tokens=6, temperature=1.0),
                           backend="transformers")  # an untrained model samples only answer symbols
    assert all(set(t.split()) <= set("abcdefghijkl") for t in texts)


def test_the_demos_paired_differences_by_hand():
    from rapref.studies.demo.report import paired

    def seed(a, b):
        return {"evaluations": {"T0.7": {"x": {"per_prompt": dict(enumerate(a))},
                                         "y": {"per_prompt": dict(enumerate(b))}}}}

    results = [seed([1.0, 0.5], [0.5, 0.5]), seed([0.6, 0.6], [0.5, 0.5]), seed([0.7, 0.5], [0.5, 0.5])]
    ci = paired(results, "T0.7", "x", "y")
    assert ci["per_seed"] == [0.25, 0.1, 0.1]
    assert ci["mean"] == pytest.approx(0.15) and ci["low"] == pytest.approx(0.15 - 4.302653 * 0.05, abs=1e-5)


def test_quick_demo_is_a_labelled_smoke_run(tmp_path, capsys):
    from rapref.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("SMOKE RUN") and "verdicts (paired" not in printed and "holds" not in printed
    assert "\nquick: seed 1 only of 1,2,3,4,5; world.n_train_prompts 1500 -> 200;" in printed  # what it shrank
    assert "DPO, positive copies only, asked for 10" in printed  # printed to a pipe: natural width, never wrapped
    report = json.loads((out / "report.json").read_text())
    assert report["smoke_run"] and "claims" not in report
    assert [row["arm"] for row in report["arms"]] == ["start", "start@10", "goal-sft@10", "sft-epoch", "dpo",
                                                      "dpo-dup", "relabeled@10", "half@10", "positive@10"]
    assert (out / "report.md").read_text().startswith("# rapref demo") and "SMOKE RUN" in (out / "report.md").read_text()
    for name in ("report.md", "controllability.png", "differences.png"):
        assert (out / name).stat().st_size > 500, name
    seed = out / "seed-1"
    for stage in ("world/prompts.jsonl", "data/positive/data/train-00000-of-00001.parquet", "start/model.safetensors",
                  "arms/relabeled/rapref_goal.json", "gen/relabeled@10.T0.7.jsonl", "judge/dpo.greedy/scores.jsonl"):
        assert (seed / stage).exists(), stage
    generations = [json.loads(line) for line in (seed / "gen" / "dpo.T0.7.jsonl").read_text().splitlines()]
    assert len(generations) == 2 * 40 and {g["sample"] for g in generations} == {0, 1}  # every prompt, 2 samples
    # a second run reuses every finished stage; a stage without its marker (killed midway) is done again
    marker, results = seed / ".stages" / "train_arms_dpo.json", seed / ".stages" / "results.json"
    marker.unlink()
    results.unlink()
    arm_mtime = (seed / "arms" / "dpo" / "model.safetensors").stat().st_mtime_ns
    start_mtime = (seed / "start" / "model.safetensors").stat().st_mtime_ns
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    assert marker.is_file() and json.loads(marker.read_text())["settings"]["arm"] == "dpo:original"
    assert (seed / "arms" / "dpo" / "model.safetensors").stat().st_mtime_ns != arm_mtime  # trained again
    assert (seed / "start" / "model.safetensors").stat().st_mtime_ns == start_mtime  # reused
    assert json.loads((out / "launches.jsonl").read_text().splitlines()[1])["command"] == "demo"
    # a stage made with other settings than its marker records is refused, never mixed
    saved = json.loads(marker.read_text())
    saved["settings"]["lr"] = 0.5
    marker.write_text(json.dumps(saved))
    results.unlink()
    capsys.readouterr()
    assert main(["demo", "--quick", "--out", str(out)]) == 2
    assert "stage 'train arms/dpo' was made with other settings (lr)" in capsys.readouterr().err
    # other settings into the same folder are refused, not mixed with the old stages
    assert main(["demo", "--quick", "--out", str(out), "--judge-noise", "2"]) == 2
    assert "other settings" in capsys.readouterr().err

    # the published demo results are generated from a run folder's report, never typed; a smoke run is refused
    import importlib.util
    import shutil
    from dataclasses import replace

    from rapref.provenance import provenance
    from rapref.studies.demo.report import build
    from rapref.studies.demo.run import DemoConfig, quick_config

    repo = ROOT
    root = tmp_path / "repo"
    shutil.copytree(repo / "docs", root / "docs")
    shutil.copy(repo / "README.md", root / "README.md")
    spec = importlib.util.spec_from_file_location("readme_results", repo / "scripts" / "readme_results.py")
    readme_results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme_results)
    with pytest.raises(SystemExit, match="smoke run"):
        readme_results.main(["--demo", str(out), "--root", str(root)])
    cfg = replace(quick_config(DemoConfig(out=str(out))), quick=False)
    report = build(cfg, [json.loads((seed / "results.json").read_text())])
    report.update(wall_seconds=65.0, config=json.loads(json.dumps(cfg.__dict__, default=lambda o: o.__dict__)),
                  provenance=provenance(), smoke_run=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "report.json").write_text(json.dumps(report))
    assert readme_results.main(["--root", str(root), "--check"]) == 0
    assert readme_results.main(["--demo", str(tmp_path / "full"), "--root", str(root), "--check"]) == 1
    assert readme_results.main(["--root", str(root)]) == 0
    text = (root / "docs" / "demo.md").read_text()
    assert "1 min 5 s" in text and "inconclusive (one replicate)" in text
    assert f"trl {report['provenance']['packages']['trl']}" in text
    assert "inconclusive (one replicate)" in (root / "README.md").read_text()
    assert readme_results.main(["--root", str(root), "--check"]) == 0


def test_quick_says_what_it_shrank():
    from rapref.studies.demo.run import DemoConfig, quick_config, quick_note

    full = DemoConfig(seeds=(1, 2, 3), quick=True)
    assert quick_note(full, quick_config(full)) == (
        "quick: seed 1 only of 1,2,3; world.n_train_prompts 1500 -> 200; world.n_test_prompts 600 -> 40; hidden_size "
        "96 -> 32; num_layers 3 -> 1; sft_epochs 4 -> 1; sweep_goals 1,2,3,4,5,6,7,8,9,10 -> 1,10; sweep_prompts 200 "
        "-> 20")
    assert quick_note(DemoConfig(seeds=(4,), quick=True), quick_config(DemoConfig(seeds=(4,)))).startswith(
        "quick: world.n_train_prompts 1500 -> 200;")  # one seed given: none left out


def test_show_config_with_quick_shows_what_runs(capsys):
    import yaml

    from rapref.cli import main

    assert main(["demo", "--quick", "--seeds", "1,2,3", "--show-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["seeds"] == [1] and shown["hidden_size"] == 32 and shown["world"]["n_train_prompts"] == 200
    assert shown["out"] == "runs/demo-quick" and shown["quick"] is True


def test_a_refused_rerun_says_only_why(tmp_path, capsys):
    """A rerun into a folder of a demo with other settings is refused first and alone: no smoke-run banner before."""
    from rapref.cli import main

    out = tmp_path / "demo"
    out.mkdir()
    (out / ".rapref").write_text('{"command": "demo"}')
    (out / "config.json").write_text('{"seeds": [9]}')
    assert main(["demo", "--quick", "--out", str(out)]) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and "other settings" in printed.err and len(printed.err.splitlines()) == 1


def test_a_sweep_step_down_counts_only_beyond_sampling_noise():
    from rapref.studies.demo.report import steps_down

    rng = random.Random(0)
    prompts = [str(i) for i in range(200)]
    flat = {g: {p: rng.choice([0.4, 0.6]) for p in prompts} for g in ("1", "2")}  # same level, noisy draws
    rising = {"1": {p: 0.4 for p in prompts}, "2": {p: 0.8 for p in prompts}}
    falling = {"1": {p: 0.8 for p in prompts}, "2": {p: 0.7 for p in prompts}}
    assert steps_down(rising) == [] and steps_down(falling) == ["1->2: -0.100"]
    assert steps_down(flat) == []  # a dip within two paired standard errors is noise


def test_the_demos_quiet_mode_puts_everything_back():
    import warnings

    import torch
    from transformers.utils import logging

    from rapref.studies.demo.jobs import _quiet

    threads, verbosity, filters = torch.get_num_threads(), logging.get_verbosity(), list(warnings.filters)
    with _quiet():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == threads and logging.get_verbosity() == verbosity
    assert warnings.filters == filters


# --- the grid: `rapref demo --grid` -----------------------------------------------------------------------------------

from rapref.cli import main  # noqa: E402


def test_grid_quick_runs_one_tiny_cell_and_refuses_a_changed_cell(tmp_path, capsys):
    import json

    from helpers import one_line_error

    grid = tmp_path / "grid.yaml"
    grid.write_text(Path("docs/demo-grid.yaml").read_text())
    out = tmp_path / "g"
    assert main(["demo", "--grid", str(grid), "--quick", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["smoke_run"] and list(report["cells"]) == ["demo"]
    assert "smoke run" in (out / "report.md").read_text()
    assert main(["demo", "--grid", str(grid), "--quick", "--out", str(out)]) == 0  # finished stages reused
    grid.write_text(grid.read_text().replace("  demo: {}", "  demo: {world.judge_noise: 3.0}"))
    one_line_error(capsys, ["demo", "--grid", str(grid), "--quick", "--out", str(out)],
                   "cell 'demo' was begun with other settings (world.judge_noise")


@pytest.mark.parametrize("text, needle", [
    ("cells: {a: {world.noise: 1}}", "unknown setting 'world.noise'"),
    ("cells: {a: {out: x}}", "unknown setting 'out'"),
    ("cells: {}", "non-empty 'cells'"),
    ("seeds: [101]\ncells: {a: {}}", "validation seeds"),
    ("arms: [nope]\ncells: {a: {}}", "arms: unknown name 'nope'"),
    ("decodings: [greedy]\ncells: {a: {}}", "the verdicts use T0.7"),
    ("cells: {'a b': {}}", "names a folder"),
    ("cells: [", "not valid YAML"),
])
def test_grid_file_mistakes_are_one_line(tmp_path, capsys, text, needle):
    from helpers import one_line_error

    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    one_line_error(capsys, ["demo", "--grid", str(grid), "--out", str(tmp_path / "g")], needle)


def test_grid_refuses_world_flags_it_would_ignore(tmp_path, capsys):
    from helpers import one_line_error

    one_line_error(capsys, ["demo", "--grid", "docs/demo-grid.yaml", "--judge-noise", "2", "--out",
                            str(tmp_path / "g")], "leave out the flags that set world.judge_noise")
    one_line_error(capsys, ["demo", "--workers", "0", "--out", str(tmp_path / "g")], "--workers must be at least 1")


def test_a_study_file_sets_the_demo_and_the_flags_override_it(tmp_path, capsys):
    """`rapref demo --config study.yaml`: DemoConfig's keys (the world nested), flags on top; --show-config prints what
    would run, in the form --config reads back."""
    import yaml

    from helpers import one_line_error

    study = tmp_path / "study.yaml"
    study.write_text("seeds: [1, 2]\nbeta: 0.2\nhidden_size: 64\nworld: {judge_noise: 2.0, n_train_prompts: 300}\n")
    assert main(["demo", "--config", str(study), "--judge-noise", "0.5", "--show-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["seeds"] == [1, 2] and shown["beta"] == 0.2 and shown["hidden_size"] == 64
    assert shown["world"]["judge_noise"] == 0.5 and shown["world"]["n_train_prompts"] == 300
    study.write_text("workers: 0\n")
    one_line_error(capsys, ["demo", "--config", str(study)], "study.yaml: workers must be at least 1, got 0")
    study.write_text("judge_noise: 2\n")
    one_line_error(capsys, ["demo", "--config", str(study)], "did you mean 'world.judge_noise'?")
    study.write_text("seeds: [7, 7]\n")  # two workers on one seed's folders would race
    one_line_error(capsys, ["demo", "--config", str(study)], "study.yaml: seeds must name distinct seeds")
    for seeds, needle in (("''", "--seeds must name at least one seed"), ("-1", "distinct seeds of 0 or more")):
        one_line_error(capsys, ["demo", "--quick", "--seeds", seeds.strip("'"), "--show-config"], needle)


def test_select_hparams_refuses_quick_it_would_not_apply(tmp_path, capsys):
    from helpers import one_line_error

    for extra in ([], ["--show-config"]):
        one_line_error(capsys, ["demo", "--select-hparams", "--quick", "--out", str(tmp_path / "s"), *extra],
                       "--quick does not shrink it: leave it out")
    (tmp_path / "q.yaml").write_text("quick: true\n")
    one_line_error(capsys, ["demo", "--select-hparams", "--config", str(tmp_path / "q.yaml")],
                   f"{tmp_path / 'q.yaml'}: quick does not shrink it")
    assert not (tmp_path / "s").exists()
