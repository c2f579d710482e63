"""Two CPU processes over gloo (torchrun, and accelerate with the shipped config): both ranks train, the model is
saved once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rapref.train.config import load_config

ROOT = Path(__file__).resolve().parents[1]
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


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_process_cpu_run(tmp_path, tiny_model_dir, relabeled_dir, launcher):
    out = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"output_dir: {out}\nmodel:\n  name_or_path: {tiny_model_dir}\ndata:\n  path: {relabeled_dir}\n"
        "  max_prompt_length: 160\ntraining:\n  max_length: 224\n  per_device_train_batch_size: 2\n"
        "  max_steps: 3\n  disable_tqdm: true\n")
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
    assert log.count("rapref train: 3 steps on 2 process(es)") == 1
    result = json.loads((out / "rapref_train.json").read_text())["result"]
    assert result["world_size"] == 2 and result["steps"] == 3
    assert (out / "model.safetensors").is_file()
