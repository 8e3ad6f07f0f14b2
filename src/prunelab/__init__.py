"""prunelab: structured pruning + tuning of pretrained language models, and an ablation engine.

    import prunelab
    result = prunelab.prune("minilm-l6", method="apt", train_data="reviews.jsonl", max_steps=300)

`prune` is the Python API (prunelab/api.py); `prunelab --help` is the command line.
"""
__version__ = "0.1.0"


def prune(*args, **kwargs):
    """Fine-tune and prune a model on a task or your own data; see prunelab.api.prune."""
    from prunelab.api import prune as _prune   # lazy: `import prunelab` stays light

    return _prune(*args, **kwargs)


__all__ = ["prune", "__version__"]
