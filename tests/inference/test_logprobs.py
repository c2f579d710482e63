"""Log-probabilities (`rapref.inference.logprobs`): the unlearning probe's differences equal the ones computed directly
from each model's logits on the chat-templated prompt."""

import pytest

from rapref.goals import GoalSpec


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
