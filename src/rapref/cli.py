"""The `rapref` command: parses flags, builds a config, calls the stage's `main(cfg)`.

    rapref augment INPUT --out DIR      relabel scored preference data
    rapref train --config RECIPE.yaml   train a goal-conditioned policy with TRL
    rapref demo                         the whole pipeline on a synthetic world, on CPU

Bad input ends with one line naming file, row and field (exit code 2), never a traceback
(set RAPREF_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import os
import sys

from rapref.io import InputError

COMMANDS = {}


def command(name: str, help_text: str):
    def wrap(fn):
        COMMANDS[name] = (fn, help_text)
        return fn

    return wrap


@command("augment", "relabel scored preference pairs into goal-conditioned pairs")
def _augment(sub: argparse.ArgumentParser):
    from rapref.commands.augment import add_arguments, run

    add_arguments(sub)
    return run


@command("train", "train a goal-conditioned policy (DPO, IPO, SimPO, ORPO, KTO, ...) with TRL")
def _train(sub: argparse.ArgumentParser):
    from rapref.commands.train import add_arguments, run

    add_arguments(sub)
    return run


@command("generate", "sample from a trained policy conditioned on a goal score")
def _generate(sub: argparse.ArgumentParser):
    from rapref.commands.evaluate import add_generate_arguments, run_generate

    add_generate_arguments(sub)
    return run_generate


@command("judge", "score generations with a registered scorer; pairwise win rates")
def _judge(sub: argparse.ArgumentParser):
    from rapref.commands.evaluate import add_judge_arguments, run_judge

    add_judge_arguments(sub)
    return run_judge


@command("diagnose", "unlearning probe, implicit-reward accuracy, controllability")
def _diagnose(sub: argparse.ArgumentParser):
    from rapref.commands.evaluate import add_diagnose_arguments, run_diagnose

    add_diagnose_arguments(sub)
    return run_diagnose


@command("export", "AlpacaEval / MT-Bench / Arena-Hard answer files; an lm-eval command with the goal")
def _export(sub: argparse.ArgumentParser):
    from rapref.commands.evaluate import add_export_arguments, run_export

    add_export_arguments(sub)
    return run_export


@command("demo", "the main job: a controlled reproduction on a synthetic world, on CPU")
def _demo(sub: argparse.ArgumentParser):
    from rapref.commands.demo import add_arguments, run

    add_arguments(sub)
    return run


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="rapref", description=__doc__.split("\n\n")[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    runners = {}
    for name, (setup, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        try:
            runners[name] = setup(sub)
        except ImportError as err:  # a stage whose module is not available in this install
            runners[name] = _missing(name, err)
    return parser, runners


def _missing(name, err):
    def run(_args):
        raise InputError(f"`rapref {name}` is not available: {err}")

    return run


def main(argv: list[str] | None = None) -> int:
    import warnings

    for module in ("transformers", "trl", "peft", "accelerate", "torch"):  # library-internal deprecations
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
        warnings.filterwarnings("ignore", category=UserWarning, module=module)
    parser, runners = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    try:
        runners[args.command](args)
    except (InputError, FileNotFoundError, ValueError) as err:
        if os.environ.get("RAPREF_DEBUG"):
            raise
        print(f"rapref {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rapref {args.command}: interrupted; finished stages are kept, partial outputs were not written",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
