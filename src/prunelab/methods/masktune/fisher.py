"""Fisher information of head and neuron masks (Kwon et al. 2022, `collect_mask_grads`).

All masks start at 1 and are attached with the family adapter's mask hooks; one backward per
mini-batch of the sample gives the mask gradients. The diagonal empirical Fisher of an element
is the sum over mini-batches of its squared gradient. The per-batch gradient vectors are kept:
the rearrangement step needs them, not just their squared sums.
"""
from __future__ import annotations

import random

import torch


def sample_batches(task, tokenizer, features: list, num_samples: int, batch_size: int, seed: int, device) -> list[dict]:
    """`num_samples` training features (seeded), collated into batches on `device`. Length
    bucketing keeps padding low; every later pass (Fisher, rescaling) reuses the same batches."""
    rng = random.Random(seed)
    idx = sorted(rng.sample(range(len(features)), min(num_samples, len(features))))
    chosen = [features[i] for i in idx]
    out = []
    for group in task.batches(chosen, batch_size, shuffle=True, seed=seed, bucket=True):
        out.append({k: v.to(device) for k, v in task.collate(group, tokenizer).items()})
    return out


def mean_length(batches: list[dict]) -> float:
    """Mean true (unpadded) sequence length: the sequence length of Kwon's MAC accounting."""
    tokens = sum(float(b["attention_mask"].sum()) for b in batches)
    seqs = sum(b["attention_mask"].shape[0] for b in batches)
    return tokens / max(1, seqs)


def collect_mask_grads(model, family, batches: list[dict]):
    """Per-batch gradients of the loss w.r.t. all-ones head-unit and neuron masks.

    Returns (head_grads, neuron_grads): one [num_batches, units] tensor per block."""
    attn, ffn = family.attention_blocks(), family.ffn_blocks()
    device = next(model.parameters()).device
    head = [torch.ones(b.num_units, device=device, requires_grad=True) for b in attn]
    neuron = [torch.ones(f.size, device=device, requires_grad=True) for f in ffn]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    head_grads = [[] for _ in attn]
    neuron_grads = [[] for _ in ffn]
    try:
        for p, _ in flags:               # only the masks need gradients: cheaper backward
            p.requires_grad_(False)
        model.eval()                     # no dropout, as in the original
        family.set_masks(head_mask=dict(enumerate(head)), neuron_mask=dict(enumerate(neuron)))
        for batch in batches:
            loss = model(**batch).loss
            grads = torch.autograd.grad(loss, head + neuron, allow_unused=True)
            for i, g in enumerate(grads[:len(head)]):
                head_grads[i].append(torch.zeros_like(head[i]) if g is None else g.detach())
            for i, g in enumerate(grads[len(head):]):
                neuron_grads[i].append(torch.zeros_like(neuron[i]) if g is None else g.detach())
    finally:
        family.clear_masks()
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)
    stack = lambda gs: torch.stack(gs).cpu() if gs else torch.zeros(0)  # noqa: E731
    return [stack(g) for g in head_grads], [stack(g) for g in neuron_grads]


def fisher(grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """Diagonal empirical Fisher: sum over mini-batches of squared gradients."""
    return [g.double().pow(2).sum(0) for g in grads]
