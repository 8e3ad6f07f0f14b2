"""Hard-concrete L0 masks at CoFi's five granularities (Xia et al. 2022; Louizos et al. 2018).

Each mask element z has a learnable log alpha. Training samples
    u ~ U(eps, 1-eps),  s = sigmoid((log u - log(1-u) + log alpha) / beta),
    z = clamp(s * (r - l) + l, 0, 1)                       (beta = 2/3, (l, r) = (-0.1, 1.1))
so z is exactly 0 or 1 with positive probability and differentiable in between. The
probability that z is nonzero is 1 - Q(s_stretched <= 0) = 1 - sigmoid(beta*logit(-l/(r-l)) - log alpha),
which makes the expected model size differentiable.

Granularities (one log-alpha tensor each):
    head    one per head unit of every attention block   init N(10, 0.01)   (kept)
    mha     one per attention block (the whole layer)    init N(10, 0.01)
    int     one per FFN neuron of every FFN block        init N(0, 0.01)    (droprate_init 0.5)
    ffn     one per FFN block (the whole layer)          init N(10, 0.01)
    hidden  one per hidden dim, shared by all layers     init N(10, 0.01)
log alpha is clamped to [ln 0.01, ln 100] after every update, as in CoFi.

Expected size (CoFi's `get_num_parameters_and_constraint`, generalised to the family's blocks):
a head unit costs dh * (2*g + 2) weights per hidden dim (q and o for its g q heads, k and v
once), a neuron (n_up + 1) per hidden dim (2 for BERT, 3 for gated FFNs); biases are ignored.
    E[size] = E[#hidden] * ( sum_heads c_h P(head) P(mha) + sum_neurons c_n P(int) P(ffn) )
"""
from __future__ import annotations

import math

import torch
from torch import nn

LIMIT_L, LIMIT_R = -0.1, 1.1
EPS = 1e-6
LOGA_MIN, LOGA_MAX = math.log(1e-2), math.log(1e2)
GRANULARITIES = ("head", "mha", "int", "ffn", "hidden")


def prob_nonzero(log_alpha: torch.Tensor, temperature: float) -> torch.Tensor:
    """P(z != 0) = 1 - CDF of the stretched concrete at 0."""
    x = (0 - LIMIT_L) / (LIMIT_R - LIMIT_L)
    logits = math.log(x) - math.log(1 - x)
    return 1 - torch.sigmoid(logits * temperature - log_alpha).clamp(EPS, 1 - EPS)


def sample(log_alpha: torch.Tensor, temperature: float, generator: torch.Generator | None = None) -> torch.Tensor:
    u = torch.rand(log_alpha.shape, generator=generator, device=log_alpha.device if generator is None else "cpu")
    u = u.to(log_alpha.device).clamp(EPS, 1 - EPS)
    s = torch.sigmoid((torch.log(u) - torch.log(1 - u) + log_alpha) / temperature)
    return (s * (LIMIT_R - LIMIT_L) + LIMIT_L).clamp(0.0, 1.0)


def deterministic(log_alpha: torch.Tensor, temperature: float, magical_number: float = 0.8) -> torch.Tensor:
    """CoFi's inference mask: soft values sigmoid(log_alpha / beta * 0.8), with the
    round(expected number of zeros) smallest of them set to exactly 0."""
    with torch.no_grad():
        expected_zeros = float(log_alpha.numel() - prob_nonzero(log_alpha, temperature).sum())
        num_zeros = int(round(expected_zeros))
        soft = torch.sigmoid(log_alpha / temperature * magical_number).clone()
        if num_zeros > 0:
            idx = torch.topk(soft.flatten(), k=min(num_zeros, soft.numel()), largest=False).indices
            soft.view(-1)[idx] = 0.0
    return soft


def _init(n: int, mean: float) -> nn.Parameter:
    return nn.Parameter(torch.empty(n).normal_(mean, 1e-2))


