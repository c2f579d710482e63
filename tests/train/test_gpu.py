"""GPU checks (deselected by default; `pytest -m gpu` on a CUDA machine): bf16 by default, rapref's CUDA defaults
(activation checkpointing off where the run fits, Liger's kernels where installed) with their recorded reasons, LoRA,
and generation on the device."""

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def train(tmp_path, model, data, *extra):
    from rapref.train.config import load_config
    from rapref.train.run import main

    return main(load_config(None, [f"model.name_or_path={model}", f"data.path={data}", f"output_dir={tmp_path}",
                                   "data.max_prompt_length=160", "training.max_length=224", "training.max_steps=4",
                                   "training.per_device_train_batch_size=4", "training.learning_rate=1e-3",
                                   "training.disable_tqdm=true", *extra]))


def test_gpu_defaults_are_bf16_and_chosen_for_the_run(tmp_path, tiny_model_dir, relabeled_dir):
    import importlib.util
    import json

    from transformers import AutoModelForCausalLM

    result = train(tmp_path / "run", tiny_model_dir, relabeled_dir)
    args = json.loads((tmp_path / "run" / "rapref_train.json").read_text())["trl_args"]
    assert args["bf16"] is True and args["use_cpu"] is False
    chosen = result["cuda_defaults"]
    assert args["gradient_checkpointing"] is False and chosen["gradient_checkpointing"]["reason"].startswith("fits")
    liger = importlib.util.find_spec("liger_kernel") is not None
    assert args["use_liger_kernel"] is liger and chosen["use_liger_kernel"]["value"] is liger
    assert result["steps"] == 4 and torch.isfinite(torch.tensor(result["last_loss"]))
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "run")
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    changed = [n for (n, p), (_, q) in zip(saved.named_parameters(), start.named_parameters())
               if not torch.equal(p.float(), q.float())]
    assert len(changed) == len(list(start.parameters()))


def test_gpu_lora_and_conservative_dpo(tmp_path, tiny_model_dir, relabeled_dir):
    result = train(tmp_path / "run", tiny_model_dir, relabeled_dir, "lora.enabled=true", "lora.r=4",
                   "algorithm.label_smoothing=0.3")
    assert result["steps"] == 4 and torch.isfinite(torch.tensor(result["last_loss"]))


def test_gpu_generation(tmp_path, trained_dir):
    import json

    from rapref.generate.run import GenerateConfig, main
    from rapref.inference.sampler import SamplingConfig

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Question {i}?"}) + "\n" for i in range(8)))
    rows = main(GenerateConfig(model=str(trained_dir), prompts=str(prompts), out=str(tmp_path / "g.jsonl"),
                               goals=[1.0, 10.0], backend="transformers",
                               sampling=SamplingConfig(max_new_tokens=8, batch_size=16)))
    assert len(rows) == 16 and all(isinstance(r["text"], str) for r in rows)


def test_gpu_packing_is_opt_in_and_trains_when_asked(tmp_path, tiny_model_dir, relabeled_dir):
    result = train(tmp_path / "off", tiny_model_dir, relabeled_dir)
    assert result["packing"]["enabled"] is False and "opt-in" in result["packing"]["reason"]
    result = train(tmp_path / "on", tiny_model_dir, relabeled_dir, "training.packing=true")
    assert result["packing"]["enabled"] is True and result["packing"]["packed_batches"] > 0
    assert torch.isfinite(torch.tensor(result["last_loss"]))


def test_gpu_checkpointing_asked_for_is_kept_and_liger_follows_its_install(tmp_path, tiny_model_dir, relabeled_dir):
    import importlib.util

    result = train(tmp_path / "run", tiny_model_dir, relabeled_dir, "training.gradient_checkpointing=true")
    chosen = result["cuda_defaults"]
    assert "gradient_checkpointing" not in chosen  # the recipe's choice stands
    installed = importlib.util.find_spec("liger_kernel") is not None
    assert chosen["use_liger_kernel"]["value"] is installed  # on wherever liger-kernel is installed (cuda_defaults)
    if not installed:
        assert "not installed" in chosen["use_liger_kernel"]["reason"] or "not installed" in chosen["use_liger_kernel"][
        "reason"]
