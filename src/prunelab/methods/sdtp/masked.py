"""Full-length forward with a multiplicative attention policy (training-time pruning simulation).

DynamicViT's ``softmax_with_policy`` made causal: attention weight of query i on key j is
exp(A_ij) * P_ij / sum_j' exp(A_ij') * P_ij', with P_ij = policy_j for j != i and P_ii = 1.
A hard 0/1 policy gives exactly the attention of a model from which the dropped tokens
were removed (for the kept queries), yet the policy stays differentiable, so the LM loss
reaches the pruners through it (an additive -inf mask would pass no gradient).
"""
from __future__ import annotations

from typing import Callable

import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv


def policy_layer(layer, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                 policy: torch.Tensor | None, causal: torch.Tensor) -> torch.Tensor:
    """One LLaMA decoder layer with policy-weighted causal attention (eager, differentiable)."""
    attn = layer.self_attn
    x = layer.input_layernorm(h)
    B, T, _ = x.shape
    shape = (B, T, -1, attn.head_dim)
    q = attn.q_proj(x).view(shape).transpose(1, 2)
    k = attn.k_proj(x).view(shape).transpose(1, 2)
    v = attn.v_proj(x).view(shape).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    k, v = repeat_kv(k, attn.num_key_value_groups), repeat_kv(v, attn.num_key_value_groups)
    s = torch.matmul(q, k.transpose(2, 3)) * attn.scaling
    s = s.masked_fill(~causal, float("-inf"))
    w = torch.exp(s - s.amax(-1, keepdim=True).detach())
    if policy is not None:
        eye = torch.eye(T, dtype=w.dtype, device=w.device)
        w = w * (policy.to(w.dtype)[:, None, None, :] * (1 - eye) + eye)
    a = w / w.sum(-1, keepdim=True)
    o = torch.matmul(a, v).transpose(1, 2).reshape(B, T, -1)
    h = h + attn.o_proj(o)
    return h + layer.mlp(layer.post_attention_layernorm(h))


def policy_forward(model, ids: torch.Tensor, stage_layers: list[int],
                   on_stage: Callable[[int, int, torch.Tensor], torch.Tensor] | None,
                   logits_from: int = 0, stop_after_last_stage: bool = False) -> torch.Tensor | None:
    """Full-length forward; at each stage layer l, ``on_stage(stage_idx, l, h)`` returns the
    (B, T) key policy used by layer l and later layers. Returns logits for positions
    [logits_from, T) (None if stopped early). Layers before the first stage run without
    gradients through HF's own (SDPA) layer, since no pruner influences them.
    """
    B, T = ids.shape
    pos = torch.arange(T, device=ids.device)
    causal = pos[None, :] <= pos[:, None]
    first = min(stage_layers) if (stage_layers and on_stage is not None) else len(model.model.layers)
    stage_set = {l: i for i, l in enumerate(stage_layers)}
    with torch.no_grad():
        h = model.model.embed_tokens(ids)
        cos, sin = model.model.rotary_emb(h, pos[None])
        from .saliency import _causal_or_none
        mask = _causal_or_none(model, T, h.dtype, ids.device)
        for layer in model.model.layers[:first]:
            h = layer(h, attention_mask=mask, position_embeddings=(cos, sin))
    policy = None
    for l in range(first, len(model.model.layers)):
        if on_stage is not None and l in stage_set:
            policy = on_stage(stage_set[l], l, h)
            if stop_after_last_stage and l == max(stage_layers):
                return None
        h = policy_layer(model.model.layers[l], h, cos, sin, policy, causal)
    return model.lm_head(model.model.norm(h[:, logits_from:]))
