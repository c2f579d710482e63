"""Flags of `rapref generate`, every one derived from `rapref.generate.run.GenerateConfig` (see `rapref.settings`)."""

from __future__ import annotations

import argparse

from rapref.commands.flags import add_flags, from_args
from rapref.generate.run import GenerateConfig, main
from rapref.progress import say


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, GenerateConfig)


def config_from_args(args) -> GenerateConfig:
    return from_args(GenerateConfig, args).config


def run(args) -> list[dict]:
    cfg = config_from_args(args)
    rows = main(cfg)
    say(f"rapref generate: {len(rows)} samples -> {cfg.out}")
    return rows