class L0Masks(nn.Module):
    """The log alphas of every granularity for one model, built from its family adapter."""

    def __init__(self, family, granularities=GRANULARITIES, droprate_init: float = 0.5,
                 temperature: float = 2.0 / 3.0, magical_number: float = 0.8):
        super().__init__()
        self.granularities = tuple(granularities)
        self.temperature, self.magical_number = temperature, magical_number
        attn, ffn = family.attention_blocks(), family.ffn_blocks()
        self.hidden_size = family.hidden_size
        keep_init = 10.0
        int_init = math.log(1 - droprate_init) - math.log(droprate_init)
        self.head = nn.ParameterList([_init(b.num_units, keep_init) for b in attn]) if "head" in self.granularities else None
        self.mha = _init(len(attn), keep_init) if "mha" in self.granularities else None
        self.int = nn.ParameterList([_init(f.size, int_init) for f in ffn]) if "int" in self.granularities else None
        self.ffn = _init(len(ffn), keep_init) if "ffn" in self.granularities else None
        self.hidden = _init(self.hidden_size, keep_init) if "hidden" in self.granularities else None
        self.num_units = [b.num_units for b in attn]
        self.ffn_sizes = [f.size for f in ffn]
        # per-hidden-dim weight cost of one head unit / one neuron (CoFi counts weights only)
        self.head_cost = [b.head_dim * (2 * b.group_size + 2) for b in attn]
        self.neuron_cost = [len(f.up) + 1 for f in ffn]

    # ---- sizes ------------------------------------------------------------------------------
    def prunable_size(self) -> float:
        per_dim = sum(n * c for n, c in zip(self.num_units, self.head_cost)) + \
            sum(n * c for n, c in zip(self.ffn_sizes, self.neuron_cost))
        return float(per_dim * self.hidden_size)

    def _probs(self):
        t = self.temperature
        dev = self.parameters().__next__().device
        one = lambda n: torch.ones(n, device=dev)  # noqa: E731
        head = [prob_nonzero(p, t) for p in self.head] if self.head is not None else [one(n) for n in self.num_units]
        mha = prob_nonzero(self.mha, t) if self.mha is not None else one(len(self.num_units))
        neu = [prob_nonzero(p, t) for p in self.int] if self.int is not None else [one(n) for n in self.ffn_sizes]
        ffn = prob_nonzero(self.ffn, t) if self.ffn is not None else one(len(self.ffn_sizes))
        hidden = prob_nonzero(self.hidden, t) if self.hidden is not None else one(self.hidden_size)
        return head, mha, neu, ffn, hidden

    @staticmethod
    def size_of(head, mha, neu, ffn, hidden, head_cost, neuron_cost) -> torch.Tensor:
        """Size from per-element keep values (probabilities, or 0/1 indicators)."""
        units = sum(c * h.sum() * m for h, m, c in zip(head, mha, head_cost))
        units = units + sum(c * n.sum() * f for n, f, c in zip(neu, ffn, neuron_cost))
        return hidden.sum() * units

    def expected_size(self) -> torch.Tensor:
        """Differentiable expected number of prunable weights."""
        return self.size_of(*self._probs(), self.head_cost, self.neuron_cost)

    def expected_sparsity(self) -> torch.Tensor:
        return 1 - self.expected_size() / self.prunable_size()

    def sparsity_of(self, z: dict) -> float:
        """Sparsity of a concrete mask set (nonzero entries count as kept)."""
        dev = self.parameters().__next__().device
        ind = lambda t: (t != 0).float().to(dev)  # noqa: E731
        one = lambda n: torch.ones(n, device=dev)  # noqa: E731
        head = [ind(h) for h in z["head"]] if z.get("head") is not None else [one(n) for n in self.num_units]
        mha = ind(z["mha"]) if z.get("mha") is not None else one(len(self.num_units))
        neu = [ind(n) for n in z["int"]] if z.get("int") is not None else [one(n) for n in self.ffn_sizes]
        ffn = ind(z["ffn"]) if z.get("ffn") is not None else one(len(self.ffn_sizes))
        hidden = ind(z["hidden"]) if z.get("hidden") is not None else one(self.hidden_size)
        size = self.size_of(head, mha, neu, ffn, hidden, self.head_cost, self.neuron_cost)
        return float(1 - size / self.prunable_size())

    # ---- masks ------------------------------------------------------------------------------
    def sample(self, generator: torch.Generator | None = None) -> dict:
        """One training draw of every mask (shared by the whole batch, as in CoFi)."""
        t = self.temperature
        return {
            "head": [sample(p, t, generator) for p in self.head] if self.head is not None else None,
            "mha": sample(self.mha, t, generator) if self.mha is not None else None,
            "int": [sample(p, t, generator) for p in self.int] if self.int is not None else None,
            "ffn": sample(self.ffn, t, generator) if self.ffn is not None else None,
            "hidden": sample(self.hidden, t, generator) if self.hidden is not None else None,
        }

    @torch.no_grad()
    def deterministic(self, rule: str = "cofi") -> dict:
        """Inference masks.

        rule="cofi": CoFi's, per block (whole-layer masks are blocks of size 1): a layer mask
        is zero only when its P(nonzero) < 0.5, and a block's head / neuron zeros number
        round(sum(1 - P(head))). A layer whose P(nonzero) sits at, say, 0.7 then keeps all of
        its units, so the realised size can exceed the expected size when the layer-level
        probabilities are not yet near 0 or 1 (short runs).
        rule="expected": a block's zero count is round(sum(1 - P(unit) * P(layer))) (lowest
        log alpha first) and layer masks are never zeroed on their own (a layer goes when all
        its units do; its soft value still scales it): the layer probability is spent on the
        block's own units, so the realised size matches the expected size (the quantity the
        Lagrangian constrains) up to rounding.

        The hidden mask is made binary: its kept values sit at sigmoid(ln 100 / beta * 0.8) ~
        0.996 and folding a soft hidden scale into every residual-stream writer is not exact for
        pre-LN families; binary keeps masked == pruned exact everywhere."""
        t, k = self.temperature, self.magical_number
        per_elem = lambda p: torch.stack([deterministic(x.view(1), t, k)[0] for x in p])  # noqa: E731
        hidden = None
        if self.hidden is not None:
            hidden = (deterministic(self.hidden, t, k) != 0).float()
        if rule == "cofi":
            mha = per_elem(self.mha) if self.mha is not None else None
            ffn = per_elem(self.ffn) if self.ffn is not None else None
        else:   # layer values only scale; their keep probability is spent on the units below
            mha = torch.sigmoid(self.mha / t * k) if self.mha is not None else None
            ffn = torch.sigmoid(self.ffn / t * k) if self.ffn is not None else None

        def units(logas, layer_loga):
            if logas is None:
                return None
            if rule == "cofi" or layer_loga is None:
                return [deterministic(p, t, k) for p in logas]
            out = []
            for p, lp in zip(logas, layer_loga):
                keep = prob_nonzero(p, t) * prob_nonzero(lp, t)
                zeros = int(round(float(p.numel() - keep.sum())))
                soft = torch.sigmoid(p / t * k).clone()
                if zeros > 0:
                    # the units CoFi would drop first: lowest log alpha
                    soft[torch.topk(p, k=min(zeros, p.numel()), largest=False).indices] = 0.0
                out.append(soft)
            return out

        return {"head": units(self.head, self.mha), "mha": mha,
                "int": units(self.int, self.ffn), "ffn": ffn, "hidden": hidden}

    @torch.no_grad()
    def constrain(self) -> None:
        for p in self.parameters():
            p.clamp_(LOGA_MIN, LOGA_MAX)
