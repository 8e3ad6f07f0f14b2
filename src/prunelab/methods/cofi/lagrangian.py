"""CoFi's Lagrangian sparsity constraint and its target schedule.

    L_c = lambda1 * (s_hat - t) + lambda2 * (s_hat - t)^2

s_hat is the expected sparsity of the L0 masks, t the current target. The multipliers start at
0 and are trained by gradient *ascent* (an AdamW whose lr is -reg_lr, exactly as the original)
while the masks and model descend, so lambda grows until the constraint binds. The target rises
linearly from `start` to the final sparsity over the warm-up, counted from the first pruning step.
"""
from __future__ import annotations

import torch
from torch import nn


class Lagrangian(nn.Module):
    def __init__(self):
        super().__init__()
        self.lambda_1 = nn.Parameter(torch.tensor(0.0))
        self.lambda_2 = nn.Parameter(torch.tensor(0.0))

    def forward(self, expected_sparsity: torch.Tensor, target: float) -> torch.Tensor:
        gap = expected_sparsity - target
        return self.lambda_1 * gap + self.lambda_2 * gap * gap

    def optimizer(self, reg_lr: float) -> torch.optim.Optimizer:
        """Gradient ascent on the multipliers: a negative learning rate (no weight decay, which
        with a negative lr would grow them). torch refuses a negative lr in the constructor but
        not in a param group, so the group's lr is set afterwards."""
        opt = torch.optim.AdamW(self.parameters(), lr=reg_lr, weight_decay=0.0)
        for group in opt.param_groups:
            group["lr"] = -reg_lr
        return opt


def target_sparsity(pruning_step: int, warmup_steps: int, target: float, start: float = 0.0) -> float:
    """CoFi's get_target_sparsity: linear from `start` to `target` over warmup_steps pruning steps."""
    if warmup_steps <= 0:
        return target
    return start + (target - start) * min(1.0, pruning_step / warmup_steps)
