"""A tiny causal LM and a locally trained tokenizer: what tests and the demo use, since nothing can be downloaded.

    from rapref.tiny import build_tiny
    build_tiny("runs/tiny", corpus=["some text", ...])   # writes a folder AutoModelForCausalLM loads

The tokenizer is byte-level BPE (every character encodes, so goal tags and digits never become unknown pieces) with a
ChatML template that accepts a system role. The model is a Llama-style config (model_type llama, so AutoTokenizer keeps
our tokenizer rather than swapping in a Qwen2 one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from rapref.settings import at_least, check, setting

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 512, extra_tokens: Iterable[str] = ()):
    """Byte-level BPE trained on `corpus`, wrapped as a `PreTrainedTokenizerFast` with a chat template.

    `extra_tokens` become atomic tokens (never split), e.g. opaque goal tags like "<g7>".
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(list(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<|pad|>", eos_token="<|im_end|>",
                                   bos_token=None, unk_token=None)
    fast.chat_template = CHATML_TEMPLATE
    if extra_tokens:
        fast.add_tokens(list(extra_tokens))
    return fast


def train_symbol_tokenizer(corpus: Iterable[str], extra_tokens: Iterable[str] = ()):
    """A tokenizer over exactly the symbols that occur in `corpus`: each word of two or more lowercase letters
    (`sort`, `target`, the chat roles), each number and each other non-space character is one token; whitespace is not a token
    (decoding joins tokens with one space). A model built on it cannot spend probability on symbols it never saw.
    `extra_tokens` become atomic tokens (opaque goal tags like "<g7>").

    >>> tok = train_symbol_tokenizer(["sort: c a b", "a b c"])
    >>> tok.convert_ids_to_tokens(tok("sort: c a b")["input_ids"]), tok.decode(tok("a b c")["input_ids"])
    (['sort', ':', 'c', 'a', 'b'], 'a b c')
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="<|unk|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"[a-z]{2,}|[0-9]+|\S"), behavior="isolated")])
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS + ["<|unk|>"], show_progress=False)
    tokenizer.train_from_iterator(list(corpus) + ["system user assistant"], trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<|pad|>", eos_token="<|im_end|>",
                                   unk_token="<|unk|>", bos_token=None)
    fast.chat_template = CHATML_TEMPLATE
    if extra_tokens:
        fast.add_tokens(list(extra_tokens))
    return fast


def tiny_model(tokenizer, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4, max_length: int = 512,
               seed: int = 0):
    """A randomly initialised Llama-style causal LM sized to the tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=max_length, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def tiny_reward_model(tokenizer, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4, seed: int = 0):
    """A randomly initialised Llama-style sequence classifier with one score output (a reward model's shape)."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 4,
                         num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
                         num_labels=1, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=None)
    torch.manual_seed(seed)
    return LlamaForSequenceClassification(config)


@dataclass
class TinyModelConfig:
    """`rapref model tiny`: what the model is built with (its flags are derived from these fields)."""

    kind: str = setting("causal-lm", "a policy to train, or a reward model (random score head) to try `rapref judge` "
                                     "with", choices=("causal-lm", "reward-model"))
    seed: int = setting(0, "initialisation seed")
    hidden_size: int = setting(64, "model width, a multiple of the 4 attention heads",
                               rule=lambda v: None if v >= 4 and v % 4 == 0 else
                               f"must be a multiple of 4 (the attention heads) of at least 4, got {v}")
    layers: int = setting(2, "transformer layers", rule=at_least(1))

    def __post_init__(self):
        check(self)


def build_tiny(folder: str | Path, corpus: Iterable[str], vocab_size: int = 512, seed: int = 0,
               extra_tokens: Iterable[str] = (), kind: str = "causal-lm", **model_kwargs) -> Path:
    """Train a tokenizer on `corpus`, build a tiny model (causal LM or reward model), save both to `folder`."""
    folder = Path(folder)
    tokenizer = train_tokenizer(corpus, vocab_size=vocab_size, extra_tokens=extra_tokens)
    build = tiny_model if kind == "causal-lm" else tiny_reward_model
    if kind != "causal-lm":
        model_kwargs.pop("max_length", None)
    model = build(tokenizer, seed=seed, **model_kwargs)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


DEFAULT_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "You are an assistant that generates responses for the instruction while implicitly achieving the following "
    "target scores (on a scale of 1-10, where 1 is lowest and 10 is highest):\nOverall score: 10.",
    "Overall score: 1. Overall score: 2. Overall score: 3. Overall score: 4. Overall score: 5.",
    "Overall score: 6. Overall score: 7. Overall score: 8. Overall score: 9. Overall score: 7.5.",
    "What is the capital of France? Paris. Write a haiku about rain. Soft rain on tin roofs.",
    "system user assistant 0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\"()-",
]
