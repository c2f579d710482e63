"""Flags of `rapref judge`, every one derived from `rapref.judge.run.JudgeConfig` (see `rapref.settings`)."""

from __future__ import annotations

import argparse

from rapref.commands.flags import add_flags, from_args
from rapref.inference.hosted import usage_line
from rapref.judge.run import JudgeConfig, main


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, JudgeConfig)


def config_from_args(args) -> JudgeConfig:
    return from_args(JudgeConfig, args).config


def run(args) -> dict:
    result = main(config_from_args(args))
    print(summary_line(result))
    return result


def summary_line(result: dict) -> str:
    """What `rapref judge` prints: the mean (or the win rate) with its uncertainty, and an LLM judge's usage."""
    line = f"rapref judge: n={result['n']} mean={result['mean']:.4f}{_pm(result['stderr'])}"
    if result.get("unscored"):
        line += f" ({result['unscored']} unscored: no grade in the judge's reply)"
    if "pairwise" in result and "lc_win_rate" in result["pairwise"]:
        pw = result["pairwise"]
        line = (f"rapref judge: win rate {pw['win_rate']:.3f} [{_fmt(pw['low'])}, {_fmt(pw['high'])}], "
                f"length-controlled {pw['lc_win_rate']:.3f} [{_fmt(pw['lc_low'])}, {_fmt(pw['lc_high'])}] over "
                f"{pw['n']} comparisons, both orders (ties = 1/2; {pw['unscored']} unscored)")
    elif "pairwise" in result:
        pw = result["pairwise"]
        clustered = f", clustered by {pw['prompts']} prompts" if "prompts" in pw else ""
        line += (f"; win rate {pw['win_rate']:.3f}{_pm(pw['stderr'])} over {pw['n']} matched (prompt, goal, sample, "
                 f"turn){clustered}; ties = 1/2")
    return line + _judge_usage(result.get("requests"))


def _judge_usage(requests: dict | None) -> str:
    """The LLM judge asked and the tokens its replies reported, for the summary line."""
    if not requests:
        return ""
    return f"; judge {requests['model']}: {usage_line(requests['usage'])}"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _pm(stderr) -> str:
    return "" if stderr is None else f" ± {stderr:.4f} (stderr)"
