"""generate / judge / diagnose / export with tiny local models and programmatic scorers."""

import json
import math
import shutil

import numpy as np
import pytest

from rapref.cli import main as cli
from rapref.generate import run as gen
from rapref.diagnose.run import controllability
from rapref.judge.run import JudgeConfig, win_rate
from rapref.judge.run import main as judge
from rapref.goals import GoalSpec
from rapref.stats import summary


def write_prompts(path, n=3):
    path.write_text("".join(json.dumps({"prompt_id": f"q{i}", "prompt": f"Question {i}?"}) + "\n" for i in range(n)))
    return path


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


def test_win_rate_and_stderr_by_hand():
    result = win_rate([3, 2, 1, 5], [1, 2, 4, 0])
    # outcomes 1, 0.5, 0, 1: mean 0.625; sample variance ((.375)^2 + (.125)^2 + (.625)^2 + (.375)^2) / 3
    var = (0.375 ** 2 + 0.125 ** 2 + 0.625 ** 2 + 0.375 ** 2) / 3
    assert result["win_rate"] == 0.625 and result["stderr"] == pytest.approx(math.sqrt(var / 4))
    assert (result["wins"], result["ties"], result["losses"]) == (2, 1, 1)
    assert summary([1.0, 3.0]) == {"n": 2, "mean": 2.0, "stderr": 1.0}


CALLS = {"n": 0}


def length_score(row, text):
    CALLS["n"] += 1
    return float(len(text))


def test_judge_aggregate_pairwise_and_cache(tmp_path):
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"prompt_id": f"q{i}", "goal": 10.0, "prompt": "p", "text": "x" * k}) + "\n"
                         for i, k in enumerate([3, 2, 1, 5])))
    b.write_text("".join(json.dumps({"prompt_id": f"q{i}", "goal": None, "prompt": "p", "text": "y" * k}) + "\n"
                         for i, k in enumerate([1, 2, 4, 0])))
    CALLS["n"] = 0
    cfg = JudgeConfig(generations=str(a), scorer="python:test_evaluate:length_score", out=str(tmp_path / "j"),
                      against=str(b))
    result = judge(cfg)
    assert result["mean"] == 2.75 and result["pairwise"]["win_rate"] == 0.625
    assert CALLS["n"] == 8
    cfg.overwrite = True  # the folder is rapref's own: replacing it is allowed, and --overwrite re-asks everything
    assert judge(cfg) == {**result} | {"pairwise": result["pairwise"]}
    assert CALLS["n"] == 16  # the folder's cache went with it: every score asked again, the same result
    saved = json.loads((tmp_path / "j" / "aggregate.json").read_text())
    assert saved["by_goal"]["10"]["n"] == 4
    assert len((tmp_path / "j" / "scores.jsonl").read_text().splitlines()) == 4


def test_ifeval_checkers():
    from rapref.judge.scorers import build_scorer

    scorer = build_scorer("constraints")
    row = {"constraints": [{"type": "max_words", "value": 5}, {"type": "no_commas"},
                           {"type": "include_keywords", "value": ["apple"]}, {"type": "all_lowercase"}]}
    assert scorer.score([row, row], ["an apple a day", "An apple, a day keeps"]) == [1.0, 0.5]
    assert scorer.score([{"constraints": [{"type": "json_format"}]}], ['{"a": 1}']) == [1.0]


def test_reward_model_scorer(tmp_path, tiny_model_dir):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from rapref.judge.scorers import build_scorer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    scorer = build_scorer(f"reward-model:{tmp_path / 'rm'}")
    scores = scorer.score([{"prompt": "Hi?"}, {"prompt": "Hi?"}], ["Hello.", "Go away, now."])
    assert len(scores) == 2 and all(np.isfinite(scores)) and scores[0] != scores[1]


