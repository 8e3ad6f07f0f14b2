"""prunelab: structured pruning + tuning of pretrained language models, and an ablation engine."""
__version__ = "0.1.0"
