"""SDTP training losses (paper Eqs. 4-8, plus DynamicViT's keep-ratio constraint)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of the pruned (masked) forward on the continuation."""
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))


def mse_loss(keep_prob: torch.Tensor, saliency: torch.Tensor) -> torch.Tensor:
    """MSE between the keep probability and the max-normalised saliency (Eq. 4)."""
    return F.mse_loss(keep_prob.float(), saliency.float())


def rank_loss(score: torch.Tensor, saliency: torch.Tensor, pairs: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pairwise logistic ranking loss log(1 + exp(-(p_i - p_j) sign(s_i - s_j))) (Eqs. 5-6).

    Averaged over `pairs` random pairs per sequence (the paper sums all O(N^2) pairs, which
    would dwarf the other terms); tied targets carry no signal and are skipped.
    """
    B, n = score.shape
    i = torch.randint(0, n, (B, pairs), generator=generator).to(score.device)
    j = torch.randint(0, n, (B, pairs), generator=generator).to(score.device)
    sign = torch.sign(saliency.gather(1, i) - saliency.gather(1, j)).float()
    diff = (score.gather(1, i) - score.gather(1, j)).float()
    loss = F.softplus(-diff * sign)
    used = sign != 0
    if not bool(used.any()):
        return score.sum() * 0.0
    return loss[used].mean()


def ratio_loss(decisions: list[torch.Tensor], targets: list[float]) -> torch.Tensor:
    """DynamicViT: mean over stages of (fraction kept at stage s - target fraction)^2."""
    terms = [(d.float().mean(1) - t).pow(2).mean() for d, t in zip(decisions, targets)]
    return torch.stack(terms).mean()


def distill_loss(pruned_logits: torch.Tensor, dense_logits: torch.Tensor) -> torch.Tensor:
    """KL(dense || pruned) of the next-token distributions, mean over positions."""
    lp = F.log_softmax(pruned_logits.float(), -1)
    ld = F.log_softmax(dense_logits.float(), -1)
    return (ld.exp() * (ld - lp)).sum(-1).mean()
