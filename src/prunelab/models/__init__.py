"""Model loading, family adapters (heads / FFN neurons / hidden dims: masks and physical pruning).

Importing this package also registers the prunelab-* configs (pruned models whose layers differ
in width) with transformers' Auto classes, so exports load without trust_remote_code here.
"""
from prunelab.models.family import (AttentionBlock, FamilyAdapter, FFNBlock, get_family,
                                    register_family)
from prunelab.models import bert, llama, t5  # noqa: F401  (register the families)
from prunelab.models.load import LoadedModel, list_models, load_model

__all__ = ["AttentionBlock", "FFNBlock", "FamilyAdapter", "get_family", "register_family",
           "LoadedModel", "list_models", "load_model"]
