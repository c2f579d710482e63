"""No silently wrong number: like-with-like comparisons, caches keyed by what computes them, reruns that refuse changed
settings, compounding LoRA iterations, degenerate values refused, mismatched models refused, bugs shown as bugs."""

import importlib
import json
import sys
from pathlib import Path

import pytest

from rapref.cli import main as cli
from tests.standin_server import one_line_error


def length(row, text):
    return float(len(text))


def gens_file(path: Path, rows, sampling=None) -> Path:
    """rows: (prompt_id, prompt, goal, text)."""
    path.write_text("".join(json.dumps({"prompt_id": p, "prompt": q, "goal": g, "sample": 0, "turn": 0, "text": t,
                                        "sampling": sampling or {"temperature": 0.7, "max_new_tokens": 32}}) + "\n"
                            for p, q, g, t in rows))
    return path


# --- pairwise judging compares like with like -----------------------------------------------------------------------


def test_files_from_different_prompt_files_are_refused(tmp_path, capsys):
    a = gens_file(tmp_path / "a.jsonl", [("0", "What is 2+2?", 10.0, "four"), ("1", "Name a colour.", 10.0, "red")])
    b = gens_file(tmp_path / "b.jsonl", [("0", "Write a poem.", None, "x"), ("1", "Translate cat.", None, "y")])
    err = one_line_error(capsys, ["judge", str(a), "--against", str(b), "--scorer", "python:test_trust_results:length",
                                  "--out", str(tmp_path / "j")], "prompt_id '0' holds different prompts")
    assert "What is 2+2?" in err and "Write a poem." in err


def test_rows_are_matched_by_prompt_content_not_row_order(tmp_path):
    from rapref.judge.run import JudgeConfig, main

    prompts = [f"Question {i}?" for i in range(4)]
    a = gens_file(tmp_path / "a.jsonl", [(f"a{i}", q, 10.0, "x" * (i + 1)) for i, q in enumerate(prompts)])
    # the baseline comes from a file in another order, with other ids, and one prompt more
    b = gens_file(tmp_path / "b.jsonl", [(f"b{i}", q, None, "y" * 2) for i, q in reversed(list(enumerate(prompts)))]
                  + [("b9", "Unrelated?", None, "zzzz")])
    result = main(JudgeConfig(generations=str(a), against=str(b), scorer="python:test_trust_results:length",
                              out=str(tmp_path / "j")))["pairwise"]
    # lengths 1, 2, 3, 4 against 2: one loss, one tie, two wins
    assert result["n"] == 4 and result["wins"] == 2 and result["ties"] == 1 and result["losses"] == 1
    assert result["matched_on"] == ["prompt", "goal", "sample", "turn"]
    assert result["unmatched"] == 0 and result["unmatched_against"] == 1
    saved = json.loads((tmp_path / "j" / "aggregate.json").read_text())["pairwise"]
    assert saved["unmatched_against"] == 1 and saved["goals"] == ["10", "none"]


def test_different_goals_and_sampling_are_said_and_recorded(tmp_path, capsys):
    a = gens_file(tmp_path / "a.jsonl", [("0", "Q?", 10.0, "aa")], sampling={"temperature": 0.7, "top_p": 1.0})
    b = gens_file(tmp_path / "b.jsonl", [("0", "Q?", 8.0, "a")], sampling={"temperature": 1.0, "top_p": 1.0})
    capsys.readouterr()
    assert cli(["judge", str(a), "--against", str(b), "--scorer", "python:test_trust_results:length", "--out",
                str(tmp_path / "j")]) == 0
    out = capsys.readouterr().out
    assert "different goals: 10" in out and "against 8" in out and "temperature 0.7 vs 1.0" in out
    pairwise = json.loads((tmp_path / "j" / "aggregate.json").read_text())["pairwise"]
    assert pairwise["sampling_differences"] == {"temperature": [0.7, 1.0]}
    assert len(pairwise["notes"]) == 2


