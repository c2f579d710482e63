"""Goal-safe prompt lengths.

The goal sits at the start of the prompt (system message or first user turn). Cutting a long prompt from the left
removes it, and TRL silently drops examples whose prompt reaches `max_length`. Before training, a prompt longer than
`max_prompt_length` tokens loses text from the end of its instruction (the last user turn), never the goal; a prompt
whose goal and template alone do not fit is dropped and counted. Responses longer than what is left are cut by TRL's
`keep_start` truncation; we count them.
"""

from __future__ import annotations

from collections import Counter

from rapref.goals import GoalSpec, split_goal
from rapref.prompting import prompt_ids, tokenize_pair


def prompt_length(tokenizer, prompt) -> int:
    """Tokens of a prompt as TRL tokenizes it (`rapref.prompting`)."""
    return len(prompt_ids(tokenizer, prompt))


def fit_prompt(prompt, tokenizer, spec: GoalSpec | None, max_prompt_length: int):
    """Return (prompt, status) with status 'fits', 'trimmed' or 'dropped'. The input is not mutated."""
    length = prompt_length(tokenizer, prompt)
    if length <= max_prompt_length:
        return prompt, "fits"
    if isinstance(prompt, str):
        user_index, text = None, prompt
    else:
        user_index = max((i for i, m in enumerate(prompt) if m["role"] == "user"), default=None)
        if user_index is None:
            return prompt, "dropped"
        text = prompt[user_index]["content"]
    before, instruction, after = split_goal(text, spec)
    ids = tokenizer(instruction, add_special_tokens=False)["input_ids"]
    keep = len(ids) - (length - max_prompt_length)
    for _ in range(4):  # re-tokenising can merge differently at the cut; a few tries settle it
        if keep <= 0:
            return prompt, "dropped"
        new_text = before + tokenizer.decode(ids[:keep]) + after
        if user_index is None:
            candidate = new_text
        else:
            candidate = [dict(m) for m in prompt]
            candidate[user_index]["content"] = new_text
        over = prompt_length(tokenizer, candidate) - max_prompt_length
        if over <= 0:
            return candidate, "trimmed"
        keep -= over
    return prompt, "dropped"


def fit_dataset(dataset, tokenizer, spec: GoalSpec | None, max_prompt_length: int | None, max_length: int | None,
                completion_columns=("chosen", "rejected")):
    """Apply `fit_prompt` to a `datasets.Dataset`; returns (dataset, counts)."""
    counts: Counter[str] = Counter()
    if not max_prompt_length or len(dataset) == 0:
        return dataset, {"fits": len(dataset), "trimmed": 0, "dropped": 0, "responses_truncated": 0}

    def fit(example):
        prompt, status = fit_prompt(example["prompt"], tokenizer, spec, max_prompt_length)
        example["prompt"] = prompt
        example["_fit"] = status
        truncated = False
        if max_length and status != "dropped":
            for column in completion_columns:
                if column in example:
                    ids, completion = tokenize_pair(tokenizer, prompt, example[column])
                    truncated = truncated or len(ids) + len(completion) > max_length
        example["_truncated"] = truncated
        return example

    fitted = dataset.map(fit, desc="Fitting prompts (goal-safe)")
    statuses = Counter(fitted["_fit"])
    counts.update({"fits": statuses.get("fits", 0), "trimmed": statuses.get("trimmed", 0),
                   "dropped": statuses.get("dropped", 0), "responses_truncated": sum(fitted["_truncated"])})
    fitted = fitted.filter(lambda e: e["_fit"] != "dropped").remove_columns(["_fit", "_truncated"])
    return fitted, dict(counts)
