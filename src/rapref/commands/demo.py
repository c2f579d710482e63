"""Flags of `rapref demo`, derived from `rapref.studies.demo.run.DemoConfig` (the pipeline) and `DemoCommand` (what
the command does with it: the demo, its grid, or the learning-rate selection)."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, replace

from rapref.commands.flags import add_flags, from_args, show_if_asked
from rapref.io import InputError
from rapref.runs.launches import changed
from rapref.settings import setting
from rapref.studies.demo.grid import main as grid
from rapref.studies.demo.run import QUICK_OUT, DemoConfig, main, select_hyperparameters, to_run


@dataclass
class DemoCommand:
    grid: str | None = setting(None, "instead of the demo: its claims over a grid of worlds and training settings, one "
                                     "cell per entry of the file (e.g. docs/demo-grid.yaml, about 2 hours); the world "
                                     "and training settings do not apply (each cell sets its own)", metavar="GRID.yaml",
                               shown="none: the demo itself")
    select_hparams: bool = setting(False, "instead of the demo: choose each arm family's learning rate on validation "
                                          "seeds 101-102 by improvement over the start (answers must stay "
                                          "well-formed); writes OUT/selection.json")
    overwrite: bool = setting(False, "start over: empty an earlier demo run folder instead of reusing its finished "
                                     "stages")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, DemoConfig, config=True)
    add_flags(p, DemoCommand)


def resolve(args):
    """(the demo's settings, the settings the user gave): --out defaults to QUICK_OUT with --quick."""

    resolved = from_args(DemoConfig, args)
    cfg = resolved.config
    if cfg.quick and "out" not in resolved.given:
        cfg = replace(cfg, out=QUICK_OUT)
    return cfg, resolved.given


def config_from_args(args):
    return resolve(args)[0]


def default_out(args) -> str:
    """The run folder a command line writes to (QUICK_OUT with --quick unless --out or the --config file names one)."""
    return resolve(args)[0].out


def run(args):
    cfg, given = resolve(args)
    command = from_args(DemoCommand, args, file="").config  # --config is the study's
    if command.select_hparams and cfg.quick:
        raise InputError(f"--select-hparams chooses the learning rates at full size on the validation seeds; "
                         f"{given.get('quick', '--quick')} does not shrink it: leave it out")
    if show_if_asked(cfg if command.grid or command.select_hparams else to_run(cfg), args):  # what the demo runs
        return {}
    if command.grid:
        if command.select_hparams:
            raise InputError("--grid and --select-hparams: choose one")
        settings = changed(asdict(DemoConfig()), asdict(cfg), ("out", "quick", "workers", "kernels"))
        if settings:
            raise InputError(f"--grid: each cell sets its own world and training; leave out the flags that set "
                             f"{', '.join(settings)} (or add a cell to the grid file)")
        out = cfg.out if "out" in given else ("runs/grid-quick" if cfg.quick else "runs/grid")
        return grid(command.grid, out, workers=cfg.workers, quick=cfg.quick, overwrite=command.overwrite,
                    kernels=cfg.kernels)
    if command.select_hparams:
        selection = select_hyperparameters(cfg, overwrite=command.overwrite)
        for trial in selection["trials"]:
            print(f"{trial['family']:>9} lr {trial['lr']:<7g} improvement over start "
                  f"{trial['improvement_over_start']:+.3f} (per seed {trial['per_seed']}), well-formed >= "
                  f"{trial['min_well_formed']:.2f}")
        print(f"rapref demo --select-hparams: chose {selection['chosen']} ({selection['criterion']})")
        return selection
    return main(cfg, overwrite=command.overwrite)
