"""T5 layout and pruned-width model classes.

Standalone (torch + transformers only): export copies this file next to the weights of a model
whose layers have different widths. See hf_bert.py for the layout vocabulary.

Relative position bias: stock T5 computes the bias once, in the first self-attention layer of a
stack, for all heads, and hands the same tensor to every later layer. Once heads are pruned per
layer that sharing breaks, so all attentions become PrunableT5Attention: the first layer keeps
its full bias table (it is never sliced), and every self-attention slices the shared bias to the
original ids of the heads it kept (`head_ids`). Cross-attention bias is all zeros, so each
cross-attention builds its own of the right size.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    T5Config,
    T5EncoderModel,
    T5ForConditionalGeneration,
    T5ForQuestionAnswering,
    T5ForSequenceClassification,
    T5Model,
)
from transformers.models.t5.modeling_t5 import T5Attention

from .compat import cache_kw, pick_cache, record_headless

MODEL_TYPES = ("t5", "prunelab-t5")

_HEAD_SITES = (("lm_head", "in"), ("classification_head.dense", "inout"),
               ("classification_head.out_proj", "in"), ("qa_outputs", "in"))


def _base(model):
    return getattr(model, "base_model", model)


def stacks(model) -> list:
    base = _base(model)
    return [s for s in (getattr(base, "encoder", None), getattr(base, "decoder", None)) if s is not None]


def layers(model) -> list:
    return [block for stack in stacks(model) for block in stack.block]


def layer_output(model, i):
    return layers(model)[i].layer[-1]  # T5LayerFF returns the block's output hidden state


def attentions(model) -> list[dict]:
    out = []
    for i, block in enumerate(layers(model)):
        mods = [("self", block.layer[0].SelfAttention)]
        if block.is_decoder:
            mods.append(("cross", block.layer[1].EncDecAttention))
        for kind, a in mods:
            out.append(dict(layer=i, kind=kind, module=a, q=a.q, k=a.k, v=a.v, o=a.o, head_dim=a.key_value_proj_dim))
    return out


def _ffn_linears(block):
    ff = block.layer[-1].DenseReluDense
    up = [ff.wi_0, ff.wi_1] if hasattr(ff, "wi_0") else [ff.wi]
    return up, ff.wo


def ffns(model) -> list[dict]:
    out = []
    for i, block in enumerate(layers(model)):
        up, down = _ffn_linears(block)
        out.append(dict(layer=i, module=block.layer[-1].DenseReluDense, up=up, down=down))
    return out


def hidden_sites(model) -> list[tuple[str, nn.Module]]:
    base = _base(model)
    embs = [getattr(base, "shared", None)] + [s.embed_tokens for s in stacks(model)]
    sites, seen = [], set()
    for m in embs:  # separate Embedding modules sharing one tied weight
        if m is not None and id(m) not in seen:
            sites.append(("emb", m))
            seen.add(id(m))
    for stack in stacks(model):
        for block in stack.block:
            for sub in block.layer[:-1]:
                a = getattr(sub, "SelfAttention", None) or sub.EncDecAttention
                sites += [("norm", sub.layer_norm), ("in", a.q), ("in", a.k), ("in", a.v), ("out", a.o)]
            up, down = _ffn_linears(block)
            sites += [("norm", block.layer[-1].layer_norm)] + [("in", m) for m in up] + [("out", down)]
        sites.append(("norm", stack.final_layer_norm))
    for path, kind in _HEAD_SITES:
        try:
            m = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(m, nn.Linear):
            sites.append((kind, m))
    return sites


def hidden_mask_outputs(model) -> list[nn.Module]:
    """Pre-norm residual stream: mask the embedding output and the output of every block."""
    mods, seen = [], set()
    for s in stacks(model):
        if id(s.embed_tokens) not in seen:
            mods.append(s.embed_tokens)
            seen.add(id(s.embed_tokens))
    mods += [block.layer[-1] for block in layers(model)]
    mods += [m for kind, m in hidden_sites(model) if kind == "inout"]
    return mods


class PrunableT5Attention(T5Attention):
    """T5Attention that may hold any subset of the original heads (see the module docstring)."""

    head_ids: list  # original indices of the kept heads, for slicing the shared position bias

    def forward(self, hidden_states, mask=None, key_value_states=None, position_bias=None,
                cache=None, past_key_values=None, **kwargs):
        cache = pick_cache(cache, past_key_values)   # the name depends on the transformers release
        full = None
        if key_value_states is not None:
            position_bias = None  # cross-attention: zeros; let each layer size its own
        else:
            if position_bias is None and self.has_relative_attention_bias:
                position_bias = self._full_bias(hidden_states, cache)
            full = position_bias
            if full is not None:
                position_bias = full[:, self.head_ids]
        if self.n_heads == 0:
            out, weights = self._headless(hidden_states, key_value_states, cache), None
        else:
            kw = {cache_kw(T5Attention.forward): cache}
            out, _, weights = super().forward(hidden_states, mask=mask, key_value_states=key_value_states,
                                              position_bias=position_bias, **kw, **kwargs)
        return out, full, weights

    def _full_bias(self, hidden_states, cache):
        # Same as the stock computation for a dynamic cache: keys = past tokens + new tokens.
        past = cache.get_seq_length(self.layer_idx) if cache is not None else 0
        past = past.clone() if isinstance(past, torch.Tensor) else past
        q_len = hidden_states.shape[1]
        return self.compute_bias(q_len, q_len + past, device=hidden_states.device, past_seen_tokens=past)

    def _headless(self, hidden_states, key_value_states, cache):
        shape = hidden_states.shape[:-1]
        if cache is not None and key_value_states is None:
            record_headless(getattr(cache, "self_attention_cache", cache), hidden_states, self.layer_idx)
        return self.o(hidden_states.new_zeros(*shape, 0))


def make_prunable(model) -> None:
    """Turn every T5Attention into a PrunableT5Attention (idempotent; same outputs until pruned)."""
    for a in attentions(model):
        m = a["module"]
        if not isinstance(m, PrunableT5Attention):
            m.__class__ = PrunableT5Attention
            m.head_ids = list(range(m.n_heads))


def set_heads(attn, num_heads: int, num_kv_heads: int | None = None) -> None:
    attn.n_heads = num_heads
    attn.inner_dim = num_heads * attn.key_value_proj_dim


def set_hidden(model, size: int) -> None:
    for a in attentions(model):
        a["module"].d_model = size


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
    head_ids = widths.get("head_ids")
    if head_ids is not None:
        make_prunable(model)
    for i, a in enumerate(attentions(model)):
        n = widths["heads"][i]
        for lin in (a["q"], a["k"], a["v"]):
            _resize_linear(lin, n * hd, h)
        _resize_linear(a["o"], h, n * hd)
        set_heads(a["module"], n)
        if head_ids is not None:
            a["module"].head_ids = list(head_ids[i])
    for i, f in enumerate(ffns(model)):
        n = widths["ffn"][i]
        for lin in f["up"]:
            _resize_linear(lin, n, h)
        _resize_linear(f["down"], h, n)
    set_hidden(model, h)


class PrunelabT5Config(T5Config):
    """T5Config plus `prunelab_widths` (per-attention heads and their original ids, per-layer FFN
    sizes). d_model is the pruned size; num_heads / d_ff keep the original values (used to build)."""
    model_type = "prunelab-t5"


def _pruned_class(base_cls, config_cls):
    def __init__(self, config, *args, **kwargs):
        base_cls.__init__(self, config, *args, **kwargs)
        widths = getattr(config, "prunelab_widths", None)
        if widths:
            apply_widths(self, widths)
            self.init_weights()

    return type("Prunelab" + base_cls.__name__, (base_cls,), {"config_class": config_cls, "__init__": __init__})


PrunelabT5Model = _pruned_class(T5Model, PrunelabT5Config)
PrunelabT5ForConditionalGeneration = _pruned_class(T5ForConditionalGeneration, PrunelabT5Config)
PrunelabT5EncoderModel = _pruned_class(T5EncoderModel, PrunelabT5Config)
PrunelabT5ForSequenceClassification = _pruned_class(T5ForSequenceClassification, PrunelabT5Config)
PrunelabT5ForQuestionAnswering = _pruned_class(T5ForQuestionAnswering, PrunelabT5Config)

AUTO_CLASSES = {
    PrunelabT5Config: {
        "AutoModel": PrunelabT5Model,
        "AutoModelForSeq2SeqLM": PrunelabT5ForConditionalGeneration,
        "AutoModelForSequenceClassification": PrunelabT5ForSequenceClassification,
        "AutoModelForQuestionAnswering": PrunelabT5ForQuestionAnswering,
    },
}
EXTRA_CLASSES = (PrunelabT5EncoderModel,)  # no Auto class maps to it; exported by name
STOCK_TO_PRUNELAB_CONFIG = {T5Config: PrunelabT5Config}
HIDDEN_KEYS = ("d_model",)


def _register() -> None:
    autos = {"AutoModel": AutoModel, "AutoModelForSeq2SeqLM": AutoModelForSeq2SeqLM,
             "AutoModelForSequenceClassification": AutoModelForSequenceClassification,
             "AutoModelForQuestionAnswering": AutoModelForQuestionAnswering}
    for cfg, classes in AUTO_CLASSES.items():
        AutoConfig.register(cfg.model_type, cfg, exist_ok=True)
        for auto_name, cls in classes.items():
            autos[auto_name].register(cfg, cls, exist_ok=True)


_register()
