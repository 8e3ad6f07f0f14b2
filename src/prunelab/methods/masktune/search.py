"""Mask search under a MAC or parameter budget (Kwon et al. 2022, `search_mac`).

Heads and neurons are ranked globally by Fisher information, each type separately. For every
possible number of kept heads k, the rest of the budget is filled with the top neurons; the k
whose kept set carries the most total Fisher wins. Costs come from the family adapter's
blocks, so BERT's uniform costs reproduce the original exactly, and blocks of different sizes
(GQA groups, gated FFNs, T5 cross-attention) are budgeted by their own cost.
"""
from __future__ import annotations

import torch


def head_unit_macs(block, seq_len: float) -> float:
    """MACs of one head unit of `block` for one sequence of length s. Kwon's mac_per_head is
    3*s*d*dh (q, k, v) + 2*s^2*dh (scores, context) + s*dh*d (output projection); a GQA unit is
    one kv head (k, v once) with its group of q heads (q, scores, context, o per q head)."""
    dh, g = block.head_dim, block.group_size
    d_in, d_out = block.q.in_features, block.o.out_features
    return (g * seq_len * d_in * dh + 2 * seq_len * d_in * dh + g * 2 * seq_len * seq_len * dh
            + g * seq_len * dh * d_out)


def neuron_macs(block, seq_len: float) -> float:
    """MACs of one FFN neuron: one row of every input projection plus one column of down
    (Kwon's mac_per_neuron = 2*s*d; 3*s*d for gated FFNs)."""
    return seq_len * (sum(u.in_features for u in block.up) + block.down.out_features)


def unit_costs(family, constraint: str, seq_len: float | None = None):
    """Per-block cost of one head unit / one neuron: two lists of floats. Parameter costs come
    from the family adapter (weights and biases of the rows/columns a unit owns)."""
    if constraint == "mac":
        if seq_len is None:
            raise ValueError("a MAC constraint needs seq_len")
        return ([head_unit_macs(b, seq_len) for b in family.attention_blocks()],
                [neuron_macs(b, seq_len) for b in family.ffn_blocks()])
    costs = family.block_param_costs()
    return [float(c) for c in costs["head"]], [float(c) for c in costs["neuron"]]


def total_cost(head_masks, neuron_masks, head_cost, neuron_cost) -> float:
    """Cost of what a mask set keeps (nonzero entries count, whatever their value)."""
    return (sum(float((m != 0).sum()) * c for m, c in zip(head_masks, head_cost))
            + sum(float((m != 0).sum()) * c for m, c in zip(neuron_masks, neuron_cost)))


def search(head_fisher: list[torch.Tensor], neuron_fisher: list[torch.Tensor],
           head_cost: list[float], neuron_cost: list[float], keep_ratio: float):
    """0/1 masks (lists per block) keeping the most Fisher within keep_ratio of the dense cost."""
    dense = (sum(f.numel() * c for f, c in zip(head_fisher, head_cost))
             + sum(f.numel() * c for f, c in zip(neuron_fisher, neuron_cost)))
    budget = keep_ratio * dense

    def flat(fishers, costs):
        imp = torch.cat([f.double().flatten() for f in fishers]) if fishers else torch.zeros(0, dtype=torch.float64)
        cost = torch.cat([torch.full((f.numel(),), float(c), dtype=torch.float64) for f, c in zip(fishers, costs)]) \
            if fishers else torch.zeros(0, dtype=torch.float64)
        imp_sorted, order = imp.sort(descending=True, stable=True)
        zero = torch.zeros(1, dtype=torch.float64)
        return order, torch.cat([zero, imp_sorted.cumsum(0)]), torch.cat([zero, cost[order].cumsum(0)])

    h_order, h_imp, h_cost = flat(head_fisher, head_cost)
    n_order, n_imp, n_cost = flat(neuron_fisher, neuron_cost)
    # for each head count k (0..all), the most neurons that fit in the remaining budget
    remaining = budget - h_cost
    feasible = remaining >= -1e-9 * max(1.0, budget)
    n_fit = torch.searchsorted(n_cost, remaining.clamp(min=0) * (1 + 1e-12), right=True) - 1
    n_fit = n_fit.clamp(min=0)
    total = h_imp + n_imp[n_fit]
    total[~feasible] = -float("inf")
    # first maximum, like the original's strict ">" scan (it starts at one head; k=0 is only
    # chosen when no head fits at all)
    candidates = total.clone()
    if candidates.numel() > 1 and torch.isfinite(candidates[1:]).any():
        candidates[0] = -float("inf")
    k = int(torch.argmax(candidates))
    n = int(n_fit[k])

    def unflat(order, count, fishers):
        keep = torch.zeros(sum(f.numel() for f in fishers), dtype=torch.float32)
        keep[order[:count]] = 1.0
        out, start = [], 0
        for f in fishers:
            out.append(keep[start:start + f.numel()].view_as(f).clone())
            start += f.numel()
        return out

    return unflat(h_order, k, head_fisher), unflat(n_order, n, neuron_fisher)


