"""The learned pruning modules: one small MLP per stage, the backbone stays frozen."""
from __future__ import annotations

import torch
from torch import nn


class TokenPruner(nn.Module):
    """Linear(d, d*frac) -> GELU -> Linear(., 2): per-token (keep, drop) logits (paper Eq. 1)."""

    def __init__(self, hidden_size: int, hidden_frac: float = 0.25):
        super().__init__()
        inner = max(1, int(hidden_size * hidden_frac))
        self.fc1 = nn.Linear(hidden_size, inner)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(inner, 2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(h)))


def keep_score(logits: torch.Tensor) -> torch.Tensor:
    """Keep log-odds (keep logit - drop logit): the scalar that top-k and the ranking loss use."""
    return logits[..., 0] - logits[..., 1]


class PrunerStack(nn.Module):
    """The pruners of all stages, keyed by the 0-indexed layer whose input they score."""

    def __init__(self, hidden_size: int, stage_layers: list[int], hidden_frac: float = 0.25):
        super().__init__()
        self.stage_layers = list(stage_layers)
        self.pruners = nn.ModuleDict({str(l): TokenPruner(hidden_size, hidden_frac) for l in self.stage_layers})

    def __getitem__(self, layer: int) -> TokenPruner:
        return self.pruners[str(layer)]

    def flops_per_token(self) -> int:
        """Multiply-adds x 2 of one pruner on one token (for the analytic FLOPs count)."""
        p = next(iter(self.pruners.values()))
        return 2 * (p.fc1.in_features * p.fc1.out_features + p.fc2.in_features * p.fc2.out_features)

    def save(self, path: str) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, path, metadata={"stage_layers": ",".join(map(str, self.stage_layers))})

    @classmethod
    def load(cls, path: str, hidden_size: int, hidden_frac: float = 0.25) -> "PrunerStack":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(path, "pt") as f:
            layers = [int(x) for x in f.metadata()["stage_layers"].split(",")]
        stack = cls(hidden_size, layers, hidden_frac)
        stack.load_state_dict(load_file(path))
        return stack
