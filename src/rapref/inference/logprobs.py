"""Log-probabilities of responses under a policy: the unlearning probe, implicit-reward accuracy, and relabeling
with a DPO policy's implicit reward (no judge scores needed).

log p(y | x) sums the log-probabilities of the response tokens after the prompt, tokenized exactly as TRL's
DPOTrainer tokenizes them (`rapref.prompting.tokenize_pair`): the quantity DPO moves.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from rapref.goals import GoalSpec
from rapref.models import check_lm_head_loaded, check_same_family, device, load_model, load_tokenizer
from rapref.prompting import goal_prompt, response_text, tokenize_pair
from rapref.score_mapping import fit_score_mapping
from rapref.stats import summary


class LogProbModel:
    """A causal LM and its tokenizer, scoring log p(response | prompt) in batches."""

    def __init__(self, model_dir: str, batch_size: int = 8):
        self.tokenizer = load_tokenizer(model_dir)
        self.device = device()
        model, info = load_model(model_dir, output_loading_info=True)
        check_lm_head_loaded(model, info, model_dir)
        self.model = model.to(self.device).eval()
        self.batch_size, self.path = batch_size, model_dir

    def check_compatible(self, other: "LogProbModel") -> None:
        """Refuse to compare log-probabilities of models that read other tokens or have another shape."""

        check_same_family(self.path, self.model, self.tokenizer, other.path, other.model, other.tokenizer)

    def logprobs(self, prompts: list, responses: list[str]) -> np.ndarray:
        """log p(response | prompt) for goal-conditioned prompts (strings or message lists)."""
        import torch

        out = []
        for start in range(0, len(prompts), self.batch_size):
            ids, masks = [], []
            for prompt, response in zip(prompts[start:start + self.batch_size],
                                        responses[start:start + self.batch_size]):
                prompt_ids, completion_ids = tokenize_pair(self.tokenizer, prompt, response)
                ids.append(prompt_ids + completion_ids)
                masks.append([0] * len(prompt_ids) + [1] * len(completion_ids))
            width = max(map(len, ids))
            pad = self.tokenizer.pad_token_id or 0
            input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids], device=self.device)  # (B, T)
            attention = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=self.device)
            mask = torch.tensor([m + [0] * (width - len(m)) for m in masks], device=self.device)
            with torch.no_grad():
                logits = self.model(input_ids=input_ids, attention_mask=attention).logits.float()  # (B, T, V)
            token_logps = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:, None])[..., 0]
            out += (token_logps * mask[:, 1:]).sum(dim=1).tolist()  # (B,)
        return np.array(out)


def unlearning_probe(pairs: list[dict], policy: LogProbModel, reference: LogProbModel, spec: GoalSpec | None,
                     conditions: tuple[str, ...], band_threshold: float, label: str) -> list[dict]:
    """Change in log p of held-out chosen and rejected responses, policy minus reference, by score band.

    conditions: "own" (goal = the response's own score), "top" (goal = top of the scale), "none" (no goal).
    The reference (the start model) is asked with the same prompt, goal included, as the policy: the change then
    measures what training did under that goal, as DPO's implicit reward does, and not how the start reads goals.
    Returns one row per (condition, response, band).
    """
    results = []
    for condition in conditions:
        for role in ("chosen", "rejected"):
            responses = [response_text(p[role]) for p in pairs]
            scores = [p[f"score_{role}"] for p in pairs]
            goals = [None if condition == "none" or spec is None else (s if condition == "own" else spec.top)
                     for s in scores]
            prompts = [goal_prompt(p["prompt"], spec, g) for p, g in zip(pairs, goals)]
            delta = policy.logprobs(prompts, responses) - reference.logprobs(prompts, responses)
            bands = defaultdict(list)
            for score, d in zip(scores, delta):
                bands[f">= {band_threshold:g}" if score >= band_threshold else f"< {band_threshold:g}"].append(d)
            for band, values in bands.items():
                stats = summary(values)
                results.append({"policy": label, "condition": condition, "response": role, "band": band,
                                "n": stats["n"], "mean_delta_logp": stats["mean"], "stderr": stats["stderr"]})
    return results


def implicit_rewards(pairs: list[dict], policy: LogProbModel, reference: LogProbModel, beta: float,
                     spec: GoalSpec | None = None, goal: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """beta * log(pi / pi_ref) for chosen and rejected, both models given the same (goal-conditioned) prompt, as in
    training."""
    prompts = [goal_prompt(p["prompt"], spec, goal) for p in pairs]
    rewards = []
    for role in ("chosen", "rejected"):
        responses = [response_text(p[role]) for p in pairs]
        rewards.append(beta * (policy.logprobs(prompts, responses) - reference.logprobs(prompts, responses)))
    return rewards[0], rewards[1]


def implicit_reward_accuracy(chosen: np.ndarray, rejected: np.ndarray) -> dict:
    stats = summary((chosen > rejected).astype(float))
    return {"n": stats["n"], "accuracy": stats["mean"], "stderr": stats["stderr"]}


def implicit_relabel_rows(pairs: list[dict], chosen: np.ndarray, rejected: np.ndarray, scale, method="quantile"):
    """Rows of the `pairs` schema scored by the implicit reward mapped onto `scale` (fitted on these rewards)."""

    mapper = fit_score_mapping(np.concatenate([chosen, rejected]), scale, method)
    return [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"],
             "score_chosen": mapper(float(c)), "score_rejected": mapper(float(r)),
             "implicit_reward_chosen": float(c), "implicit_reward_rejected": float(r)}
            for p, c, r in zip(pairs, chosen, rejected)], mapper.describe
