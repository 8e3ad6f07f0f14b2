"""Per-layer greedy mask rearrangement (Kwon et al. 2022, `greedy_rearrange`).

The search ranks by the diagonal Fisher, which ignores interactions between masked elements.
Within one layer the loss change of pruning a set P is approximated by the block-diagonal
Fisher term sum_batches (sum_{i in P} g_i)^2, i.e. the squared length of the summed per-batch
gradient vectors. Keeping the layer's count fixed, the greedy pass starts from the lowest-
Fisher set, adds the next candidate and drops whichever member leaves the shortest summed
vector, so elements whose gradients cancel are pruned together.
"""
from __future__ import annotations

import torch


def greedy_rearrange(mask: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """mask: [n] 0/1; grads: [num_batches, n] per-batch mask gradients. Returns a new 0/1 mask
    with the same number of zeros."""
    n_kept = int((mask != 0).sum())
    n_pruned = mask.numel() - n_kept
    if n_kept == 0 or n_pruned == 0:
        return mask.clone()
    g = grads.t().double().contiguous()            # [n, num_batches]
    order = g.pow(2).sum(1).argsort(stable=True).tolist()   # ascending Fisher
    pruned = order[:n_pruned]
    for idx in order[n_pruned:]:
        pruned.append(idx)
        vecs = g[pruned]                           # [n_pruned + 1, B]
        total = vecs.sum(0)
        # length of the summed vector if each candidate in turn were kept instead
        lengths = (total.unsqueeze(0) - vecs).pow(2).sum(1)
        del pruned[int(lengths.argmin())]
    out = torch.ones_like(mask)
    out[pruned] = 0
    return out


def rearrange_masks(masks: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """Apply greedy_rearrange to each block's mask (its own per-batch gradients)."""
    return [greedy_rearrange(m.cpu(), g.cpu()).to(m.device) for m, g in zip(masks, grads)]