def test_multi_turn_rows_match_their_own_question(tmp_path):
    """A second turn's prompt holds the model's own first answer, which differs between the two sets."""
    from rapref.judge.run import JudgeConfig, main

    def turns(path, answer, text2):
        rows = [{"prompt_id": "81", "prompt": "First?", "goal": None, "sample": 0, "turn": 0, "text": answer},
                {"prompt_id": "81", "prompt": [{"role": "user", "content": "First?"},
                                               {"role": "assistant", "content": answer},
                                               {"role": "user", "content": "Second?"}],
                 "goal": None, "sample": 0, "turn": 1, "text": text2}]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    result = main(JudgeConfig(generations=str(turns(tmp_path / "a.jsonl", "aaa", "bbbb")),
                              against=str(turns(tmp_path / "b.jsonl", "a", "b")),
                              scorer="python:test_trust_results:length", out=str(tmp_path / "j")))["pairwise"]
    assert result["n"] == 2 and result["wins"] == 2 and result["prompts"] == 1  # both turns cluster on one question


# --- caches cannot go stale ------------------------------------------------------------------------------------------


def test_a_reward_model_replaced_in_place_is_scored_again(tmp_path, capsys):
    rm = tmp_path / "rm"
    gens = gens_file(tmp_path / "g.jsonl", [(str(i), f"Question {i}?", None, f"Answer {i}.") for i in range(3)])
    assert cli(["model", "tiny", "--kind", "reward-model", "--seed", "0", "--out", str(rm), "--quiet"]) == 0
    judge = ["judge", str(gens), "--scorer", f"reward-model:{rm}", "--out", str(tmp_path / "j"), "--quiet"]
    assert cli(judge) == 0
    first = [r["score"] for r in map(json.loads, (tmp_path / "j" / "scores.jsonl").read_text().splitlines())]
    assert cli(judge + ["--overwrite"]) == 0  # --overwrite re-asks everything (the folder cache goes with it)
    cached = (tmp_path / "j" / "cache.jsonl").read_text().splitlines()
    assert len(cached) == 3
    assert cli(["model", "tiny", "--kind", "reward-model", "--seed", "1", "--out", str(rm), "--overwrite",
                "--quiet"]) == 0
    assert cli(judge + ["--overwrite"]) == 0
    second = [r["score"] for r in map(json.loads, (tmp_path / "j" / "scores.jsonl").read_text().splitlines())]
    assert second != first and len((tmp_path / "j" / "cache.jsonl").read_text().splitlines()) == 3


def test_an_edited_python_scorer_is_scored_again(tmp_path, monkeypatch):
    from rapref.judge.run import JudgeConfig, main

    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "my_scorer.py"
    gens = gens_file(tmp_path / "g.jsonl", [("0", "Q?", None, "abc")])
    cache = tmp_path / "cache.jsonl"
    scores = []
    for body in ("return 1.0", "return 2.0"):
        module.write_text(f"def score(row, text):\n    {body}\n")
        sys.modules.pop("my_scorer", None)
        importlib.invalidate_caches()
        result = main(JudgeConfig(generations=str(gens), scorer="python:my_scorer:score", out=str(tmp_path / "j"),
                                  cache=str(cache), overwrite=True))
        scores.append(result["mean"])
    assert scores == [1.0, 2.0]


def test_a_generation_resume_file_is_keyed_by_the_models_content(tmp_path, tiny_model_dir):
    import shutil

    from rapref.generate.run import GenerateConfig, resume_settings

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    cfg = GenerateConfig(model=str(model), prompts="p.jsonl", out="o.jsonl", no_goal=True)
    before = resume_settings(cfg, [None], [{"prompt_id": "0", "prompt": "Q"}])
    (model / "config.json").write_text((model / "config.json").read_text() + " ")  # saved again
    after = resume_settings(cfg, [None], [{"prompt_id": "0", "prompt": "Q"}])
    assert before["model_fingerprint"] != after["model_fingerprint"]


# --- reuse with changed settings is refused, never mixed ------------------------------------------------------------


