"""BERT / RoBERTa layout and pruned-width model classes.

This file must stay standalone (it imports only torch and transformers): export copies it
next to the weights of a model whose layers have different widths, so that
`AutoModel*.from_pretrained(dir, trust_remote_code=True)` works without prunelab installed.
prunelab's BERT adapter uses the same layout functions, so the pruner and the loader can
never disagree about which modules hold which dimension.

Layout vocabulary (shared by hf_t5.py and hf_llama.py):
- attentions(model): one dict per attention module: layer, kind, module, q, k, v, o, head_dim.
- ffns(model): one dict per FFN: layer, up (list of input projections), down.
- hidden_sites(model): (kind, module) pairs that carry the shared hidden dimension:
  "emb" (embedding columns), "norm" (norm weight/bias), "in" (Linear input columns),
  "out" (Linear output rows + bias), "inout" (a hidden -> hidden Linear in a task head).
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertModel,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaModel,
)

MODEL_TYPES = ("bert", "roberta", "prunelab-bert", "prunelab-roberta")

# Task-head modules that read or write the hidden dimension, relative to the model or its base.
_HEAD_SITES = (
    ("pooler.dense", "inout"),
    ("classifier", "in"),
    ("classifier.dense", "inout"),
    ("classifier.out_proj", "in"),
    ("qa_outputs", "in"),
    ("cls.predictions.transform.dense", "inout"),
    ("cls.predictions.transform.LayerNorm", "norm"),
    ("cls.predictions.decoder", "in"),
    ("lm_head.dense", "inout"),
    ("lm_head.layer_norm", "norm"),
    ("lm_head.decoder", "in"),
)


def _base(model):
    return getattr(model, "base_model", model)


def _find(root, path):
    try:
        return root.get_submodule(path)
    except AttributeError:
        return None


def layers(model) -> list:
    return list(_base(model).encoder.layer)


def layer_output(model, i):
    # BertOutput returns the LayerNorm'd hidden state that leaves layer i.
    return layers(model)[i].output


def attentions(model) -> list[dict]:
    out = []
    for i, layer in enumerate(layers(model)):
        sa = layer.attention.self
        out.append(dict(layer=i, kind="self", module=sa, q=sa.query, k=sa.key, v=sa.value,
                        o=layer.attention.output.dense, head_dim=sa.attention_head_size))
    return out


def ffns(model) -> list[dict]:
    return [dict(layer=i, module=layer, up=[layer.intermediate.dense], down=layer.output.dense)
            for i, layer in enumerate(layers(model))]


def hidden_sites(model) -> list[tuple[str, nn.Module]]:
    base = _base(model)
    emb = base.embeddings
    sites = [("emb", m) for m in (emb.word_embeddings, getattr(emb, "position_embeddings", None),
                                  getattr(emb, "token_type_embeddings", None)) if m is not None]
    sites.append(("norm", emb.LayerNorm))
    for layer in layers(model):
        sa = layer.attention.self
        sites += [("in", sa.query), ("in", sa.key), ("in", sa.value),
                  ("out", layer.attention.output.dense), ("norm", layer.attention.output.LayerNorm),
                  ("in", layer.intermediate.dense), ("out", layer.output.dense), ("norm", layer.output.LayerNorm)]
    seen = {id(m) for _, m in sites}
    for path, kind in _HEAD_SITES:
        for root in (model, base):
            m = _find(root, path)
            want = nn.LayerNorm if kind == "norm" else nn.Linear
            if isinstance(m, want) and id(m) not in seen:
                sites.append((kind, m))
                seen.add(id(m))
    return sites


def hidden_mask_outputs(model) -> list[nn.Module]:
    """Modules whose output the hidden mask multiplies (besides every norm, which all families mask).
    BERT is post-LN, so every hidden state leaving a block is a LayerNorm output already."""
    return [m for kind, m in hidden_sites(model) if kind == "inout"]


def _headless_forward(self, hidden_states, *args, **kwargs):
    # All heads pruned: the attention adds nothing; the output projection (0 inputs) gives its bias.
    return hidden_states.new_zeros(*hidden_states.shape[:-1], 0), None


_HEADLESS: dict = {}


def set_heads(attn, num_heads: int, num_kv_heads: int | None = None) -> None:
    """Update the attributes BERT's self-attention reads after its q/k/v/o were resized."""
    attn.num_attention_heads = num_heads
    attn.all_head_size = num_heads * attn.attention_head_size
    if num_heads == 0 and not getattr(type(attn), "_prunelab_headless", False):
        # view(..., -1, head_dim) cannot infer a size from zero elements, so skip the branch.
        cls = type(attn)
        if cls not in _HEADLESS:
            _HEADLESS[cls] = type("Headless" + cls.__name__, (cls,),
                                  {"forward": _headless_forward, "_prunelab_headless": True})
        attn.__class__ = _HEADLESS[cls]


# ---------------------------------------------------------------------------------------------
# Rebuilding a model from recorded widths (used when loading an export with per-layer widths).

def _param(p, shape):
    if p is None or tuple(p.shape) == tuple(shape):
        return p
    return nn.Parameter(torch.empty(shape, dtype=p.dtype, device=p.device), requires_grad=p.requires_grad)


def _resize_linear(m, out_f, in_f):
    m.weight = _param(m.weight, (out_f, in_f))
    m.bias = _param(m.bias, (out_f,))
    m.out_features, m.in_features = out_f, in_f


