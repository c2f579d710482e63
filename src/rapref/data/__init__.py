"""The data stage: scored preference data in every common schema (`schemas`), cleaned with counted drops and
relabeled into goal-conditioned pairs (`relabel`, `augment`)."""
