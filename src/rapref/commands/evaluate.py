"""Flags of `rapref generate`, `judge`, `diagnose` and `export` (stages live in `rapref.evaluate`)."""

from __future__ import annotations

import argparse


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_generate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a folder written by `rapref train`, or its Hub id (its goal settings are reused)")
    p.add_argument("--prompts", required=True,
                   help="prompt file (JSONL with `prompt`), a `rapref augment` folder, or a benchmark's question file "
                        "(MT-Bench / Arena-Hard question.jsonl, AlpacaEval JSON)")
    p.add_argument("--split", default="test", help="split of an augment folder (default: test, unconditioned)")
    p.add_argument("--out", required=True, help="output JSONL")
    p.add_argument("--goals", type=_floats, help="goal sweep, e.g. 1,2,3,4,5,6,7,8,9,10 (default: top score)")
    p.add_argument("--no-goal", action="store_true", help="sample without a goal (plain policies)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="longest answer, in tokens")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature; 0 decodes greedily")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold")
    p.add_argument("--num-samples", type=int, default=1, help="answers per prompt and goal")
    p.add_argument("--batch-size", type=int, default=16, help="prompts per generation batch")
    p.add_argument("--seed", type=int, default=0, help="sampling seed: the same seed gives every policy the same draws")
    p.add_argument("--limit", type=int, help="first N prompts only")
    p.add_argument("--workers", type=int, default=1,
                   help="transformers backend: sampling processes, one thread each (on a CPU two single-thread "
                        "workers beat one two-thread process); an interrupted run resumes from OUT.partial either way")
    p.add_argument("--backend", choices=("auto", "transformers", "vllm"), default="auto",
                   help="transformers' generate in this process; vLLM runs as a server in its own environment: "
                        "use --endpoint (vllm here says how)")
    p.add_argument("--endpoint", metavar="URL",
                   help="sample through an OpenAI-compatible server on this model (vllm serve, SGLang, TGI, "
                        "llama.cpp), e.g. http://127.0.0.1:8000/v1; prompts are sent as the token ids training saw")
    p.add_argument("--served-model", metavar="NAME",
                   help="--endpoint: the server's name for the model, where its model list does not show the folder")
    p.add_argument("--concurrency", type=int, help="--endpoint: requests in flight (default 8)")
    add_network_arguments(p, "--endpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an output file that rapref generate wrote")


def add_network_arguments(p: argparse.ArgumentParser, where: str) -> None:
    """--connect-timeout, --request-timeout, --retry-time, --api-key-env: the fields of `NetworkConfig`, with their
    help, type and metavar."""
    from dataclasses import fields

    from rapref.inference.serving import NetworkConfig

    for f in fields(NetworkConfig):
        p.add_argument("--" + f.name.replace("_", "-"), type=f.metadata.get("type", float),
                       metavar=f.metadata.get("metavar", "S"), help=f"{where}: {f.metadata['help']}")


def network_config(args):
    """The flags' `NetworkConfig`, or None where none was given."""
    from dataclasses import fields

    from rapref.inference.serving import NetworkConfig

    given = {f.name: getattr(args, f.name) for f in fields(NetworkConfig) if getattr(args, f.name) is not None}
    return NetworkConfig(**given) if given else None


def run_generate(args):
    from rapref.generate.run import GenerateConfig, main
    from rapref.inference.sampler import SamplingConfig

    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                              num_samples=args.num_samples, seed=args.seed, batch_size=args.batch_size)
    rows = main(GenerateConfig(model=args.model, prompts=args.prompts, out=args.out, split=args.split,
                               goals=args.goals, no_goal=args.no_goal, sampling=sampling, backend=args.backend,
                               limit=args.limit, overwrite=args.overwrite, workers=args.workers,
                               endpoint=args.endpoint, served_model=args.served_model,
                               concurrency=_concurrency(args), network=network_config(args)))
    from rapref.progress import say

    say(f"rapref generate: {len(rows)} samples -> {args.out}")


def _concurrency(args) -> int:
    from rapref.io import InputError

    if args.concurrency is not None and not args.endpoint:
        raise InputError("--concurrency is for sampling through a server; give --endpoint URL")
    return 8 if args.concurrency is None else args.concurrency


def add_judge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("generations", help="JSONL written by `rapref generate`")
    p.add_argument("--scorer", required=True,
                   help="if-official:ifeval | if-official:ifbench | reward-model:PATH | constraints | "
                        "python:MODULE:FUNCTION (see rapref.judge.scorers)")
    p.add_argument("--out", required=True, help="output folder (scores.jsonl, aggregate.json, cache.jsonl)")
    p.add_argument("--against", help="pairwise: win rate of GENERATIONS against this generation set")
    p.add_argument("--cache", help="score cache file (default OUT/cache.jsonl); one kept apart from OUT survives "
                   "--overwrite (entries are keyed by content)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a reward model's own code to run")
    p.add_argument("--judge-template", metavar="FILE",
                   help="LLM judges: the prompt template ({instruction} and {output}; pairwise {output_1}, "
                        "{output_2}); default: rapref's, in the manner of MT-Bench / AlpacaEval")
    p.add_argument("--judge-model", metavar="NAME", help="LLM judges: the served model, where a server serves several")
    add_network_arguments(p, "LLM judges")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder that rapref judge wrote, "
                   "asking the judge everything again (OUT/cache.jsonl is emptied; a --cache FILE is kept); needed "
                   "when a hosted judge changed its model under the same name")


