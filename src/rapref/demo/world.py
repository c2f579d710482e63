"""A synthetic world with a known true reward, shaped like UltraFeedback.

Task: sort a few letters. The prompt is `sort: f c a e`, the ideal answer `a c e f`. The true reward grades an answer
on many levels: the fraction of positions holding the right letter (a wrong-length answer is compared position by
position over the longer of the two, so extra or missing letters cost).

Data like UltraFeedback: a pool of generators of different skill writes several completions per prompt (a generator of
skill s keeps each letter of the ideal answer with probability s, else writes a random letter); a noisy judge scores
each completion 1-10 (1 + 9 * true reward + Gaussian noise, rounded and clipped) and rates four aspects 1-5 the same
way. The rows are written in the raw `ultrafeedback` schema, so `rapref augment` runs the paper's preprocessing on them
(chosen = best judged, rejected = a seeded random other: rejected responses are often good and gaps often small).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import numpy as np

ALPHABET = "abcdefghij"


@dataclass
class WorldConfig:
    n_train_prompts: int = 1000
    n_test_prompts: int = 200
    letters: int = 5  # letters per prompt
    completions_per_prompt: int = 4
    generator_skills: tuple[float, ...] = (0.95, 0.85, 0.75, 0.6, 0.45, 0.3)  # the pool
    judge_noise: float = 1.0  # std of the judge's Gaussian noise, in score points (1-10 scale)
    seed: int = 0


@dataclass
class World:
    cfg: WorldConfig
    train_rows: list[dict] = field(default_factory=list)  # raw UltraFeedback-schema rows
    test_rows: list[dict] = field(default_factory=list)


def ideal(prompt: str) -> list[str]:
    return sorted(_letters(prompt))


def _letters(prompt: str) -> list[str]:
    match = re.search(r"sort:\s*(.*)$", prompt.strip())
    return match.group(1).split() if match else []


def true_reward(row_or_prompt, text: str) -> float:
    """Fraction of positions right, over the longer of answer and ideal (0 to 1). A `rapref judge` python scorer.

    >>> true_reward("sort: c a b", "a b c"), true_reward("sort: c a b", "a c"), true_reward("sort: c a b", "")
    (1.0, 0.3333333333333333, 0.0)
    """
    from rapref.prompting import instruction_text

    prompt = row_or_prompt if isinstance(row_or_prompt, str) else instruction_text(row_or_prompt["prompt"])
    target, answer = ideal(prompt), text.split()
    width = max(len(target), len(answer))
    if width == 0:
        return 0.0
    return sum(a == b for a, b in zip(target, answer)) / width


def generate_answer(prompt: str, skill: float, rng: random.Random) -> str:
    return " ".join(letter if rng.random() < skill else rng.choice(ALPHABET) for letter in ideal(prompt))


def judge_score(reward: float, noise: float, rng: random.Random) -> float:
    return float(min(10, max(1, round(1 + 9 * reward + rng.gauss(0, noise)))))


def aspect_rating(reward: float, noise: float, rng: random.Random) -> str:
    return str(int(min(5, max(1, round(1 + 4 * reward + rng.gauss(0, noise / 2))))))


def make_prompt(rng: random.Random, letters: int) -> str:
    return "sort: " + " ".join(rng.sample(ALPHABET, letters))


def build_world(cfg: WorldConfig) -> World:
    """Deterministic in `cfg.seed`: prompts, pool completions, judge scores and aspect ratings."""
    rng = random.Random(cfg.seed)
    world = World(cfg)
    seen: set[str] = set()
    total = cfg.n_train_prompts + cfg.n_test_prompts
    prompts = []
    while len(prompts) < total:
        prompt = make_prompt(rng, cfg.letters)
        if prompt not in seen:  # held-out prompts never appear in training
            seen.add(prompt)
            prompts.append(prompt)
    for i, prompt in enumerate(prompts):
        completions = []
        for _ in range(cfg.completions_per_prompt):
            skill = rng.choice(cfg.generator_skills)
            text = generate_answer(prompt, skill, rng)
            reward = true_reward(prompt, text)
            completions.append({
                "model": f"gen-{skill:.2f}", "response": text, "true_reward": reward,
                "overall_score": judge_score(reward, cfg.judge_noise, rng),
                "annotations": {a: {"Rating": aspect_rating(reward, cfg.judge_noise, rng)}
                                for a in ("helpfulness", "honesty", "instruction_following", "truthfulness")},
            })
        row = {"source": "sorting", "instruction": prompt, "completions": completions}
        (world.train_rows if i < cfg.n_train_prompts else world.test_rows).append(row)
    return world


def corpus(world: World) -> list[str]:
    """Text for training the demo's tokenizer: prompts, answers, and goal texts of every style."""
    texts = [r["instruction"] for r in world.train_rows[:200]]
    texts += [c["response"] for r in world.train_rows[:200] for c in r["completions"]]
    texts += [" ".join(ALPHABET), "sort:", "target 1-10:", "#########", ".........", "0 1 2 3 4 5 6 7 8 9 10"]
    return texts


def judge_agreement(world: World) -> dict:
    """How well the judge's scores follow the true reward over all pool completions (Spearman's rho)."""
    from scipy.stats import spearmanr

    scores = [c["overall_score"] for r in world.train_rows for c in r["completions"]]
    rewards = [c["true_reward"] for r in world.train_rows for c in r["completions"]]
    rho, _ = spearmanr(scores, rewards)
    return {"spearman_judge_vs_true": float(rho), "completions": len(scores),
            "mean_true_reward_of_pool": float(np.mean(rewards))}
