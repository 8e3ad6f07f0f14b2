"""What to remove: block costs, salience density, one global ranking, the budget search, masks.

Blocks (paper section 4.2): attention heads, FFN neurons and hidden dimensions (one hidden
mask shared by every layer). With grouped KV heads (LLaMA) the unit is a whole KV group (one
kv head and its q heads): HF's attention repeats kv heads uniformly, so only whole groups can
go without breaking it.

Cost in parameters (paper Eqs. 10-12, counted from the live modules so that biases, gated
FFNs, GQA and T5's cross-attention are exact; the code's param.py does the same by formula):

    size(n, d') = d' * sum_b c_b n_b + sum_b e_b n_b + f d'

with, per unit of block b, c_b weights per hidden dim (MHA head: 4 d_h; GQA group of g q
heads: (2g + 2) d_h; neuron: n_up + 1) and e_b bias entries (q/k/v or up biases), and f bias
entries per hidden dim (o and down biases). The cost of one unit is c_b d' + e_b, of one
hidden dim sum_b c_b n_b + f. Norm weights (2 d' per norm) are not counted: under 0.1% of the
budget for BERT-size models. The budget is over the layers' linear parameters, i.e. the
non-embedding encoder parameters the paper counts.

Selection (paper Eq. 14, code ``DensityBSMaskPruner``): density = salience / cost, all units
of all types in one list sorted by density, and the largest prefix whose size is within the
budget. The size of a prefix is monotone in its length, so the search is a binary search
(``torch.searchsorted``) over the prefix sizes, which are computed in one vectorised pass.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class AttnInfo:
    index: int
    layer: int
    kind: str
    units: int          # heads (MHA) or kv groups (GQA) currently present
    group: int          # q heads per unit
    head_dim: int
    c: int              # weight entries per unit per hidden dim
    e: int              # bias entries per unit


@dataclass
class FFNInfo:
    index: int
    layer: int
    units: int
    c: int
    e: int


@dataclass
class Structure:
    attn: list = field(default_factory=list)
    ffn: list = field(default_factory=list)
    hidden: int = 0
    f: int = 0          # bias entries per hidden dim

    @classmethod
    def from_family(cls, family, group_sizes: dict | None = None) -> "Structure":
        """Read the current widths from the family's blocks (after any physical pruning)."""
        s = cls(hidden=int(family.hidden_size))
        for i, blk in enumerate(family.attention_blocks()):
            hd = int(blk.head_dim)
            n_q = blk.q.out_features // hd
            n_kv = blk.k.out_features // hd
            g = (n_q // n_kv) if n_kv else (group_sizes or {}).get(i, 1)
            gqa = g > 1
            units = n_kv if gqa else n_q
            c = (2 * g + 2) * hd if gqa else 4 * hd
            e = (g * hd * (blk.q.bias is not None) + hd * (blk.k.bias is not None)
                 + hd * (blk.v.bias is not None))
            s.attn.append(AttnInfo(i, int(blk.layer), str(blk.kind), units, g, hd, c, e))
            s.f += int(blk.o.bias is not None)
        for i, blk in enumerate(family.ffn_blocks()):
            ups = list(blk.up)
            s.ffn.append(FFNInfo(i, int(blk.layer), ups[0].out_features, len(ups) + 1,
                                 sum(int(u.bias is not None) for u in ups)))
            s.f += int(blk.down.bias is not None)
        return s

    def size(self) -> int:
        w = sum(a.c * a.units for a in self.attn) + sum(b.c * b.units for b in self.ffn)
        e = sum(a.e * a.units for a in self.attn) + sum(b.e * b.units for b in self.ffn)
        return self.hidden * w + e + self.f * self.hidden

    def unit_costs(self) -> dict:
        """Current cost in parameters of one unit of each block, and of one hidden dim."""
        d = self.hidden
        w = sum(a.c * a.units for a in self.attn) + sum(b.c * b.units for b in self.ffn)
        return {"head": {a.index: a.c * d + a.e for a in self.attn},
                "neuron": {b.index: b.c * d + b.e for b in self.ffn},
                "hidden": w + self.f}


def measured_size(family) -> int:
    """Parameters of every attention / FFN linear, counted from the tensors themselves."""
    seen, total = set(), 0
    for blk in family.attention_blocks():
        for lin in (blk.q, blk.k, blk.v, blk.o):
            for p in (lin.weight, lin.bias):
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
    for blk in family.ffn_blocks():
        for lin in (*blk.up, blk.down):
            for p in (lin.weight, lin.bias):
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
    return total


# -- selection ---------------------------------------------------------------------------------
@dataclass
class Keep:
    """Boolean keep-vectors: per attention block (units), per FFN block (neurons), hidden."""
    head: dict
    neuron: dict
    hidden: torch.Tensor

    def counts(self) -> dict:
        return {"heads": {b: int(v.sum()) for b, v in self.head.items()},
                "neurons": {b: int(v.sum()) for b, v in self.neuron.items()},
                "hidden": int(self.hidden.sum())}


def densities(structure: Structure, scores: dict, is_density: bool = False) -> dict:
    """salience / cost per unit (scores: {"head": {b: t}, "neuron": {b: t}, "hidden": t})."""
    if is_density:
        return scores
    costs = structure.unit_costs()
    return {"head": {b: v / max(1, costs["head"][b]) for b, v in scores["head"].items()},
            "neuron": {b: v / max(1, costs["neuron"][b]) for b, v in scores["neuron"].items()},
            "hidden": scores["hidden"] / max(1, costs["hidden"])}


def select(structure: Structure, density: dict, target: float, enabled=("head", "neuron", "hidden")) -> Keep:
    """Largest top-density prefix whose size is <= target (a parameter count).

    Units of types not in `enabled` are always kept; their parameters count towards the
    budget and the search runs over the enabled units only.
    """
    parts, kinds, blocks, coef_w, coef_e, forced = [], [], [], [], [], []
    for a in structure.attn:
        parts.append(density["head"][a.index].double().cpu())
        kinds.append(torch.zeros(a.units, dtype=torch.long))
        blocks.append(torch.full((a.units,), a.index, dtype=torch.long))
        coef_w.append(torch.full((a.units,), float(a.c), dtype=torch.float64))
        coef_e.append(torch.full((a.units,), float(a.e), dtype=torch.float64))
        forced.append(torch.full((a.units,), "head" not in enabled))
    for b in structure.ffn:
        parts.append(density["neuron"][b.index].double().cpu())
        kinds.append(torch.ones(b.units, dtype=torch.long))
        blocks.append(torch.full((b.units,), b.index, dtype=torch.long))
        coef_w.append(torch.full((b.units,), float(b.c), dtype=torch.float64))
        coef_e.append(torch.full((b.units,), float(b.e), dtype=torch.float64))
        forced.append(torch.full((b.units,), "neuron" not in enabled))
    parts.append(density["hidden"].double().cpu())
    kinds.append(torch.full((structure.hidden,), 2, dtype=torch.long))
    blocks.append(torch.arange(structure.hidden))
    coef_w.append(torch.zeros(structure.hidden, dtype=torch.float64))
    coef_e.append(torch.zeros(structure.hidden, dtype=torch.float64))
    forced.append(torch.full((structure.hidden,), "hidden" not in enabled))

    dens = torch.nan_to_num(torch.cat(parts), nan=0.0)
    kind, block, cw, ce = torch.cat(kinds), torch.cat(blocks), torch.cat(coef_w), torch.cat(coef_e)
    fixed = torch.cat(forced)
    is_hidden = (kind == 2).double()
    w0, e0, d0 = float(cw[fixed].sum()), float(ce[fixed].sum()), float(is_hidden[fixed].sum())
    free = torch.nonzero(~fixed).flatten()
    order = free[torch.argsort(dens[free], descending=True, stable=True)]
    w = w0 + cw[order].cumsum(0)
    e = e0 + ce[order].cumsum(0)
    d = d0 + is_hidden[order].cumsum(0)
    base = torch.tensor([d0 * w0 + e0 + structure.f * d0], dtype=torch.float64)
    sizes = torch.cat([base, d * w + e + structure.f * d])
    # sizes is non-decreasing: the largest i with sizes[i] <= target is a binary search
    n_keep = int(torch.searchsorted(sizes, torch.tensor([float(target)], dtype=torch.float64), right=True)) - 1
    keep_flat = fixed.clone()
    keep_flat[order[:max(0, n_keep)]] = True

    keep = Keep({}, {}, torch.zeros(structure.hidden, dtype=torch.bool))
    for a in structure.attn:
        keep.head[a.index] = keep_flat[(kind == 0) & (block == a.index)]
    for b in structure.ffn:
        keep.neuron[b.index] = keep_flat[(kind == 1) & (block == b.index)]
    keep.hidden = keep_flat[kind == 2]
    return keep


def _round_to(n: int, units: int, align: int) -> int:
    """n rounded to the nearest multiple of `align` within [0, units]; a block that is all kept
    (n == units) stays whole even when `units` is not a multiple."""
    if n >= units:
        return units
    return min(units - units % align, max(0, int(round(n / align)) * align))


def _resize(keep: torch.Tensor, density: torch.Tensor, n: int) -> torch.Tensor:
    """keep with exactly n True: the n highest-density units among the kept first, then the
    highest of the rest (a mask only grows or shrinks at its density boundary)."""
    dens = torch.nan_to_num(density.double().cpu(), nan=0.0)
    key = dens + keep.double() * (dens.abs().max() * 2 + 1)      # kept units rank above unkept ones
    out = torch.zeros_like(keep)
    out[torch.argsort(key, descending=True, stable=True)[:n]] = True
    return out


def align_keep(structure: Structure, keep: Keep, density: dict, align: int) -> Keep:
    """Round each FFN block's kept neurons and the kept hidden dims to a multiple of `align`.

    Why: CPU and GPU GEMM kernels are several times slower on widths like 383 or 215 than on
    384 or 216; measured on MiniLM-L6 (benchmarks/apt.py widths, one thread, interleaved),
    rounding one seed's widths to multiples of 8 raised the inference speedup from 1.8x/2.3x to
    2.7x/2.8x (batch 32/128) at a FLOPs limit of 2.5x. Blocks narrower than 8 x align (tiny test
    models) stay exact. Heads are whole units of head_dim and need no rounding. The size
    moves by at most align/2 units per block, a fraction of a percent of the budget.
    """
    if align <= 1:
        return keep
    for b in structure.ffn:
        k = keep.neuron[b.index]
        if b.units >= 8 * align:
            keep.neuron[b.index] = _resize(k, density["neuron"][b.index], _round_to(int(k.sum()), b.units, align))
    if structure.hidden >= 8 * align:
        keep.hidden = _resize(keep.hidden, density["hidden"], _round_to(int(keep.hidden.sum()), structure.hidden, align))
    return keep


def keep_size(structure: Structure, keep: Keep) -> int:
    """size() of the structure after applying keep (for checks and logs)."""
    d = int(keep.hidden.sum())
    w = sum(a.c * int(keep.head[a.index].sum()) for a in structure.attn) + \
        sum(b.c * int(keep.neuron[b.index].sum()) for b in structure.ffn)
    e = sum(a.e * int(keep.head[a.index].sum()) for a in structure.attn) + \
        sum(b.e * int(keep.neuron[b.index].sum()) for b in structure.ffn)
    return d * w + e + structure.f * d


# -- masks --------------------------------------------------------------------------------------
class MaskState:
    """Soft masks in [0, 1]: +-lr per window step towards the current selection, snap at pruning.

    Masks of units that stay at 1 are not handed to the family (an all-ones mask only costs
    time), so outside mask windows the model runs unmasked.
    """

    def __init__(self, structure: Structure, device=None):
        self.device = device
        self.reset(structure)

    def reset(self, structure: Structure) -> None:
        self.head = {a.index: torch.ones(a.units, device=self.device) for a in structure.attn}
        self.neuron = {b.index: torch.ones(b.units, device=self.device) for b in structure.ffn}
        self.hidden = torch.ones(structure.hidden, device=self.device)
        self.group = {a.index: a.group for a in structure.attn}

    def _all(self):
        yield from (("head", b, m) for b, m in self.head.items())
        yield from (("neuron", b, m) for b, m in self.neuron.items())
        yield ("hidden", None, self.hidden)

    def move(self, keep: Keep, lr: float) -> None:
        for kind, b, m in self._all():
            k = keep.hidden if kind == "hidden" else getattr(keep, kind)[b]
            step = torch.where(k.to(m.device), lr, -lr)
            m.add_(step).clamp_(0.0, 1.0)

    def snap(self, keep: Keep) -> None:
        for kind, b, m in self._all():
            k = keep.hidden if kind == "hidden" else getattr(keep, kind)[b]
            m.copy_(k.to(m.device, m.dtype))

    def is_binary(self) -> bool:
        return all(bool(((m == 0) | (m == 1)).all()) for _, _, m in self._all())

    def all_ones(self) -> bool:
        return all(bool((m == 1).all()) for _, _, m in self._all())

    def zero_units(self) -> dict:
        """Where masks are exactly 0 (virtually pruned units), as boolean vectors."""
        return {"head": {b: m == 0 for b, m in self.head.items()},
                "neuron": {b: m == 0 for b, m in self.neuron.items()},
                "hidden": self.hidden == 0}

    def as_keep(self) -> Keep:
        return Keep({b: m > 0 for b, m in self.head.items()}, {b: m > 0 for b, m in self.neuron.items()},
                    self.hidden > 0)

    def family_masks(self) -> dict:
        """Keyword arguments for family.set_masks(): only masks that are not all ones."""
        head = {b: m.clone() for b, m in self.head.items() if not bool((m == 1).all())}
        neuron = {b: m.clone() for b, m in self.neuron.items() if not bool((m == 1).all())}
        hidden = None if bool((self.hidden == 1).all()) else self.hidden.clone()
        return {"head_mask": head, "neuron_mask": neuron, "hidden_mask": hidden}


def unit_heads(unit_keep: torch.Tensor, group: int) -> list[int]:
    """Kept units (heads or kv groups) -> kept q-head indices."""
    units = torch.nonzero(unit_keep).flatten().tolist()
    return [u * group + j for u in units for j in range(group)]


# -- layout=uniform: rank slices across layers ------------------------------------------------
def _slices(dens: list, costs: list, aligned: bool):
    """Blocks of equal unit count -> per-slice salience and per-block unit order.

    Slice k holds the k-th most salient unit of every block (aligned: unit k of every block,
    ranked by the slice's total salience); its salience is the sum over blocks."""
    sal = torch.stack([d.double().cpu() * float(c) for d, c in zip(dens, costs)])   # [blocks, units]
    sal = torch.nan_to_num(sal, nan=0.0)
    if aligned:
        total = sal.sum(0)
        order = torch.argsort(total, descending=True, stable=True)
        per_block = order.unsqueeze(0).expand_as(sal)
        return total[order], per_block
    per_block = torch.argsort(sal, dim=1, descending=True, stable=True)
    return torch.gather(sal, 1, per_block).sum(0), per_block


def select_uniform(structure: Structure, density: dict, target: float, enabled=("head", "neuron", "hidden"),
                   hidden_rule: str | None = None, aligned_heads: bool = False,
                   hidden_keep: torch.Tensor | None = None) -> Keep:
    """The uniform selection (see _select_slices). With hidden_rule "heads_x_head_dim" a head
    slice also takes head_dim hidden dims, so one slice is a large share of the budget (a
    MiniLM head slice ~8%) and a greedy prefix can stop far below the target; there the number
    of head slices is enumerated (each with the rest filled in density order) and the choice
    that keeps the most salience within the budget wins."""
    if hidden_rule != "heads_x_head_dim" or not structure.attn or "head" not in enabled or "hidden" not in enabled:
        return _select_slices(structure, density, target, enabled, hidden_rule, aligned_heads, hidden_keep)[0]
    best = None
    for h in range(1, structure.attn[0].units + 1):
        keep, sal, size = _select_slices(structure, density, target, enabled, hidden_rule, aligned_heads, None, h)
        if size <= target and (best is None or sal > best[1]):
            best = (keep, sal)
    return best[0] if best is not None else _select_slices(structure, density, target, enabled, hidden_rule,
                                                           aligned_heads, None, 1)[0]


def _select_slices(structure: Structure, density: dict, target: float, enabled, hidden_rule, aligned_heads,
                   hidden_keep=None, head_count: int | None = None):
    """select() with equal head / neuron counts in every layer (a stock-config layout).

    The units of the one density ranking are slices across layers instead of single heads /
    neurons: slice k of a type is the k-th most salient unit of every block of that type
    (cost: the sum of those units' costs; salience: the sum of theirs), so the same sort and
    binary search over prefix sizes apply and every prefix keeps equal counts per layer.
    Hidden dims stay single units, except with hidden_rule "heads_x_head_dim" (BERT), where
    the r-th head slice carries the r-th run of head_dim most salient hidden dims, so that
    hidden == heads x head_dim holds for every prefix. "multiple_of_heads" (LLaMA) rounds the
    kept hidden dims down to a multiple of the kept q heads and refills the freed budget.
    The most salient head slice is always kept (a stock config needs >= 1 head). head_count:
    keep exactly that many head slices. Returns (keep, kept salience, size).
    """
    from prunelab.errors import PrunelabError

    attn, ffn, D = structure.attn, structure.ffn, structure.hidden
    for name, blocks in (("attention", attn), ("FFN", ffn)):
        if len({b.units for b in blocks}) > 1:
            raise PrunelabError(f"layout=uniform needs equal {name} widths in every layer, got "
                                f"{[b.units for b in blocks]}")
    costs = structure.unit_costs()
    coupled = hidden_rule == "heads_x_head_dim" and bool(attn)
    hid_dens = torch.nan_to_num(density["hidden"].double().cpu(), nan=0.0)
    if hidden_keep is not None:           # hidden decided by the caller: fixed, not searched
        hid_dens = torch.where(hidden_keep.cpu(), torch.full_like(hid_dens, float("inf")), hid_dens)
    hid_order = torch.argsort(hid_dens, descending=True, stable=True)
    hid_sal = hid_dens[hid_order] * float(costs["hidden"])

    dens, cw, ce, dd, forced, kind, sal = [], [], [], [], [], [], []
    if attn:
        h_sal, h_per = _slices([density["head"][a.index] for a in attn], [costs["head"][a.index] for a in attn],
                               aligned_heads)
        n = h_sal.numel()
        w, e = float(sum(a.c for a in attn)), float(sum(a.e for a in attn))
        cost = sum(costs["head"][a.index] for a in attn)
        if coupled:
            chunk = hid_sal[:n * attn[0].head_dim].view(n, -1).sum(1) if n * attn[0].head_dim <= D else None
            if chunk is None or n * attn[0].head_dim != D:
                raise PrunelabError(f"layout=uniform: hidden ({D}) != heads x head_dim ({n} x {attn[0].head_dim})")
            dens.append((h_sal + chunk) / (cost + attn[0].head_dim * costs["hidden"]))
            sal.append(h_sal + chunk)
        else:
            dens.append(h_sal / max(1.0, cost))
            sal.append(h_sal)
        cw.append(torch.full((n,), w, dtype=torch.float64))
        ce.append(torch.full((n,), e, dtype=torch.float64))
        dd.append(torch.full((n,), float(attn[0].head_dim if coupled else 0), dtype=torch.float64))
        f = torch.full((n,), "head" not in enabled or (coupled and ("hidden" not in enabled or hidden_keep is not None)))
        f[0] = True
        if head_count is not None:
            f[:head_count] = True
        forced.append(f)
        kind.append(torch.zeros(n, dtype=torch.long))
    if ffn:
        n_sal, n_per = _slices([density["neuron"][b.index] for b in ffn], [costs["neuron"][b.index] for b in ffn], False)
        n = n_sal.numel()
        cost = sum(costs["neuron"][b.index] for b in ffn)
        dens.append(n_sal / max(1.0, cost))
        sal.append(n_sal)
        cw.append(torch.full((n,), float(sum(b.c for b in ffn)), dtype=torch.float64))
        ce.append(torch.full((n,), float(sum(b.e for b in ffn)), dtype=torch.float64))
        dd.append(torch.zeros(n, dtype=torch.float64))
        forced.append(torch.full((n,), "neuron" not in enabled))
        kind.append(torch.ones(n, dtype=torch.long))
    if not coupled:
        dens.append(hid_dens[hid_order] if hidden_keep is None else hid_dens[hid_order].clamp(max=0))
        sal.append(torch.nan_to_num(hid_sal, posinf=0.0))
        cw.append(torch.zeros(D, dtype=torch.float64))
        ce.append(torch.zeros(D, dtype=torch.float64))
        dd.append(torch.ones(D, dtype=torch.float64))
        fh = torch.full((D,), "hidden" not in enabled)
        if hidden_keep is not None:       # kept dims forced in, the others left out of the search
            fh = hidden_keep.cpu()[hid_order].clone()
        forced.append(fh)
        kind.append(torch.full((D,), 2, dtype=torch.long))

    dens_all, kind_all = torch.cat(dens), torch.cat(kind)
    cw, ce, dd, fixed = torch.cat(cw), torch.cat(ce), torch.cat(dd), torch.cat(forced)
    excluded = torch.zeros_like(fixed)
    if hidden_keep is not None and not coupled:
        excluded = (kind_all == 2) & ~fixed
    if head_count is not None:
        excluded = excluded | ((kind_all == 0) & ~fixed)
    w0, e0, d0 = float(cw[fixed].sum()), float(ce[fixed].sum()), float(dd[fixed].sum())
    free = torch.nonzero(~fixed & ~excluded).flatten()
    order = free[torch.argsort(dens_all[free], descending=True, stable=True)]
    w, e, d = w0 + cw[order].cumsum(0), e0 + ce[order].cumsum(0), d0 + dd[order].cumsum(0)
    base = torch.tensor([d0 * w0 + e0 + structure.f * d0], dtype=torch.float64)
    sizes = torch.cat([base, d * w + e + structure.f * d])
    n_keep = int(torch.searchsorted(sizes, torch.tensor([float(target)], dtype=torch.float64), right=True)) - 1
    keep_flat = fixed.clone()
    n_keep = max(0, n_keep)
    keep_flat[order[:n_keep]] = True
    # Slices are coarse (a head slice of BERT-base is ~8% of the budget): after the prefix, add
    # the later units that still fit, in density order. Every slice of a type has the same
    # cost, so only the counts matter and skipping one slice for a later one is harmless.
    cur = (float(w[n_keep - 1]), float(e[n_keep - 1]), float(d[n_keep - 1])) if n_keep else (w0, e0, d0)
    cwl, cel, ddl = cw.tolist(), ce.tolist(), dd.tolist()
    for j in order[n_keep:].tolist():
        nw, ne, nd = cur[0] + cwl[j], cur[1] + cel[j], cur[2] + ddl[j]
        if nd * nw + ne + structure.f * nd <= float(target):
            keep_flat[j] = True
            cur = (nw, ne, nd)

    keep = Keep({}, {}, torch.zeros(D, dtype=torch.bool))
    n_heads = int(keep_flat[kind_all == 0].sum()) if attn else 0
    for i, a in enumerate(attn):
        k = torch.zeros(a.units, dtype=torch.bool)
        k[h_per[i, :n_heads]] = True
        keep.head[a.index] = k
    for i, b in enumerate(ffn):
        k = torch.zeros(b.units, dtype=torch.bool)
        k[n_per[i, :int(keep_flat[kind_all == 1].sum())]] = True
        keep.neuron[b.index] = k
    if coupled:
        keep.hidden[hid_order[:n_heads * attn[0].head_dim]] = True
    else:
        keep.hidden[hid_order[keep_flat[kind_all == 2]]] = True
    if hidden_rule == "multiple_of_heads" and attn:
        q_heads = n_heads * attn[0].group
        kept = int(keep.hidden.sum())
        if q_heads and kept % q_heads:
            if hidden_keep is None:       # round down, then refill the freed budget once
                hk = torch.zeros(D, dtype=torch.bool)
                hk[hid_order[:kept - kept % q_heads]] = True
                return _select_slices(structure, density, target, enabled, hidden_rule, aligned_heads, hk)
            # the refill changed the head count: drop hidden dims down to a multiple
            keep.hidden[:] = False
            keep.hidden[hid_order[:kept - kept % q_heads]] = True
    return keep, float(torch.cat(sal)[keep_flat].sum()), keep_size(structure, keep)
