"""Gradient x input saliency at each stage's input: the pruners' supervision targets.

pi_i = |sum_d dL/dx_{i,d} * x_{i,d}|, max-normalised per sequence over the scored tokens
(SDTP Eq. 3; the reduction and normalisation are our choice, see SDTP.md section 1).
L is the LM loss of the *continuation* (tokens [loss_start, T)) given the context: the
quantity pruning the context must preserve. One full-length forward+backward of the
frozen model per sequence; results are cached on disk by the caller.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _causal_or_none(model, T: int, dtype, device):
    if getattr(model.config, "_attn_implementation", "eager") in ("sdpa", "flash_attention_2", "flash_attention_3"):
        return None
    m = torch.full((T, T), torch.finfo(dtype).min, dtype=dtype, device=device).triu(1)
    return m[None, None]


def saliency_targets(model, ids: torch.Tensor, stage_layers: list[int], loss_start: int,
                     norm_len: int | None = None) -> torch.Tensor:
    """(B, S, T) float32 saliency of every token at each stage layer's input.

    Normalised by the max over the first `norm_len` tokens (default: loss_start, the context).
    """
    B, T = ids.shape
    norm_len = loss_start if norm_len is None else norm_len
    stage_set = set(stage_layers)
    with torch.enable_grad():
        h = model.model.embed_tokens(ids).detach().requires_grad_(True)
        cos, sin = model.model.rotary_emb(h, torch.arange(T, device=ids.device)[None])
        mask = _causal_or_none(model, T, h.dtype, ids.device)
        xs = []
        for l, layer in enumerate(model.model.layers):
            if l in stage_set:
                xs.append(h)
            h = layer(h, attention_mask=mask, position_embeddings=(cos, sin))
        logits = model.lm_head(model.model.norm(h[:, loss_start - 1:T - 1]))
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), ids[:, loss_start:].reshape(-1))
        grads = torch.autograd.grad(loss, xs)
    sal = torch.stack([(g * x.detach()).sum(-1).abs().float() for g, x in zip(grads, xs)], 1)   # (B, S, T)
    return sal / sal[..., :norm_len].amax(-1, keepdim=True).clamp(min=1e-20)


def prompt_saliency(model, input_ids: torch.Tensor, stage_layers: list[int], window: int,
                    attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Saliency of a prompt for the saliency-only pruner (no MLP): L is the LM loss of the
    prompt's last `window` tokens (we cannot see the future at inference). (B, S, N),
    zeros at padding; rows are left-padded like the input.
    """
    B, N = input_ids.shape
    out = torch.zeros(B, len(stage_layers), N)
    for b in range(B):
        cols = torch.arange(N) if attention_mask is None else attention_mask[b].bool().nonzero().flatten()
        ids = input_ids[b:b + 1, cols]
        n = ids.size(1)
        if n < 2:
            out[b, :, cols] = 1.0
            continue
        w = max(1, min(window, n - 1))
        out[b, :, cols] = saliency_targets(model, ids, stage_layers, n - w, norm_len=n)[0]
    return out


@torch.no_grad()
def attention_targets(model, ids: torch.Tensor, stage_layers: list[int], loss_start: int,
                      return_hidden: bool = False):
    """(B, S, T) "attention-to-future" saliency: how much the continuation reads each token.

    For every layer l, a_l[j] = mean over heads and over the continuation queries
    [loss_start, T) of attention(query -> key j) * ||v_j|| (the value norm of key j's head
    group, so attention sinks with near-zero values, e.g. formatting tokens, score low).
    Stage s's target is the mean of a_l over the layers l >= l_s that pruning at s removes
    the token from. One forward of the frozen model, no backward. Max-normalised over the
    context like saliency_targets. With return_hidden, also the hidden states entering each
    stage layer (list of (B, T, d)), i.e. the dense pruner inputs.
    """
    B, T = ids.shape
    L = len(model.model.layers)
    h = model.model.embed_tokens(ids)
    pos = torch.arange(T, device=ids.device)
    cos, sin = model.model.rotary_emb(h, pos[None])
    mask = _causal_or_none(model, T, h.dtype, ids.device)
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

    per_layer, hidden = [], {}
    q_pos = pos[loss_start:]
    causal = pos[None, :] <= q_pos[:, None]                      # (Q, T)
    for l, layer in enumerate(model.model.layers):
        if l in stage_layers:
            hidden[l] = h
        attn = layer.self_attn
        x = layer.input_layernorm(h)
        q = attn.q_proj(x[:, loss_start:]).view(B, T - loss_start, -1, attn.head_dim).transpose(1, 2)
        k = attn.k_proj(x).view(B, T, -1, attn.head_dim).transpose(1, 2)
        v = attn.v_proj(x).view(B, T, -1, attn.head_dim).transpose(1, 2)
        q, _ = apply_rotary_pos_emb(q, q, cos[:, loss_start:], sin[:, loss_start:])
        _, k = apply_rotary_pos_emb(k, k, cos, sin)
        k, v = repeat_kv(k, attn.num_key_value_groups), repeat_kv(v, attn.num_key_value_groups)
        s = torch.matmul(q, k.transpose(2, 3)).float() * attn.scaling
        a = s.masked_fill(~causal, float("-inf")).softmax(-1)  # (B, H, Q, T)
        per_layer.append((a.mean(2) * v.float().norm(dim=-1)).mean(1))   # (B, T)
        h = layer(h, attention_mask=mask, position_embeddings=(cos, sin))
    acc = torch.stack(per_layer, 1)                              # (B, L, T)
    tail = acc.flip(1).cumsum(1).flip(1) / torch.arange(L, 0, -1, device=acc.device)[None, :, None]
    sal = tail[:, stage_layers]
    sal = sal / sal[..., :loss_start].amax(-1, keepdim=True).clamp(min=1e-20)
    if return_hidden:
        return sal, [hidden[l] for l in stage_layers]
    return sal


def make_targets(model, ids: torch.Tensor, stage_layers: list[int], loss_start: int, kind: str = "attn") -> torch.Tensor:
    """(B, S, T) supervision of the given kind: "grad" (gradient x input of the continuation
    loss, the paper's Eq. 3), "attn" (attention_targets) or "grad_attn" (geometric mean)."""
    if kind == "grad":
        return saliency_targets(model, ids, stage_layers, loss_start)
    if kind == "attn":
        return attention_targets(model, ids, stage_layers, loss_start)
    if kind == "grad_attn":
        g = saliency_targets(model, ids, stage_layers, loss_start)
        a = attention_targets(model, ids, stage_layers, loss_start)
        s = (g * a).sqrt()
        return s / s[..., :loss_start].amax(-1, keepdim=True).clamp(min=1e-20)
    raise ValueError(kind)
