"""SDTP: Saliency-Driven Dynamic Token Pruning (Tao et al. 2025) for LLaMA-family models.

Small learned modules between decoder layers drop unimportant prompt tokens during
prefill; they are trained against gradient-saliency targets with the backbone frozen.
Entry point: ``run_sdtp(config, model_name, data_dir, seed, budget)``.
"""
from .components import COMPONENTS
from .config import SDTPConfig
from .inference import PrunedState, continuation_logits, decode, dense_generate, dense_prefill, generate, prefill
from .io import load_pruners, save_pruners
from .model import SDTPModel
from .modules import PrunerStack, TokenPruner
from .presets import BUDGETS, METHOD_PRESETS, make_config
from .run import run_sdtp
from .saliency import prompt_saliency, saliency_targets
from .train import compute_targets, train_pruners
from . import method as _method  # noqa: E402,F401  registers 'sdtp' with the method registry

__all__ = [
    "COMPONENTS", "SDTPConfig", "PrunedState", "PrunerStack", "TokenPruner", "BUDGETS", "METHOD_PRESETS",
    "make_config", "run_sdtp", "prefill", "decode", "generate", "continuation_logits", "dense_prefill",
    "dense_generate", "prompt_saliency", "saliency_targets", "compute_targets", "train_pruners",
    "SDTPModel", "save_pruners", "load_pruners",
]
