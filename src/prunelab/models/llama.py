"""LLaMA family adapter. GQA heads are pruned in whole kv groups (see family.py)."""
from __future__ import annotations

from prunelab.models import hf_llama
from prunelab.models.family import FamilyAdapter, register_family, uniform


class LlamaAdapter(FamilyAdapter):
    name = "llama"
    layout = hf_llama
    default_lora = ("q", "v")  # APT tunes q and v only on LLaMA
    stock_hidden_rule = "multiple_of_heads"

    def _after_neurons(self, f, size):
        hf_llama.set_ffn(f.module, size)

    def _after_hidden(self, old, new):
        hf_llama.set_hidden(self.model, new)

    def stock_overrides(self, widths):
        heads, kv, ffn = uniform(widths["heads"]), uniform(widths["kv_heads"]), uniform(widths["ffn"])
        if not heads or not kv or ffn is None:
            return None, "layers differ in heads, kv heads or FFN size (or a layer has no heads)"
        return {"hidden_size": widths["hidden"], "num_attention_heads": heads, "num_key_value_heads": kv,
                "intermediate_size": ffn, "head_dim": widths["head_dim"]}, ""

    def custom_config_fields(self, widths):
        # head_dim must stay explicit: LLaMA would otherwise derive it from the pruned hidden size.
        return {"hidden_size": widths["hidden"], "head_dim": widths["head_dim"]}


register_family(hf_llama.MODEL_TYPES, LlamaAdapter)
