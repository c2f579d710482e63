"""lm-evaluation-harness on a goal-conditioned policy (`rapref lm-eval`, model `rapref`): the prompt tokens lm-eval
feeds the model are the ones rapref's own prompting gives (`prompt_ids` of `goal_prompt`), for every goal placement,
on the local tasks in examples/lm_eval (no download), and the score is computed on those tokens."""

import json
from pathlib import Path

import pytest

from helpers import ROOT, goal_policy

TASKS = ["rapref_demo_gen", "rapref_demo_mc"]
DOCS = [json.loads(line) for line in (ROOT / "examples/lm_eval/rapref_demo_qa.jsonl").read_text().splitlines()]


def _evaluate(policy: Path, goal, chat: bool, monkeypatch):
    """lm-eval's own evaluator on the `rapref` model, recording the token ids each request conditions on."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from rapref.export.lm_eval_model import RaprefLM

    monkeypatch.chdir(ROOT)  # the task files name their data relative to the repository root
    lm = RaprefLM(pretrained=str(policy), goal=goal, device="cpu", batch_size=4)
    seen = {"generate": [], "loglikelihood": []}
    generate, loglikelihood = lm._model_generate, lm._loglikelihood_tokens

    def record_generate(context, *args, **kwargs):
        pad = lm.tokenizer.pad_token_id
        for row in context.tolist():
            seen["generate"].append(row[next(i for i, t in enumerate(row) if t != pad):])  # left padding off
        return generate(context, *args, **kwargs)

    def record_loglikelihood(requests, *args, **kwargs):
        seen["loglikelihood"] += [(list(context), list(continuation)) for _, context, continuation in requests]
        return loglikelihood(requests, *args, **kwargs)

    monkeypatch.setattr(lm, "_model_generate", record_generate)
    monkeypatch.setattr(lm, "_loglikelihood_tokens", record_loglikelihood)
    results = lm_eval.simple_evaluate(model=lm, tasks=TASKS, apply_chat_template=chat, log_samples=True,
                                      task_manager=TaskManager(include_path=str(ROOT / "examples/lm_eval")))
    return lm, seen, results


@pytest.mark.parametrize("placement,chat,goal", [("system", True, 10), ("user", True, 7.5),
                                                 ("user-suffix", True, 3), ("user", False, 10)])
def test_lm_eval_sees_rapref_prompt_tokens_and_scores_on_them(tmp_path, tiny_model_dir, monkeypatch, placement,
                                                               chat, goal):
    import torch

    from rapref.goals import GoalSpec, goal_prompt
    from rapref.models import load_model, load_tokenizer
    from rapref.prompting import prompt_ids

    policy = goal_policy(tiny_model_dir, tmp_path / "policy", placement, chat)
    lm, seen, results = _evaluate(policy, goal, chat, monkeypatch)
    spec, tokenizer = GoalSpec.load(policy), load_tokenizer(str(policy))
    assert lm.goal == goal and lm.chat == chat
    expected_gen = [prompt_ids(tokenizer, goal_prompt(f"Answer in one word. {d['question']}", spec, goal))
                    for d in DOCS]
    expected_mc = [prompt_ids(tokenizer, goal_prompt(d["question"], spec, goal)) for d in DOCS]
    assert sorted(seen["generate"]) == sorted(expected_gen)
    assert sorted({tuple(c) for c, _ in seen["loglikelihood"]}) == sorted(map(tuple, expected_mc))
    goal_ids = tokenizer(spec.text(goal), add_special_tokens=False)["input_ids"]
    assert all(_contains(ids, goal_ids) for ids in expected_gen)  # the goal is in them (not vacuous)

    # the score: lm-eval's log-likelihood of each choice is the policy's, on rapref's prompt ids
    model = load_model(str(policy)).eval()
    samples = results["samples"]["rapref_demo_mc"]
    correct = []
    for sample in samples:
        doc = sample["doc"]
        context = prompt_ids(tokenizer, goal_prompt(doc["question"], spec, goal))
        mine = []
        for choice, resp in zip(doc["choices"], sample["resps"]):
            continuation = next(cont for ctx, cont in seen["loglikelihood"] if ctx == context and
                                tokenizer.decode(cont).strip() == choice)
            with torch.no_grad():
                logits = model(torch.tensor([context + continuation])).logits[0, len(context) - 1:-1]  # (C, V)
            logp = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(continuation)[:, None]).sum()
            assert float(resp[0][0]) == pytest.approx(float(logp), abs=1e-3)
            mine.append(float(logp))
        correct.append(float(max(range(len(mine)), key=mine.__getitem__) == doc["label"]))
    assert results["results"]["rapref_demo_mc"]["acc,none"] == pytest.approx(sum(correct) / len(correct))
    assert 0 <= results["results"]["rapref_demo_gen"]["exact_match,none"] <= 1
    assert len(results["samples"]["rapref_demo_gen"]) == len(DOCS)


def _contains(ids: list[int], part: list[int]) -> bool:
    return any(ids[i:i + len(part)] == part for i in range(len(ids) - len(part) + 1))


def test_rapref_lm_eval_command_writes_lm_eval_results_with_the_goal(tmp_path, tiny_model_dir, monkeypatch):
    from rapref.cli import main as cli

    policy = goal_policy(tiny_model_dir, tmp_path / "policy", "system")
    monkeypatch.chdir(ROOT)
    assert cli(["lm-eval", "--model", "rapref", "--model_args", f"pretrained={policy},goal=4",
                "--include_path", "examples/lm_eval", "--tasks", ",".join(TASKS), "--apply_chat_template",
                "--device", "cpu", "--batch_size", "4", "--output_path", str(tmp_path / "out"),
                "--log_samples"]) == 0
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    assert results["config"]["model"] == "rapref"
    assert set(results["results"]) == set(TASKS) and 0 <= results["results"]["rapref_demo_mc"]["acc,none"] <= 1
    logged = [json.loads(line) for line in next((tmp_path / "out").rglob("samples_rapref_demo_gen_*.jsonl"))
              .read_text().splitlines()]
    context = logged[0]["arguments"]["gen_args_0"]["arg_0"]
    assert context.startswith("<|im_start|>system\nYou are an assistant") and "Overall score: 4." in context


def test_refusals_are_one_line(tmp_path, tiny_model_dir, monkeypatch, capsys):
    from rapref.cli import main as cli

    policy = goal_policy(tiny_model_dir, tmp_path / "policy", "user")
    monkeypatch.chdir(ROOT)
    base = ["lm-eval", "--model", "rapref", "--include_path", "examples/lm_eval", "--tasks", "rapref_demo_mc",
            "--device", "cpu", "--limit", "1"]
    for argv, needle in [(["--model_args", f"pretrained={policy}"], "run lm-eval with --apply_chat_template"),
                         (["--model_args", f"pretrained={policy},goal=11", "--apply_chat_template"],
                          "goal 11 lies outside the policy's score scale 1-10"),
                         (["--model_args", f"pretrained={tiny_model_dir}", "--apply_chat_template"],
                          "no rapref_goal.json")]:
        capsys.readouterr()
        assert cli(base + argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert needle in err[-1] and err[-1].startswith("rapref lm-eval: error:"), err[-3:]
