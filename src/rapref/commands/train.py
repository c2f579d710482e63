"""Flags of `rapref train` (the stage is `rapref.train.run`)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="recipe YAML (model, data, algorithm, lora, training sections)")
    p.add_argument("--resume", action="store_true",
                   help="continue a run in output_dir from its newest complete checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier rapref run in output_dir (a folder rapref did not write is never used)")
    p.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE",
                   help="override recipe values, e.g. training.learning_rate=1e-6 algorithm.beta=0.05")


def run(args) -> dict:
    from rapref.train.config import load_config
    from rapref.train.run import main

    if args.resume and args.overwrite:
        raise ValueError("--resume continues the run in output_dir, --overwrite replaces it: choose one")
    result = main(load_config(args.config, args.overrides), resume=args.resume, overwrite=args.overwrite)
    print(f"rapref train: {result['steps']} steps on {result['world_size']} process(es); "
          f"loss {result['first_loss']} -> {result['last_loss']}")
    return result
