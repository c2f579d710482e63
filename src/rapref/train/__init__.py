"""Training: recipe config, conservative DPO, goal-safe lengths, and the TRL composition (`run.main`)."""
