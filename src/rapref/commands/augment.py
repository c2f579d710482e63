"""Flags of `rapref augment` (see `rapref.augment` for the stage itself)."""

from __future__ import annotations

import argparse

from rapref.goals import DEFAULT_HEADER, DEFAULT_LINE, PLACEMENTS, STYLES, scale_field
from rapref.relabel import INVERTED_POLICIES, MODES, TIE_POLICIES, RelabelOptions
from rapref.schemas import SCHEMAS, SchemaOptions
from rapref.schemas.base import OUT_OF_SCALE, OUT_OF_SCALE_AUTO_SHARE, PAIRINGS, SCORE_MAPPINGS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a .jsonl/.json/.parquet/.csv file, a `datasets` folder, or a hub dataset id")
    p.add_argument("--out", required=True, help="output folder (a dataset TRL loads unchanged)")
    p.add_argument("--schema", choices=sorted(SCHEMAS),
                   help="input layout; detected from the columns if omitted (the column flags imply pairs)")
    p.add_argument("--split", help="read only this input split")
    p.add_argument("--revision", help="hub dataset revision")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    g = p.add_argument_group("goal")
    g.add_argument("--placement", choices=PLACEMENTS, default="system",
                   help="system message (Qwen2, Llama-3.1), or in the first user turn before (user; Gemma-2, "
                        "Mistral) or after (user-suffix) the instruction")
    g.add_argument("--goal-header", default=DEFAULT_HEADER, help="goal text header; {lo} and {hi} are the scale")
    g.add_argument("--goal-line", default=DEFAULT_LINE, help="one line per goal score; {name} and {score}")
    g.add_argument("--goal-style", choices=STYLES, default="digits",
                   help="how a score looks: digits (8), thermometer (#######...), opaque (<g8>)")
    g.add_argument("--scale", type=_scale,
                   help="score scale LOW-HIGH, e.g. 1-10, 0,4 or -3-5 (default per schema; 1-10 for pairs); with "
                        "--score-mapping quantile|min-max the scale scores are mapped onto")
    g.add_argument("--out-of-scale", choices=OUT_OF_SCALE, default="auto",
                   help=f"rows with a score outside the scale: auto drops and counts them while they are at most "
                        f"{OUT_OF_SCALE_AUTO_SHARE * 100:.0f}%% of the rows and stops with a hint otherwise; stop; drop "
                        "(default auto)")
    r = p.add_argument_group("relabeling")
    r.add_argument("--ties", choices=TIE_POLICIES, default="keep",
                   help="pairs with equal scores: keep (the two copies share a goal and cancel out, as the authors "
                        "kept them) or drop (default keep)")
    r.add_argument("--inverted", choices=INVERTED_POLICIES, default="swap",
                   help="pairs whose chosen scored below the rejected: swap them (chosen = higher score), drop them, "
                        "or keep them as given (default swap; relabeled copies are the same either way)")
    r.add_argument("--min-gap", type=float, default=0.0, help="drop pairs whose score gap is below this")
    r.add_argument("--mode", choices=MODES, default="relabeled",
                   help="relabeled (default); half: a seeded half relabeled, output as large as the input (the "
                        "paper's data-size control); positive: the positive copies only, no flipped pairs; original: plain pairs, no goal (the DPO baseline); duplicated: "
                        "the original pairs twice (same number of steps as relabeled)")
    r.add_argument("--seed", type=int, default=0, help="seed of every random choice (rejected pick, test split, half mode)")
    r.add_argument("--test-size", type=float,
                   help="prompts held out for test when the input has no test split: a count or a fraction "
                        "(default min(2000, 10%% of prompts))")
    r.add_argument("--strict", action="store_true", help="stop at the first bad row instead of counting a drop")
    c = p.add_argument_group("columns (schema `pairs`)")
    c.add_argument("--prompt-column", default="prompt", help="pairs schema: column holding the prompt")
    c.add_argument("--chosen-column", default="chosen", help="pairs schema: column holding the chosen response")
    c.add_argument("--rejected-column", default="rejected", help="pairs schema: column holding the rejected response")
    c.add_argument("--score-chosen-column", help="pairs schema: column holding the chosen score (default: score_chosen)")
    c.add_argument("--score-rejected-column", help="pairs schema: column holding the rejected score (default: score_rejected)")
    s = p.add_argument_group("schema options")
    s.add_argument("--no-consistency-filter", action="store_true",
                   help="ultrafeedback: keep pairs whose chosen mean aspect rating is below the rejected's")
    s.add_argument("--exclude-sources", default="truthful_qa",
                   help="ultrafeedback: comma-separated `source` values to drop ('' for none)")
    s.add_argument("--pairing", choices=PAIRINGS, default="best-vs-random",
                   help="nectar / helpsteer2 / multi-sample: how responses of one prompt are paired")
    s.add_argument("--attribute-weights",
                   help="helpsteer2: e.g. helpfulness=1,correctness=0.5 (default helpfulness only)")
    s.add_argument("--multi-attribute", action="store_true",
                   help="helpsteer2: the goal text names all five attribute scores")
    s.add_argument("--score-mapping", choices=SCORE_MAPPINGS,
                   help="map reward-model scores (any sign, unbounded) onto the scale, fitted on the training split "
                        "only: quantile (equal-count bins, one per whole score) or min-max; none: the scores are "
                        "already on the scale and are used as they are (default: quantile for multi-sample, none "
                        "for one-pair-per-row layouts)")
    s.add_argument("--goal-precision", type=int, default=0, help="decimals of mapped scores (min-max)")


def _scale(text: str):
    try:
        return scale_field(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def config_from_args(args) -> "AugmentConfig":
    from rapref.augment import AugmentConfig

    weights = None
    if args.attribute_weights:
        weights = {}
        for item in args.attribute_weights.split(","):
            name, _, value = item.partition("=")
            weights[name.strip()] = float(value or 1)
    schema_options = SchemaOptions(
        prompt_column=args.prompt_column, chosen_column=args.chosen_column, rejected_column=args.rejected_column,
        score_chosen_column=args.score_chosen_column, score_rejected_column=args.score_rejected_column,
        scale=args.scale, out_of_scale=args.out_of_scale, seed=args.seed, test_size=args.test_size,
        consistency_filter=not args.no_consistency_filter,
        exclude_sources=tuple(s for s in args.exclude_sources.split(",") if s),
        pairing=args.pairing, attribute_weights=weights, multi_attribute=args.multi_attribute,
        score_mapping=args.score_mapping, goal_precision=args.goal_precision, strict=args.strict,
    )
    return AugmentConfig(
        source=args.source, out=args.out, schema=args.schema, split=args.split, revision=args.revision,
        placement=args.placement, header=args.goal_header, line=args.goal_line, style=args.goal_style,
        relabel=RelabelOptions(ties=args.ties, min_gap=args.min_gap, mode=args.mode, seed=args.seed,
                               inverted=args.inverted),
        schema_options=schema_options, overwrite=args.overwrite,
    )


def run(args) -> dict:
    from rapref.augment import main
    from rapref.report_console import print_augment_summary

    summary = main(config_from_args(args))
    print_augment_summary(summary, args.out)
    return summary