def test_train_resume_with_other_settings_is_refused(tmp_path, capsys, tiny_model_dir, relabeled_dir):
    base = ["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}",
            f"output_dir={tmp_path / 'run'}", "training.max_steps=2", "training.max_length=224",
            "data.max_prompt_length=160", "training.disable_tqdm=true"]
    assert cli(base + ["--quiet"]) == 0
    for change, needle in (("algorithm.beta=0.5", "algorithm.beta 0.1 -> 0.5"),
                           ("training.max_steps=4", "training.max_steps 2 -> 4"),
                           ("training.learning_rate=1e-3", "training.learning_rate")):
        err = one_line_error(capsys, base + [change, "--resume"], needle)
        assert "--overwrite" in err and "output_dir=NEW" in err
    run = tmp_path / "run"
    (run / ".rapref").rename(run / ".rapref-unfinished")  # as if killed: a finished run's resume is a no-op
    assert cli(base + ["training.logging_steps=5", "--resume", "--quiet"]) == 0  # logging changes no step
    launches = (run / "launches.jsonl").read_text().splitlines()
    assert [json.loads(line)["command"] for line in launches] == ["train", "train --resume"]
    assert all("git_hash" in json.loads(line) and "created" in json.loads(line) for line in launches)


@pytest.fixture()
def loop(tmp_path, tiny_model_dir):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt_id": f"p{i}", "prompt": f"What is {i} plus {i}?"}) + "\n"
                               for i in range(4)))
    return ["onpolicy", "--policy", str(tiny_model_dir), "--prompts", str(prompts), "--scorer",
            "python:test_trust_results:length", "--samples", "2", "--max-new-tokens", "4", "--out",
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


# --- degenerate settings are refused, not run ------------------------------------------------------------------------


TRAIN_DEGENERATE = [("algorithm.beta=0", "algorithm.beta must be above 0"),
                    ("algorithm.beta=-0.1", "algorithm.beta must be above 0"),
                    ("training.max_steps=0", "trains for 0 steps"),
                    ("training.num_train_epochs=0", "trains for 0 steps"),
                    ("data.max_prompt_length=0", "data.max_prompt_length must be at least 1"),
                    ("training.learning_rate=0", "training.learning_rate must be above 0")]


@pytest.mark.parametrize("override,needle", TRAIN_DEGENERATE)
def test_degenerate_training_values_are_refused(override, needle, tmp_path, capsys, tiny_model_dir, relabeled_dir):
    one_line_error(capsys, ["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}",
                            f"output_dir={tmp_path / 'run'}", override], needle)
    assert not (tmp_path / "run").exists()


GENERATE_DEGENERATE = [(["--temperature", "-1"], "--temperature must be 0 (greedy) or from 0.01 to 100"),
                       (["--num-samples", "0"], "--num-samples must be at least 1"),
                       (["--limit", "0"], "--limit must be at least 1"),
                       (["--top-p", "0"], "--top-p must lie in (0, 1]"),
                       (["--top-p", "2"], "--top-p must lie in (0, 1]"),
                       (["--batch-size", "0"], "--batch-size must be at least 1"),
                       (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1")]


@pytest.mark.parametrize("flags,needle", GENERATE_DEGENERATE)
def test_degenerate_sampling_values_are_refused(flags, needle, tmp_path, capsys, trained_dir):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "Q?"}) + "\n")
    one_line_error(capsys, ["generate", str(trained_dir), "--prompts", str(prompts), "--out",
                            str(tmp_path / "g.jsonl"), *flags], needle)
    assert not (tmp_path / "g.jsonl").exists()


@pytest.mark.parametrize("size,needle", [("-1", "--test-size must be"), ("2.5", "--test-size must be"),
                                         ("12", "holds out 12 prompts, but the data has 12"),
                                         ("100", "holds out 100 prompts")])
def test_impossible_test_sizes_are_refused(size, needle, tmp_path, capsys):
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"Q{i}?", "chosen": "a", "rejected": "b", "score_chosen": 8,
                                       "score_rejected": 3}) + "\n" for i in range(12)))
    one_line_error(capsys, ["augment", str(src), "--out", str(tmp_path / "d"), "--test-size", size], needle)
    assert cli(["augment", str(src), "--out", str(tmp_path / "d"), "--test-size", "11", "--quiet"]) == 0


