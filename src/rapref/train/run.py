"""`rapref train`: a goal-conditioned policy from relabeled data, by composing TRL's trainers.

    rapref train --config recipes/tiny/relabeled-dpo.yaml
    torchrun --standalone --nproc_per_node 2 -m rapref train --config ...            (two CPU processes, gloo)
    accelerate launch --config_file configs/accelerate/zero3.yaml -m rapref train --config ...

The run folder receives the model and tokenizer, `rapref_train.json` (resolved config, git hash, package versions,
length-fitting counts), `rapref_goal.json` (goal wording and placement, for `rapref generate`) and `metrics.jsonl`.
"""

from __future__ import annotations

import json
from pathlib import Path

from rapref.goals import GOAL_SETTINGS_FILE, GoalSpec
from rapref.io import InputError, write_json_atomic, write_jsonl_atomic
from rapref.provenance import provenance
from rapref.train.config import TrainConfig, to_dict, trl_config_class
from rapref.train.lengths import fit_dataset
from rapref.train.losses import with_conservative_dpo

TRAIN_SETTINGS_FILE = "rapref_train.json"


def main(cfg: TrainConfig, resume: bool = False) -> dict:
    import torch

    cfg.validate()
    spec = _goal_spec(cfg.data.path)
    tokenizer = load_tokenizer(cfg.model)
    splits = load_splits(cfg.data)
    length_counts = {}
    max_length = cfg.training.get("max_length", 1024)
    for name in list(splits):
        splits[name], length_counts[name] = fit_dataset(splits[name], tokenizer, spec, cfg.data.max_prompt_length,
                                                        max_length)
        if len(splits[name]) == 0:
            raise InputError(f"{cfg.data.path}: every {name} example was dropped by the length fit "
                             f"({length_counts[name]}); raise data.max_prompt_length")
    if cfg.algorithm.name == "kto":
        splits = {name: to_unpaired(ds) for name, ds in splits.items()}
    model = load_model(cfg.model)
    _warn_low_precision_weights(cfg)
    args = trl_args(cfg, on_gpu=torch.cuda.is_available())
    trainer = build_trainer(cfg, args, model, tokenizer, splits)
    if args.disable_tqdm:  # quiet runs: metrics go to metrics.jsonl, not printed dicts
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    checkpoint = resume and _last_checkpoint(cfg.output_dir)
    if resume and not checkpoint:
        print(f"rapref train: --resume: no checkpoint in {cfg.output_dir}, starting from the beginning")
    trainer.train(resume_from_checkpoint=checkpoint or None)
    accel = trainer.accelerator
    print(f"rapref train: rank {accel.process_index}/{accel.num_processes} trained {trainer.state.global_step} steps",
          flush=True)
    trainer.save_model(cfg.output_dir)
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    result = {"steps": trainer.state.global_step, "first_loss": losses[0] if losses else None,
              "last_loss": losses[-1] if losses else None, "length_fit": length_counts,
              "world_size": trainer.accelerator.num_processes,
              "train_examples": len(splits["train"])}
    if trainer.accelerator.is_main_process:
        out = Path(cfg.output_dir)
        tokenizer.save_pretrained(out)
        if spec is not None:
            spec.save(out)
        write_jsonl_atomic(out / "metrics.jsonl", history)
        write_json_atomic(out / TRAIN_SETTINGS_FILE, {"config": to_dict(cfg), "result": result,
                                                      "trl_args": args.to_dict(), "provenance": provenance()})
        print(f"rapref train: saved model and settings to {out}", flush=True)
    return result


def _warn_low_precision_weights(cfg: TrainConfig) -> None:
    """Full fine-tuning of bf16/fp16 weights without DeepSpeed's fp32 master copies rounds small updates away
    (seen on an H200: 5 of 20 weight tensors of the tiny model unchanged after 4 steps at lr 1e-3)."""
    import os
    import warnings

    if cfg.model.dtype in ("bfloat16", "float16") and not cfg.lora.enabled and \
            os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() != "true":
        warnings.warn(f"model.dtype={cfg.model.dtype} without DeepSpeed or LoRA: the optimizer updates "
                      f"{cfg.model.dtype} weights directly and small updates are lost; use model.dtype=auto "
                      "(float32 weights, bf16 autocast) unless you launch with a DeepSpeed config", stacklevel=2)


def _goal_spec(data_path: str) -> GoalSpec | None:
    path = Path(data_path)
    return GoalSpec.load(path) if (path / GOAL_SETTINGS_FILE).is_file() else None


def load_splits(data) -> dict:
    loaded = load_dataset_folder(data.path)
    splits = {}
    for role, name in (("train", data.train_split), ("eval", data.eval_split)):
        if name is None:
            continue
        if name not in loaded:
            raise InputError(f"{data.path}: no split {name!r}; it has {sorted(loaded)}")
        splits[role] = loaded[name]
    if data.max_train_samples:
        splits["train"] = splits["train"].shuffle(seed=0).select(range(min(data.max_train_samples,
                                                                             len(splits["train"]))))
    return splits


