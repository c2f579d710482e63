"""The generate stage: sample a trained policy conditioned on a goal score."""
