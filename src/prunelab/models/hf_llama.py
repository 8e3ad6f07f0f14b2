"""LLaMA layout and pruned-width model classes.

Standalone (torch + transformers only): export copies this file next to the weights of a model
whose layers have different widths. See hf_bert.py for the layout vocabulary.

GQA: q head h reads kv head h // num_key_value_groups, so heads are pruned in whole groups
(one kv head plus its q heads) and num_key_value_groups never changes.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForQuestionAnswering,
    LlamaForSequenceClassification,
    LlamaModel,
)

from .compat import pick_cache, record_headless

MODEL_TYPES = ("llama", "prunelab-llama")

_HEAD_SITES = (("lm_head", "in"), ("score", "in"), ("qa_outputs", "in"))


def _base(model):
    return getattr(model, "base_model", model)


def layers(model) -> list:
    return list(_base(model).layers)


def layer_output(model, i):
    return layers(model)[i]  # LlamaDecoderLayer returns the hidden state tensor


def attentions(model) -> list[dict]:
    out = []
    for i, layer in enumerate(layers(model)):
        a = layer.self_attn
        out.append(dict(layer=i, kind="self", module=a, q=a.q_proj, k=a.k_proj, v=a.v_proj, o=a.o_proj,
                        head_dim=a.head_dim, group_size=a.num_key_value_groups))
    return out


def ffns(model) -> list[dict]:
    return [dict(layer=i, module=layer.mlp, up=[layer.mlp.gate_proj, layer.mlp.up_proj], down=layer.mlp.down_proj)
            for i, layer in enumerate(layers(model))]


def hidden_sites(model) -> list[tuple[str, nn.Module]]:
    base = _base(model)
    sites = [("emb", base.embed_tokens)]
    for layer in layers(model):
        a, mlp = layer.self_attn, layer.mlp
        sites += [("norm", layer.input_layernorm), ("in", a.q_proj), ("in", a.k_proj), ("in", a.v_proj),
                  ("out", a.o_proj), ("norm", layer.post_attention_layernorm),
                  ("in", mlp.gate_proj), ("in", mlp.up_proj), ("out", mlp.down_proj)]
    sites.append(("norm", base.norm))
    for name, kind in _HEAD_SITES:
        m = getattr(model, name, None)
        if isinstance(m, nn.Linear):
            sites.append((kind, m))
    return sites


def hidden_mask_outputs(model) -> list[nn.Module]:
    """Pre-norm residual stream: mask what enters it (embeddings) and what leaves every layer."""
    return [_base(model).embed_tokens] + layers(model)


def _headless_forward(self, hidden_states, position_embeddings=None, attention_mask=None,
                      cache=None, past_key_values=None, **kwargs):
    # All heads pruned. Still give the cache an entry so sequence lengths stay right.
    cache = pick_cache(cache, past_key_values)
    shape = hidden_states.shape[:-1]
    if cache is not None:
        record_headless(cache, hidden_states, self.layer_idx)
    return self.o_proj(hidden_states.new_zeros(*shape, 0)), None


_HEADLESS: dict = {}


def set_heads(attn, num_heads: int, num_kv_heads: int) -> None:
    """Update attention attributes after q/k/v/o were resized (whole kv groups)."""
    if num_kv_heads:
        attn.num_key_value_groups = num_heads // num_kv_heads
    for name, value in (("num_heads", num_heads), ("num_key_value_heads", num_kv_heads)):
        if hasattr(attn, name):  # older transformers versions keep these
            setattr(attn, name, value)
    if num_kv_heads == 0 and not getattr(type(attn), "_prunelab_headless", False):
        cls = type(attn)
        if cls not in _HEADLESS:
            _HEADLESS[cls] = type("Headless" + cls.__name__, (cls,),
                                  {"forward": _headless_forward, "_prunelab_headless": True})
        attn.__class__ = _HEADLESS[cls]


def set_ffn(mlp, size: int) -> None:
    mlp.intermediate_size = size


def set_hidden(model, size: int) -> None:
    for layer in layers(model):
        layer.hidden_size = size
        layer.mlp.hidden_size = size


# ---------------------------------------------------------------------------------------------
# Rebuilding a model from recorded widths.

def _param(p, shape):
    if p is None or tuple(p.shape) == tuple(shape):
        return p
    return nn.Parameter(torch.empty(shape, dtype=p.dtype, device=p.device), requires_grad=p.requires_grad)


def _resize_linear(m, out_f, in_f):
    m.weight = _param(m.weight, (out_f, in_f))
    m.bias = _param(m.bias, (out_f,))
    m.out_features, m.in_features = out_f, in_f


def _resize_hidden(kind, m, h):
    if kind == "emb":
        m.weight = _param(m.weight, (m.num_embeddings, h))
        m.embedding_dim = h
    elif kind == "norm":
        m.weight = _param(m.weight, (h,))
    else:
        _resize_linear(m, h if kind in ("out", "inout") else m.out_features,
                       h if kind in ("in", "inout") else m.in_features)


def apply_widths(model, widths: dict) -> None:
    h, hd = widths["hidden"], widths["head_dim"]
    for kind, m in hidden_sites(model):
        _resize_hidden(kind, m, h)
    for i, a in enumerate(attentions(model)):
        nq, nkv = widths["heads"][i], widths["kv_heads"][i]
        _resize_linear(a["q"], nq * hd, h)
        _resize_linear(a["k"], nkv * hd, h)
        _resize_linear(a["v"], nkv * hd, h)
        _resize_linear(a["o"], h, nq * hd)
        set_heads(a["module"], nq, nkv)
    for i, f in enumerate(ffns(model)):
        n = widths["ffn"][i]
        for lin in f["up"]:
            _resize_linear(lin, n, h)
        _resize_linear(f["down"], h, n)
        set_ffn(f["module"], n)
    set_hidden(model, h)


class PrunelabLlamaConfig(LlamaConfig):
    """LlamaConfig plus `prunelab_widths` (per-layer q/kv heads and FFN sizes, pruned hidden size).
    hidden_size is the pruned size and head_dim is explicit; num_attention_heads,
    num_key_value_heads and intermediate_size keep the original values (used only to build)."""
    model_type = "prunelab-llama"

    def validate_architecture(self):
        # The pruned hidden size need not be a multiple of the head count: head_dim is explicit.
        pass

    def validate(self):
        # save_pretrained calls validate(). LlamaConfig's (made by huggingface_hub's @strict) runs
        # the validator *functions* recorded on LlamaConfig, so the override above alone would not
        # stop LlamaConfig.validate_architecture from rejecting e.g. hidden 536 with 9 heads.
        for check in getattr(LlamaConfig, "__class_validators__", ()):
            if check.__name__ != "validate_architecture":
                check(self)

    validate.__is_defined_by_strict_decorator__ = True  # lets a @strict subclass replace it


def _pruned_class(base_cls, config_cls):
    def __init__(self, config, *args, **kwargs):
        base_cls.__init__(self, config, *args, **kwargs)
        widths = getattr(config, "prunelab_widths", None)
        if widths:
            apply_widths(self, widths)
            self.init_weights()

    return type("Prunelab" + base_cls.__name__, (base_cls,), {"config_class": config_cls, "__init__": __init__})


PrunelabLlamaModel = _pruned_class(LlamaModel, PrunelabLlamaConfig)
PrunelabLlamaForCausalLM = _pruned_class(LlamaForCausalLM, PrunelabLlamaConfig)
PrunelabLlamaForSequenceClassification = _pruned_class(LlamaForSequenceClassification, PrunelabLlamaConfig)
PrunelabLlamaForQuestionAnswering = _pruned_class(LlamaForQuestionAnswering, PrunelabLlamaConfig)

AUTO_CLASSES = {
    PrunelabLlamaConfig: {
        "AutoModel": PrunelabLlamaModel,
        "AutoModelForCausalLM": PrunelabLlamaForCausalLM,
        "AutoModelForSequenceClassification": PrunelabLlamaForSequenceClassification,
        "AutoModelForQuestionAnswering": PrunelabLlamaForQuestionAnswering,
    },
}
STOCK_TO_PRUNELAB_CONFIG = {LlamaConfig: PrunelabLlamaConfig}
HIDDEN_KEYS = ("hidden_size",)


def _register() -> None:
    # Registering here too matters: LlamaForSequenceClassification builds its body with
    # AutoModel.from_config, which must find the pruned class even under trust_remote_code.
    autos = {"AutoModel": AutoModel, "AutoModelForCausalLM": AutoModelForCausalLM,
             "AutoModelForSequenceClassification": AutoModelForSequenceClassification,
             "AutoModelForQuestionAnswering": AutoModelForQuestionAnswering}
    for cfg, classes in AUTO_CLASSES.items():
        AutoConfig.register(cfg.model_type, cfg, exist_ok=True)
        for auto_name, cls in classes.items():
            autos[auto_name].register(cfg, cls, exist_ok=True)


_register()
