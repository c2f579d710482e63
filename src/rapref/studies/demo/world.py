"""A synthetic world with a known true reward, shaped like UltraFeedback, in which the scores carry information.

Task: sort a few letters. The prompt is `sort: f c a e`, the ideal answer `a c e f`.

Generators share systematic mistakes, as real models share misconceptions: a few pairs of letters that sit next to
each other in the alphabet (`MISCONCEPTIONS`, e.g. "c comes after d") are written in the wrong order by every
generator with probability `shared_mistake` whenever both letters are in the prompt (a *hard item*). On a hard item
the pool's most common answer is therefore wrong, so a model fine-tuned on the pool (the start) makes the same
mistake even when decoding greedily: only the scores reveal the fix. On top, each generator of skill s slips
independently: each letter is kept with probability s, else replaced by a random one.

The true reward is graded: the longest common subsequence of answer and ideal over the longer of the two, so one
slip, one swapped pair or one dropped letter costs one letter's share (0.8 for five letters), never the whole answer.

A judge scores each completion 1-10: 1 + 9 * true reward + Gaussian noise (`judge_noise` points) + an optional
systematic bias toward longer answers (`judge_length_bias` points per letter beyond the ideal length), rounded and
clipped; four aspects are rated 1-5 the same way. Rows are written in the raw `ultrafeedback` schema, so
`rapref augment` runs the paper's preprocessing on them (chosen = best judged, rejected = a seeded random other).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import numpy as np

from rapref.prompting import instruction_text
from rapref.settings import check, comma_separated, expect, finite, setting, whole
from rapref.stats import spearman

COUNT = expect("a whole number of at least 1", whole(1))
SHARE = expect("a number from 0 to 1", lambda v: finite(v) and 0 <= v <= 1)
ALPHABET = "abcdefghijkl"
MISCONCEPTIONS = (("b", "c"), ("d", "e"), ("g", "h"), ("j", "k"))  # (x, y): the ideal order is x y, the shared mistake y x


@dataclass
class WorldConfig:
    n_train_prompts: int = setting(1500, "training prompts per seed", flag="train-prompts", rule=COUNT)
    n_test_prompts: int = setting(600, "held-out prompts per seed", flag="test-prompts", rule=COUNT)
    letters: int = setting(5, "letters per prompt", flag=False, rule=COUNT)
    completions_per_prompt: int = setting(4, "completions in the pool per prompt", flag=False,
                                          rule=expect("a whole number of at least 2", whole(2)))
    generator_skills: tuple[float, ...] = setting(
        (0.99, 0.97, 0.95, 0.9, 0.8, 0.6, 0.4, 0.15), "generator skills (probability of keeping each letter), "
        "comma-separated", flag="pool", parse=comma_separated(float),
        rule=expect("a non-empty list of skills from 0 to 1", lambda v: isinstance(v, (list, tuple)) and len(v) > 0
                    and all(finite(x) and 0 <= x <= 1 for x in v)))
    shared_mistake: float = setting(0.6, "probability that a generator makes the shared mistake on a hard item",
                                    rule=SHARE)
    judge_noise: float = setting(1.0, "judge noise: the standard deviation of its Gaussian noise, in score points",
                                 rule=expect("a finite number of 0 or more", lambda v: finite(v) and v >= 0))
    judge_length_bias: float = setting(0.0, "score points the judge adds per letter beyond the ideal length (a "
                                            "systematic bias)", rule=expect("a finite number", finite))
    seed: int = setting(0, "the world's seed (the demo sets it per evaluation seed)", flag=False)

    def __post_init__(self):
        check(self)


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


def _prompt_text(row_or_prompt) -> str:
    return row_or_prompt if isinstance(row_or_prompt, str) else instruction_text(row_or_prompt["prompt"])


def lcs(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence.

    >>> lcs(list("abcde"), list("abdce")), lcs([], list("ab"))
    (4, 0)
    """
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def true_reward(row_or_prompt, text: str) -> float:
    """Longest common subsequence of answer and ideal over the longer of the two (0 to 1). A `rapref judge` scorer.

    >>> true_reward("sort: c a b", "a b c"), true_reward("sort: c a b", "a c"), true_reward("sort: c a b", "b a c")
    (1.0, 0.6666666666666666, 0.6666666666666666)
    """
    target, answer = ideal(_prompt_text(row_or_prompt)), text.split()
    width = max(len(target), len(answer))
    return lcs(target, answer) / width if width else 0.0


