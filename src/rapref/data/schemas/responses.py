"""Schemas with several scored responses per prompt, turned into pairs.

- `ultrafeedback`: raw openbmb/UltraFeedback with the paper's preprocessing.
- `nectar`: berkeley-nest/Nectar, 7 ranked answers; rank r of K becomes score K + 1 - r on a 1..K scale.
- `helpsteer2`: nvidia/HelpSteer2, one row per response with five 0-4 attributes; responses of one prompt are paired.
- `multi-sample`: K responses with K unbounded reward-model scores (e.g. llama3-ultrafeedback-armorm); scores are
  mapped onto the goal scale by quantile bins or min-max fitted on the train split only.

Pairing (`--pairing`): best-vs-random (the paper's rule: chosen = best, rejected = a seeded random other, so it may
score as high as the chosen), best-vs-worst, or all-pairs (every two responses with different scores).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from rapref.data.schemas.base import (
    Drops,
    Loaded,
    SchemaOptions,
    check_score,
    check_text,
    normalise_splits,
    register,
    require_columns,
    seeded_choice,
)
from rapref.io import InputError, parse_score
from rapref.progress import track
from rapref.score_mapping import fit_score_mapping, identity_mapping  # noqa: F401 (their home: schemas.scores)

UF_ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
HS2_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")


def make_pairs(responses: list[dict], pairing: str, key: str, seed: int) -> list[tuple[dict, dict]]:
    """Pairs (chosen, rejected) from scored responses [{"text", "score", ...}]."""
    if len(responses) < 2:
        return []
    if pairing == "all-pairs":
        return [(a, b) if a["score"] >= b["score"] else (b, a)
                for a, b in combinations(responses, 2) if a["score"] != b["score"]]
    best = max(range(len(responses)), key=lambda i: responses[i]["score"])  # first of the best on ties
    others = [r for i, r in enumerate(responses) if i != best]
    if pairing == "best-vs-worst":
        return [(responses[best], min(others, key=lambda r: r["score"]))]
    return [(responses[best], seeded_choice(others, key, seed))]


def _pair_record(prompt, chosen: dict, rejected: dict, source_id: str) -> dict:
    record = {"source_id": source_id, "prompt": prompt, "chosen": chosen["text"], "rejected": rejected["text"],
              "score_chosen": chosen["score"], "score_rejected": rejected["score"]}
    if "attributes" in chosen:
        record["attributes_chosen"], record["attributes_rejected"] = chosen["attributes"], rejected["attributes"]
    return record


# --- UltraFeedback (raw) --------------------------------------------------------------------------------------------


@register("ultrafeedback", lambda cols, row: {"instruction", "completions"} <= cols)
def load_ultrafeedback(rows_by_split, options: SchemaOptions, drops: Drops) -> Loaded:
    """The paper's preprocessing of openbmb/UltraFeedback.

    Completions with any "N/A" aspect rating are left out; a prompt needs two valid completions; chosen = highest
    overall_score, rejected = a seeded random other; with the consistency filter, the chosen's mean aspect rating must
    be >= the rejected's; prompts from excluded sources (TruthfulQA by default) are dropped.
    """
    scale = options.scale or (1, 10)
    splits, notes = normalise_splits(rows_by_split)
    pairs: dict[str, list[dict]] = {}
    completions_left_out = 0
    for split, rows in splits.items():
        require_columns(rows, ["instruction", "completions"], drops.source)
        out = pairs.setdefault(split, [])
        for source_id, row in track(rows, f"Reading {split} rows", unit="row"):
            if row.get("source") in options.exclude_sources:
                drops.drop("excluded_source", source_id, "source", str(row.get("source")))
                continue
            prompt = row.get("instruction")
            if not check_text(prompt, drops, source_id, "instruction"):
                continue
            completions = row.get("completions")
            if not isinstance(completions, list):
                drops.drop("malformed_completions", source_id, "completions", "expected a list")
                continue
            valid = [c for c in (_uf_completion(c, scale) for c in completions) if c is not None]
            completions_left_out += len(completions) - len(valid)
            if len({c["text"] for c in valid}) < 2:
                drops.drop("fewer_than_two_valid_completions", source_id, "completions",
                           f"{len(valid)} of {len(completions)} valid")
                continue
            chosen, rejected = make_pairs(valid, "best-vs-random", prompt, options.seed)[0]
            if chosen["text"] == rejected["text"]:
                drops.drop("chosen_equals_rejected", source_id, "completions")
                continue
            if options.consistency_filter and chosen["aspect_mean"] < rejected["aspect_mean"]:
                drops.drop("aspect_ratings_disagree", source_id, "completions.annotations",
                           f"chosen {chosen['aspect_mean']:.2f} < rejected {rejected['aspect_mean']:.2f}")
                continue
            out.append(_pair_record(prompt, chosen, rejected, source_id))
    notes.append(f"{completions_left_out} completions left out (N/A or missing ratings, bad score or empty text)")
    return Loaded(pairs=pairs, scale=scale, drops=drops, notes=notes,
                  extra={"completions_left_out": completions_left_out})


def _uf_completion(completion, scale) -> dict | None:
    if not isinstance(completion, dict):
        return None
    text, score = completion.get("response"), parse_score(completion.get("overall_score"))
    if not isinstance(text, str) or not text.strip() or score is None or not scale[0] <= score <= scale[1]:
        return None
    annotations = completion.get("annotations") or {}
    ratings = []
    for aspect in UF_ASPECTS:
        entry = annotations.get(aspect)
        rating = parse_score(entry.get("Rating") if isinstance(entry, dict) else None)
        if rating is None:
            return None
        ratings.append(rating)
    return {"text": text, "score": score, "aspect_mean": float(np.mean(ratings))}


# --- Nectar ---------------------------------------------------------------------------------------------------------


@register("nectar", lambda cols, row: {"prompt", "answers"} <= cols)
def load_nectar(rows_by_split, options: SchemaOptions, drops: Drops) -> Loaded:
    splits, notes = normalise_splits(rows_by_split)
    k_max = max((len(r.get("answers") or []) for rows in splits.values() for _, r in rows), default=7)
    scale = options.scale or (1, max(k_max, 2))
    pairs: dict[str, list[dict]] = {}
    for split, rows in splits.items():
        require_columns(rows, ["prompt", "answers"], drops.source)
        out = pairs.setdefault(split, [])
        for source_id, row in track(rows, f"Reading {split} rows", unit="row"):
            prompt, answers = row.get("prompt"), row.get("answers")
            if not check_text(prompt, drops, source_id, "prompt"):
                continue
            if not isinstance(answers, list) or len(answers) < 2:
                drops.drop("fewer_than_two_answers", source_id, "answers")
                continue
            responses, ok = [], True
            for i, answer in enumerate(answers):
                rank = parse_score(answer.get("rank") if isinstance(answer, dict) else None)
                text = answer.get("answer") if isinstance(answer, dict) else None
                if rank is None or not 1 <= rank <= len(answers):
                    drops.drop("bad_rank", source_id, f"answers[{i}].rank", f"got {rank!r}")
                    ok = False
                    break
                if not check_text(text, drops, source_id, f"answers[{i}].answer"):
                    ok = False
                    break
                responses.append({"text": text, "score": float(len(answers) + 1 - rank)})
            if not ok:
                continue
            made = [p for p in make_pairs(responses, options.pairing, prompt, options.seed)
                    if p[0]["text"] != p[1]["text"]]
            if not made:
                drops.drop("no_distinct_pair", source_id, "answers")
            out.extend(_pair_record(prompt, c, r, source_id) for c, r in made)
    return Loaded(pairs=pairs, scale=scale, drops=drops, notes=notes)


# --- HelpSteer2 -----------------------------------------------------------------------------------------------------


@register("helpsteer2", lambda cols, row: {"prompt", "response", "helpfulness", "correctness"} <= cols)
def load_helpsteer2(rows_by_split, options: SchemaOptions, drops: Drops) -> Loaded:
    """Rows are responses; the responses of one prompt are paired by the weighted attribute score."""
    weights = options.attribute_weights or {"helpfulness": 1.0}
    unknown = set(weights) - set(HS2_ATTRIBUTES)
    if unknown:
        raise InputError(f"unknown HelpSteer2 attribute(s) {sorted(unknown)}; known: {', '.join(HS2_ATTRIBUTES)}")
    scale = options.scale or (0, 4)
    splits, notes = normalise_splits(rows_by_split)
    pairs: dict[str, list[dict]] = {}
    for split, rows in splits.items():
        require_columns(rows, ["prompt", "response", *HS2_ATTRIBUTES], drops.source)
        groups: dict[str, list[dict]] = {}
        for source_id, row in track(rows, f"Reading {split} rows", unit="row"):
            if not (check_text(row.get("prompt"), drops, source_id, "prompt")
                    and check_text(row.get("response"), drops, source_id, "response")):
                continue
            attributes = {}
            for name in HS2_ATTRIBUTES:
                value = check_score(row.get(name), scale, drops, source_id, name)
                if value is None:
                    break
                attributes[name] = value
            else:
                score = sum(weights[a] * attributes[a] for a in weights) / sum(weights.values())
                groups.setdefault(row["prompt"], []).append(
                    {"text": row["response"], "score": round(score, 6), "attributes": attributes, "id": source_id})
        out = pairs.setdefault(split, [])
        for prompt, responses in groups.items():
            made = [p for p in make_pairs(responses, options.pairing, prompt, options.seed)
                    if p[0]["text"] != p[1]["text"]]
            used = {r["id"] for pair in made for r in pair}
            for r in responses:
                if r["id"] not in used:
                    reason = "no_other_response_for_prompt" if len(responses) < 2 else "not_selected_for_a_pair"
                    drops.drop(reason, r["id"], "response")
            out.extend(_pair_record(prompt, c, r, f"{c['id']}|{r['id']}") for c, r in made)
    attributes = tuple(HS2_ATTRIBUTES) if options.multi_attribute else ("Overall",)
    return Loaded(pairs=pairs, scale=scale, drops=drops, attributes=attributes, notes=notes,
                  extra={"attribute_weights": weights})


# --- multi-sample (K responses scored by a reward model) ------------------------------------------------------------


@register("multi-sample", lambda cols, row: {"prompt", "all_generated_responses", "all_rm_scores"} <= cols)
def load_multi_sample(rows_by_split, options: SchemaOptions, drops: Drops) -> Loaded:
    from dataclasses import replace

    options = replace(options, score_mapping=options.score_mapping or "quantile")  # reward-model scores by default
    scale = options.scale or (1, 10)
    splits, notes = normalise_splits(rows_by_split)
    raw: dict[str, list[tuple[str, str, list[dict]]]] = {}
    for split, rows in splits.items():
        require_columns(rows, ["prompt", "all_generated_responses", "all_rm_scores"], drops.source)
        for source_id, row in track(rows, f"Reading {split} rows", unit="row"):
            prompt, texts, scores = row.get("prompt"), row.get("all_generated_responses"), row.get("all_rm_scores")
            if not check_text(prompt, drops, source_id, "prompt"):
                continue
            if not isinstance(texts, list) or not isinstance(scores, list) or len(texts) != len(scores):
                drops.drop("responses_and_scores_differ_in_length", source_id, "all_rm_scores")
                continue
            responses = []
            for i, (text, value) in enumerate(zip(texts, scores)):
                score = parse_score(value)
                if score is None:
                    drops.drop("score_not_a_finite_number", source_id, f"all_rm_scores[{i}]", f"got {value!r}")
                    break
                if options.score_mapping == "none" and not scale[0] <= score <= scale[1]:
                    drops.drop("score_outside_scale", source_id, f"all_rm_scores[{i}]",
                               f"{score:g} is outside {scale[0]:g}-{scale[1]:g} (--score-mapping none uses scores "
                               "as they are)")
                    break
                if not check_text(text, drops, source_id, f"all_generated_responses[{i}]"):
                    break
                responses.append({"text": text, "raw_score": score})
            else:
                raw.setdefault(split, []).append((source_id, prompt, responses))
    train_scores = np.array([r["raw_score"] for _, _, rs in raw.get("train", []) for r in rs])
    if options.score_mapping == "none":  # verifier scores already on the goal scale: used as they are
        mapper = identity_mapping(scale)
    else:
        mapper = fit_score_mapping(train_scores, scale, options.score_mapping, options.goal_precision)
    pairs: dict[str, list[dict]] = {}
    for split, items in raw.items():
        out = pairs.setdefault(split, [])
        for source_id, prompt, responses in items:
            for r in responses:
                r["score"] = mapper(r["raw_score"])
            made = [p for p in make_pairs(responses, options.pairing, prompt, options.seed)
                    if p[0]["text"] != p[1]["text"]]
            if not made:
                drops.drop("no_distinct_pair", source_id, "all_generated_responses")
            out.extend(_pair_record(prompt, c, r, source_id) for c, r in made)
    notes.append(f"scores used as they are, on {scale[0]:g}-{scale[1]:g}" if options.score_mapping == "none" else
                 f"reward-model scores mapped onto {scale[0]:g}-{scale[1]:g} by {options.score_mapping}, "
                 f"fitted on {len(train_scores)} train scores")
    return Loaded(pairs=pairs, scale=scale, drops=drops, notes=notes, extra={"score_mapping": mapper.describe})
