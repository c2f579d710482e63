"""`reward-model:PATH`: a Hugging Face sequence-classification reward model (local folder or hub id) as a scorer;
fingerprinted by `rapref.models.model_fingerprint` (config and tokenizer content, weight files' sizes and times)."""

from __future__ import annotations

from rapref.io import InputError
from rapref.judge.base import Scorer
from rapref.models import ModelArgs, load_model, load_tokenizer, model_fingerprint


class RewardModelScorer(Scorer):
    def __init__(self, path: str, trust_remote_code: bool = False, batch_size: int = 8, **_):
        if not path:
            raise InputError("scorer reward-model: give its path, e.g. reward-model:runs/rm")
        args = ModelArgs(name_or_path=path, trust_remote_code=trust_remote_code)
        self.tokenizer = load_tokenizer(args)
        self.model, info = load_model(args, kind="reward-model", output_loading_info=True)
        untrained = sorted(set(info.get("missing_keys") or ()))
        if untrained:  # e.g. a causal LM loaded as a classifier: its score head would be random
            raise InputError(f"scorer reward-model:{path}: not a trained reward model; the weights "
                             f"{', '.join(untrained[:3])}{' ...' if len(untrained) > 3 else ''} are missing and "
                             "would be initialised at random")
        self.model.eval()
        self.batch_size, self.id = batch_size, f"reward-model:{path}"
        self.fingerprint = f"reward-model:{model_fingerprint(path)}"
        self.row_fields = ("prompt",)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def render(self, prompt, text: str) -> str:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        messages = messages + [{"role": "assistant", "content": text}]
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return "\n\n".join(m["content"] for m in messages)

    def score(self, rows, texts):
        import torch

        rendered = [self.render(row["prompt"], text) for row, text in zip(rows, texts)]
        scores = []
        for start in range(0, len(rendered), self.batch_size):
            batch = self.tokenizer(rendered[start:start + self.batch_size], return_tensors="pt", padding=True,
                                   truncation=True)
            with torch.no_grad():
                logits = self.model(**batch).logits  # (B, num_labels)
            scores += logits[:, 0].float().tolist()
        return scores