def _resize_hidden(kind, m, h):
    """Give the hidden dimension of module m (a hidden_sites entry) the size h."""
    if kind == "emb":
        m.weight = _param(m.weight, (m.num_embeddings, h))
        m.embedding_dim = h
    elif kind == "norm":
        m.weight = _param(m.weight, (h,))
        if getattr(m, "bias", None) is not None:
            m.bias = _param(m.bias, (h,))
        if hasattr(m, "normalized_shape"):
            m.normalized_shape = (h,)
    else:
        out_f = h if kind in ("out", "inout") else m.out_features
        in_f = h if kind in ("in", "inout") else m.in_features
        _resize_linear(m, out_f, in_f)


def apply_widths(model, widths: dict) -> None:
    """Resize every pruned module to the widths recorded at export (weights are loaded later)."""
    h, hd = widths["hidden"], widths["head_dim"]
    for kind, m in hidden_sites(model):
        _resize_hidden(kind, m, h)
    for i, a in enumerate(attentions(model)):
        n = widths["heads"][i]
        a["module"].attention_head_size = hd
        a["module"].scaling = hd ** -0.5
        for lin in (a["q"], a["k"], a["v"]):
            _resize_linear(lin, n * hd, h)
        _resize_linear(a["o"], h, n * hd)
        set_heads(a["module"], n)
    for i, f in enumerate(ffns(model)):
        n = widths["ffn"][i]
        for lin in f["up"]:
            _resize_linear(lin, n, h)
        _resize_linear(f["down"], h, n)


class PrunelabBertConfig(BertConfig):
    """BertConfig plus `prunelab_widths` (per-layer heads / FFN sizes and the pruned hidden size).
    hidden_size is the pruned size; num_attention_heads / intermediate_size keep the original
    values and are only used to build the layers before they are resized."""
    model_type = "prunelab-bert"

    @property
    def embedding_size(self):
        # BERT refuses hidden_size % num_attention_heads != 0 unless the config has this attribute.
        return self.hidden_size


class PrunelabRobertaConfig(RobertaConfig):
    """RobertaConfig plus `prunelab_widths` (see PrunelabBertConfig)."""
    model_type = "prunelab-roberta"

    @property
    def embedding_size(self):
        return self.hidden_size


def _pruned_class(base_cls, config_cls):
    def __init__(self, config, *args, **kwargs):
        base_cls.__init__(self, config, *args, **kwargs)
        widths = getattr(config, "prunelab_widths", None)
        if widths:
            apply_widths(self, widths)
            self.init_weights()  # fresh tensors get initialised (skipped on meta) and ties restored

    return type("Prunelab" + base_cls.__name__, (base_cls,), {"config_class": config_cls, "__init__": __init__})


PrunelabBertModel = _pruned_class(BertModel, PrunelabBertConfig)
PrunelabBertForSequenceClassification = _pruned_class(BertForSequenceClassification, PrunelabBertConfig)
PrunelabBertForQuestionAnswering = _pruned_class(BertForQuestionAnswering, PrunelabBertConfig)
PrunelabBertForMaskedLM = _pruned_class(BertForMaskedLM, PrunelabBertConfig)
PrunelabRobertaModel = _pruned_class(RobertaModel, PrunelabRobertaConfig)
PrunelabRobertaForSequenceClassification = _pruned_class(RobertaForSequenceClassification, PrunelabRobertaConfig)
PrunelabRobertaForQuestionAnswering = _pruned_class(RobertaForQuestionAnswering, PrunelabRobertaConfig)
PrunelabRobertaForMaskedLM = _pruned_class(RobertaForMaskedLM, PrunelabRobertaConfig)

# Which Auto class loads which pruned class; export writes this into config.json's auto_map.
AUTO_CLASSES = {
    PrunelabBertConfig: {
        "AutoModel": PrunelabBertModel,
        "AutoModelForSequenceClassification": PrunelabBertForSequenceClassification,
        "AutoModelForQuestionAnswering": PrunelabBertForQuestionAnswering,
        "AutoModelForMaskedLM": PrunelabBertForMaskedLM,
    },
    PrunelabRobertaConfig: {
        "AutoModel": PrunelabRobertaModel,
        "AutoModelForSequenceClassification": PrunelabRobertaForSequenceClassification,
        "AutoModelForQuestionAnswering": PrunelabRobertaForQuestionAnswering,
        "AutoModelForMaskedLM": PrunelabRobertaForMaskedLM,
    },
}
STOCK_TO_PRUNELAB_CONFIG = {BertConfig: PrunelabBertConfig, RobertaConfig: PrunelabRobertaConfig}
HIDDEN_KEYS = ("hidden_size",)  # config fields that hold the hidden size


def _register() -> None:
    autos = {"AutoModel": AutoModel, "AutoModelForSequenceClassification": AutoModelForSequenceClassification,
             "AutoModelForQuestionAnswering": AutoModelForQuestionAnswering,
             "AutoModelForMaskedLM": AutoModelForMaskedLM}
    for cfg, classes in AUTO_CLASSES.items():
        AutoConfig.register(cfg.model_type, cfg, exist_ok=True)
        for auto_name, cls in classes.items():
            autos[auto_name].register(cfg, cls, exist_ok=True)


_register()
