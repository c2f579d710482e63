"""Flags of `rapref augment`, every one derived from `rapref.data.augment.AugmentConfig` (see `rapref.settings`)."""

from __future__ import annotations

import argparse

from rapref.commands.flags import add_flags, from_args
from rapref.data.augment import AugmentConfig, main
from rapref.report_console import print_augment_summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, AugmentConfig)


def config_from_args(args) -> "AugmentConfig":
    return from_args(AugmentConfig, args).config


def run(args) -> dict:
    cfg = config_from_args(args)
    summary = main(cfg)
    print_augment_summary(summary, cfg.out)
    return summary
