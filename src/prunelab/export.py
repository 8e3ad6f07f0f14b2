"""Save physically pruned models in a format plain transformers can load.

Two formats, chosen automatically (ExportResult.format says which one was written, and why):
- "stock": every layer has the same widths and a stock config can describe them (e.g. uniform
  heads and FFN size; BERT also needs hidden = heads x head_dim). config.json is the family's
  own config, so `AutoModelFor*.from_pretrained(dir)` works with stock transformers.
- "prunelab": the config records per-layer widths (`prunelab_widths`, model_type prunelab-<family>)
  and the family's standalone modeling file is copied into the directory with an `auto_map`, so
  `AutoModelFor*.from_pretrained(dir, trust_remote_code=True)` works without prunelab. Inside
  prunelab (after `import prunelab.models`) no trust_remote_code is needed.
Weights are safetensors in both cases.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from prunelab.errors import PrunelabError
from prunelab.models import get_family
from prunelab.models.load import saved_class


@dataclass
class ExportResult:
    path: str
    format: str  # "stock" | "prunelab"
    model_type: str
    architecture: str
    reason: str  # why the stock format was not possible ("" when it was)


def _stock_class(cls):
    """The transformers class a (possibly prunelab-wrapped) model or config class derives from."""
    for c in cls.__mro__:
        if c.__module__.startswith("transformers."):
            return c
    raise PrunelabError(f"{cls.__name__} is not a transformers class")


def _shapes(model) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _config_dict(config) -> dict:
    d = config.to_dict()
    for key in ("prunelab_widths", "auto_map", "model_type", "transformers_version", "architectures"):
        d.pop(key, None)
    return d


def _try_stock(model, fam, widths):
    overrides, reason = fam.stock_overrides(widths)
    if overrides is None:
        return None, reason
    cfg_cls, model_cls = _stock_class(type(model.config)), _stock_class(type(model))
    try:
        cfg = cfg_cls.from_dict({**_config_dict(model.config), **overrides})
        with torch.device("meta"):
            ref = model_cls(cfg)
    except Exception as e:  # the stock config rejects these widths (e.g. LLaMA hidden % heads)
        return None, f"stock {cfg_cls.__name__} rejects the widths: {str(e).splitlines()[0]}"
    with fam.stock_state_patch():
        ok = _shapes(ref) == _shapes(model)
    return (cfg, "") if ok else (None, "stock config does not reproduce every weight shape")


def _custom_config(model, fam, widths):
    layout = fam.layout
    cfg_cls = layout.STOCK_TO_PRUNELAB_CONFIG.get(_stock_class(type(model.config)))
    model_cls = getattr(layout, "Prunelab" + _stock_class(type(model)).__name__, None)
    if cfg_cls is None or model_cls is None:
        names = sorted(c.__name__ for classes in layout.AUTO_CLASSES.values() for c in classes.values())
        raise PrunelabError(f"cannot export {type(model).__name__} with per-layer widths; supported: {', '.join(names)}")
    fields = {**_config_dict(model.config), **fam.custom_config_fields(widths), "prunelab_widths": widths}
    return cfg_cls.from_dict(fields), cfg_cls, model_cls


def save_pruned(model, out_dir, tokenizer=None, *, format: str | None = None) -> ExportResult:
    """Write a pruned model (safetensors + config, + tokenizer if given) to out_dir.
    format: None = stock when possible, else prunelab; "prunelab" forces per-layer widths."""
    fam = get_family(model)
    if fam.masks_active():
        raise PrunelabError("masks are set; prune them physically (adapter.prune_masked) or clear_masks() first")
    if format not in (None, "stock", "prunelab"):
        raise PrunelabError(f"unknown export format {format!r}; valid: stock, prunelab")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    widths = fam.widths()
    cfg, reason = (None, "prunelab format requested") if format == "prunelab" else _try_stock(model, fam, widths)
    if cfg is None and format == "stock":
        raise PrunelabError(f"cannot write a stock checkpoint: {reason}")
    stock = cfg is not None
    if not stock:
        cfg, cfg_cls, model_cls = _custom_config(model, fam, widths)
    original = model.config
    model.config = cfg  # save_pretrained writes model.config; the modules keep their own reference
    try:
        with fam.stock_state_patch() if stock else contextlib.nullcontext():
            model.save_pretrained(out)
    finally:
        model.config = original
    arch = _stock_class(type(model)).__name__
    if not stock:
        arch = model_cls.__name__
        _add_remote_code(out, fam.layout, cfg_cls, arch)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    result = ExportResult(path=str(out), format="stock" if stock else "prunelab",
                          model_type=cfg.model_type, architecture=arch, reason=reason)
    (out / "prunelab_export.json").write_text(json.dumps({**asdict(result), "widths": widths}, indent=2))
    return result


def _add_remote_code(out: Path, layout, cfg_cls, arch: str) -> None:
    module = f"modeling_prunelab_{layout.__name__.rsplit('hf_', 1)[-1]}"
    source = Path(inspect.getsourcefile(layout))
    shutil.copyfile(source, out / f"{module}.py")
    # the layout's own relative imports (`from .compat import ...`) travel with it: transformers
    # loads them from the checkpoint folder, and the reader need not have prunelab installed
    for name in re.findall(r"^from \.(\w+) import", source.read_text(), flags=re.M):
        shutil.copyfile(source.with_name(f"{name}.py"), out / f"{name}.py")
    path = out / "config.json"
    config = json.loads(path.read_text())
    config["architectures"] = [arch]
    config["auto_map"] = {"AutoConfig": f"{module}.{cfg_cls.__name__}",
                          **{auto: f"{module}.{cls.__name__}" for auto, cls in layout.AUTO_CLASSES[cfg_cls].items()}}
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def load_pruned(path, *, dtype=None):
    """Reload a saved model (either format) with the class, and so the head, it was saved with."""
    from transformers import AutoConfig, AutoModel
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    cls = saved_class(config) or AutoModel
    kwargs = {"dtype": dtype} if dtype is not None else {}
    return cls.from_pretrained(path, local_files_only=True, **kwargs).eval()
