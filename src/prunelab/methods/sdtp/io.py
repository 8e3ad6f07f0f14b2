"""Saving and loading trained SDTP pruners with their config (safetensors + JSON).

A pruner directory holds
  pruners.safetensors   the PrunerStack weights (stage layers in the metadata)
  sdtp_config.json      {"format": "prunelab-sdtp", "version": 1, "config": SDTPConfig fields,
                         "stage_layers", "hidden_size", "pruner_hidden_frac", "pos_features",
                         "model" (name it was trained on, if known), "info" (training facts)}
Load it with ``load_pruners(dir)`` or ``SDTPModel.from_pretrained(dir)``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from prunelab.errors import PrunelabError

from .config import SDTPConfig
from .modules import PrunerStack

WEIGHTS_NAME = "pruners.safetensors"
CONFIG_NAME = "sdtp_config.json"
FORMAT = "prunelab-sdtp"


def save_pruners(stack: PrunerStack, cfg: SDTPConfig, directory, model_name: str | None = None,
                 info: dict | None = None) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    stack.save(str(d / WEIGHTS_NAME))
    meta = {"format": FORMAT, "version": 1, "config": cfg.to_dict(), "stage_layers": list(stack.stage_layers),
            "hidden_size": stack.hidden_size, "pruner_hidden_frac": stack.hidden_frac,
            "pos_features": stack.pos_features, "model": model_name, "info": info or {}}
    (d / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return d


# Fields whose default changed after configs were first saved: a saved config without the
# field was trained with the old value (the recency prior did not exist, so it was off).
_MISSING_MEANS = {"prior_weight": 0.0, "target_prior": 0.0, "prior_curve": "log"}


def config_from_dict(d: dict) -> SDTPConfig:
    names = {f.name for f in dataclasses.fields(SDTPConfig)}
    if "prior_shape" in d:      # prior_curve's name in configs saved before 2026-12
        d = {**{k: v for k, v in d.items() if k != "prior_shape"}, "prior_curve": d["prior_shape"]}
    args = {**_MISSING_MEANS, **{k: v for k, v in d.items() if k in names}}
    return SDTPConfig(**args)


def load_pruners(directory) -> tuple[PrunerStack, SDTPConfig, dict]:
    """(PrunerStack in eval mode, SDTPConfig, the JSON metadata) from a save_pruners directory."""
    d = Path(directory)
    cpath, wpath = d / CONFIG_NAME, d / WEIGHTS_NAME
    if not cpath.exists() or not wpath.exists():
        raise PrunelabError(f"no SDTP pruners in {d} (expected {CONFIG_NAME} and {WEIGHTS_NAME})")
    meta = json.loads(cpath.read_text())
    if meta.get("format") != FORMAT:
        raise PrunelabError(f"{cpath} is not an SDTP pruner config (format {meta.get('format')!r})")
    cfg = config_from_dict(meta["config"])
    stack = PrunerStack.load(str(wpath), meta["hidden_size"], meta["pruner_hidden_frac"])
    if stack.stage_layers != meta["stage_layers"]:
        raise PrunelabError(f"{wpath} has stage layers {stack.stage_layers}, {cpath} says {meta['stage_layers']}")
    return stack.eval(), cfg, meta
