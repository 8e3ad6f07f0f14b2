"""How to score blocks: outlier-aware salience and the ablation scorers, plus the EMA.

Outlier-aware salience (paper Eqs. 3-5), per block b with output/input channels H_b:

    S~(b)  = [sum_{batch, seq} |dL/dH_b|] * [sum_{batch, seq} |H_b|]     (summed over the block's channels)
    S^(b)  = S~(b) + sqrt(Kurt(O_b)),   O_{:,j} = W_{:,j} x_j^T
    S-(b) <- 0.85 S-(b) + 0.15 S^(b)    (seed 003; virtually pruned blocks: S- <- 0.85 S-)

Activations and gradients are taken by hooks on the ordinary training batches (no extra
passes): the input of the attention output projection (per head: the channels of that head),
the input of the FFN down projection (per neuron), and, for hidden dims, the inputs of every
attention block's q and every FFN's first up projection plus the last layer's output, summed
over these sites (as the code sums its 2L + 1 sites). Embedding outputs are made to require
gradients while collecting so that layer 0's input gradient exists in PEFT training.

Adapter layers (paper Eq. 9): where an APT adapter sits, the block's salience also has the
tuning-weight term s * sum |dL/dW_B * W_B| over the B rows of the block's output channels
(q / k / v rows of a head, up rows of a neuron, o / down rows of a hidden dim). The frozen
weights have no gradient; their term is the activation-gradient proxy above. This term is in
the same units as S~ (a first-order loss change on this batch) and is part of S~ below.

Units of the outlier term, and why heads, neurons and hidden dims compete on equal terms:
S~ is a loss change summed over the batch (the paper's D_t is the data of step t; no
rescaling to the dataset, so nothing depends on how many examples there are), while
sqrt(Kurt) is dimensionless. Eq. 5 defines S^ per weight column W_{:,j} and a block's
salience is the sum over its parameters, so the outlier term of a block grows with the
parameters it owns; the paper leaves the unit of the addition implicit. We measure it in the
step's typical salience per parameter, rho- = median over all units u (heads, neurons and
hidden dims together) of S~(u)/C(u) -- the median, because the mean is set by a few very
salient units (on a tiny BERT the hidden dims' densities are ~30x the heads' and the mean
made the kurtosis bonus ~25x a head's own salience):

    S^(b) = S~(b) + K(b) * C(b) * rho-,   K(b) = sqrt(max(0, Kurt(O_b)))

so the density S^(b)/C(b) = S~(b)/C(b) + K(b) rho- gets the same bonus for the same
kurtosis whatever the block type or size, and scaling S~ (a bigger batch, a larger loss)
scales both terms alike: rankings are invariant to it. (A per-block bonus of O(1), divided by
the block's cost, gave a neuron ~64x the bonus of a head in MiniLM and pruned every head of a
tiny BERT first.) A Gaussian-like column has excess kurtosis ~6 (product of two Gaussians);
the common part shifts every density by the same amount and changes no ranking.

Default unit (``outlier_unit="rank"``): K(b) above is replaced by its quantile q(K(b)) in
[0, 1] among all units, so the bonus is at most one typical density rho-. With K itself
(``outlier_unit="density"``) the term replaced the salience instead of adjusting it: on
MiniLM-L6 / SST-2, K is 2-12 per unit, K rho- was 5-9x a unit's own density, and the density
ranking had Spearman 0.93 with K and 0.03 with S~/C (it kept 65-71 of 72 heads and cut the
hidden size to ~180 for that reason alone); with q(K) it is 0.86 with S~/C and 0.25 with K
(``python benchmarks/apt_diagnose.py --selection``). ``outlier_unit="code"`` is the released
LLaMA scorer's unnormalised S~ + K (Spearman -0.16 / 0.96 at our loss scale: it kept every
neuron and 4 heads).

Ablation scorers (the "salience" component):
- standard: S~ only (no kurtosis term).
- gradient: sum |dL/dH| only.
- magnitude: sum |W| over every weight entry of the block (effective weights), no hooks.
- fisher: sum over samples of (sum_{seq, channels of b} H dL/dH)^2, the empirical Fisher of a
  block mask (Kwon et al.), from the same hooks.
- random / uniform: these replace the *density* (salience / cost), not the salience: a
  constant or random salience divided by cost would just prune the most expensive blocks
  first (all hidden dims and heads before any neuron). random: a fresh uniform density per
  unit each step (EMA'd); uniform: equal density with ties interleaved so that every prefix
  takes the same fraction of every block type and layer (uniform structured pruning).
"""
from __future__ import annotations