# --- mismatched models are refused -----------------------------------------------------------------------------------


def test_diagnose_refuses_mismatched_models(tmp_path, capsys, tiny_model_dir, trained_dir, relabeled_dir):
    from rapref.tiny import DEFAULT_CORPUS, build_tiny

    other_vocab = build_tiny(tmp_path / "other-vocab", DEFAULT_CORPUS, vocab_size=300)
    wider = build_tiny(tmp_path / "wider", DEFAULT_CORPUS, hidden_size=32)
    assert cli(["model", "tiny", "--kind", "reward-model", "--out", str(tmp_path / "rm"), "--quiet"]) == 0
    probe = ["diagnose", "unlearning", "--policy", str(trained_dir), "--data", str(relabeled_dir)]
    one_line_error(capsys, probe + ["--reference", str(other_vocab), "--out", str(tmp_path / "d1")],
                   "different tokenizers")
    one_line_error(capsys, probe + ["--reference", str(tmp_path / "rm"), "--out", str(tmp_path / "d2")],
                   "not a causal language model checkpoint")
    one_line_error(capsys, probe + ["--reference", str(tiny_model_dir), "--dpo", str(wider), "--out",
                                    str(tmp_path / "d3")], "different hidden_size")


# --- no tracebacks, no half-written markers ----------------------------------------------------------------------------


def test_judge_names_a_bad_later_row(tmp_path, capsys):
    gens = tmp_path / "g.jsonl"
    gens.write_text(json.dumps({"prompt_id": "0", "prompt": "Q", "text": "a"}) + "\n"
                    + json.dumps({"prompt_id": "1", "prompt": "Q"}) + "\n")
    one_line_error(capsys, ["judge", str(gens), "--scorer", "python:test_trust_results:length", "--out",
                            str(tmp_path / "j")], "row 2, field 'text': missing")
    gens.write_text(json.dumps({"prompt_id": "0", "prompt": "Q", "text": "a"}) + "\n"
                    + json.dumps({"prompt_id": "1", "text": "b"}) + "\n")
    one_line_error(capsys, ["judge", str(gens), "--scorer", "python:test_trust_results:length", "--out",
                            str(tmp_path / "j")], "row 2, field 'prompt': missing")


def wrong_signature(text):
    return 1.0


def broken(row, text):
    return row["no such field"]


def test_python_scorers_fail_with_one_line(tmp_path, capsys):
    gens = gens_file(tmp_path / "g.jsonl", [("0", "Q", None, "a")])
    one_line_error(capsys, ["judge", str(gens), "--scorer", "python:test_trust_results:wrong_signature", "--out",
                            str(tmp_path / "j")], "expected a function f(row, text) -> float")
    one_line_error(capsys, ["judge", str(gens), "--scorer", "python:test_trust_results:broken", "--out",
                            str(tmp_path / "j")], "failed on prompt '0' (KeyError")


def test_a_crashed_judge_leaves_no_finished_marker_and_reruns_without_flags(tmp_path, capsys):
    gens = gens_file(tmp_path / "g.jsonl", [("0", "Q", None, "a"), ("1", "R", None, "bb")])
    out = tmp_path / "j"
    one_line_error(capsys, ["judge", str(gens), "--scorer", "python:test_trust_results:broken", "--out", str(out)],
                   "failed on prompt")
    assert not (out / ".rapref").exists()
    assert cli(["judge", str(gens), "--scorer", "python:test_trust_results:length", "--out", str(out)]) == 0
    assert json.loads((out / ".rapref").read_text())["command"] == "judge"
    assert not (out / ".rapref-unfinished").exists()


def test_a_bug_is_not_reported_as_bad_input(monkeypatch, capsys):
    import rapref.cli as cli_module

    real = cli_module.build_parser

    def build():
        parser, runners = real()
        runners["prompts"] = lambda args: {}["a bug"]
        return parser, runners

    monkeypatch.setattr(cli_module, "build_parser", build)
    capsys.readouterr()
    code = cli_module.main(["prompts", "--split", "train", "--out", "x.jsonl"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" in err and "KeyError" in err and "this is a bug" in err
