"""T5 family adapter (relu or gated FFN). Blocks: encoder layers first, then decoder layers;
a decoder layer has a "self" and a "cross" attention block."""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from prunelab.models import hf_t5
from prunelab.models.family import FamilyAdapter, register_family, uniform


class T5Adapter(FamilyAdapter):
    name = "t5"
    layout = hf_t5
    default_lora = ("q", "v", "up")  # APT: q, v of every attention and wi / wi_0
    stock_aligned_heads = True

    def prune_heads(self, block_index, keep):
        self._no_masks()
        hf_t5.make_prunable(self.model)  # per-layer heads need per-layer slices of the shared bias
        super().prune_heads(block_index, keep)

    def _after_heads(self, blk, keep, num_q_heads):
        blk.module.head_ids = [blk.module.head_ids[u] for u in keep]
        hf_t5.set_heads(blk.module, num_q_heads)

    def _after_hidden(self, old, new):
        m = self.model
        if getattr(m.config, "scale_decoder_outputs", False) and hasattr(m, "model_dim") and hasattr(m, "lm_head"):
            # T5ForConditionalGeneration scales decoder outputs by model_dim ** -0.5 before lm_head.
            # Fold the change into the final norm so the pruned model (and a stock reload, where
            # model_dim = d_model) gives the same logits as before.
            with torch.no_grad():
                m.decoder.final_layer_norm.weight.mul_((new / m.model_dim) ** 0.5)
            m.model_dim = new
        hf_t5.set_hidden(m, new)

    def widths(self):
        w = super().widths()
        mods = [b.module for b in self.attention_blocks()]
        prunable = any(isinstance(m, hf_t5.PrunableT5Attention) for m in mods)
        w["head_ids"] = [list(m.head_ids) for m in mods] if prunable else None
        return w

    def _stack_tables(self):
        """(first-layer attention with the bias table, head_ids of every self-attention) per stack."""
        out = []
        for stack in hf_t5.stacks(self.model):
            attns = [block.layer[0].SelfAttention for block in stack.block]
            out.append((attns[0], [list(getattr(a, "head_ids", range(a.n_heads))) for a in attns]))
        return out

    def stock_overrides(self, widths):
        heads, ffn = uniform(widths["heads"]), uniform(widths["ffn"])
        if not heads or ffn is None:
            return None, "attention blocks differ in heads or layers in FFN size (or a block has no heads)"
        if any(uniform(ids) is None for _, ids in self._stack_tables()):
            return None, "self-attention layers of a stack keep different heads (stock T5 shares one position bias)"
        return {"d_model": widths["hidden"], "num_heads": heads, "d_ff": ffn, "d_kv": widths["head_dim"]}, ""

    @contextlib.contextmanager
    def stock_state_patch(self):
        # Stock T5 has one bias table per stack with exactly the kept heads: slice it while saving.
        saved = []
        for first, ids in self._stack_tables():
            table = getattr(first, "relative_attention_bias", None)
            if table is not None and table.weight.shape[1] != len(ids[0]):
                saved.append((table, table.weight))
                table.weight = nn.Parameter(table.weight.data[:, ids[0]].clone(), requires_grad=False)
        try:
            yield
        finally:
            for table, weight in saved:
                table.weight = weight


register_family(hf_t5.MODEL_TYPES, T5Adapter)
