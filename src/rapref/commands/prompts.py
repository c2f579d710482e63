"""Flags of `rapref prompts`, derived from `rapref.studies.ifeval.prompts.PromptsConfig` (composition is that module)."""

from __future__ import annotations

import argparse

from rapref.commands.flags import add_flags, from_args
from rapref.io import write_jsonl_atomic
from rapref.progress import say
from rapref.runs.folder import RunFile
from rapref.studies.ifeval.prompts import PromptsConfig, compose, ifbench_test


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, PromptsConfig)


def run(args):
    cfg = from_args(PromptsConfig, args).config
    with RunFile(cfg.out, "prompts", overwrite=cfg.overwrite) as run:
        return _write(cfg, run.path)


def _write(cfg, out):
    if cfg.split == "ifbench-test":
        rows, counts = ifbench_test()
        write_jsonl_atomic(out, rows)
        say(f"rapref prompts: {counts['prompts']} IFBench test prompts -> {out}; "
            f"{counts['left_out_no_checker_available']} left out, none of their checkers can run here "
            f"({', '.join(f'{k}: {v}' for k, v in counts['unavailable_checkers'].items())})")
        return rows
    rows = compose(cfg.n, cfg.split, cfg.seed, cfg.max_instructions)
    write_jsonl_atomic(out, rows)
    say(f"rapref prompts: {len(rows)} {cfg.split} prompts (IFEval's instruction registry) -> {out}")
    return rows
