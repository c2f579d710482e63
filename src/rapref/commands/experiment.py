"""Flags of `rapref experiment` (the experiment is `rapref.studies.ifeval.run`)."""

from __future__ import annotations

import argparse

from rapref import dispatch


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rapref.studies.ifeval.run import ExperimentConfig

    d = ExperimentConfig(model="", out="")
    p.add_argument("name", choices=("ifeval",), help="which experiment")
    p.add_argument("--model", required=True, help="the start: a model folder (e.g. from `rapref model smollm2`)")
    p.add_argument("--out", required=True, help="run folder (finished stages are reused)")
    p.add_argument("--quick", action="store_true", help="every stage on a handful of prompts: a smoke run")
    p.add_argument("--train-prompts", type=int, default=d.train_prompts, help="training prompts")
    p.add_argument("--test-prompts", type=int, default=d.test_prompts, help="held-out test prompts")
    p.add_argument("--samples", type=int, default=d.samples, help="on-policy samples per training prompt")
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help="longest answer, in tokens")
    p.add_argument("--sweep-prompts", type=int, default=d.sweep_prompts,
                   help="held-out prompts in the goal sweep (each asked at goals 1..10)")
    p.add_argument("--seed", type=int, default=d.seed, help="prompt, sampling and training seed")
    p.add_argument("--workers", type=int, default=d.workers, help="generation processes, one thread each")
    p.add_argument("--ifbench-prompts", help="also evaluate every arm on IFBench's test prompts (a file written by "
                                             "`rapref prompts --split ifbench-test`)")
    p.add_argument("--serve", metavar="COMMAND",
                   help="sample through a server started on each policy from this command template (see "
                        "`rapref onpolicy --serve`)")
    p.add_argument("--kernels", choices=dispatch.choices(), default=dispatch.default_kernels(),
                   help="CPU kernel dispatch: pinned (default: AVX2 on x86-64, NEON on ARM; the same numbers on every "
                        "machine), native (all the CPU has), or a level; default from $RAPREF_KERNELS, else pinned")
    p.add_argument("--native-kernels", dest="kernels", action="store_const", const="native",
                   help="the same as --kernels native")
    p.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE", help="training overrides, as `rapref train`")


def run(args):
    from rapref.io import InputError
    from rapref.studies.ifeval.run import ExperimentConfig, main

    try:
        dispatch.level(args.kernels)
    except ValueError as error:
        raise InputError(f"--kernels (or ${dispatch.ENV}): {error}") from None

    d = ExperimentConfig(model="", out="")
    training = {**d.training, **dict(o.split("=", 1) for o in args.overrides)}
    return main(ExperimentConfig(model=args.model, out=args.out, train_prompts=args.train_prompts,
                                 test_prompts=args.test_prompts, samples=args.samples,
                                 max_new_tokens=args.max_new_tokens, seed=args.seed, training=training,
                                 ifbench_prompts=args.ifbench_prompts, sweep_prompts=args.sweep_prompts,
                                 workers=args.workers, serve=args.serve, kernels=args.kernels,
                                 quick=args.quick))
