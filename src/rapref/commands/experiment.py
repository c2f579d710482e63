"""Flags of `rapref experiment`, derived from `rapref.studies.ifeval.run.ExperimentConfig` (the experiment)."""

from __future__ import annotations

import argparse

from rapref.commands.flags import add_flags, from_args, show_if_asked
from rapref.studies.ifeval.run import ExperimentConfig, main, to_run


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=("ifeval",), help="which experiment")
    add_flags(p, ExperimentConfig, config=True)


def config_from_args(args):
    return from_args(ExperimentConfig, args).config


def run(args):
    cfg = config_from_args(args)
    if args.show_config:  # what a run would run (--quick's settings), checked as a run checks them
        show_if_asked(to_run(cfg), args)
        return {}
    return main(cfg)  # main resolves the settings itself, after the kernel dispatch is applied (before torch loads)
