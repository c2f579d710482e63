"""`rapref alpaca-eval-judge`: an alpaca_eval annotator config that asks rapref's pairwise judge question.

    rapref alpaca-eval-judge http://127.0.0.1:8000/v1 --out runs/ae-judge [--lc-reference df_gamed.csv]

Every flag is derived from `rapref.judge.alpaca_eval_judge.AlpacaEvalJudgeConfig` (see `rapref.settings`); see that
module and the evaluation page for the `alpaca_eval evaluate` command that uses the config.
"""

from __future__ import annotations

import argparse

from rapref.commands.flags import add_flags, from_args
from rapref.judge.alpaca_eval_judge import AlpacaEvalJudgeConfig, main


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, AlpacaEvalJudgeConfig)


def config_from_args(args) -> AlpacaEvalJudgeConfig:
    return from_args(AlpacaEvalJudgeConfig, args).config


def run(args: argparse.Namespace) -> None:
    config = main(config_from_args(args))
    print(f"alpaca_eval annotator config: {config} (alpaca_eval evaluate --annotators_config {config} ...)")
