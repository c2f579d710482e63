"""`rapref alpaca-eval-judge`: an alpaca_eval annotator config that asks rapref's pairwise judge question.

    rapref alpaca-eval-judge http://127.0.0.1:8000/v1 --out runs/ae-judge [--lc-reference df_gamed.csv]

See `rapref.judge.alpaca_eval_judge` and the evaluation page for the `alpaca_eval evaluate` command that uses it.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the judge: an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--out", required=True, help="folder for the annotator config (configs.yaml, prompt.txt, "
                                                     "client.yaml; in a subfolder rapref_pairwise)")
    parser.add_argument("--judge-model", default=None, help="the served model to ask (needed where the server "
                                                            "serves several; default: the one it serves)")
    parser.add_argument("--judge-template", default=None,
                        help="a pairwise template with {instruction}, {output_1}, {output_2} (default: rapref's)")
    parser.add_argument("--lc-reference", default=None,
                        help="a local copy of AlpacaEval's df_gamed.csv (instruction difficulties), put into the "
                             "hub cache so alpaca_eval's length-controlled win rate runs offline")
    parser.add_argument("--hub-cache", default=None, help="the hub cache for --lc-reference (default: HF_HUB_CACHE)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier config folder rapref wrote (never a folder it did not write)")


def run(args: argparse.Namespace) -> None:
    from rapref.judge.alpaca_eval_judge import main

    config = main(args.url, args.out, args.judge_model, args.judge_template, args.lc_reference, args.hub_cache,
                  overwrite=args.overwrite)
    print(f"alpaca_eval annotator config: {config} (alpaca_eval evaluate --annotators_config {config} ...)")
