"""CoFi (Xia et al. 2022): methods `prune_distill` (alias `cofi`) and `lora_prune_distill`."""
from prunelab.methods.cofi import method  # noqa: F401  (registers the methods)
from prunelab.methods.cofi.config import CoFiConfig, LoRACoFiConfig
from prunelab.methods.cofi.l0 import L0Masks
from prunelab.methods.cofi.lagrangian import Lagrangian, target_sparsity
from prunelab.methods.cofi.method import fold_and_prune

__all__ = ["CoFiConfig", "LoRACoFiConfig", "L0Masks", "Lagrangian", "target_sparsity", "fold_and_prune"]
