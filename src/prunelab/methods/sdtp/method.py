"""Registers SDTP with prunelab's method registry (a self-running method: no fine-tuning loop)."""
from __future__ import annotations

from prunelab.errors import PrunelabError
from prunelab.methods.registry import Component, Method, register_method

from .components import COMPONENTS
from .config import SDTPConfig
from .run import run_sdtp


def _build(loaded, config, ctx):
    raise PrunelabError("SDTP is not a fine-tuning method; it runs through its runner (run_sdtp)")


def runner(run_config, sdtp_config: SDTPConfig) -> tuple[dict, list]:
    """RunConfig + SDTPConfig -> (metrics, curve); the run's model, data_dir, seed and
    output_dir (trained pruners + config, see io.py) apply."""
    metrics = run_sdtp(sdtp_config, model_name=run_config.model, data_dir=run_config.data_dir, seed=run_config.seed,
                       output_dir=getattr(run_config, "output_dir", None) or None)
    return metrics, []


METHOD = register_method(Method(
    "sdtp", SDTPConfig, _build,
    components={name: Component(name=name, **spec) for name, spec in COMPONENTS.items()},
    description="Saliency-driven dynamic token pruning of the prompt during prefill (LLaMA family)",
    runner=runner,
))
