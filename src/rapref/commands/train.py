"""Flags of `rapref train` (the stage is `rapref.train.run`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from rapref.commands.flags import add_flags, from_args
from rapref.io import InputError
from rapref.progress import say
from rapref.settings import setting
from rapref.train.config import TrainConfig, load_config, to_dict
from rapref.train.run import main, trl_args


def recipe_reference() -> str:
    """Every recipe section and key with its default, for `rapref train --help`."""
    import dataclasses

    lines = ["recipe sections and keys (defaults); override any with SECTION.KEY=VALUE:"]
    for f in dataclasses.fields(TrainConfig):
        value = getattr(TrainConfig(), f.name)
        if dataclasses.is_dataclass(value):
            lines.append(f"  {f.name}:")
            lines += [f"    {k}: {v!r}" for k, v in dataclasses.asdict(value).items()]
        elif f.name == "training":
            lines.append("  training:  any field of the TRL config class of the algorithm (DPOConfig, CPOConfig, "
                         "ORPOConfig, KTOConfig), e.g. learning_rate, num_train_epochs, per_device_train_batch_size,"
                         " max_length, push_to_hub")
        else:
            lines.append(f"  {f.name}: {value!r}")
    lines.append("see the resolved recipe: rapref train --config RECIPE --show-config")
    return "\n".join(lines)


def effective_trl_config(cfg) -> str:
    """The TRL config class the recipe becomes, every field with its value (TRL's and transformers' defaults
    included), as YAML under `trl:` in comments, for `--show-config`: what it prints is a recipe `--config` reads
    back as it was (the TRL fields are derived from the recipe, never read)."""
    import json

    import torch
    import yaml

    on_gpu = torch.cuda.is_available()
    args = trl_args(cfg, on_gpu=on_gpu)
    values = json.loads(json.dumps(args.to_dict(), default=str))
    note = (" On this GPU machine rapref's CUDA defaults (chosen per model at launch) are added below what the "
            "recipe sets." if on_gpu else "")
    shown = yaml.safe_dump({"trl": values}, sort_keys=False)
    return (f"# the {type(args).__name__} TRL trains with: every field, TRL's and transformers' defaults included "
            f"(derived from the recipe above, not read: set them there).{note}\n"
            + "".join(f"# {line}\n" for line in shown.splitlines()))


@dataclass
class TrainCommand:
    """What `rapref train` is asked to do with a recipe (the recipe's own settings are `TrainConfig`)."""

    config: str | None = setting(None, "recipe YAML (model, data, algorithm, lora, training sections)",
                                 metavar="FILE", shown="none: rapref train's defaults")
    show_config: bool = setting(False, "print the resolved recipe (defaults, YAML and overrides merged, validated) and "
                                       "the TRL config it becomes, every field with its effective value, then exit")
    resume: bool = setting(False, "continue a run in output_dir from its newest complete checkpoint")
    overwrite: bool = setting(False, "replace an earlier rapref run in output_dir (a folder rapref did not write is "
                                     "never used)")
    overrides: list[str] = setting(help="override recipe values, e.g. training.learning_rate=1e-6 algorithm.beta=0.05",
                                   factory=list, positional=True, metavar="SECTION.KEY=VALUE")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = recipe_reference()
    add_flags(p, TrainCommand)


def run(args) -> dict:
    args = from_args(TrainCommand, args, file="").config  # file="": --config is the recipe, read by load_config
    if args.show_config:
        import yaml

        cfg = load_config(args.config, args.overrides)
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        print(effective_trl_config(cfg), end="")
        return {}
    if args.resume and args.overwrite:
        raise InputError("--resume continues the run in output_dir, --overwrite replaces it: choose one")

    result = main(load_config(args.config, args.overrides), resume=args.resume, overwrite=args.overwrite)
    if result.get("already_finished"):  # `train --resume` on a finished run said so in its one line
        return result
    loss = "" if result["first_loss"] is None else \
        f"; loss {result['first_loss']:.4f} -> {result['last_loss']:.4f}"
    say(f"rapref train: {result['steps']} steps on {result['world_size']} process(es){loss}")
    return result
