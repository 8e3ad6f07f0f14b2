"""Adaptive tuning (A_T): grow the ranks of the most important adapters as the budget grows.

Paper section 4.3: adapter importance I(H) = sum_ij |W_B,ij * dL/dW_B,ij| (the code uses
lora_A and a per-rank score; we follow the paper), accumulated as an EMA with beta = 0.85
over the pruning window (the paper is silent on smoothing; the code EMAs with 0.85). The
tuning budget Delta grows linearly from N0 to 4 N0 over the pruning steps (schedule.py);
at each pruning step the top half of adapters by importance get

    r' = floor(r * Delta' / Delta),   capped at max_rank (64),

new A rows Gaussian, new B columns zero (adapter.py), so outputs are unchanged at growth.
Adapters already at max_rank are skipped before taking the top half (code: "limited").

Ablations (the "tuning" component):
- static: no growth (ranks stay at ``static_rank``, or the initial rank).
- uniform: every adapter grows, by the factor that adds as many parameters as the top-half
  rule would have added (1 + (Delta'/Delta - 1) * grow_fraction), so the comparison isolates
  *where* the parameters go ("uniform parameter addition" vs "dynamic addition in salient layers").
- none: no adapters at all (only the task head, and Tr when distilling, train).
"""
from __future__ import annotations

import math

import torch


class RankController:
    def __init__(self, adapters, mode: str, max_rank: int, grow_fraction: float = 0.5, beta: float = 0.85,
                 seed: int = 0):
        self.adapters = adapters            # AdapterSet
        self.mode = mode
        self.max_rank = max_rank
        self.grow_fraction = grow_fraction
        self.beta = beta
        self.importance: dict[str, float] = {}
        self.generator = torch.Generator().manual_seed(10_007 + seed)
        self.history: list[dict] = []

    @torch.no_grad()
    def observe(self) -> None:
        """After backward: EMA of sum |B * dL/dB| per adapter."""
        for key, ad in self.adapters.student.items():
            if ad.B.grad is None:
                continue
            cur = float((ad.B.detach() * ad.B.grad).abs().sum())
            old = self.importance.get(key)
            self.importance[key] = cur if old is None else self.beta * old + (1 - self.beta) * cur

    def grow(self, ratio: float, step: int | None = None) -> dict[str, tuple[int, int]]:
        """Budget multiplied by ``ratio`` (Delta'/Delta): grow ranks; returns {key: (old, new)}."""
        if self.mode not in ("adaptive", "uniform") or ratio <= 1.0 or not len(self.adapters.student):
            return {}
        changes = {}
        ads = self.adapters.student
        if self.mode == "adaptive":
            eligible = [k for k, ad in ads.items() if ad.rank < self.max_rank]
            eligible.sort(key=lambda k: -self.importance.get(k, 0.0))
            chosen = eligible[:max(1, int(len(ads) * self.grow_fraction))] if eligible else []
            factor = ratio
        else:
            chosen = [k for k, ad in ads.items() if ad.rank < self.max_rank]
            factor = 1 + (ratio - 1) * self.grow_fraction
        for k in chosen:
            ad = ads[k]
            new = min(self.max_rank, int(math.floor(ad.rank * factor + 1e-9)))
            if new > ad.rank:
                changes[k] = (ad.rank, new)
                ad.grow(new, self.generator)
        self.history.append({"step": step, "ratio": round(ratio, 4), "grown": len(changes)})
        return changes
