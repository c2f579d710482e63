"""Packed DPO runs only where it is proven to equal TRL's path; everywhere else TRL's path, with one line saying why."""

import copy
import json

import pytest
import torch

from helpers import fused, fused_forward, preference_batch, tiny_llama
from rapref.cli import main as cli
from rapref.train.packing import add_packed_forward, fused_head_settings, pack_pairs
from rapref.train.packing_gate import packing_refusal


def train_args(tmp_path, model, data, *extra):
    return ["train", f"model.name_or_path={model}", f"data.path={data}", f"output_dir={tmp_path / 'run'}",
            "training.max_steps=2", "training.max_length=224", "data.max_prompt_length=160",
            "training.per_device_train_batch_size=2", "training.disable_tqdm=true", *extra]


def packing_of(tmp_path) -> dict:
    return json.loads((tmp_path / "run" / "rapref_train.json").read_text())["result"]["packing"]


def test_packing_is_on_by_default_on_cpu_and_opt_in_on_cuda():
    model = tiny_llama()
    assert packing_refusal(model, None, on_gpu=False) is None
    assert "opt-in" in packing_refusal(model, None, on_gpu=True)
    assert packing_refusal(model, True, on_gpu=True) is None
    assert packing_refusal(model, False, on_gpu=False) == "training.packing=false"


def test_an_attention_off_the_allow_list_takes_trls_path_with_a_notice(tmp_path, tiny_model_dir, relabeled_dir,
                                                                       capsys):
    """A kernel rapref has not tested (here: sdpa registered under another name, as a hub kernel would be)."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    AttentionInterface.register("untested_kernel", sdpa_attention_forward)
    model = tiny_llama(attn="untested_kernel")
    assert "not on the packing allow-list" in packing_refusal(model, None, on_gpu=False)
    capsys.readouterr()
    assert cli(train_args(tmp_path, tiny_model_dir, relabeled_dir, "model.attn_implementation=untested_kernel")) == 0
    out = capsys.readouterr().out
    assert sum("packed DPO off" in line for line in out.splitlines()) == 1 and "untested_kernel" in out
    packing = packing_of(tmp_path)
    assert packing["enabled"] is False and "allow-list" in packing["reason"]


def test_attention_that_cannot_train_on_a_cpu_is_refused_up_front(tmp_path, tiny_model_dir, relabeled_dir, capsys):
    capsys.readouterr()
    code = cli(train_args(tmp_path, tiny_model_dir, relabeled_dir, "model.attn_implementation=flex_attention"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cannot train on a CPU" in err, err


def left_padded(batch):
    """The same batch with each row's padding moved to the front."""
    out = {k: v.clone() for k, v in batch.items()}
    for i, n in enumerate(batch["attention_mask"].sum(1).tolist()):
        for key in ("input_ids", "attention_mask", "labels"):
            out[key][i] = torch.roll(batch[key][i], shifts=batch[key].shape[1] - n)
    return out


def test_left_padding_is_not_packed_and_gives_trls_numbers():
    batch = left_padded(preference_batch(4, seed=5))
    assert not torch.equal(batch["attention_mask"], preference_batch(4, seed=5)["attention_mask"])
    assert pack_pairs(batch["input_ids"], batch["attention_mask"], batch["labels"]) is None
    reference = fused(tiny_llama())
    packed = copy.deepcopy(reference)
    stats = add_packed_forward(packed)
    torch.testing.assert_close(fused_forward(packed, batch).log_probs, fused_forward(reference, batch).log_probs)
    assert stats["packed_batches"] == 0 and stats["unpacked_batches"] == 1


def tiny_moe(folder, tokenizer_dir):
    from transformers import AutoTokenizer, MixtralConfig, MixtralForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = MixtralConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                           max_position_embeddings=512, router_aux_loss_coef=0.02, output_router_logits=True,
                           pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                           bos_token_id=tokenizer.bos_token_id)
    MixtralForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_mixture_of_experts_model_trains_with_its_aux_loss(tmp_path, tiny_model_dir, relabeled_dir, capsys):
    moe = tiny_moe(tmp_path / "moe", tiny_model_dir)
    capsys.readouterr()
    assert cli(train_args(tmp_path, moe, relabeled_dir)) == 0
    assert "mixture-of-experts" in capsys.readouterr().out
    packing = packing_of(tmp_path)
    assert packing["enabled"] is False and "mixture-of-experts" in packing["reason"]
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    aux = [m["aux_loss"] for m in metrics if "aux_loss" in m]
    assert aux and all(a > 0 for a in aux)  # TRL added router_aux_loss_coef * aux_loss to every step's loss


def test_a_head_transform_rapref_does_not_know_is_left_to_trls_head():
    """The check is positive: a fused head closing over anything rapref has not seen (a future logit bias, say) is
    not reproduced by rapref's head; TRL's head scores the packed rows."""
    reference = fused(tiny_llama())
    model = copy.deepcopy(reference)
    inner = model.forward
    logit_bias = 0.0

    def forward_with_unknown_setting(self, *args, **kwargs):
        assert logit_bias == 0.0
        return inner(*args, **kwargs)

    import types

    model.forward = types.MethodType(forward_with_unknown_setting, model)
    assert fused_head_settings(model.forward) is None
    assert fused_head_settings(reference.forward)["temperature"] == 1.0  # TRL's own head is read
    stats = add_packed_forward(model)
    batch = preference_batch(3, seed=1)
    torch.testing.assert_close(fused_forward(model, batch).log_probs, fused_forward(reference, batch).log_probs,
                               rtol=1e-5, atol=1e-5)
    assert stats["packed_batches"] == 1 and stats["scored_positions"] == stats["positions"]  # TRL's head, all rows


@pytest.mark.parametrize("break_trl", ["version", "internal"])
def test_another_trl_or_a_missing_internal_takes_trls_path(break_trl, tmp_path, tiny_model_dir, relabeled_dir,
                                                          monkeypatch, capsys):
    import trl

    from rapref.train import packing

    if break_trl == "version":
        monkeypatch.setattr(trl, "__version__", "1.17.0")
    else:  # TRL builds its trainer without the fused head rapref wraps (renamed, or added another way)
        monkeypatch.setattr(packing, "add_packed_forward", lambda model, stats, **_: stats)
    capsys.readouterr()
    assert cli(train_args(tmp_path, tiny_model_dir, relabeled_dir)) == 0
    out = capsys.readouterr().out
    reason = packing_of(tmp_path)["reason"]
    assert ("1.17.0" in reason) if break_trl == "version" else ("no fused LM head" in reason)
    assert "packed DPO off" in out


def test_memory_release_is_a_setting(monkeypatch):
    from rapref.train import packing

    calls = []
    monkeypatch.setattr(packing, "release_free_memory", lambda: calls.append(1))
    batch = preference_batch(2, seed=0)
    for setting, expected in ((None, 0), (False, 0), (True, 1)):  # None: only with gradient checkpointing
        model = fused(tiny_llama())
        add_packed_forward(model, release_memory=setting)
        calls.clear()
        fused_forward(model, batch)
        assert len(calls) == expected, setting
