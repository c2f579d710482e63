"""Studies: the demo, the real-model IFEval experiment and the on-policy loop, on one harness (`harness.py`)."""
