"""The learned pruning modules: one small MLP per stage, the backbone stays frozen."""
from __future__ import annotations

import torch
from torch import nn


POS_FEATURES = 2


POS_SCALE = 8.0   # position_features divide log(1 + a) by it; the priors multiply it back


def position_features(alive: torch.Tensor) -> torch.Tensor:
    """(B, n, 2) recency features of each token among the tokens still alive (bool (B, n)):
    log(1 + number of alive tokens after it) / 8 and that number / alive count. Both are 0
    for the last token."""
    a = alive.float()
    after = a.flip(-1).cumsum(-1).flip(-1) - a
    total = a.sum(-1, keepdim=True).clamp(min=1)
    return torch.stack([torch.log1p(after) / POS_SCALE, after / total], -1)


def prior_from_features(feats: torch.Tensor, shape: str = "linear") -> torch.Tensor:
    """recency_prior read off position_features (float, (B, n, 2)): each shape is -8 x one column."""
    return -POS_SCALE * feats[..., 1 if shape == "linear" else 0]


def recency_prior(alive: torch.Tensor, shape: str = "linear") -> torch.Tensor:
    """(B, n) recency score of each token among the alive ones (bool (B, n)), strictly
    increasing with the position among alive tokens, so top-k of it keeps exactly the most
    recent ones (the ordering of the recency baseline; protected tokens are handled by the
    selection). With a = number of alive tokens after the token:
      log     -log(1 + a): steep among recent tokens, nearly flat among old ones, so a small
              learned residual reorders old tokens almost freely;
      linear  -8 * a / alive count: the same step between any two neighbours (8 spans about
              the log range of a 3k prompt), so a residual moves a token by a share of the
              prompt that does not depend on its age."""
    return prior_from_features(position_features(alive), shape)


class TokenPruner(nn.Module):
    """Linear(d, d*frac) -> GELU -> Linear(., 2): per-token (keep, drop) logits (paper Eq. 1).

    With ``pos_features`` the first layer also reads position_features: the token's
    distance from the end of the prompt among surviving tokens, which a hidden state alone
    does not know (and which makes recency, a strong rule, learnable). Called with the
    hidden states only (as inference.py does), the features are computed from the input
    width: survivors arrive in original order with any padding/fillers in front, so the
    tokens after position j are exactly n - 1 - j real survivors.

    With ``prior_weight`` w > 0 the keep logit is w * recency_prior + the MLP's output
    (recency-anchored residual scoring): the MLP is a learned correction of the recency
    ordering, and with its last layer at zero (reset_residual, done by training) the
    pruner ranks exactly like the recency baseline.
    """

    def __init__(self, hidden_size: int, hidden_frac: float = 0.25, pos_features: bool = False,
                 prior_weight: float = 0.0, prior_curve: str = "linear"):
        super().__init__()
        inner = max(1, int(hidden_size * hidden_frac))
        self.pos_features = pos_features
        self.prior_weight = float(prior_weight)
        self.prior_curve = prior_curve
        self.fc1 = nn.Linear(hidden_size + (POS_FEATURES if pos_features else 0), inner)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(inner, 2)

    def reset_residual(self) -> None:
        """Zero the last layer: the learned part of the score starts at exactly 0."""
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: torch.Tensor, alive: torch.Tensor | None = None) -> torch.Tensor:
        if alive is None and (self.pos_features or self.prior_weight):
            alive = torch.ones(h.shape[:-1], dtype=torch.bool, device=h.device)
        feats = position_features(alive) if self.pos_features or self.prior_weight else None   # once for both
        x = torch.cat([h, feats.to(h.dtype)], -1) if self.pos_features else h
        out = self.fc2(self.act(self.fc1(x)))
        if self.prior_weight:
            prior = self.prior_weight * prior_from_features(feats, self.prior_curve).to(out.dtype)
            out = torch.stack([out[..., 0] + prior, out[..., 1]], -1)
        return out


def keep_score(logits: torch.Tensor) -> torch.Tensor:
    """Keep log-odds (keep logit - drop logit): the scalar that top-k and the ranking loss use."""
    return logits[..., 0] - logits[..., 1]


class PrunerStack(nn.Module):
    """The pruners of all stages, keyed by the 0-indexed layer whose input they score."""

    def __init__(self, hidden_size: int, stage_layers: list[int], hidden_frac: float = 0.25, pos_features: bool = False,
                 prior_weight: float = 0.0, prior_curve: str = "linear"):
        super().__init__()
        self.stage_layers = list(stage_layers)
        self.hidden_size, self.hidden_frac, self.pos_features = hidden_size, hidden_frac, pos_features
        self.prior_weight, self.prior_curve = float(prior_weight), prior_curve
        self.pruners = nn.ModuleDict({str(l): TokenPruner(hidden_size, hidden_frac, pos_features, prior_weight, prior_curve)
                                      for l in self.stage_layers})

    def reset_residual(self) -> None:
        for p in self.pruners.values():
            p.reset_residual()

    def __getitem__(self, layer: int) -> TokenPruner:
        return self.pruners[str(layer)]

    def flops_per_token(self) -> int:
        """Multiply-adds x 2 of one pruner on one token (for the analytic FLOPs count)."""
        p = next(iter(self.pruners.values()))
        return 2 * (p.fc1.in_features * p.fc1.out_features + p.fc2.in_features * p.fc2.out_features)

    def save(self, path: str) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, path, metadata={"stage_layers": ",".join(map(str, self.stage_layers)),
                                         "pos_features": str(int(self.pos_features)),
                                         "prior_weight": repr(self.prior_weight),
                                         "prior_curve": self.prior_curve})

    @classmethod
    def load(cls, path: str, hidden_size: int, hidden_frac: float = 0.25) -> "PrunerStack":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(path, "pt") as f:
            meta = f.metadata()
        layers = [int(x) for x in meta["stage_layers"].split(",")]
        stack = cls(hidden_size, layers, hidden_frac, pos_features=meta.get("pos_features", "0") == "1",
                    prior_weight=float(meta.get("prior_weight", "0.0")),
                    # files from before the field: log; "prior_shape" is its name until 2026-12
                    prior_curve=meta.get("prior_curve", meta.get("prior_shape", "log")))
        stack.load_state_dict(load_file(path))
        return stack
