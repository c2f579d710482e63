"""Conservative DPO: the formula against numbers worked out by hand, and TRL computing exactly it."""

import math

import pytest
import torch

from rapref.train.losses import conservative_dpo_loss, with_conservative_dpo


def test_hand_computed_values():
    # z = 1, eps = 0.3: -(0.7) log sigmoid(1) - 0.3 log sigmoid(-1)
    # log sigmoid(1) = -log(1 + e^-1) = -0.3132617, log sigmoid(-1) = -1.3132617
    # 0.7 * 0.3132617 + 0.3 * 1.3132617 = 0.2192832 + 0.3939785 = 0.6132617
    assert conservative_dpo_loss(1.0, 0.3) == pytest.approx(0.6132617, abs=1e-6)
    assert conservative_dpo_loss(0.0, 0.1) == pytest.approx(math.log(2))
    assert conservative_dpo_loss(-2.0, 0.0) == pytest.approx(2.126928, abs=1e-6)
    z = torch.tensor([1.0, 0.0, -2.0])
    assert torch.allclose(conservative_dpo_loss(z, 0.3),
                          torch.tensor([0.6132617, math.log(2), 0.3 * 0.126928 + 0.7 * 2.126928]), atol=1e-5)


def test_as_trl_loss_list():
    assert with_conservative_dpo(["sigmoid"], None, 0.0) == (["sigmoid"], None)
    types, weights = with_conservative_dpo(["sigmoid", "sft"], [1.0, 0.5], 0.3)
    assert types == ["sigmoid", "robust", "sft"]
    assert weights == pytest.approx([1.4, -0.4, 0.5])
    with pytest.raises(ValueError, match="ambiguous"):
        with_conservative_dpo(["sigmoid", "robust"], None, 0.2)


def test_trl_trains_exactly_conservative_dpo(tmp_path, tiny_model_dir):
    """TRL's sigmoid+robust combination with our weights equals cDPO at the margin TRL itself reports."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOTrainer

    from rapref.tiny import tiny_model
    from rapref.train.config import load_config
    from rapref.train.run import trl_args

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    reference = tiny_model(tokenizer, seed=7)  # a different model, so the margin is not zero
    row = {"prompt": [{"role": "user", "content": "What is two plus two?"}],
           "chosen": [{"role": "assistant", "content": "Four."}],
           "rejected": [{"role": "assistant", "content": "Five, probably."}]}
    data = datasets.Dataset.from_list([row])
    eps = 0.3
    cfg = load_config(None, [f"model.name_or_path={tiny_model_dir}", "data.path=unused", f"output_dir={tmp_path}",
                             f"algorithm.label_smoothing={eps}", "algorithm.beta=0.5",
                             "training.per_device_eval_batch_size=1"])
    trainer = DPOTrainer(model=policy, ref_model=reference, args=trl_args(cfg, on_gpu=False), train_dataset=data,
                         eval_dataset=data, processing_class=tokenizer)
    metrics = trainer.evaluate()
    z = metrics["eval_rewards/margins"]
    assert abs(z) > 1e-3
    assert metrics["eval_loss"] == pytest.approx(conservative_dpo_loss(z, eps), rel=1e-4)
    assert metrics["eval_loss"] != pytest.approx(conservative_dpo_loss(z, 0.0), rel=1e-3)  # not plain DPO
