"""The synthetic world by hand, and `rapref demo --quick` end to end."""

import json
import random

from rapref.demo.world import WorldConfig, build_world, generate_answer, judge_score, true_reward


def test_true_reward_by_hand():
    assert true_reward("sort: d b a c", "a b c d") == 1.0
    assert true_reward("sort: d b a c", "a b d c") == 0.5  # positions 1 and 2 right
    assert true_reward("sort: d b a c", "a b c d e") == 0.8  # an extra letter costs: 4 of 5 positions
    assert true_reward({"prompt": [{"role": "user", "content": "sort: b a"}]}, "a b") == 1.0
    assert true_reward("sort: b a", "") == 0.0


def test_generators_and_judge():
    rng = random.Random(0)
    assert generate_answer("sort: c b a", 1.0, rng) == "a b c"
    assert judge_score(1.0, 0.0, rng) == 10.0 and judge_score(0.0, 0.0, rng) == 1.0
    assert judge_score(0.5, 0.0, rng) == 6.0  # 1 + 9 * 0.5 = 5.5, rounded half to even -> 6


def test_world_is_deterministic_and_shaped_like_ultrafeedback():
    cfg = WorldConfig(n_train_prompts=30, n_test_prompts=10, seed=4)
    a, b = build_world(cfg), build_world(cfg)
    assert a.train_rows == b.train_rows and len(a.test_rows) == 10
    row = a.train_rows[0]
    assert set(row) == {"source", "instruction", "completions"} and len(row["completions"]) == 4
    assert {"response", "overall_score", "annotations"} <= set(row["completions"][0])
    train_prompts = {r["instruction"] for r in a.train_rows}
    assert not train_prompts & {r["instruction"] for r in a.test_rows}


def test_quick_demo_end_to_end(tmp_path, capsys):
    from rapref.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "true reward on held-out prompts" in printed and "C1:" in printed and "C4:" in printed
    report = json.loads((out / "report.json").read_text())
    assert {row["arm"] for row in report["table"]} == {"sft", "dpo", "dpo-dup", "relabeled", "half-relabeled",
                                                       "goal-sft"}
    assert set(report["claims"]) == {"C1", "C2", "C3", "C4"}
    assert all(0 <= row["true_reward"] <= 1 for row in report["table"])
    for name in ("report.md", "controllability.png", "unlearning.png", "rewards.png"):
        assert (out / name).stat().st_size > 500, name
    seed = out / "seed-1"
    for stage in ("world/train.jsonl", "data/relabeled/data/train-00000-of-00001.parquet", "sft/model.safetensors",
                  "arms/relabeled/rapref_goal.json", "gen/relabeled-sweep.jsonl", "judge/relabeled/scores.jsonl"):
        assert (seed / stage).exists(), stage
    sweep = [json.loads(line) for line in (seed / "gen" / "relabeled-sweep.jsonl").read_text().splitlines()]
    assert {r["goal"] for r in sweep} == {1.0, 5.0, 10.0}
    # a second run reuses every finished stage
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    # a stage without its completion marker (a kill before it finished) is done again; finished ones are not
    arm = seed / "arms" / "dpo"
    (arm / ".done").unlink()
    (arm / "half-written.tmp").write_text("x")
    (seed / "results.json").unlink()
    sft_mtime = (seed / "sft" / "model.safetensors").stat().st_mtime_ns
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    assert (arm / ".done").is_file() and not (arm / "half-written.tmp").exists()
    assert (seed / "sft" / "model.safetensors").stat().st_mtime_ns == sft_mtime
