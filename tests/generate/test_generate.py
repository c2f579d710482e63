"""`rapref generate` on a trained policy: the goal reaches the model in the placement the policy was trained with,
down to the tokens, and a goal sweep writes one row per prompt and goal."""

import json
import shutil

from helpers import write_prompts
from rapref.cli import main as cli
from rapref.generate import run as gen
from rapref.goals import GoalSpec


def test_goal_reaches_the_model_in_the_saved_placement(tmp_path, trained_dir, monkeypatch):
    seen = []
    monkeypatch.setattr(gen, "generate_texts", lambda model, prompts, sampling, backend, **_: seen.extend(prompts) or
                        ["x"] * len(prompts))
    prompts = write_prompts(tmp_path / "p.jsonl", 2)
    gen.main(gen.GenerateConfig(model=str(trained_dir), prompts=str(prompts), out=str(tmp_path / "g.jsonl")))
    spec = GoalSpec.load(trained_dir)
    assert spec.placement == "system"
    assert seen[0] == [{"role": "system", "content": spec.text(10)}, {"role": "user", "content": "Question 0?"}]
    # the same model folder saying `user` placement puts the goal before the instruction in the user turn
    user_dir = tmp_path / "user_model"
    shutil.copytree(trained_dir, user_dir)
    (user_dir / "rapref_goal.json").write_text(json.dumps({**spec.to_json(), "placement": "user"}))
    seen.clear()
    gen.main(gen.GenerateConfig(model=str(user_dir), prompts=str(prompts), out=str(tmp_path / "g2.jsonl"),
                                goals=[3.0]))
    assert seen[0] == spec.text(3) + "\n\nQuestion 0?"  # string prompts stay strings; see rapref.prompting


def test_goal_text_reaches_the_tokens(trained_dir):
    """The rendered input ids decode to a prompt holding the goal (checked at the tokenizer, not just the dicts)."""
    from rapref.models import load_tokenizer
    from rapref.prompting import goal_prompt, prompt_ids

    tokenizer = load_tokenizer(trained_dir)
    ids = prompt_ids(tokenizer, goal_prompt("Hi?", GoalSpec.load(trained_dir), 10))
    assert "Overall score: 10." in tokenizer.decode(ids)


def test_goal_sweep_writes_one_row_per_prompt_and_goal(tmp_path, trained_dir, capsys):
    prompts = write_prompts(tmp_path / "p.jsonl", 3)
    out = tmp_path / "sweep.jsonl"
    code = cli(["generate", str(trained_dir), "--prompts", str(prompts), "--out", str(out), "--goals", "1,5,10",
                "--max-new-tokens", "4", "--backend", "transformers"])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((r["prompt_id"], r["goal"]) for r in rows) == sorted(
        (f"q{i}", g) for i in range(3) for g in (1.0, 5.0, 10.0))
    assert all(isinstance(r["text"], str) and r["sampling"]["max_new_tokens"] == 4 for r in rows)
