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
