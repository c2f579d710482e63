"""Flags of `rapref export`, every one derived from `rapref.export.run.ExportConfig` (see `rapref.settings`)."""

from __future__ import annotations

import argparse

from rapref.commands.flags import add_flags, from_args
from rapref.export.run import ExportConfig, main


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, ExportConfig)


def config_from_args(args) -> ExportConfig:
    return from_args(ExportConfig, args).config


def run(args) -> str:
    written = main(config_from_args(args))
    print(written)
    return written
