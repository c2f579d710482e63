"""The demo's arms, decodings and claims: one table each; the report is generated from them.

An arm is a policy and the goal it is asked for at evaluation, all trained from the same start: each isolates one
claim of the paper. Arms of one *family* share a learning rate, chosen on validation seeds by improvement over the
start (`rapref demo --select-hparams`), never by which arm wins.
"""

from __future__ import annotations

from dataclasses import dataclass

from rapref.studies.harness import Arm, Claim


def folder(arm: Arm) -> str:
    """The model folder under the seed's root (arms differing only in the goal share one)."""
    return "start" if arm.kind == "start" else f"arms/{arm.name.split('@')[0]}"


ARMS = (
    Arm("start", "start, no goal", "start"),
    Arm("start@10", "start, asked for 10 (no training)", "start", goal=True),
    Arm("goal-sft@10", "+1 SFT epoch with goals, asked for 10", "sft:goal", "sft", goal=True),
    Arm("sft-epoch", "+1 SFT epoch without goals", "sft:plain", "sft"),
    Arm("dpo", "DPO, original pairs", "dpo:original", "dpo"),
    Arm("dpo-dup", "DPO, original pairs x2 (relabeled's steps)", "dpo:duplicated", "dpo"),
    Arm("relabeled@10", "DPO, relabeled, asked for 10", "dpo:relabeled", "relabeled", goal=True),
    Arm("half@10", "DPO, half relabeled, asked for 10", "dpo:half", "relabeled", goal=True),
    Arm("positive@10", "DPO, positive copies only, asked for 10", "dpo:positive", "relabeled", goal=True),
)
BY_NAME = {arm.name: arm for arm in ARMS}
FAMILIES = {"sft": "goal-sft@10", "dpo": "dpo", "relabeled": "relabeled@10"}  # family -> the arm that selects its lr
SWEPT = ("start@10", "goal-sft@10", "relabeled@10", "half@10", "positive@10")  # goal sweeps (controllability)


@dataclass(frozen=True)
class Decoding:
    name: str
    temperature: float
    samples: int


DECODINGS = (Decoding("T0.7", 0.7, 2), Decoding("T1.0", 1.0, 2), Decoding("greedy", 0.0, 1))
PRIMARY = "T0.7"  # the decoding the verdicts use, fixed before any run (the paper samples; 0.7 is rapref's default)

NEGLIGIBLE = 0.01  # true-reward points: an effect whose whole interval lies within +-NEGLIGIBLE is no effect

CLAIMS = (
    Claim("C1", "relabeled DPO asked for 10 beats DPO on the original pairs", "relabeled@10", "dpo", NEGLIGIBLE),
    Claim("C1-start", "relabeled DPO asked for 10 beats the start asked for 10 (a gain beyond reading goals)",
          "relabeled@10", "start@10", NEGLIGIBLE),
    Claim("C3-steps", "relabeled DPO beats DPO with as many gradient steps (duplicated pairs)", "relabeled@10",
          "dpo-dup", NEGLIGIBLE),
    Claim("C3-half", "half-relabeled DPO beats DPO on the same number of pairs", "half@10", "dpo", NEGLIGIBLE),
    Claim("flipped", "the flipped (negative) copies help: relabeled beats positive copies only", "relabeled@10",
          "positive@10", NEGLIGIBLE),
    Claim("goal-sft", "an SFT epoch with goals beats the same epoch without", "goal-sft@10", "sft-epoch", NEGLIGIBLE),
    Claim("vs-goal-sft", "relabeled DPO beats goal-conditioned SFT", "relabeled@10", "goal-sft@10", NEGLIGIBLE),
    Claim("dpo-works", "plain DPO improves on its start (the baseline is sound)", "dpo", "start", NEGLIGIBLE),
    Claim("C2", "held-out high-quality rejected responses (judged >= {band:g}) lose less log-probability, beyond what "
                "chosen ones lose, under relabeled DPO than under DPO (start asked with the same goal)",
          "relabeled@10", "dpo", 0.0, "unlearning"),
    Claim("C4", "the relabeled policy's true reward rises with the goal asked for", "relabeled@10", None, 0.0,
          "controllability"),
)