def test_unlearning_probe_matches_direct_logprobs(trained_dir, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rapref.inference.logprobs import LogProbModel, unlearning_probe

    pair = {"prompt": "What is 2 plus 2?", "chosen": "It is 4.", "rejected": "Maybe 7?", "score_chosen": 9.0,
            "score_rejected": 6.0}
    spec = GoalSpec.load(trained_dir)
    tokenizer = AutoTokenizer.from_pretrained(trained_dir)

    def direct(model_dir, messages, response):
        model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        prompt_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": response}],
                                             tokenize=False)
        p = tokenizer(prompt_ids, add_special_tokens=False)["input_ids"]
        f = tokenizer(full, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([f])).logits[0]
        logps = torch.log_softmax(logits, -1)
        return sum(logps[t - 1, f[t]].item() for t in range(len(p), len(f)))

    rows = unlearning_probe([pair], LogProbModel(str(trained_dir)), LogProbModel(str(tiny_model_dir)), spec,
                            ("own", "none"), 5.0, "relabeled")
    own_rejected = next(r for r in rows if r["condition"] == "own" and r["response"] == "rejected")
    expected = (direct(trained_dir, [{"role": "system", "content": spec.text(6)},
                                     {"role": "user", "content": pair["prompt"]}], "Maybe 7?")
                - direct(tiny_model_dir, [{"role": "system", "content": spec.text(6)},
                                          {"role": "user", "content": pair["prompt"]}], "Maybe 7?"))
    assert own_rejected["band"] == ">= 5" and own_rejected["mean_delta_logp"] == pytest.approx(expected, abs=1e-4)


def test_controllability_by_hand():
    rows = [{"goal": g, "score": s} for g, s in [(1, 0.1), (1, 0.2), (5, 0.4), (5, 0.5), (10, 0.9), (10, 0.8)]]
    result = controllability(rows)
    # goal ranks (ties averaged) 1.5 1.5 3.5 3.5 5.5 5.5; score ranks 1 2 3 4 6 5; deviations from 3.5:
    # (-2 -2 0 0 2 2) . (-2.5 -1.5 -.5 .5 2.5 1.5) = 16; |g|^2 = 16, |s|^2 = 17.5 -> rho = 16 / sqrt(280)
    assert result["spearman_rho"] == pytest.approx(16 / math.sqrt(280), abs=1e-9)
    assert [c["mean"] for c in result["curve"]] == pytest.approx([0.15, 0.45, 0.85])


def test_diagnose_commands_write_reports(tmp_path, trained_dir, tiny_model_dir, relabeled_dir, capsys):
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps({"goal": g, "score": g / 10 + 0.01 * k}) + "\n"
                              for g in (1, 4, 7, 10) for k in range(3)))
    assert cli(["diagnose", "controllability", "--scores", str(scores), "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "controllability.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "c" / "controllability.json").read_text())
    assert saved["spearman_rho"] > 0.95 and [c["goal"] for c in saved["curve"]] == [1, 4, 7, 10]
    common = ["--policy", str(trained_dir), "--reference", str(tiny_model_dir), "--data", str(relabeled_dir)]
    assert cli(["diagnose", "unlearning", *common, "--dpo", str(trained_dir), "--out", str(tmp_path / "u")]) == 0
    report = json.loads((tmp_path / "u" / "unlearning.json").read_text())
    assert {(r["policy"], r["condition"]) for r in report["rows"]} == {
        ("relabeled", "own"), ("relabeled", "top"), ("relabeled", "none"), ("dpo", "none")}
    assert (tmp_path / "u" / "unlearning.md").read_text().startswith("# unlearning")
    assert cli(["diagnose", "accuracy", *common, "--out", str(tmp_path / "a")]) == 0
    accuracy = json.loads((tmp_path / "a" / "accuracy.json").read_text())
    assert 0 <= accuracy["top"]["accuracy"] <= 1 and accuracy["top"]["n"] == 4