import torch

MOMENT_TOKENS = 256   # tokens per site and step used for the activation moments of the kurtosis

HOOKED = ("outlier_aware", "standard", "gradient", "fisher")
DENSITY_LEVEL = ("random", "uniform")


def kurtosis_from_moments(m: torch.Tensor) -> torch.Tensor:
    """Excess kurtosis from raw moments m[k-1] = E[O^k], k = 1..4 (any trailing shape)."""
    e1, e2, e3, e4 = m[0], m[1], m[2], m[3]
    var = (e2 - e1 ** 2).clamp_min(1e-30)
    m4 = e4 - 4 * e1 * e3 + 6 * e1 ** 2 * e2 - 3 * e1 ** 4
    return m4 / var ** 2 - 3.0


def weight_column_moments(w: torch.Tensor) -> torch.Tensor:
    """(4, in_features): mean over rows of W_ij^k for k = 1..4."""
    w = w.detach().float()
    w2 = w * w
    return torch.stack([w.mean(0), w2.mean(0), (w2 * w).mean(0), (w2 * w2).mean(0)]).double()


def outlier_term(w_moments: torch.Tensor, x_moments: torch.Tensor, width: int) -> torch.Tensor:
    """sqrt(max(0, Kurt(O))) per unit of `width` consecutive input channels."""
    prod = w_moments * x_moments                                  # (4, C)
    C = prod.shape[1]
    if C == 0:
        return prod.new_zeros(0)
    per_unit = prod.reshape(4, C // width, width).mean(-1)        # (4, units)
    return kurtosis_from_moments(per_unit).clamp_min(0).sqrt()


class _Site:
    """Running sums for one hooked tensor (reset every step)."""

    def __init__(self, kind, block, width, linear_key=None):
        self.kind, self.block, self.width, self.linear_key = kind, block, width, linear_key
        self.reset()

    def reset(self):
        self.act = None      # sum |x| per channel
        self.grad = None     # sum |dL/dx| per channel
        self.mom = None      # sum x^k per channel, k = 1..4
        self.count = 0
        self.fisher = None   # per unit: sum over samples of (sum x * g)^2


class SalienceCollector:
    """Installs hooks through the family adapter and turns one step's sums into block scores."""

    def __init__(self, family, method: str, group_sizes: dict, effective_weight, outlier_unit: str = "density"):
        self.family = family
        self.method = method
        self.outlier_unit = outlier_unit
        self.group_sizes = group_sizes          # attention block -> q heads per unit
        self.effective_weight = effective_weight  # callable(kind, block, role, linear) -> tensor
        self.active = False
        self._handles = []
        self.sites: list[_Site] = []
        self.moment_tokens = MOMENT_TOKENS
        self.generator = torch.Generator().manual_seed(4099)
        self._wcache: dict = {}

    # -- hooks ---------------------------------------------------------------------------------
    def install(self) -> None:
        self.remove()
        if self.method not in HOOKED:
            return
        self.sites = []
        fam = self.family
        for b, blk in enumerate(fam.attention_blocks()):
            width = blk.head_dim * self.group_sizes.get(b, 1)
            self._pre(blk.o, _Site("head", b, width, ("attn", b, "o")))
            self._pre(blk.q, _Site("hidden", b, 1, ("attn", b, "q")))
        for b, blk in enumerate(fam.ffn_blocks()):
            self._pre(blk.down, _Site("neuron", b, 1, ("ffn", b, "down")))
            self._pre(blk.up[0], _Site("hidden", b, 1, ("ffn", b, "up")))
        last = fam.layer_outputs_module(fam.num_layers - 1)
        site = _Site("hidden", -1, 1, None)
        self.sites.append(site)
        self._handles.append(last.register_forward_hook(
            lambda m, a, out: self._observe(site, out[0] if isinstance(out, tuple) else out)))
        for emb in fam.embedding_modules():
            self._handles.append(emb.register_forward_hook(self._require_grad))

    def _pre(self, module, site):
        self.sites.append(site)
        self._handles.append(module.register_forward_pre_hook(lambda m, args: self._observe(site, args[0])))

    def _require_grad(self, module, args, out):
        if self.active and torch.is_grad_enabled() and isinstance(out, torch.Tensor) and not out.requires_grad \
                and out.is_floating_point():
            return out.requires_grad_(True)
        return None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def reset(self) -> None:
        for s in self.sites:
            s.reset()

    def _observe(self, site: _Site, x: torch.Tensor):
        if not self.active or not torch.is_grad_enabled() or not isinstance(x, torch.Tensor):
            return None
        C = x.shape[-1]
        if C == 0 or x.numel() == 0:   # a block whose heads / neurons were all removed
            return None
        with torch.no_grad():
            flat = x.detach().reshape(-1, C)
            a = torch.linalg.vector_norm(flat, ord=1, dim=0).double()   # sum |x|, no temporary
            site.act = a if site.act is None else site.act + a
            if self.method == "outlier_aware" and site.linear_key is not None:
                # raw moments of x per channel from a random subset of this batch's tokens: the
                # kurtosis needs only E[x^k], and full-batch powers cost as much as the layer
                n = flat.shape[0]
                if n > self.moment_tokens:
                    flat = flat[torch.randint(n, (self.moment_tokens,), generator=self.generator).to(flat.device)]
                f = flat.float()
                p2 = f * f
                mom = torch.stack([f.sum(0), p2.sum(0), (p2 * f).sum(0), (p2 * p2).sum(0)]).double()
                site.mom = mom if site.mom is None else site.mom + mom
                site.count += flat.shape[0]
        if x.requires_grad:
            fisher = self.method == "fisher"
            saved = x.detach() if fisher else None

            def on_grad(g, site=site, saved=saved):
                with torch.no_grad():
                    gs = torch.linalg.vector_norm(g.detach().reshape(-1, g.shape[-1]), ord=1, dim=0).double()
                    site.grad = gs if site.grad is None else site.grad + gs
                    if saved is not None:
                        B = saved.shape[0]
                        per = (saved * g.detach()).reshape(B, -1, C).sum(1)           # (B, C)
                        per = per.reshape(B, C // site.width, site.width).sum(-1)     # (B, units)
                        f = (per.double() ** 2).sum(0)
                        site.fisher = f if site.fisher is None else site.fisher + f
                return None
            x.register_hook(on_grad)
        return None

    # -- scores --------------------------------------------------------------------------------
    def scores(self, structure, adapter_term: dict | None = None) -> dict | None:
        """This step's S^ per unit, or None when no gradient arrived (nothing to update).

        adapter_term: Eq. 9's s * sum |dL/dB * B| per unit (same layout as the result), added
        to S~ for the paper's scorers (outlier_aware, standard)."""
        if self.method == "magnitude":
            return magnitude_scores(self.family, structure, self.effective_weight)
        if not any(s.grad is not None for s in self.sites):
            return None

        def zeros():
            return {"head": {a.index: torch.zeros(a.units, dtype=torch.float64) for a in structure.attn},
                    "neuron": {b.index: torch.zeros(b.units, dtype=torch.float64) for b in structure.ffn},
                    "hidden": torch.zeros(structure.hidden, dtype=torch.float64)}

        out, kurt = zeros(), zeros()
        sites_per_kind = {"head": {}, "neuron": {}, "hidden": 0}
        for s in self.sites:
            if s.act is None:
                continue
            if self.method == "fisher":
                v = s.fisher if s.fisher is not None else torch.zeros(s.act.numel() // s.width, dtype=torch.float64)
            else:
                g = s.grad if s.grad is not None else torch.zeros_like(s.act)
                v = g if self.method == "gradient" else s.act * g
                v = v.reshape(-1, s.width).sum(-1)
            _add(out, s, v.cpu())
            if self.method == "outlier_aware" and s.mom is not None and s.count > 0:
                kind, b, role = s.linear_key
                blk = (self.family.attention_blocks() if kind == "attn" else self.family.ffn_blocks())[b]
                lin = getattr(blk, role) if role != "up" else blk.up[0]
                wm = self._weight_moments(kind, b, role, lin)
                k = outlier_term(wm, s.mom / s.count, s.width)     # over the block's whole product tensor
                _add(kurt, s, k.cpu())
                if s.kind == "hidden":
                    sites_per_kind["hidden"] += 1
        if adapter_term is not None and self.method in ("outlier_aware", "standard"):
            for kind in ("head", "neuron"):
                for b, v in adapter_term.get(kind, {}).items():
                    out[kind][b] = out[kind][b] + v.double().cpu()
            if adapter_term.get("hidden") is not None:
                out["hidden"] = out["hidden"] + adapter_term["hidden"].double().cpu()
        if self.method == "outlier_aware":
            if sites_per_kind["hidden"] > 1:
                kurt["hidden"] = kurt["hidden"] / sites_per_kind["hidden"]
            out = add_outlier_term(structure, out, kurt, self.outlier_unit)
        return out

    def _weight_moments(self, kind, b, role, lin) -> torch.Tensor:
        """Column moments of the effective weight; cached while a frozen weight is unchanged."""
        w = self.effective_weight(kind, b, role, lin)
        if w is lin.weight:  # no adapter: frozen, changes only when pruned (new tensor)
            key = (id(w), w._version, tuple(w.shape))
            hit = self._wcache.get((kind, b, role))
            if hit is not None and hit[0] == key:
                return hit[1]
            wm = weight_column_moments(w)
            self._wcache[(kind, b, role)] = (key, wm)
            return wm
        return weight_column_moments(w)


def _add(acc: dict, site: _Site, v: torch.Tensor) -> None:
    if site.kind == "hidden":
        acc["hidden"] = acc["hidden"] + v
    else:
        acc[site.kind][site.block] = acc[site.kind][site.block] + v


def add_outlier_term(structure, base: dict, kurt: dict, unit: str = "density") -> dict:
    """S^ = S~ + the outlier term, in one of three units (``APTConfig.outlier_unit``):

    - density: S^(b) = S~(b) + K(b) C(b) rho-, rho- = the median of S~(u)/C(u) over every unit u
      of every type (module docstring);
    - rank: S^(b) = S~(b) + q(K(b)) C(b) rho-, q = K's quantile in [0, 1] among all units: the
      same density unit, but the bonus is bounded by one typical density, so kurtosis breaks
      near-ties in salience instead of ranking by itself;
    - code: S^(b) = S~(b) + K(b), the released LLaMA scorer's per-block addition (unnormalised:
      its weight against S~ depends on the loss scale and the batch).
    """
    if unit == "code":
        return {"head": {b: v + kurt["head"][b] for b, v in base["head"].items()},
                "neuron": {b: v + kurt["neuron"][b] for b, v in base["neuron"].items()},
                "hidden": base["hidden"] + kurt["hidden"]}
    costs = structure.unit_costs()
    dens = [v / max(1, costs["head"][b]) for b, v in base["head"].items()] + \
        [v / max(1, costs["neuron"][b]) for b, v in base["neuron"].items()] + [base["hidden"] / max(1, costs["hidden"])]
    dens = torch.cat([d.flatten().double().cpu() for d in dens]) if dens else torch.zeros(0, dtype=torch.float64)
    rho = float(dens.median()) if dens.numel() else 0.0
    if unit == "rank":
        kurt = _quantiles(kurt)
    return {"head": {b: v + kurt["head"][b] * costs["head"][b] * rho for b, v in base["head"].items()},
            "neuron": {b: v + kurt["neuron"][b] * costs["neuron"][b] * rho for b, v in base["neuron"].items()},
            "hidden": base["hidden"] + kurt["hidden"] * costs["hidden"] * rho}


def _quantiles(kurt: dict) -> dict:
    """Each unit's K replaced by its quantile (average rank / (n - 1)) among all units of all types."""
    parts = [("head", b, v) for b, v in kurt["head"].items()] + \
        [("neuron", b, v) for b, v in kurt["neuron"].items()] + [("hidden", None, kurt["hidden"])]
    flat = torch.cat([v.flatten().double().cpu() for _, _, v in parts])
    n = flat.numel()
    if n < 2:
        q = torch.zeros_like(flat)
    else:
        order = flat.argsort(stable=True)
        r = torch.empty_like(flat)
        r[order] = torch.arange(n, dtype=torch.float64)
        q = r / (n - 1)
    out, i = {"head": {}, "neuron": {}, "hidden": None}, 0
    for kind, b, v in parts:
        chunk = q[i:i + v.numel()].reshape(v.shape)
        i += v.numel()
        if kind == "hidden":
            out["hidden"] = chunk
        else:
            out[kind][b] = chunk
    return out


@torch.no_grad()
def magnitude_scores(family, structure, effective_weight) -> dict:
    """sum |W| over every weight entry a unit owns (effective weights, adapters merged)."""
    out = {"head": {}, "neuron": {}, "hidden": torch.zeros(structure.hidden, dtype=torch.float64)}
    for a, blk in zip(structure.attn, family.attention_blocks()):
        hd, g = a.head_dim, a.group
        W = {r: effective_weight("attn", a.index, r, getattr(blk, r)).detach().abs().double()
             for r in ("q", "k", "v", "o")}
        q = W["q"].sum(1).reshape(-1, g * hd).sum(-1)
        kv = (W["k"].sum(1) + W["v"].sum(1)).reshape(-1, hd).sum(-1)
        o = W["o"].sum(0).reshape(-1, g * hd).sum(-1)
        out["head"][a.index] = (q + kv + o).cpu()
        out["hidden"] += (W["q"].sum(0) + W["k"].sum(0) + W["v"].sum(0) + W["o"].sum(1)).cpu()
    for b, blk in zip(structure.ffn, family.ffn_blocks()):
        ups = [effective_weight("ffn", b.index, "up" if i == 0 else f"up{i}", u).detach().abs().double()
               for i, u in enumerate(blk.up)]
        down = effective_weight("ffn", b.index, "down", blk.down).detach().abs().double()
        out["neuron"][b.index] = (sum(u.sum(1) for u in ups) + down.sum(0)).cpu()
        out["hidden"] += (sum(u.sum(0) for u in ups) + down.sum(1)).cpu()
    return out


def random_density(structure, generator: torch.Generator) -> dict:
    return {"head": {a.index: torch.rand(a.units, generator=generator, dtype=torch.float64) for a in structure.attn},
            "neuron": {b.index: torch.rand(b.units, generator=generator, dtype=torch.float64)
                       for b in structure.ffn},
            "hidden": torch.rand(structure.hidden, generator=generator, dtype=torch.float64)}


def uniform_density(structure) -> dict:
    """Equal density; within each block, earlier units first, interleaved across blocks.

    density = 1 - eps * (position / units): sorting it takes the i-th fraction of every block
    before the (i+1)-th of any block, so a budget prefix keeps about the same share of every
    layer's heads and neurons and of the hidden dims.
    """
    def ramp(n):
        return 1.0 - 1e-3 * (torch.arange(n, dtype=torch.float64) + 0.5) / max(1, n)
    return {"head": {a.index: ramp(a.units) for a in structure.attn},
            "neuron": {b.index: ramp(b.units) for b in structure.ffn},
            "hidden": ramp(structure.hidden)}


class SalienceEMA:
    """S- <- beta S- + (1 - beta) S^, with virtually pruned (mask 0) units only decaying."""

    def __init__(self, beta: float):
        self.beta = beta
        self.value: dict | None = None
        self.updates = 0

    def update(self, new: dict, zero_units: dict | None = None) -> None:
        b = self.beta
        if self.value is None:
            self.value = {"head": {k: torch.zeros_like(v) for k, v in new["head"].items()},
                          "neuron": {k: torch.zeros_like(v) for k, v in new["neuron"].items()},
                          "hidden": torch.zeros_like(new["hidden"])}

        def upd(old, cur, dead):
            nxt = b * old + (1 - b) * cur
            if dead is not None:
                nxt = torch.where(dead.to(nxt.device), b * old, nxt)
            return nxt

        z = zero_units or {"head": {}, "neuron": {}, "hidden": None}
        for kind in ("head", "neuron"):
            for k, v in new[kind].items():
                self.value[kind][k] = upd(self.value[kind][k], v, z[kind].get(k))
        self.value["hidden"] = upd(self.value["hidden"], new["hidden"], z["hidden"])
        self.updates += 1

    def reindex(self, keep) -> None:
        """After physical pruning: keep only the surviving units' values."""
        if self.value is None:
            return
        for kind in ("head", "neuron"):
            for k, v in self.value[kind].items():
                self.value[kind][k] = v[getattr(keep, kind)[k].to(v.device)]
        self.value["hidden"] = self.value["hidden"][keep.hidden.to(self.value["hidden"].device)]
