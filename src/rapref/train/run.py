"""`rapref train`: a goal-conditioned policy from relabeled data, by composing TRL's trainers.

    rapref train --config recipes/tiny/relabeled-dpo.yaml
    torchrun --standalone --nproc_per_node 2 -m rapref train --config ...            (two CPU processes, gloo)
    accelerate launch --config_file configs/accelerate/zero3.yaml -m rapref train --config ...

The run folder receives the model and tokenizer, `rapref_train.json` (resolved config, git hash, package versions,
length-fitting counts), `rapref_goal.json` (goal wording and placement, for `rapref generate`) and `metrics.jsonl`.
`rapref_train.json` is written last: a folder without it holds an unfinished run.

`output_dir` follows rapref's output rule (`rapref.runs.folder`): a folder rapref did not write is never used, an earlier
run is replaced only with `--overwrite` and continued with `--resume` (from the newest complete checkpoint: one that
a kill interrupted while it was being written is skipped).

Prompts reach TRL in the form generation uses (`rapref.prompting`): conversations when the tokenizer has a chat
template, plain text otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

from rapref.formats.dataset import augment_splits, read_split
from rapref.goals import GOAL_SETTINGS_FILE, GoalSpec
from rapref.io import (
    InputError,
    hub_offline,
    looks_like_hub_id,
    stat_fingerprint,
    write_json_atomic,
    write_jsonl_atomic,
)
from rapref.models import load_model, load_tokenizer, model_fingerprint
from rapref.progress import interactive, quiet, say, trainer_callback
from rapref.prompting import ensure_chat_template, is_conversation, to_trl_example
from rapref.provenance import provenance
from rapref.runs.folder import RunFolder, is_finished_output
from rapref.runs.launches import check_settings
from rapref.train.algorithms import ALGORITHMS
from rapref.train.card import write_model_card
from rapref.train.config import RAPREF_TRAINING_KEYS, TrainConfig, to_dict
from rapref.train.cuda_defaults import choose, match_reference_kernels
from rapref.train.lengths import fit_dataset
from rapref.train.packing_gate import packing_refusal

TRAIN_SETTINGS_FILE = "rapref_train.json"
# recipe keys a resumed run may change: they change no step's arithmetic (where the output goes, logging, saving,
# the Hub upload, data loader processes); paths are free because their content is compared by fingerprint instead
RESUME_FREE = ("output_dir", "model.name_or_path", "data.path", "training.logging_steps", "training.logging_strategy",
               "training.logging_first_step", "training.save_steps", "training.save_strategy",
               "training.save_total_limit", "training.disable_tqdm", "training.report_to", "training.run_name",
               "training.dataloader_num_workers", "training.push_to_hub", "training.hub_model_id",
               "training.hub_strategy", "training.hub_private_repo")


def run_settings(cfg: TrainConfig) -> dict:
    """What defines a training run: the resolved recipe and the content of its start model and data."""

    return {**to_dict(cfg), "model_fingerprint": model_fingerprint(cfg.model.name_or_path),
            "data_fingerprint": stat_fingerprint(cfg.data.path)}


def main(cfg: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict:
    cfg.validate()
    out = Path(cfg.output_dir)
    if os.environ.get("RANK", "0") != "0":  # under torchrun / accelerate, rank 0 owns the folder
        return _train(cfg, out, resume, None)
    # emptied (--overwrite without --resume) when training begins, not before: a run that fails to start keeps the old
    with RunFolder(out, "train", overwrite=overwrite and not resume, reuse=resume, empty=True, begin=False,
                   inputs=(cfg.data.path, cfg.model.name_or_path)) as run:
        return _train(cfg, out, resume, run)


def _train(cfg: TrainConfig, out: Path, resume: bool, run: RunFolder | None) -> dict:
    """`run`: the output folder on the process that owns it (rank 0), None on the others."""
    import torch

    settings = run_settings(cfg)
    if resume:
        check_settings(out, settings, RESUME_FREE, "a training run",
                       "resume with the same recipe, start over with --overwrite, or branch from a checkpoint into a "
                       "new run: model.name_or_path=OUT/checkpoint-N output_dir=NEW")
        finished = finished_run(out)
        if finished is not None:  # a no-op: nothing in the folder is written, not even launches.jsonl
            say(f"rapref train: {out} already holds this run, finished ({finished.get('steps')} steps); nothing to "
                "do (--overwrite trains it again from the start)")
            return {**finished, "already_finished": True}
    spec = _goal_spec(cfg.data.path)
    tokenizer = load_tokenizer(cfg.model)
    splits, length_counts, installed = prepare_splits(cfg, tokenizer, spec)
    checkpoint = _last_complete_checkpoint(out) if resume else None
    if resume and not checkpoint:
        say(f"rapref train: --resume: no complete checkpoint in {out}, starting from the beginning")
    elif checkpoint:
        say(f"rapref train: resuming from {checkpoint}")
    _check_attention_device(cfg, torch.cuda.is_available())
    model = load_model(cfg.model)
    _warn_low_precision_weights(cfg)
    cuda = _cuda_defaults(cfg, model) if torch.cuda.is_available() else None
    args = trl_args(cfg, on_gpu=torch.cuda.is_available(), chosen=cuda.kwargs if cuda else None)
    trainer = build_trainer(cfg, args, model, tokenizer, splits)
    engine_notice = _unsharded_notice(trainer.accelerator)
    if engine_notice and trainer.accelerator.is_main_process:
        say(engine_notice)
    if trainer.accelerator.is_main_process:
        run.begin(settings, "train --resume" if resume else "train")  # unfinished until rapref_train.json is written
        if spec is not None:
            spec.save(out)  # before the first checkpoint: every save carries the goal settings
    _attach_artefacts(trainer, cfg, spec, tokenizer)
    if args.disable_tqdm:  # quiet runs: metrics go to metrics.jsonl, not printed dicts
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    with _quiet_tied_keys(model):
        if not (checkpoint and _restore_final_checkpoint(trainer, checkpoint)):
            trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(cfg.output_dir)
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    result = {"steps": trainer.state.global_step, "first_loss": losses[0] if losses else None,
              "last_loss": losses[-1] if losses else None, "length_fit": length_counts,
              "world_size": trainer.accelerator.num_processes,
              "distributed_type": str(trainer.accelerator.distributed_type).split(".")[-1],
              "train_examples": len(splits["train"]), "resumed_from": checkpoint,
              "chat_template_installed": installed, "packing": getattr(trainer, "rapref_packing", None),
              "cuda_defaults": cuda.record if cuda else None}
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(out)
        if spec is not None:
            spec.save(out)
        write_model_card(out, cfg, spec, result, _hub_name(cfg))
        write_jsonl_atomic(out / "metrics.jsonl", history)
        write_json_atomic(out / TRAIN_SETTINGS_FILE, {"config": to_dict(cfg), "result": result,  # last: "done"
                                                      "trl_args": args.to_dict(), "provenance": provenance()})
        run.finish()
        say(f"rapref train: saved model, tokenizer, goal settings and model card to {out}")
    if args.push_to_hub:  # after every file above is in the folder: the upload carries them all
        trainer.create_model_card = lambda *a, **k: write_model_card(out, cfg, spec, result, _hub_name(cfg))
        trainer.push_to_hub(commit_message="rapref train")
        say(f"rapref train: pushed {out} to the Hub as {trainer.hub_model_id}")
    _release(trainer)
    del trainer, model
    _end_process_group()
    return result


@contextlib.contextmanager
def _quiet_tied_keys(model):
    """On resume, transformers warns that a checkpoint lacks `lm_head.weight`: a tied output embedding is saved once,
    as the input embedding, so that key is expected to be missing. Drop that warning (and only that one)."""
    import logging

    tied = bool(getattr(model.config.get_text_config(), "tie_word_embeddings", False))

    class TiedKeys(logging.Filter):
        def filter(self, record) -> bool:
            message = record.getMessage()
            return not (tied and message.startswith("There were missing keys in the checkpoint model loaded")
                        and all(k.endswith("lm_head.weight") for k in re.findall(r"'([^']+)'", message)))

    trainer_logger = logging.getLogger("transformers.trainer")
    quiet = TiedKeys()
    trainer_logger.addFilter(quiet)
    try:
        yield
    finally:
        trainer_logger.removeFilter(quiet)


def _hub_name(cfg: TrainConfig) -> str:
    hub_id = cfg.training.get("hub_model_id")
    return hub_id or Path(cfg.output_dir).name


def _attach_artefacts(trainer, cfg: TrainConfig, spec: GoalSpec | None, tokenizer) -> None:
    """Every save carries what the model needs to be used: our model card replaces TRL's generic one, and each
    checkpoint folder receives the tokenizer, `rapref_goal.json` and the card. In a log file, training prints
    periodic `step i/N, time left` lines."""
    from transformers import TrainerCallback

    trainer.create_model_card = lambda *a, **k: write_model_card(Path(cfg.output_dir), cfg, spec, None,
                                                                 _hub_name(cfg))

    class CheckpointArtefacts(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and folder.is_dir():
                tokenizer.save_pretrained(folder)
                if spec is not None:
                    spec.save(folder)
                write_model_card(folder, cfg, spec, None, _hub_name(cfg))

    trainer.add_callback(CheckpointArtefacts())
    if not interactive():
        trainer.add_callback(trainer_callback(f"rapref train ({cfg.algorithm.name})"))


def _unsharded_notice(accelerator) -> str | None:
    """accelerate 1.15 turns FSDP and DeepSpeed on only for accelerator devices: launched with either config on CPU
    (`use_cpu: true`, or no GPU), it wraps the model in plain DDP over gloo without a word. Say so in one line."""
    from accelerate.utils import DistributedType

    for variable, engine, kind in (("ACCELERATE_USE_FSDP", "FSDP", DistributedType.FSDP),
                                   ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed", DistributedType.DEEPSPEED)):
        if os.environ.get(variable, "false").lower() == "true" and accelerator.distributed_type != kind:
            got = str(accelerator.distributed_type).split(".")[-1]
            return (f"rapref train: notice: launched for {engine}, but accelerate runs {got} here ({engine} needs a "
                    "GPU or another accelerator; on CPU accelerate drops it): every process holds the whole model")
    return None


def _release(trainer) -> None:
    """Drop the distributed wrapper (DDP's reducer holds the gloo process group) while every rank is still alive: freed
    later, after the group is destroyed or a peer has exited, its destructor waits for gloo threads that never return
    (seen: a rank hanging after training, in `~ProcessGroupGloo`)."""
    import gc

    trainer.accelerator.free_memory()
    trainer.model_wrapped = None
    gc.collect()


def _end_process_group() -> None:
    """Tear down torch.distributed before the interpreter exits: a gloo group left to interpreter shutdown can abort
    a rank ("terminate called without an active exception") after training finished."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def prepare_splits(cfg: TrainConfig, tokenizer, spec: GoalSpec | None):
    """The data exactly as TRL receives it: prompts in the model's form (`rapref.prompting`, installing the plain
    chat template where conversational data meets a tokenizer without one), goal-safe lengths, KTO unpairing.
    Returns (splits, length-fit counts, whether a template was installed)."""
    splits = load_splits(cfg.data)
    if len(splits["train"]) == 0:
        summary = Path(cfg.data.path) / "summary.json"
        dropped = json.loads(summary.read_text()).get("dropped_by_reason") if summary.is_file() else None
        raise InputError(f"{cfg.data.path}: no training pairs"
                         + (f" (every pair was dropped: {dropped})" if dropped else "")
                         + "; nothing to train on")
    installed = ensure_chat_template(tokenizer, is_conversation(splits["train"][0]["prompt"]))
    if installed:
        say("rapref train: the tokenizer has no chat template; conversational data is rendered with rapref's plain "
            "template, saved with the model so generation uses it too")
    length_counts = {}
    max_length = cfg.training.get("max_length", 1024)
    for name in list(splits):
        splits[name] = splits[name].map(to_trl_example, fn_kwargs={"tokenizer": tokenizer},
                                        desc=f"Prompt form ({name})")
        splits[name], length_counts[name] = fit_dataset(splits[name], tokenizer, spec, cfg.data.max_prompt_length,
                                                        max_length)
        if len(splits[name]) == 0:
            raise InputError(f"{cfg.data.path}: every {name} example was dropped by the length fit "
                             f"({length_counts[name]}); raise data.max_prompt_length")
    if ALGORITHMS[cfg.algorithm.name].unpaired:
        splits = {name: to_unpaired(ds) for name, ds in splits.items()}
    return splits, length_counts, installed


GPU_ONLY_ATTENTION = ("flex_attention", "flash_attention_2", "flash_attention_3")


def _check_attention_device(cfg: TrainConfig, on_gpu: bool) -> None:
    """Attention kernels that cannot train on a CPU are refused before any work (FlexAttention has no CPU backward;
    flash attention is CUDA only)."""
    attn = cfg.model.attn_implementation
    if not on_gpu and attn in GPU_ONLY_ATTENTION:
        raise InputError(f"model.attn_implementation={attn} cannot train on a CPU (no backward pass there); use sdpa "
                         "(the default) or eager")


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

    Folders written by `rapref augment` are read straight from their Parquet files (`rapref.formats.dataset.read_split`).
    Other folders (`save_to_disk`, plain data files) and hub ids go through `datasets`.
    """
    import datasets

    folder = Path(path)
    if folder.is_file():
        raise InputError(f"{path}: a file; `rapref train` reads a folder written by `rapref augment` (relabel it first: "
                         f"rapref augment {path} --out runs/data, then data.path=runs/data)")
    ours = augment_splits(folder)
    if ours:
        return {split: datasets.Dataset(read_split(folder, split)) for split in ours}
    if (folder / "dataset_dict.json").is_file() or (folder / "dataset_info.json").is_file():
        loaded = datasets.load_from_disk(str(folder))
        return {"train": loaded} if isinstance(loaded, datasets.Dataset) else dict(loaded)

    if not folder.exists() and not looks_like_hub_id(path):
        raise InputError(f"{path}: no such dataset folder")
    if not folder.exists() and hub_offline():
        raise InputError(f"{path}: no such local dataset folder, and the Hugging Face hub cannot be reached (offline)")
    try:
        return dict(datasets.load_dataset(path))
    except Exception as err:  # noqa: BLE001 - shown as one line
        raise InputError(f"{path}: cannot load the dataset ({str(err).splitlines()[0]})") from None


# Checkpoints are saved by default, so that a long run can be resumed after a crash; tiny runs rarely reach them.
CHECKPOINT_DEFAULTS = {"save_strategy": "steps", "save_steps": 200, "save_total_limit": 2}


def _cuda_defaults(cfg: TrainConfig, model):
    """rapref's CUDA defaults for this run (`rapref.train.cuda_defaults`), said in one line."""

    cuda = choose(cfg, model)
    if cuda.notices and int(os.environ.get("RANK", "0")) == 0:
        say("rapref train: on CUDA: " + "; ".join(cuda.notices))
    return cuda


def trl_args(cfg: TrainConfig, on_gpu: bool, chosen: dict | None = None):
    """Map our recipe onto the TRL config class; fp32 without checkpointing on CPU unless the recipe says otherwise;
    `chosen`: rapref's CUDA defaults (`rapref.train.cuda_defaults`), below anything the recipe sets."""
    algorithm = ALGORITHMS[cfg.algorithm.name]

    defaults = {"bf16": on_gpu, "gradient_checkpointing": on_gpu, "report_to": "none", "logging_steps": 1,
                "use_cpu": not on_gpu, **CHECKPOINT_DEFAULTS,
                # the Trainer's tqdm bar in a terminal; in a log file rapref's periodic progress lines instead
                "disable_tqdm": quiet() or not interactive(), **(chosen or {})}
    trl_fields = {k: v for k, v in cfg.training.items() if k not in RAPREF_TRAINING_KEYS}
    kwargs = {**defaults, **trl_fields, "output_dir": cfg.output_dir, "seed": cfg.seed, "beta": cfg.algorithm.beta,
              **algorithm.trl_kwargs(cfg.algorithm)}
    try:
        return algorithm.config_class()(**kwargs)
    except (ValueError, TypeError) as err:  # TRL's and transformers' own checks, as one line
        raise InputError(f"recipe: {str(err).strip().splitlines()[0]}") from None


def build_trainer(cfg: TrainConfig, args, model, tokenizer, splits):
    algorithm = ALGORITHMS[cfg.algorithm.name]
    peft_config = None
    if cfg.lora.enabled:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                 target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")
    kwargs = {"model": model, "args": args, "train_dataset": splits["train"], "eval_dataset": splits.get("eval"),
              "processing_class": tokenizer, "peft_config": peft_config}
    if algorithm.reference_model:
        # precomputed reference log-probs: TRL scores the data with the policy before training, no resident copy
        resident = peft_config is None and not getattr(args, "precompute_ref_log_probs", False)
        kwargs["ref_model"] = load_model(cfg.model) if resident else None
    trainer_class = algorithm.trainer_class()
    if not algorithm.packable:
        return trainer_class(**kwargs)
    trainer = _packed_or_padded(cfg, trainer_class, kwargs, model)

    match_reference_kernels(trainer)  # Liger on the policy: the reference runs on the same kernels
    return trainer


def _packed_or_padded(cfg: TrainConfig, trainer_class, kwargs: dict, model):
    """The DPO trainer with rapref's packed forward where the packing gate allows it, TRL's padded path otherwise."""
    import torch

    from rapref.train.packing import packed_heads  # lazy: imports torch, which `rapref --help` never loads

    reason = packing_refusal(model, cfg.training.get("packing"), on_gpu=torch.cuda.is_available())
    if reason is None:
        with packed_heads(release_memory=cfg.training.get("release_memory")) as stats:  # policy and reference
            trainer = trainer_class(**kwargs)
        if stats.get("attention"):
            stats["enabled"] = True  # the counts keep growing in this dict as training runs
            trainer.rapref_packing = stats
            return trainer
        reason = "TRL's DPOTrainer added no fused LM head to pack"  # built with TRL's own head: usable as it is
    else:
        trainer = trainer_class(**kwargs)
    if cfg.training.get("packing") is not False:
        say(f"rapref train: packed DPO off ({reason}); TRL's padded path, same losses")
    trainer.rapref_packing = {"enabled": False, "reason": reason}
    return trainer


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


def finished_run(out: Path) -> dict | None:
    """The recorded result of the finished training run in `out` (finished marker and `rapref_train.json` present),
    or None when there is none to continue from. `--resume` on a finished run is a no-op: training it on would add
    an optimizer step past max_steps and rewrite the record, metrics and card each time. (A folder another rapref
    command wrote was refused when the run folder was claimed.)"""

    if not is_finished_output(out) or not (out / TRAIN_SETTINGS_FILE).is_file():
        return None
    try:
        return json.loads((out / TRAIN_SETTINGS_FILE).read_text())["result"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # an unreadable record: not known to be finished; the checkpoints decide


def _restore_final_checkpoint(trainer, checkpoint: str) -> bool:
    """A run killed after saving its last step (checkpoint at max_steps, record not yet written) has no step left:
    its weights and state are loaded as they are and the run's files written from them. (transformers' resume would
    skip the trained batches, then take one more optimizer step before it checks max_steps.)"""
    from transformers.trainer_callback import TrainerState

    state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    if not state.max_steps or state.global_step < state.max_steps:
        return False
    trainer._load_from_checkpoint(checkpoint)
    trainer.state = state
    say(f"rapref train: {Path(checkpoint).name} holds the last step ({state.global_step} of {state.max_steps}); "
        "writing the run's files from it, no further step")
    return True


def _last_complete_checkpoint(output_dir: Path) -> str | None:
    """The newest `checkpoint-N` whose write finished (trainer state and weights present and readable); a checkpoint
    cut short by a kill is skipped with a note."""
    if not output_dir.is_dir():
        return None
    candidates = sorted((p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name[11:].isdigit()),
                        key=lambda p: int(p.name[11:]), reverse=True)
    for folder in candidates:
        if _checkpoint_complete(folder):
            return str(folder)
        say(f"rapref train: --resume: skipping {folder.name}, its write did not finish")
    return None


def _checkpoint_complete(folder: Path) -> bool:
    """Trainer state readable, and every weight file present and readable (safetensors headers parse)."""
    state = folder / "trainer_state.json"
    weights = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")
               and p.name.startswith(("model", "pytorch_model", "adapter_model"))]
    if not state.is_file() or not weights:
        return False
    try:
        json.loads(state.read_text())
        from safetensors import safe_open

        for file in weights:
            if file.suffix == ".safetensors":
                with safe_open(str(file), framework="pt") as handle:
                    for key in handle.keys():
                        handle.get_slice(key)
    except Exception:  # noqa: BLE001 - any unreadable part means the write did not finish
        return False
    return True
