"""Which tokens survive a stage: protected tokens, exact keep counts, top-k / top-p / threshold."""
from __future__ import annotations

import torch

from .config import SDTPConfig, ceil_count


def protected_mask(cfg: SDTPConfig, pos: torch.Tensor, valid: torch.Tensor, n_real: torch.Tensor) -> torch.Tensor:
    """(B, n) bool: tokens that must survive, by original position `pos` in a prompt of `n_real` tokens.

    The last prompt token is always protected (its hidden state yields the first output
    token), even with head/tail preservation off.
    """
    last = pos == (n_real - 1)[:, None]
    if not cfg.protect:
        return last & valid
    tail = torch.tensor([max(cfg.protect_last, ceil_count(cfg.protect_last_frac * int(n))) for n in n_real],
                        device=pos.device)
    prot = (pos < cfg.protect_first) | (pos >= (n_real - tail)[:, None]) | last
    return prot & valid


def target_counts(cfg: SDTPConfig, cum: float, n_real: torch.Tensor, n_protected: torch.Tensor) -> torch.Tensor:
    """(B,) number of tokens alive after a stage whose cumulative keep fraction is `cum`."""
    out = []
    for n, p in zip(n_real.tolist(), n_protected.tolist()):
        k = max(p, ceil_count(cum * n)) if cfg.count_protected else p + ceil_count(cum * (n - p))
        out.append(min(n, k))
    return torch.tensor(out, device=n_real.device)


def select(cfg: SDTPConfig, score: torch.Tensor, prob: torch.Tensor, candidates: torch.Tensor,
           protected: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(B, n) bool survivors among `candidates`; protected candidates always survive.

    score: ranking key (higher = keep); prob: keep probability in [0, 1] (top-p/threshold).
    k: (B,) total survivors for top-k (protected included).
    """
    protected = protected & candidates
    free = candidates & ~protected
    if cfg.selection == "topk":
        rest = (k - protected.sum(1)).clamp(min=0)
        key = score.masked_fill(~free, float("-inf"))
        order = key.argsort(dim=1, descending=True, stable=True)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.size(1), device=order.device).expand_as(order))
        chosen = (rank < rest[:, None]) & free
    elif cfg.selection == "topp":
        mass = prob.masked_fill(~free, 0.0)
        mass = mass / mass.sum(1, keepdim=True).clamp(min=1e-12)
        sorted_mass, order = mass.sort(dim=1, descending=True, stable=True)
        before = sorted_mass.cumsum(1) - sorted_mass          # mass of better-ranked tokens
        keep_sorted = before < cfg.top_p                       # fewest tokens reaching top_p
        chosen = torch.zeros_like(free).scatter_(1, order, keep_sorted) & free & (mass > 0)
    else:  # threshold
        chosen = free & (prob >= cfg.threshold)
    return protected | chosen
