"""The `rapref` command: parses flags, builds a config, calls the stage's `main(cfg)`.

    rapref augment INPUT --out DIR      relabel scored preference data
    rapref train --config RECIPE.yaml   train a goal-conditioned policy with TRL
    rapref demo                         the whole pipeline on a synthetic world, on CPU

Bad input ends with one line naming file, row and field (exit code 2), never a traceback
(set RAPREF_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from rapref.io import InputError

# name -> (module, its add-arguments function, its run function, help)
COMMANDS = {
    "augment": ("rapref.commands.augment", "add_arguments", "run",
                "relabel scored preference pairs into goal-conditioned pairs"),
    "train": ("rapref.commands.train", "add_arguments", "run",
              "train a goal-conditioned policy (DPO, IPO, SimPO, ORPO, KTO, ...) with TRL"),
    "generate": ("rapref.commands.evaluate", "add_generate_arguments", "run_generate",
                 "sample from a trained policy conditioned on a goal score"),
    "judge": ("rapref.commands.evaluate", "add_judge_arguments", "run_judge",
              "score generations with a registered scorer; pairwise win rates"),
    "diagnose": ("rapref.commands.evaluate", "add_diagnose_arguments", "run_diagnose",
                 "unlearning probe, implicit-reward accuracy, controllability"),
    "export": ("rapref.commands.evaluate", "add_export_arguments", "run_export",
               "AlpacaEval / MT-Bench / Arena-Hard answer files; an lm-eval command with the goal"),
    "demo": ("rapref.commands.demo", "add_arguments", "run",
             "the main job: a controlled reproduction on a synthetic world, on CPU"),
}


class Parser(argparse.ArgumentParser):
    """argparse with rapref's error style: one line naming the flag, exit code 2 (no usage dump)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = Parser(prog="rapref", description=__doc__.split("\n\n")[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    runners = {}
    for name, (module_name, add_arguments, run, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            if (err.name or "").split(".")[0] == "rapref":  # a bug in rapref itself: let it show
                raise
            runners[name] = _missing(name, err)  # a stage whose third-party dependency is not installed
            continue
        getattr(module, add_arguments)(sub)
        runners[name] = getattr(module, run)
    return parser, runners


def _missing(name, err):
    def run(_args):
        raise InputError(f"`rapref {name}` is not available: {err}")

    return run


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    import warnings

    for module in ("transformers", "trl", "peft", "accelerate", "torch"):  # library-internal deprecations
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
        warnings.filterwarnings("ignore", category=UserWarning, module=module)
    parser, runners = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if not args.command:
        parser.print_help()
        return 0
    signal.signal(signal.SIGTERM, _terminate)  # a kill cleans up like Ctrl-C: temporaries removed, locks released
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
