"""BERT-like family adapter: bert, roberta (MiniLM is a bert)."""
from __future__ import annotations

from prunelab.models import hf_bert
from prunelab.models.family import FamilyAdapter, register_family, uniform


class BertAdapter(FamilyAdapter):
    name = "bert"
    layout = hf_bert
    default_lora = ("q", "v", "up")
    stock_hidden_rule = "heads_x_head_dim"

    def stock_overrides(self, widths):
        heads, ffn = uniform(widths["heads"]), uniform(widths["ffn"])
        if not heads or ffn is None:
            return None, "layers differ in heads or FFN size (or a layer has no heads)"
        if heads * widths["head_dim"] != widths["hidden"]:
            # stock BERT derives head_dim = hidden_size / num_attention_heads
            return None, (f"stock BERT needs hidden = heads x head_dim "
                          f"({widths['hidden']} != {heads} x {widths['head_dim']})")
        return {"hidden_size": widths["hidden"], "num_attention_heads": heads, "intermediate_size": ffn}, ""


register_family(hf_bert.MODEL_TYPES, BertAdapter)