def run_judge(args):
    from rapref.judge.run import JudgeConfig, main

    result = main(JudgeConfig(generations=args.generations, scorer=args.scorer, out=args.out, against=args.against,
                              cache=args.cache, trust_remote_code=args.trust_remote_code,
                              overwrite=args.overwrite, judge_template=args.judge_template,
                              judge_model=args.judge_model, network=network_config(args)))
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
                 "turn)"
                 f"{clustered}; ties = 1/2")
    print(line + _judge_usage(result.get("requests")))


def _judge_usage(requests: dict | None) -> str:
    """The LLM judge asked and the tokens its replies reported, for the summary line."""
    if not requests:
        return ""
    from rapref.inference.hosted import usage_line

    return f"; judge {requests['model']}: {usage_line(requests['usage'])}"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _pm(stderr) -> str:
    return "" if stderr is None else f" ± {stderr:.4f} (stderr)"


def add_diagnose_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=("unlearning", "accuracy", "controllability", "implicit-relabel"), help="what to measure")
    p.add_argument("--out", required=True, help="output folder (a JSONL file for implicit-relabel)")
    p.add_argument("--policy", help="goal-conditioned policy folder (implicit-relabel: the DPO policy)")
    p.add_argument("--reference", help="the start (SFT / reference) model folder")
    p.add_argument("--dpo", help="unlearning: a plain-DPO policy to compare")
    p.add_argument("--data", help="held-out pairs: a `rapref augment` folder or a pairs file")
    p.add_argument("--split", default="test", help="split of an augment folder")
    p.add_argument("--scores", help="controllability: scores.jsonl of a judged goal sweep")
    p.add_argument("--beta", type=float, default=0.1, help="implicit reward scale")
    p.add_argument("--band", type=float, default=5.0, help="unlearning: high-quality threshold (score >= band)")
    p.add_argument("--scale", default="1-10", help="implicit-relabel: goal scale LOW-HIGH")
    p.add_argument("--score-range", help="controllability: the scorer's range LOW-HIGH, e.g. 0-1 (plot axis and "
                                         "interval clipping; default: unbounded)")
    p.add_argument("--limit", type=int, help="first N pairs only")
    p.add_argument("--overwrite", action="store_true", help="replace an output that rapref diagnose wrote")


def run_diagnose(args):
    from rapref.diagnose.run import DiagnoseConfig, main
    from rapref.goals import scale_field

    result = main(DiagnoseConfig(kind=args.kind, out=args.out, policy=args.policy, reference=args.reference,
                                 dpo=args.dpo, data=args.data, split=args.split, scores=args.scores, beta=args.beta,
                                 band=args.band, scale=scale_field(args.scale), limit=args.limit,
                                 score_range=scale_field(args.score_range) if args.score_range else None,
                                 overwrite=args.overwrite))
    print(f"rapref diagnose {args.kind}: {headline(args.kind, result, args.band)}; written to {args.out}")
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


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    from rapref.export.run import FORMATS

    p.add_argument("format", choices=FORMATS, help="the benchmark whose answer file to write")
    p.add_argument("source", help="generations JSONL (lm-eval: the trained model folder)")
    p.add_argument("--out", help="output file")
    p.add_argument("--name", default="rapref-model", help="model name written into the files")
    p.add_argument("--tasks", default="ifeval", help="lm-eval: task list")
    p.add_argument("--goal", type=float, help="the goal to export from a goal sweep (one file per goal); lm-eval: the "
                                              "goal the printed command asks for (default: the top of the scale)")
    p.add_argument("--tokenizer", help="arena-hard: tokenizer that counts token_len (default: the policy's)")
    p.add_argument("--overwrite", action="store_true", help="replace an answer file that rapref export wrote")


def run_export(args):
    from rapref.export.run import main
    from rapref.io import InputError

    if args.format != "lm-eval" and not args.out:
        raise InputError(f"export {args.format} needs --out")
    if args.format == "lm-eval" and (args.out or args.tokenizer):
        raise InputError("export lm-eval prints the `rapref lm-eval` command to run; it writes no file and counts no "
                         "tokens (no --out, no --tokenizer)")
    print(main(args.format, args.source, args.out, args.name, args.tasks, args.goal, args.tokenizer,
               overwrite=args.overwrite))
