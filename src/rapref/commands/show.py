"""Flags of `rapref show` (see `rapref.show`)."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("path", help="an augment folder, a trained policy folder, a generations or scores .jsonl, a judge "
                                "folder, or an input data file")
    p.add_argument("-n", type=int, default=3, help="how many pairs (both copies of each) or rows")
    p.add_argument("--split", help="augment folder: train, test or test_goal (default train)")
    p.add_argument("--model", help="a model folder whose tokenizer renders the prompts through its chat template "
                                   "(default: the model a generations file names; none for an augment folder)")
    p.add_argument("--goal", type=float, help="policy folder: the goal to show the prompt for (default: top score)")
    p.add_argument("--prompt", help="policy folder: the instruction to show (default a placeholder)")


def run(args) -> str:
    from rapref.show import show

    text = show(args.path, n=args.n, split=args.split, model=args.model, goal=args.goal, prompt=args.prompt)
    print(text)
    return text