def load_dataset_folder(path: str) -> dict:
    """Splits of a dataset folder, read fresh from disk.

    Folders written by `rapref augment` are read straight from their Parquet files: `datasets.load_dataset` caches
    local files by path and modification time, and would hand back stale rows after an `--overwrite` in the same
    second. Other folders (`save_to_disk`, plain data files) and hub ids go through `datasets`.
    """
    import datasets
    import pyarrow.parquet as pq

    from rapref.augment import SPLIT_FILES

    folder = Path(path)
    ours = {split: folder / name for split, name in SPLIT_FILES.items() if (folder / name).is_file()}
    if ours:
        return {split: datasets.Dataset(pq.read_table(file)) for split, file in ours.items()}
    if (folder / "dataset_dict.json").is_file() or (folder / "dataset_info.json").is_file():
        loaded = datasets.load_from_disk(str(folder))
        return {"train": loaded} if isinstance(loaded, datasets.Dataset) else dict(loaded)
    if not folder.exists() and "/" not in path:
        raise InputError(f"{path}: no such dataset folder")
    try:
        return dict(datasets.load_dataset(path))
    except Exception as err:  # noqa: BLE001 - shown as one line
        raise InputError(f"{path}: cannot load the dataset ({str(err).splitlines()[0]})") from None


def load_tokenizer(model_args):
    from transformers import AutoTokenizer

    kwargs = {"trust_remote_code": model_args.trust_remote_code}
    if model_args.gguf_file:
        kwargs["gguf_file"] = model_args.gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_args.name_or_path, **kwargs)
    except OSError as err:
        raise InputError(f"{model_args.name_or_path}: cannot load a tokenizer ({str(err).splitlines()[0]})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_args):
    import torch
    from transformers import AutoModelForCausalLM

    dtype = "float32" if model_args.dtype == "auto" else model_args.dtype
    kwargs = {"dtype": getattr(torch, dtype), "trust_remote_code": model_args.trust_remote_code}
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    if model_args.gguf_file:
        kwargs["gguf_file"] = model_args.gguf_file
    try:
        return AutoModelForCausalLM.from_pretrained(model_args.name_or_path, **kwargs)
    except OSError as err:
        raise InputError(f"{model_args.name_or_path}: cannot load the model ({str(err).splitlines()[0]})") from None


def trl_args(cfg: TrainConfig, on_gpu: bool):
    """Map our recipe onto the TRL config class; fp32 without checkpointing on CPU unless the recipe says otherwise."""
    algo = cfg.algorithm
    defaults = {"bf16": on_gpu, "gradient_checkpointing": on_gpu, "report_to": "none", "logging_steps": 1,
                "save_strategy": "no", "use_cpu": not on_gpu}
    kwargs = {**defaults, **cfg.training, "output_dir": cfg.output_dir, "seed": cfg.seed, "beta": algo.beta}
    if algo.name == "dpo":
        loss_type, loss_weights = with_conservative_dpo(algo.loss_type, algo.loss_weights, algo.label_smoothing)
        kwargs.update(loss_type=loss_type, loss_weights=loss_weights, label_smoothing=algo.label_smoothing)
    elif algo.name == "simpo":
        kwargs.update(loss_type="simpo", cpo_alpha=0.0, simpo_gamma=algo.simpo_gamma,
                      label_smoothing=algo.label_smoothing)
    elif algo.name == "cpo":
        kwargs.update(loss_type="sigmoid", cpo_alpha=algo.cpo_alpha, label_smoothing=algo.label_smoothing)
    elif algo.name == "kto":
        kwargs.update(desirable_weight=algo.desirable_weight, undesirable_weight=algo.undesirable_weight)
    return trl_config_class(algo.name)(**kwargs)


def build_trainer(cfg: TrainConfig, args, model, tokenizer, splits):
    peft_config = None
    if cfg.lora.enabled:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                 target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")
    common = {"args": args, "train_dataset": splits["train"], "eval_dataset": splits.get("eval"),
              "processing_class": tokenizer}
    name = cfg.algorithm.name
    if name in ("dpo", "kto"):
        from trl import DPOTrainer, KTOTrainer

        ref = None if peft_config is not None else load_model(cfg.model)
        cls = DPOTrainer if name == "dpo" else KTOTrainer
        return cls(model=model, ref_model=ref, peft_config=peft_config, **common)
    if name in ("simpo", "cpo"):
        from trl.experimental.cpo import CPOTrainer

        return CPOTrainer(model=model, peft_config=peft_config, **common)
    from trl.experimental.orpo import ORPOTrainer

    return ORPOTrainer(model=model, peft_config=peft_config, **common)


def to_unpaired(dataset):
    """KTO data from relabeled pairs: each pair gives a desirable (chosen) and an undesirable (rejected) example."""
    keep = [c for c in dataset.column_names if c not in ("prompt", "chosen", "rejected")]

    def split_pairs(batch):
        n = len(batch["prompt"])
        out = {"prompt": batch["prompt"] * 2, "completion": batch["chosen"] + batch["rejected"],
               "label": [True] * n + [False] * n}
        for column in keep:
            out[column] = batch[column] * 2
        return out

    return dataset.map(split_pairs, batched=True, remove_columns=dataset.column_names, desc="Unpairing for KTO")


def _last_checkpoint(output_dir: str) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None


def read_train_settings(model_dir: str | Path) -> dict:
    path = Path(model_dir) / TRAIN_SETTINGS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
