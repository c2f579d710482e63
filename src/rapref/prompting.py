"""How a prompt becomes the tokens a model sees: the one home for training, generation, diagnosis and the demo.

    prompt (string or messages)  --goal_prompt-->  goal-conditioned prompt  --model_input-->  what TRL is given
                                                                            --prompt_ids / tokenize_pair-->  token ids

The rule (so that training and inference can never disagree):
- a tokenizer WITH a chat template sees every prompt as a conversation: a string prompt becomes one user turn and a
  string response one assistant turn, and the template is applied (as for an instruct model at inference);
- a tokenizer WITHOUT one sees plain text: a string prompt as it is, the response followed by EOS (TRL's standard
  format). Conversational data for such a tokenizer gets `PLAIN_CHAT_TEMPLATE` (ChatML written in ordinary text)
  installed by `rapref train`, which saves it with the model, so generation applies the same template.

Token ids are computed by TRL's own tokenization (`trl.data_utils._tokenize`, `common_prefix_length`), so the ids here
are the ids DPOTrainer trains on.
"""

from __future__ import annotations

from rapref.goals import GoalSpec, goal_prompt
from rapref.io import InputError

PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def is_conversation(value) -> bool:
    return isinstance(value, list)


def ensure_chat_template(tokenizer, conversational: bool) -> bool:
    """Install `PLAIN_CHAT_TEMPLATE` when conversational data meets a tokenizer without a template. Returns whether
    it did (the caller saves the tokenizer with the model so inference uses the same template)."""
    if conversational and not has_chat_template(tokenizer):
        tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
        return True
    return False


def model_input(prompt, tokenizer):
    """The prompt in the form the model is given: messages when the tokenizer has a chat template, else text."""
    if has_chat_template(tokenizer):
        return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if is_conversation(prompt):
        raise InputError("conversational prompts need a tokenizer with a chat template; `rapref train` installs a "
                         "plain one and saves it with the model, so use the tokenizer of the trained model folder")
    return prompt


def model_completion(completion, tokenizer):
    """A response in the form the model is given: one assistant turn (chat template) or text."""
    if has_chat_template(tokenizer):
        return [{"role": "assistant", "content": completion}] if isinstance(completion, str) else list(completion)
    return completion if isinstance(completion, str) else response_text(completion)


def response_text(response) -> str:
    """A response as text: the string itself, or the content of its (last) assistant turn."""
    return response if isinstance(response, str) else response[-1]["content"]


def instruction_text(prompt) -> str:
    """The instruction of a prompt: the string itself, or the last user turn of a message list."""
    if isinstance(prompt, str):
        return prompt
    return next(m["content"] for m in reversed(prompt) if m["role"] == "user")


def prompt_ids(tokenizer, prompt) -> list[int]:
    """Token ids of a prompt as TRL tokenizes it (with the generation prompt of a chat template): what training
    conditions on and what generation feeds the model."""
    from trl.data_utils import _tokenize

    prompt = model_input(prompt, tokenizer)
    if is_conversation(prompt):
        return list(_tokenize(tokenizer, prompt, add_generation_prompt=True)["input_ids"])
    return list(_tokenize(tokenizer, prompt)["input_ids"])


def prompt_text(tokenizer, prompt, continue_final: bool = False) -> str:
    """The prompt as the text the model reads: the chat template applied with its generation prompt (or, with
    `continue_final`, left open after a final assistant message to be continued), or the plain text. For tools that
    tokenize text themselves (lm-eval): encoded without added special tokens it gives `prompt_ids`."""
    prompt = model_input(prompt, tokenizer)
    if is_conversation(prompt):
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=not continue_final,
                                             continue_final_message=continue_final)
    return prompt


def tokenize_pair(tokenizer, prompt, completion) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids) exactly as TRL's DPOTrainer builds them for one side of a pair: text responses
    end with EOS; the completion starts where prompt and prompt+completion tokenizations diverge."""
    from trl.data_utils import _tokenize, common_prefix_length

    prompt = model_input(prompt, tokenizer)
    completion = model_completion(completion, tokenizer)
    if is_conversation(prompt):
        ids = list(_tokenize(tokenizer, prompt, add_generation_prompt=True)["input_ids"])
        full = list(_tokenize(tokenizer, prompt + completion)["input_ids"])
    else:
        eos = tokenizer.eos_token or ""
        if not completion.endswith(eos):
            completion = completion + eos
        ids = list(_tokenize(tokenizer, prompt)["input_ids"])
        full = list(_tokenize(tokenizer, prompt + completion)["input_ids"])
    cut = common_prefix_length(ids, full)
    return ids[:cut], full[cut:]


def to_trl_example(example: dict, tokenizer, columns=("chosen", "rejected", "completion")) -> dict:
    """A dataset row in the form rapref hands to TRL (see the rule above); other columns pass through."""
    out = dict(example)
    out["prompt"] = model_input(example["prompt"], tokenizer)
    for column in columns:
        if column in example and example[column] is not None:
            out[column] = model_completion(example[column], tokenizer)
    return out