def well_formed(row_or_prompt, text: str) -> bool:
    """An answer of single letters from the alphabet, as many as the prompt has."""
    answer = text.split()
    return len(answer) == len(_letters(_prompt_text(row_or_prompt))) and all(w in ALPHABET and len(w) == 1
                                                                             for w in answer)


def hard_item(prompt: str) -> bool:
    """Does the prompt hold both letters of a misconception pair?"""
    letters = set(_letters(prompt))
    return any(x in letters and y in letters for x, y in MISCONCEPTIONS)


def misconceived(prompt: str) -> list[str]:
    """The pool's shared wrong answer: the ideal order with every misconception pair swapped."""
    answer = ideal(prompt)
    for x, y in MISCONCEPTIONS:
        if x in answer and y in answer:
            i = answer.index(x)
            answer[i], answer[i + 1] = answer[i + 1], answer[i]
    return answer


def generate_answer(prompt: str, skill: float, rng: random.Random, shared_mistake: float = 0.0) -> str:
    base = misconceived(prompt) if hard_item(prompt) and rng.random() < shared_mistake else ideal(prompt)
    return " ".join(letter if rng.random() < skill else rng.choice(ALPHABET) for letter in base)


def judge_score(reward: float, noise: float, rng: random.Random, extra_letters: int = 0,
                length_bias: float = 0.0) -> float:
    raw = 1 + 9 * reward + rng.gauss(0, noise) + length_bias * max(0, extra_letters)
    return float(min(10, max(1, round(raw))))


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
            text = generate_answer(prompt, skill, rng, cfg.shared_mistake)
            reward = true_reward(prompt, text)
            extra = len(text.split()) - cfg.letters
            completions.append({
                "model": f"gen-{skill:.2f}", "response": text, "true_reward": reward,
                "overall_score": judge_score(reward, cfg.judge_noise, rng, extra, cfg.judge_length_bias),
                "annotations": {a: {"Rating": aspect_rating(reward, cfg.judge_noise, rng)}
                                for a in ("helpfulness", "honesty", "instruction_following", "truthfulness")},
            })
        row = {"source": "sorting", "instruction": prompt, "completions": completions}
        (world.train_rows if i < cfg.n_train_prompts else world.test_rows).append(row)
    return world


def corpus(world: World, spec) -> list[str]:
    """Every text the demo's models see: prompts, answers and the goal text of every score (tokenizer training)."""
    texts = [r["instruction"] for r in world.train_rows + world.test_rows]
    texts += [c["response"] for r in world.train_rows for c in r["completions"]]
    texts += [spec.text(score) for score in range(1, 11)] + [" ".join(ALPHABET)]
    return texts


def judge_agreement(world: World) -> dict:
    """How well the judge's scores follow the true reward over all pool completions (Spearman's rho)."""

    scores = [c["overall_score"] for r in world.train_rows for c in r["completions"]]
    rewards = [c["true_reward"] for r in world.train_rows for c in r["completions"]]
    rho = spearman(scores, rewards)["rho"]
    hard = [hard_item(r["instruction"]) for r in world.train_rows]
    return {"spearman_judge_vs_true": float(rho), "completions": len(scores),
            "mean_true_reward_of_pool": float(np.mean(rewards)), "hard_item_fraction": float(np.mean(hard))}
