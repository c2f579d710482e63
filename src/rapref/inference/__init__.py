"""Engines that turn prompts into text or log-probabilities, shared by generation, the LLM judges, diagnosis and
the studies: local sampling with transformers, OpenAI-compatible servers (vLLM) and hosted APIs."""
