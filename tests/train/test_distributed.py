"""Two CPU processes over gloo (torchrun, and accelerate with the shipped config): both ranks train, the model is
saved once."""

import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT
from rapref.train.config import load_config

LAUNCHERS = {
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
    "accelerate": [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                   str(ROOT / "configs" / "accelerate" / "cpu_2proc.yaml")],
}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def three_step_recipe(tmp_path, out, model, data):
    """A recipe of three training steps on the tiny model, two pairs per process."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"output_dir: {out}\nmodel:\n  name_or_path: {model}\ndata:\n  path: {data}\n"
        "  max_prompt_length: 160\ntraining:\n  max_length: 224\n  per_device_train_batch_size: 2\n"
        "  max_steps: 3\n  disable_tqdm: true\n")
    return recipe


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_process_cpu_run(tmp_path, tiny_model_dir, relabeled_dir, launcher):
    out = tmp_path / "run"
    recipe = three_step_recipe(tmp_path, out, tiny_model_dir, relabeled_dir)
    load_config(recipe)  # valid before we spend time launching
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    port = ["--main_process_port", str(free_port())] if launcher == "accelerate" else []  # not 29500: a run a
    proc = subprocess.run(                                                                 # minute ago may hold it
        [*LAUNCHERS[launcher], *port, "-m", "rapref", "train", "--config", str(recipe)],
        capture_output=True, text=True, timeout=300, env=env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert log.count("rapref train: 3 steps on 2 process(es)") == 1  # only rank 0 prints results
    assert log.count("saved model, tokenizer, goal settings and model card") == 1
    result = json.loads((out / "rapref_train.json").read_text())["result"]
    assert result["world_size"] == 2 and result["steps"] == 3
    assert (out / "model.safetensors").is_file()


def test_fsdp_config_on_cpu_trains_data_parallel_and_says_so(tmp_path, tiny_model_dir, relabeled_dir):
    """accelerate 1.15 enables FSDP only on accelerator devices: the shipped FSDP config made CPU-ready (use_cpu, two
    processes, no bf16, no sync_module_states, which asks for a CUDA-like device) trains both ranks as plain DDP over
    gloo. rapref says so in one line, records it, and saves a full model that loads and generates."""
    import yaml

    config = yaml.safe_load((ROOT / "configs" / "accelerate" / "fsdp.yaml").read_text())
    config.update(use_cpu=True, num_processes=2, mixed_precision="no")
    config["fsdp_config"].update(fsdp_sync_module_states=False, fsdp_cpu_ram_efficient_loading=False)
    launch_config = tmp_path / "fsdp-cpu.yaml"
    launch_config.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    recipe = three_step_recipe(tmp_path, out, tiny_model_dir, relabeled_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(launch_config),
         "--main_process_port", str(free_port()), "-m", "rapref", "train", "--config", str(recipe)],
        capture_output=True, text=True, timeout=300, env=env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert log.count("notice: launched for FSDP, but accelerate runs MULTI_CPU here") == 1
    assert log.count("rapref train: 3 steps on 2 process(es)") == 1
    result = json.loads((out / "rapref_train.json").read_text())["result"]
    assert (result["world_size"], result["distributed_type"], result["steps"]) == (2, "MULTI_CPU", 3)

    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(out)
    ids = tokenizer("Question number 1:", return_tensors="pt").input_ids
    with torch.no_grad():
        generated = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert generated.shape[1] > ids.shape[1]
