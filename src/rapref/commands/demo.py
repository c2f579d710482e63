"""Flags of `rapref demo` (the pipeline is `rapref.demo.run`)."""

from __future__ import annotations

import argparse
from dataclasses import replace


def _seeds(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(",") if s.strip())


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rapref.demo.run import DemoConfig
    from rapref.goals import STYLES

    d = DemoConfig()
    p.add_argument("--out", default=d.out, help="run folder (finished stages are reused)")
    p.add_argument("--quick", action="store_true", help="one small seed: every stage in under a minute")
    p.add_argument("--overwrite", action="store_true",
                   help="start over: empty an earlier demo run folder instead of reusing its finished stages")
    p.add_argument("--seeds", type=_seeds, default=d.seeds, help="evaluation seeds, e.g. 1,2,3")
    p.add_argument("--goal-style", choices=STYLES, default=d.goal_style, help="how the goal looks to the model")
    p.add_argument("--start-goal-fraction", type=float, default=d.start_goal_fraction,
                   help="share of SFT examples carrying their judge score as a goal (0: the start never saw goals)")
    p.add_argument("--judge-noise", type=float, default=d.world.judge_noise, help="judge noise (score points)")
    p.add_argument("--train-prompts", type=int, default=d.world.n_train_prompts)
    p.add_argument("--test-prompts", type=int, default=d.world.n_test_prompts)
    p.add_argument("--pool", default=",".join(map(str, d.world.generator_skills)),
                   help="generator skills (probability of each right letter), comma-separated")
    p.add_argument("--beta", type=float, default=d.beta)
    p.add_argument("--dpo-lr", type=float, default=d.dpo_lr)
    p.add_argument("--dpo-epochs", type=float, default=d.dpo_epochs)
    p.add_argument("--select-world", action="store_true",
                   help="instead of the demo: measure, on validation seed 101, whether starts fine-tuned with "
                        "0.5 / 0.75 / 1.0 of their examples goal-conditioned read goals; writes OUT/world-selection.json")
    p.add_argument("--select-hparams", action="store_true",
                   help="instead of the demo: choose DPO learning rate and beta on validation seeds 101-102 by the "
                        "plain-DPO arm's true reward (how the defaults were fixed); writes OUT/selection.json")


def config_from_args(args):
    from rapref.demo.run import DemoConfig

    d = DemoConfig()
    world = replace(d.world, judge_noise=args.judge_noise, n_train_prompts=args.train_prompts,
                    n_test_prompts=args.test_prompts,
                    generator_skills=tuple(float(s) for s in args.pool.split(",")))
    return replace(d, out=args.out, quick=args.quick, seeds=args.seeds, goal_style=args.goal_style,
                   start_goal_fraction=args.start_goal_fraction, world=world, beta=args.beta, dpo_lr=args.dpo_lr,
                   dpo_epochs=args.dpo_epochs)


def run(args):
    from rapref.demo.run import main, select_hyperparameters

    cfg = config_from_args(args)
    if args.select_world:
        from rapref.demo.run import select_world

        selection = select_world(cfg)
        for trial in selection["trials"]:
            print(trial)
        return selection
    if args.select_hparams:
        selection = select_hyperparameters(cfg, {"dpo_lr": [1e-4, 3e-4], "beta": [0.1, 0.5]}, seeds=(101, 102))
        print(f"rapref demo --select-hparams: chose {selection['chosen']} ({selection['criterion']})")
        return selection
    return main(cfg, overwrite=args.overwrite)
