"""Flags of `rapref onpolicy` (the loop is `rapref.studies.onpolicy`)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rapref.relabel import MODES
    from rapref.schemas.base import PAIRINGS, SCORE_MAPPINGS

    p.add_argument("--policy", required=True,
                   help="the start: a model folder (later iterations start from the previous policy)")
    p.add_argument("--prompts", required=True, help="prompt file, benchmark question file or `rapref augment` folder")
    p.add_argument("--scorer", required=True, help="if-official:ifeval | if-official:ifbench | reward-model:PATH | constraints | "
                        "python:MODULE:FUNCTION (see rapref.evaluate.scorers)")
    p.add_argument("--config", help="`rapref train` recipe (model, data and output_dir are set per iteration)")
    p.add_argument("--out", required=True, help="run folder (finished stages are reused)")
    p.add_argument("--samples", type=int, default=4, help="samples per prompt (the paper: 5)")
    p.add_argument("--iterations", type=int, default=1, help="sample-judge-pair-train rounds")
    p.add_argument("--pairing", choices=PAIRINGS, default="best-vs-worst", help="how a prompt's samples are paired")
    p.add_argument("--modes", default="relabeled,original",
                   help=f"augment modes written every iteration from the same pairs ({', '.join(MODES)})")
    p.add_argument("--train-mode", choices=MODES, default="relabeled", help="the data the next policy trains on")
    p.add_argument("--score-mapping", choices=SCORE_MAPPINGS, default="quantile",
                   help="how scores reach the goal scale; none: they are on it already (verifier scores)")
    p.add_argument("--scale", default="1-10", help="goal scale LOW-HIGH")
    p.add_argument("--ties", choices=("keep", "drop"), default="keep",
                   help="pairs whose samples scored alike (common with verifier scores): keep (relabeled copies "
                        "cancel; plain DPO learns an arbitrary order) or drop from every mode")
    p.add_argument("--placement", choices=("system", "user", "user-suffix"), default="system",
                   help="where the goal goes in the prompt")
    p.add_argument("--max-new-tokens", type=int, default=256, help="longest sample, in tokens")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--batch-size", type=int, default=16, help="prompts per generation batch")
    p.add_argument("--workers", type=int, default=1, help="generation processes, one thread each (see generate)")
    p.add_argument("--serve", metavar="COMMAND",
                   help="sample through a server rapref starts on each iteration's policy and stops after sampling, "
                        "from this command template ({model}, {port}, {python}; NAME=value settings may lead), e.g. "
                        "\"VLLM_CPU_KVCACHE_SPACE=2 .venv-vllm/bin/python -m vllm.entrypoints.openai.api_server "
                        "--model {model} --port {port} --no-enable-chunked-prefill\" (see docs/evaluation.md)")
    p.add_argument("--seed", type=int, default=0, help="seed of iteration 1 (iteration i uses seed + i - 1)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in --out (a rerun with other settings is refused otherwise)")
    p.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE", help="recipe overrides, as `rapref train`")


def run(args):
    from rapref.goals import scale_field
    from rapref.studies.onpolicy import OnPolicyConfig, main

    return main(OnPolicyConfig(
        policy=args.policy, prompts=args.prompts, scorer=args.scorer, recipe=args.config, out=args.out,
        overrides=args.overrides, samples=args.samples, iterations=args.iterations, pairing=args.pairing,
        modes=tuple(m.strip() for m in args.modes.split(",") if m.strip()), train_mode=args.train_mode,
        score_mapping=args.score_mapping, ties=args.ties, scale=scale_field(args.scale), placement=args.placement,
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, batch_size=args.batch_size,
        workers=args.workers, serve=args.serve, seed=args.seed, overwrite=args.overwrite))
