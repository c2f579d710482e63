"""Flags of `rapref demo` (the pipeline is `rapref.studies.demo.run`)."""

from __future__ import annotations

import argparse
from dataclasses import replace

from rapref import dispatch


QUICK_OUT = "runs/demo-quick"


def default_out(args) -> str:
    from rapref.studies.demo.run import DemoConfig

    return args.out or (QUICK_OUT if args.quick else DemoConfig().out)


def _seeds(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(",") if s.strip())


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rapref.studies.demo.run import DemoConfig
    from rapref.goals import STYLES

    d, w = DemoConfig(), DemoConfig().world
    p.add_argument("--out", help=f"run folder; finished stages of an earlier run are reused (default {d.out}; "
                                 f"{QUICK_OUT} with --quick, so a smoke run never meets a full run's folder)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run of every stage in under a minute; its numbers mean nothing (no verdicts)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over: empty an earlier demo run folder instead of reusing its finished stages")
    p.add_argument("--seeds", type=_seeds, default=d.seeds, help="evaluation seeds, e.g. 1,2,3,4,5")
    p.add_argument("--workers", type=int, default=d.workers, help="seeds trained in parallel, one thread each")
    p.add_argument("--kernels", choices=dispatch.choices(), default=dispatch.default_kernels(),
                   help="CPU kernel dispatch: 'pinned' (default; AVX2 on x86-64, NEON on ARM) gives the published "
                        "numbers on every machine; 'native' lets torch use all the CPU has (faster where it has "
                        "AVX-512 or AMX, other numbers); or a level. Default from $RAPREF_KERNELS, else pinned")
    p.add_argument("--native-kernels", dest="kernels", action="store_const", const="native",
                   help="the same as --kernels native")
    world = p.add_argument_group("the world (probe where an effect appears or vanishes)")
    world.add_argument("--goal-style", choices=STYLES, default=d.goal_style, help="how the goal looks to the model")
    world.add_argument("--start-goal-fraction", type=float, default=d.start_goal_fraction,
                       help="share of the start's SFT examples that carry their judge score as a goal (0: the "
                            "start never saw goals)")
    world.add_argument("--judge-noise", type=float, default=w.judge_noise, help="judge noise, score points")
    world.add_argument("--judge-length-bias", type=float, default=w.judge_length_bias,
                       help="score points the judge adds per letter beyond the ideal length (a systematic bias)")
    world.add_argument("--shared-mistake", type=float, default=w.shared_mistake,
                       help="probability that a generator makes the shared mistake on a hard item")
    world.add_argument("--train-prompts", type=int, default=w.n_train_prompts, help="training prompts per seed")
    world.add_argument("--test-prompts", type=int, default=w.n_test_prompts, help="held-out prompts per seed")
    world.add_argument("--pool", default=",".join(map(str, w.generator_skills)),
                       help="generator skills (probability of keeping each letter), comma-separated")
    train = p.add_argument_group("training (defaults chosen by --select-hparams)")
    train.add_argument("--beta", type=float, default=d.beta, help="DPO beta of every preference arm")
    train.add_argument("--dpo-lr", type=float, default=d.dpo_lr, help="DPO and DPO-duplicated arms")
    train.add_argument("--relabeled-lr", type=float, default=d.relabeled_lr,
                       help="relabeled, half-relabeled and positive-copies arms")
    train.add_argument("--extra-sft-lr", type=float, default=d.extra_sft_lr, help="the +1 SFT epoch arms")
    p.add_argument("--grid", metavar="GRID.yaml",
                   help="instead of the demo: its claims over a grid of worlds and training settings, one cell per "
                        "entry of the file (e.g. docs/demo-grid.yaml, about 2 hours); the world and training flags "
                        "above do not apply (each cell sets its own)")
    p.add_argument("--select-hparams", action="store_true",
                   help="instead of the demo: choose each arm family's learning rate on validation seeds 101-102 "
                        "by improvement over the start (answers must stay well-formed); writes OUT/selection.json")


def config_from_args(args):
    from rapref.studies.demo.run import DemoConfig

    d = DemoConfig()
    world = replace(d.world, judge_noise=args.judge_noise, judge_length_bias=args.judge_length_bias,
                    shared_mistake=args.shared_mistake, n_train_prompts=args.train_prompts,
                    n_test_prompts=args.test_prompts, generator_skills=tuple(float(s) for s in args.pool.split(",")))
    return replace(d, out=default_out(args), quick=args.quick, seeds=args.seeds, workers=args.workers, kernels=args.kernels,
                   goal_style=args.goal_style, start_goal_fraction=args.start_goal_fraction, world=world,
                   beta=args.beta, dpo_lr=args.dpo_lr, relabeled_lr=args.relabeled_lr, extra_sft_lr=args.extra_sft_lr)


def run(args):
    from rapref.io import InputError
    from rapref.studies.demo.run import DemoConfig, main, select_hyperparameters

    if args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    try:
        dispatch.level(args.kernels)
    except ValueError as error:
        raise InputError(f"--kernels (or ${dispatch.ENV}): {error}") from None
    if args.grid:
        from dataclasses import asdict

        from rapref.launches import changed
        from rapref.studies.demo.grid import main as grid

        if args.select_hparams:
            raise InputError("--grid and --select-hparams: choose one")
        given = changed(asdict(DemoConfig()), asdict(config_from_args(args)), ("out", "quick", "workers", "kernels"))
        if given:
            raise InputError(f"--grid: each cell sets its own world and training; leave out the flags that set "
                             f"{', '.join(given)} (or add a cell to the grid file)")
        out = args.out or ("runs/grid-quick" if args.quick else "runs/grid")
        return grid(args.grid, out, workers=args.workers, quick=args.quick, overwrite=args.overwrite,
                    kernels=args.kernels)
    cfg = config_from_args(args)
    if args.select_hparams:
        selection = select_hyperparameters(cfg)
        for trial in selection["trials"]:
            print(f"{trial['family']:>9} lr {trial['lr']:<7g} improvement over start "
                  f"{trial['improvement_over_start']:+.3f} (per seed {trial['per_seed']}), well-formed >= "
                  f"{trial['min_well_formed']:.2f}")
        print(f"rapref demo --select-hparams: chose {selection['chosen']} ({selection['criterion']})")
        return selection
    return main(cfg, overwrite=args.overwrite)
