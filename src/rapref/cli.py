"""rapref: reward-augmented preference alignment (arXiv 2410.08067) from data to evaluation.

A typical run, each command handing files to the next:

    rapref augment scored.jsonl --out runs/data                       relabel scored pairs with goals
    rapref train --config recipe.yaml                                 train with DPO or another TRL loss
    rapref generate runs/train --prompts runs/data --out gen.jsonl     sample, asking for the top score
    rapref judge gen.jsonl --scorer reward-model:RM --out runs/judge  score and compare
    rapref demo                                                       all of it on a synthetic world, on CPU

Bad input ends with one line naming file, row and field (exit code 2), never a traceback
(set RAPREF_DEBUG=1 to see one); anything else is a bug and keeps its traceback (exit code 1).
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
    "model": ("rapref.commands.model", "add_arguments", "run",
              "make a tiny local model to try rapref on, or merge a LoRA run into a full model"),
    "augment": ("rapref.commands.augment", "add_arguments", "run",
                "relabel scored preference pairs into goal-conditioned pairs"),
    "train": ("rapref.commands.train", "add_arguments", "run",
              "train a goal-conditioned policy (DPO, IPO, SimPO, ORPO, KTO, ...) with TRL"),
    "generate": ("rapref.commands.evaluate", "add_generate_arguments", "run_generate",
                 "sample from a trained policy conditioned on a goal score"),
    "judge": ("rapref.commands.evaluate", "add_judge_arguments", "run_judge",
              "score generations with a registered scorer; pairwise win rates"),
    "diagnose": ("rapref.commands.evaluate", "add_diagnose_arguments", "run_diagnose",
                 "measure unlearning, implicit-reward accuracy and controllability of a trained policy"),
    "export": ("rapref.commands.evaluate", "add_export_arguments", "run_export",
               "write answers for the AlpacaEval / MT-Bench / Arena-Hard judges; print an lm-eval command"),
    "alpaca-eval-judge": ("rapref.commands.alpaca_eval", "add_arguments", "run",
                          "write an alpaca_eval annotator config that asks rapref's pairwise judge question"),
    "lm-eval": ("rapref.commands.lm_eval", "add_arguments", "run",
                "lm-evaluation-harness with the policy's goal applied (lm-eval's own flags, model `rapref`)"),
    "show": ("rapref.commands.show", "add_arguments", "run",
             "print a few rows of a rapref folder or file as the model sees them (goal text, chat template)"),
    "prompts": ("rapref.commands.prompts", "add_arguments", "run",
                "compose IFEval-style prompts from the official instruction registry (train / test, disjoint)"),
    "onpolicy": ("rapref.commands.onpolicy", "add_arguments", "run",
                 "the on-policy loop: sample K answers per prompt, judge, pair, relabel, train; repeat"),
    "experiment": ("rapref.commands.experiment", "add_arguments", "run",
                   "the real-model experiment: on-policy IFEval pairs, DPO vs relabeled arms, verdicts"),
    "demo": ("rapref.commands.demo", "add_arguments", "run",
             "the main job: a controlled reproduction on a synthetic world, on CPU"),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every flag's help ends with its default (unless it already speaks of one, or there is none)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if "default" in text.lower() or default in (None, False, argparse.SUPPRESS) or \
                action.option_strings == [] and action.nargs in ("*", "+"):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})"


class Parser(argparse.ArgumentParser):
    """argparse with rapref's error style: one line naming the flag, exit code 2 (no usage dump), and a suggestion
    for a mistyped flag or command."""

    def __init__(self, *args, **kwargs):
        import re

        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        # A value that starts with a minus and a digit is a value, not a flag: `--scale -3-5`, `--scale -3,5`
        # (argparse's own rule takes only plain negative numbers such as -3).
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}{self._suggestion(message)} (see {self.prog} --help)\n")

    def _suggestion(self, message: str) -> str:
        import difflib
        import re

        known = [o for action in self._all_actions() for o in action.option_strings]
        if message.startswith("unrecognized arguments:"):
            flags = [w for w in message.split(":", 1)[1].split() if w.startswith("-")]
            for flag in flags:
                close = difflib.get_close_matches(flag.split("=")[0], known, n=1, cutoff=0.6)
                if close:
                    return f"; did you mean {close[0]}?"
        match = re.search(r"invalid choice: '([^']+)'", message)
        if match:
            choices = [c for action in self._all_actions() for c in (action.choices or [])]
            close = difflib.get_close_matches(match.group(1), [str(c) for c in choices], n=1, cutoff=0.6)
            if close:
                return f"; did you mean {close[0]!r}?"
        return ""

    def _all_actions(self):
        """This parser's actions and its subcommands' (extra flags of a subcommand reach the top parser)."""
        for action in self._actions:
            yield action
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from sub._actions


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    """--quiet and --log-level on a command, or on each action of a command that has actions (`rapref model tiny`)."""
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if nested:
        for child in nested[0].choices.values():
            _add_output_flags(child)
        return
    group = parser.add_argument_group("output")
    group.add_argument("--quiet", action="store_true",
                       help="no progress bars or notices: only results and errors (for scripts)")
    group.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="warning",
                       help="how much the libraries underneath (transformers, datasets, TRL) report")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    from rapref import __version__

    parser = Parser(prog="rapref", description=__doc__.split("\n\nBad input")[0])
    parser.add_argument("--version", action="version", version=f"rapref {__version__}")
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
        _add_output_flags(sub)
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
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lm-eval"] and argv[1:2] not in (["-h"], ["--help"]):  # lm-eval's flags, handed on as given
        args = argparse.Namespace(command="lm-eval", lm_eval_args=argv[1:])
    else:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:
            return int(exit_.code or 0)
    if not args.command:
        parser.print_help()
        return 0
    signal.signal(signal.SIGTERM, _terminate)  # a kill cleans up like Ctrl-C: temporaries removed, locks released
    from rapref.progress import configure

    configure(quiet=getattr(args, "quiet", False), log_level=getattr(args, "log_level", "warning"))
    try:
        runners[args.command](args)
    except InputError as err:  # the user's input: one line, exit 2
        if os.environ.get("RAPREF_DEBUG"):
            raise
        print(f"rapref {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `rapref show ... | head`: the reader left; nothing more to say (Python's recipe)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the flush at exit would raise again
        return 0
    except KeyboardInterrupt:
        print(f"rapref {args.command}: interrupted; finished stages are kept, and what a rerun resumes "
              "from (generate's OUT.partial, a judge's cache); no unfinished output was marked finished",
              file=sys.stderr)
        return 130
    except Exception:  # anything else is a bug in rapref (or a library under it), never "bad input"
        import traceback

        traceback.print_exc()
        print(f"rapref {args.command}: internal error: this is a bug, not a problem with your input; please report "
              "it with the traceback above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
