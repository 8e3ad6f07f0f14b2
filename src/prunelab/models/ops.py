"""Tensor surgery for physical pruning: keep selected rows/columns of linears, embeddings and norms.

Every function takes a `memo` dict so that parameters shared by several modules (tied input and
output embeddings, T5's three embedding modules) are sliced once and stay shared afterwards.
"""
from __future__ import annotations

import torch
from torch import nn


def index(keep, device=None) -> torch.Tensor:
    return torch.as_tensor(sorted(int(i) for i in keep), dtype=torch.long, device=device)


def head_dims(heads, head_dim: int) -> list[int]:
    """Feature indices of whole heads in a [num_heads * head_dim] projection."""
    return [h * head_dim + j for h in heads for j in range(head_dim)]


def _slice(p: nn.Parameter | None, dim: int, idx: torch.Tensor, memo: dict):
    if p is None:
        return None
    key = (id(p), dim)
    if key not in memo:
        data = p.data.index_select(dim, idx.to(p.device)).clone()
        # keep the old parameter alive while the memo lives, so its id cannot be reused
        memo[key] = (p, nn.Parameter(data, requires_grad=p.requires_grad))
    return memo[key][1]


def slice_linear(m: nn.Linear, out_keep=None, in_keep=None, memo: dict | None = None) -> None:
    """Keep output rows `out_keep` and input columns `in_keep` (None = keep all) of m, in place."""
    memo = {} if memo is None else memo
    if out_keep is not None:
        idx = index(out_keep)
        m.weight = _slice(m.weight, 0, idx, memo)
        if m.bias is not None:
            m.bias = _slice(m.bias, 0, idx, memo)
        m.out_features = len(idx)
    if in_keep is not None:
        idx = index(in_keep)
        m.weight = _slice(m.weight, 1, idx, memo)
        m.in_features = len(idx)


def slice_embedding(m: nn.Embedding, keep, memo: dict | None = None) -> None:
    memo = {} if memo is None else memo
    idx = index(keep)
    m.weight = _slice(m.weight, 1, idx, memo)
    m.embedding_dim = len(idx)


def slice_norm(m: nn.Module, keep, memo: dict | None = None) -> None:
    """LayerNorm (weight, bias, normalized_shape) or RMSNorm-style (weight only)."""
    memo = {} if memo is None else memo
    idx = index(keep)
    m.weight = _slice(m.weight, 0, idx, memo)
    if getattr(m, "bias", None) is not None:
        m.bias = _slice(m.bias, 0, idx, memo)
    if hasattr(m, "normalized_shape"):
        m.normalized_shape = (len(idx),)


def slice_hidden_site(kind: str, m: nn.Module, keep, memo: dict) -> None:
    """Slice the hidden dimension of one `hidden_sites` entry."""
    if kind == "emb":
        slice_embedding(m, keep, memo)
    elif kind == "norm":
        slice_norm(m, keep, memo)
    elif kind == "in":
        slice_linear(m, in_keep=keep, memo=memo)
    elif kind == "out":
        slice_linear(m, out_keep=keep, memo=memo)
    elif kind == "inout":
        slice_linear(m, out_keep=keep, in_keep=keep, memo=memo)
    else:
        raise ValueError(f"unknown hidden site kind {kind!r}")


def hidden_site_cost(kind: str, m: nn.Module) -> dict[int, int]:
    """Parameters removed from m when one hidden dim goes, keyed by id(parameter) (for de-duplication)."""
    w, b = m.weight, getattr(m, "bias", None)
    cost = {}
    if kind == "emb":
        cost[id(w)] = w.shape[0]
    elif kind == "norm":
        cost[id(w)] = 1
        if b is not None:
            cost[id(b)] = 1
    elif kind == "in":
        cost[id(w)] = w.shape[0]
    elif kind == "out":
        cost[id(w)] = w.shape[1]
        if b is not None:
            cost[id(b)] = 1
    elif kind == "inout":  # one row and one column, which overlap in one entry
        cost[id(w)] = w.shape[0] + w.shape[1] - 1
        if b is not None:
            cost[id(b)] = 1
    return cost
