"""Flags of `rapref diagnose`, every one derived from `rapref.diagnose.run.DiagnoseConfig` (see `rapref.settings`)."""

from __future__ import annotations

import argparse

from rapref.commands.flags import add_flags, from_args
from rapref.diagnose.run import DiagnoseConfig, main


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, DiagnoseConfig)


def config_from_args(args) -> DiagnoseConfig:
    return from_args(DiagnoseConfig, args).config


def run(args) -> dict:
    cfg = config_from_args(args)
    result = main(cfg)
    print(f"rapref diagnose {cfg.kind}: {headline(cfg.kind, result, cfg.band)}; written to {cfg.out}")
    return result


def headline(kind: str, result: dict, band: float) -> str:
    """The figure a user looks for first, as `judge` prints its mean."""
    if kind == "controllability":
        return f"Spearman rho {result['spearman_rho']:.3f} (p = {result['p_value']:.2g}, n = {result['n']})"
    if kind == "accuracy":
        return ", ".join(f"implicit-reward accuracy {k} goal {v['accuracy']:.3f} (n = {v['n']})"
                         for k, v in result.items())
    if kind == "unlearning":
        rows = [r for r in result["rows"] if r["response"] == "rejected" and r["band"] == f">= {band:g}"]
        return "; ".join(f"{r['policy']} ({r['condition']}) rejected >= {band:g}: {r['mean_delta_logp']:+.3f} nats "
                         f"(n = {r['n']})" for r in rows) or f"no held-out rejected responses scored >= {band:g}"
    return f"{result['rows']} pairs relabeled by the implicit reward"
