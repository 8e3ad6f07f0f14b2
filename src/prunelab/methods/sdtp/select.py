"""Which tokens survive a stage: protected tokens, exact keep counts, top-k / top-p / threshold,
and the token selectors (the learned pruner and the baselines it must beat).

Selectors (``prefill(..., selector=...)``, or ``cfg.selector`` once SDTPConfig has it):
  learned    the configured scorer (``cfg.pruner``: trained MLPs, prompt saliency or random)
  random     uniform random scores
  recency    StreamingLLM-style: attention sinks + the most recent tokens (score = position)
  attention  SnapKV/H2O-style: attention that the last ``ATTN_WINDOW`` alive queries pay to
             each key in the stage layer (its own q/k projections, summed over heads and queries)
  oracle     the per-prompt gradient saliency (the learned pruners' training target; needs
             a backward pass, so it is a quality ceiling, not a speed option)
  truncate   keep only the last tokens from the first layer on (one stage before layer 0),
             as many as give the learned schedule's prefill FLOPs (``truncate_count``)
All but ``truncate`` use the learned schedule's stage layers and exact keep counts; all use
the same protected tokens (first ``protect_first`` + the tail; the last token always).
"""
from __future__ import annotations

import torch

from prunelab.errors import unknown

from .config import SELECTORS, SDTPConfig, ceil_count  # SELECTORS: one list, validated by the config

ATTN_WINDOW = 32     # observation window of the attention selector (SnapKV uses the last 32 queries)


def resolve_selector(cfg: SDTPConfig, selector: str | None = None) -> str:
    """The selector to use: the explicit argument, else ``cfg.selector`` (default 'learned')."""
    sel = selector if selector is not None else getattr(cfg, "selector", "learned")
    if sel not in SELECTORS:
        raise unknown("SDTP selector", sel, SELECTORS)
    return sel


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


def schedule_tokens(cfg: SDTPConfig, num_layers: int, n: int) -> list[int]:
    """Tokens each layer computes for one prompt of n tokens under cfg's top-k schedule."""
    stages = cfg.stage_layers(num_layers)
    cum = cfg.cumulative_keep(len(stages))
    pos = torch.arange(n)[None]
    n_real = torch.tensor([n])
    n_prot = int(protected_mask(cfg, pos, torch.ones_like(pos, dtype=torch.bool), n_real).sum())
    out, cur = [], n
    for l in range(num_layers):
        if l in stages:
            cur = int(target_counts(cfg, cum[stages.index(l)], n_real, torch.tensor([n_prot]))[0])
        out.append(cur)
    return out


def truncate_count(mc, cfg: SDTPConfig, n: int, scorer_flops_per_token: int = 0) -> int:
    """Largest k such that running every layer on k tokens costs no more prefill FLOPs than the
    learned schedule on n tokens (its pruner MLPs included, `scorer_flops_per_token`), and at
    least the protected tokens."""
    from .metrics import layer_flops

    L = mc.num_hidden_layers
    toks = schedule_tokens(cfg, L, n)
    stages = cfg.stage_layers(L)
    budget = sum(layer_flops(mc, t) for t in toks) + scorer_flops_per_token * sum(toks[l - 1] for l in stages)
    lo, hi = 1, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if L * layer_flops(mc, mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    pos = torch.arange(n)[None]
    n_prot = int(protected_mask(cfg, pos, torch.ones_like(pos, dtype=torch.bool), torch.tensor([n])).sum())
    return max(lo, n_prot)
