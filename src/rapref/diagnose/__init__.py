"""The diagnose stage: unlearning, implicit-reward accuracy and controllability of a trained policy."""
