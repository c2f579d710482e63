"""The IFEval experiment's design: how each arm's policy is made and asked, the claims compared, the scorer. Read by
the run (`run.py`) and the report (`report.py`), which import it and not each other."""

from rapref.studies.harness import Arm, Claim

ARMS = (  # how each policy is made (start: the model itself; dpo:MODE: trained on that augment mode) and asked
    Arm("start", "start", "start"), Arm("start@10", "start, asked for 10", "start", goal=True),
    Arm("dpo", "DPO", "dpo:original"), Arm("dpo-dup", "DPO, duplicated pairs", "dpo:duplicated"),
    Arm("relabeled@10", "relabeled DPO, asked for 10", "dpo:relabeled", goal=True),
    Arm("half@10", "half-relabeled DPO, asked for 10", "dpo:half", goal=True),
)
BY_NAME = {arm.name: arm for arm in ARMS}
CLAIMS = (  # band 0: one training seed, and no negligible-effect size was fixed for IFEval scores before the run
    Claim("C1", "relabeled DPO asked for 10 beats DPO", "relabeled@10", "dpo"),
    Claim("C1-start", "relabeled DPO asked for 10 beats the start asked for 10", "relabeled@10", "start@10"),
    Claim("C3-steps", "relabeled DPO beats DPO on duplicated pairs (same steps)", "relabeled@10", "dpo-dup"),
    Claim("C3-half", "half-relabeled DPO beats DPO", "half@10", "dpo"),
    Claim("dpo-works", "DPO improves on the start", "dpo", "start"),
    Claim("C4-samples", "the relabeled policy's score rises with the goal asked for", "relabeled@10",
          kind="controllability"),
    Claim("C2", "held-out high-quality rejected responses (scored >= {band:g}) lose less log-probability, beyond "
                "what chosen ones lose, under relabeled DPO (own goal) than under DPO", "relabeled@10", "dpo",
          kind="unlearning"),
)
SCORER = "if-official:ifeval"
