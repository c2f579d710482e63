"""rapref: reward-augmented preference alignment (arXiv 2410.08067) on Hugging Face TRL."""

__version__ = "0.1.0"
