"""The export stage: answers in the formats of the field's evaluation tools (AlpacaEval, MT-Bench, Arena-Hard,
lm-evaluation-harness)."""