def test_implicit_relabel_feeds_augment(tmp_path, trained_dir, tiny_model_dir, capsys):
    pairs = tmp_path / "binary.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Q{i}?", "chosen": f"Good {i}.", "rejected": f"Bad {i}!"})
                             + "\n" for i in range(6)))
    out = tmp_path / "implicit.jsonl"
    assert cli(["diagnose", "implicit-relabel", "--policy", str(trained_dir), "--reference", str(tiny_model_dir),
                "--data", str(pairs), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(1 <= r["score_chosen"] <= 10 and "implicit_reward_chosen" in r for r in rows)
    assert cli(["augment", str(out), "--out", str(tmp_path / "aug"), "--test-size", "0"]) == 0
    assert json.loads((tmp_path / "aug" / "summary.json").read_text())["rows_kept"] == 6


def test_exports_from_rapref_prompt_files(tmp_path, trained_dir, capsys):
    """Generations from rapref's own prompt files (no benchmark fields): AlpacaEval takes the instruction and no
    `dataset` is invented; MT-Bench and Arena-Hard answer the benchmark's own questions, so generations without a
    `question_id` are refused (ids made from row numbers would match the wrong questions); token_len needs a
    tokenizer (the policy's, or --tokenizer)."""
    gens = tmp_path / "g.jsonl"
    gens.write_text("".join(json.dumps({"prompt_id": str(i), "goal": 10.0, "prompt": [
        {"role": "user", "content": f"Q{i}"}], "text": f"A{i}"}) + "\n" for i in range(3)))
    assert cli(["export", "alpaca-eval", str(gens), "--name", "m", "--out", str(tmp_path / "ae.json")]) == 0
    alpaca = json.loads((tmp_path / "ae.json").read_text())
    assert alpaca[1] == {"instruction": "Q1", "output": "A1", "generator": "m"}
    for fmt in ("mt-bench", "arena-hard"):
        capsys.readouterr()
        assert cli(["export", fmt, str(gens), "--name", "m", "--out", str(tmp_path / f"{fmt}.jsonl")]) == 2
        assert "row 1, field 'question_id': missing" in capsys.readouterr().err
        assert not (tmp_path / f"{fmt}.jsonl").exists()
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"prompt_id": str(i), "question_id": 80 + i, "goal": 10.0, "prompt": [
        {"role": "user", "content": f"Q{i}"}], "text": f"A{i}"}) + "\n" for i in range(3)))
    assert cli(["export", "mt-bench", str(questions), "--name", "m", "--out", str(tmp_path / "mt.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "mt.jsonl").read_text().splitlines()]
    assert rows[2]["question_id"] == 82 and rows[2]["choices"] == [{"index": 0, "turns": ["A2"]}]
    capsys.readouterr()  # integer ids are MT-Bench's: no Arena-Hard question has one
    assert cli(["export", "arena-hard", str(questions), "--name", "m", "--out", str(tmp_path / "ah.jsonl")]) == 2
    assert "row 1 is a MT-Bench generation (question_id 80)" in capsys.readouterr().err
    hard = tmp_path / "hard.jsonl"
    hard.write_text("".join(json.dumps({"prompt_id": str(i), "question_id": f"{i:032x}", "goal": 10.0, "prompt": [
        {"role": "user", "content": f"Q{i}"}], "text": f"A{i}"}) + "\n" for i in range(3)))
    assert cli(["export", "arena-hard", str(hard), "--name", "m", "--out", str(tmp_path / "ah.jsonl")]) == 2
    assert "--tokenizer" in capsys.readouterr().err
    assert cli(["export", "arena-hard", str(hard), "--name", "m", "--tokenizer", str(trained_dir), "--out",
                str(tmp_path / "ah.jsonl")]) == 0
    capsys.readouterr()
    assert cli(["export", "lm-eval", str(trained_dir)]) == 0
    command = capsys.readouterr().out
    assert command.startswith(f"rapref lm-eval --model rapref --model_args pretrained={trained_dir},goal=10 ")


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
