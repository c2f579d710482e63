"""Scorers built by name (`rapref.judge.scorers.build_scorer`): the constraint checkers, a reward model's head."""

import numpy as np


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


def test_the_old_name_ifeval_still_gives_rapref_own_checks_with_a_notice(capsys):
    from rapref.judge.scorers import _renamed, build_scorer
    from rapref.progress import configure

    configure(quiet=False)
    _renamed.cache_clear()  # the notice comes once per process; another test may have seen it

    old, new = build_scorer("ifeval"), build_scorer("constraints")
    assert type(old) is type(new) and old.fingerprint == new.fingerprint  # same cache key: same scores reused
    row = {"constraints": [{"type": "max_words", "value": 5}]}
    assert old.score([row], ["one two three"]) == new.score([row], ["one two three"])
    assert "scorer 'ifeval' is now called 'constraints'" in capsys.readouterr().out
