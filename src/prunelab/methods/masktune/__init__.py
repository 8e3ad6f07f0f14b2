"""Mask Tuning (Kwon et al. 2022): retraining-free post-training pruning; methods `masktune`, `lora_prune`."""
from prunelab.methods.masktune import method  # noqa: F401  (registers the methods)
from prunelab.methods.masktune.config import LoRAPruneConfig, MaskTuneConfig
from prunelab.methods.masktune.method import fold_and_prune, prune_model

__all__ = ["MaskTuneConfig", "LoRAPruneConfig", "prune_model", "fold_and_prune"]
