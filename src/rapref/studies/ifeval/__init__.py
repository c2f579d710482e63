"""The real-model experiment: on-policy IFEval-style pairs, DPO vs relabeled arms, verdicts."""