def search_uniform(head_fisher: list[torch.Tensor], neuron_fisher: list[torch.Tensor],
                   head_cost: list[float], neuron_cost: list[float], keep_ratio: float, aligned: bool = False,
                   keep_heads: bool = False):
    """search() over slices across layers, so that every layer keeps the same number of heads
    and of neurons: slice k of a type is the k-th highest-Fisher unit of every block (aligned:
    unit k of every block), with the summed Fisher and the summed cost of its units. The same
    search then picks the number of head slices and neuron slices; each block keeps its top
    units. Needs equal unit counts per block of a type (dense models).

    keep_heads: every head is kept and only neurons are searched, with the heads' cost taken
    from the budget (BERT: Mask Tuning does not prune hidden dims, and a stock BertConfig needs
    hidden == heads x head_dim, so heads cannot go)."""
    def slices(fishers, costs, aligned):
        if not fishers:
            return [], [], []
        if len({f.numel() for f in fishers}) > 1:
            from prunelab.errors import PrunelabError
            raise PrunelabError(f"layout=uniform needs equal widths per layer, got {[f.numel() for f in fishers]}")
        f = torch.stack([x.double().flatten().cpu() for x in fishers])
        per = (torch.argsort(f.sum(0), descending=True, stable=True).unsqueeze(0).expand_as(f) if aligned
               else torch.argsort(f, dim=1, descending=True, stable=True))
        return [torch.gather(f, 1, per).sum(0)], [float(sum(costs))], per

    hs, hc, h_per = slices(head_fisher, head_cost, aligned)
    ns, nc, n_per = slices(neuron_fisher, neuron_cost, False)
    if keep_heads:
        h_total = sum(f.numel() * c for f, c in zip(head_fisher, head_cost))
        n_total = sum(f.numel() * c for f, c in zip(neuron_fisher, neuron_cost))
        ratio = (keep_ratio * (h_total + n_total) - h_total) / max(n_total, 1e-12)
        if ratio < 0:
            from prunelab.errors import PrunelabError
            raise PrunelabError(f"layout=uniform keeps every head here; sparsity {1 - keep_ratio:.2f} needs more "
                                "than all the FFN neurons")
        _, n_keep = search([], ns, [], nc, ratio)
        return [torch.ones_like(f) for f in head_fisher], unslice_(neuron_fisher, n_keep, n_per)
    h_keep, n_keep = search(hs, ns, hc, nc, keep_ratio)

    return unslice_(head_fisher, h_keep, h_per), unslice_(neuron_fisher, n_keep, n_per)


def unslice_(fishers, keep, per):
    """Slice masks -> per-block masks keeping each block's top `count` units."""
    out = []
    count = int(keep[0].sum()) if keep else 0
    for i, f in enumerate(fishers):
        m = torch.zeros(f.numel(), dtype=torch.float32)
        m[per[i, :count]] = 1.0
        out.append(m.view_as(f).to(f.device))
    return out
