"""The demo's arms: each isolates one claim of the paper (METHOD.md), all trained from the same start.

An arm is a policy and the goal it is asked for at evaluation. Arms of one *family* share a learning rate, chosen on
validation seeds by improvement over the start (`rapref demo --select-hparams`), never by which arm wins.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    kind: str  # start (no training) | sft (one more SFT epoch) | dpo (rapref train)
    data: str | None = None  # dpo: the `rapref augment --mode`; sft: "goal" (every example carries its score) | "plain"
    family: str | None = None  # learning-rate family
    goal: bool = False  # asked for the top score at evaluation

    @property
    def folder(self) -> str:
        """The model folder under the seed's root (arms differing only in the goal share one)."""
        return "start" if self.kind == "start" else f"arms/{self.name.split('@')[0]}"


ARMS = (
    Arm("start", "start, no goal", "start"),
    Arm("start@10", "start, asked for 10 (no training)", "start", goal=True),
    Arm("goal-sft@10", "+1 SFT epoch with goals, asked for 10", "sft", "goal", "sft", goal=True),
    Arm("sft-epoch", "+1 SFT epoch without goals", "sft", "plain", "sft"),
    Arm("dpo", "DPO, original pairs", "dpo", "original", "dpo"),
    Arm("dpo-dup", "DPO, original pairs x2 (relabeled's steps)", "dpo", "duplicated", "dpo"),
    Arm("relabeled@10", "DPO, relabeled, asked for 10", "dpo", "relabeled", "relabeled", goal=True),
    Arm("half@10", "DPO, half relabeled, asked for 10", "dpo", "half", "relabeled", goal=True),
    Arm("positive@10", "DPO, positive copies only, asked for 10", "dpo", "positive", "relabeled", goal=True),
)
BY_NAME = {arm.name: arm for arm in ARMS}
FAMILIES = {"sft": "goal-sft@10", "dpo": "dpo", "relabeled": "relabeled@10"}  # family -> the arm that selects its lr
SWEPT = ("start@10", "goal-sft@10", "relabeled@10", "half@10", "positive@10")  # goal sweeps (controllability)


@dataclass(frozen=True)
class Claim:
    name: str
    statement: str
    arm: str
    baseline: str  # the claim holds when arm - baseline > 0 (paired, per seed)


CLAIMS = (
    Claim("C1", "relabeled DPO asked for 10 beats DPO on the original pairs", "relabeled@10", "dpo"),
    Claim("C1-start", "relabeled DPO asked for 10 beats the start asked for 10 (a gain beyond reading goals)",
          "relabeled@10", "start@10"),
    Claim("C3-steps", "relabeled DPO beats DPO with as many gradient steps (duplicated pairs)", "relabeled@10",
          "dpo-dup"),
    Claim("C3-half", "half-relabeled DPO beats DPO on the same number of pairs", "half@10", "dpo"),
    Claim("flipped", "the flipped (negative) copies help: relabeled beats positive copies only", "relabeled@10",
          "positive@10"),
    Claim("goal-sft", "an SFT epoch with goals beats the same epoch without", "goal-sft@10", "sft-epoch"),
    Claim("vs-goal-sft", "relabeled DPO beats goal-conditioned SFT", "relabeled@10", "goal-sft@10"),
    Claim("dpo-works", "plain DPO improves on its start (the baseline is sound)", "dpo", "start"),
)
