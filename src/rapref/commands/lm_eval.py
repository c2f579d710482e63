"""`rapref lm-eval`: lm-evaluation-harness's own command line with the `rapref` model (the policy's goal applied).

    rapref lm-eval --model rapref --model_args pretrained=runs/relabeled,goal=10 --tasks gsm8k --apply_chat_template

Every flag after `lm-eval` is handed to lm-eval untouched (see `rapref.export.lm_eval_model`).
"""

from __future__ import annotations

import argparse

from rapref.export.lm_eval_model import main


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lm_eval_args", nargs=argparse.REMAINDER, metavar="LM_EVAL_ARGS",
                        help="lm-eval's own flags (`lm-eval run --help`), e.g. --model rapref --model_args "
                             "pretrained=runs/relabeled,goal=10 --tasks gsm8k --apply_chat_template")


def run(args: argparse.Namespace) -> None:
    main(args.lm_eval_args)
