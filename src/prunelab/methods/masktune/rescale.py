"""Per-layer least-squares rescaling of the kept mask values (Kwon et al. 2022, "mask tuning").

After the search, the pruned model's sublayer outputs drift from the original's. Layer by layer
(in forward order), the nonzero mask values of one attention block (or FFN) are multiplied by
scales s that make the student's sublayer output plus residual reconstruct a teacher's:

    min_s || sum_u s_u A_u + bias + residual_student - (output + residual)_teacher ||^2

where A_u is unit u's contribution to the output projection (head context @ its o columns, or
neuron activation * its down column). The teacher is the same model under masks found at the
intermediate constraint sqrt(target) (Kwon: get_pruning_schedule(target, 2)[0]); students
inherit the scales of earlier layers, so later layers also correct upstream drift.

As in the original: tokens are the unpadded ones (the classifier's [CLS] only for the last
FFN of an encoder classifier); the normal equations A^T A, A^T B are accumulated over the
sample and solved with LSMR on x - 1 with damp=1 (a pull towards "no change"); head systems
carry an extra all-ones column (a free offset, dropped afterwards); the first layer's heads
are never rescaled; a failed solve or any scale outside [-10, 10] stops rescaling there.

Family-independent capture: the value "output + residual" is the input of the first norm
module that runs after the output projection (BERT: the sublayer's post-LN; pre-LN LLaMA/T5:
the next sublayer's norm or the final norm), so the residual is recovered as that input minus
the projection's output, for every family, without knowing its module names.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class _Stop(Exception):
    """Raised from a hook once the wanted activations are captured: the rest of the forward is wasted work."""


def is_norm(m: nn.Module) -> bool:
    name = type(m).__name__
    return isinstance(m, nn.LayerNorm) or name.endswith("LayerNorm") or name.endswith("RMSNorm")


class Capture:
    """For one projection module: its (masked) input, its output, and the input of the first
    norm that runs after it; the forward stops there."""

    def __init__(self, model: nn.Module, module: nn.Module):
        self.model, self.module = model, module
        self.handles = [module.register_forward_hook(self._on_module)]
        self.handles += [m.register_forward_pre_hook(self._on_norm) for m in model.modules() if is_norm(m)]
        self.armed = False

    def _on_module(self, mod, args, out):
        if self.armed:
            return
        self.x = args[0].detach()
        self.out = (out[0] if isinstance(out, tuple) else out).detach()
        self.armed = True

    def _on_norm(self, mod, args):
        if self.armed and self.target is None:
            self.target = args[0].detach()
            raise _Stop

    def run(self, batch: dict):
        self.armed, self.x, self.out, self.target = False, None, None, None
        try:
            self.model(**batch)
        except _Stop:
            pass
        return self.x, self.out, self.target

    def remove(self):
        for h in self.handles:
            h.remove()


def forward_order(model, family, batch) -> list[tuple[str, int]]:
    """('head', attention block) / ('neuron', FFN block) units in the order the forward runs them."""
    attn, ffn = family.attention_blocks(), family.ffn_blocks()
    order, handles = [], []

    def mark(unit):
        def hook(*_):
            if unit not in order:
                order.append(unit)
        return hook

    handles += [b.o.register_forward_hook(mark(("head", i))) for i, b in enumerate(attn)]
    handles += [f.down.register_forward_hook(mark(("neuron", i))) for i, f in enumerate(ffn)]
    try:
        with torch.no_grad():
            model(**batch)
    finally:
        for h in handles:
            h.remove()
    return order


def _tokens(t: torch.Tensor, batch: dict, cls_only: bool) -> torch.Tensor:
    """[B, S, D] -> [tokens, D]: [CLS] only, or the unpadded tokens (all when shapes differ, e.g. a decoder)."""
    if cls_only:
        return t[:, 0]
    am = batch.get("attention_mask")
    if am is not None and t.dim() == 3 and tuple(am.shape) == tuple(t.shape[:2]):
        return t[am.bool()]
    return t.reshape(-1, t.shape[-1])


def solve(ata: torch.Tensor, atb: torch.Tensor, damp: float = 1.0):
    """LSMR on the normal equations for x - 1 (regularised towards the unscaled mask), as the
    original's lsmr_cupy_solver. Returns (x, ok)."""
    from scipy.sparse.linalg import lsmr

    a = ata.double().cpu().numpy()
    b = (atb.double() - ata.double().sum(1)).cpu().numpy()
    if a.shape[0] == 1:
        y = b / a[0, 0] if a[0, 0] != 0 else np.zeros(1)
        ok = bool(np.isfinite(y).all())
    else:
        y, istop = lsmr(a, b, damp=damp, maxiter=100000)[:2]
        ok = istop < 3 and bool(np.isfinite(y).all())   # 0-2: solved; >= 3: ill-conditioned / no convergence
    return torch.from_numpy(np.asarray(y) + 1.0), ok


def _sq_error(ata, atb, btb, s):
    """||A s - B||^2 from the accumulated normal equations."""
    s = s.double()
    return float(s @ ata @ s - 2 * s @ atb + btb)


@torch.no_grad()
def accumulate(model, family, unit, batches, teacher_masks, student_masks, cls_only_last=False, last_unit=None):
    """A^T A, A^T B, B^T B of one unit's least-squares system, and its kept indices."""
    kind, i = unit
    head_s, neuron_s = student_masks
    blocks = family.attention_blocks() if kind == "head" else family.ffn_blocks()
    blk = blocks[i]
    proj = blk.o if kind == "head" else blk.down
    mask = (head_s if kind == "head" else neuron_s)[i]
    kept = torch.nonzero(mask != 0).flatten()
    k = kept.numel()
    extra = 1 if kind == "head" else 0     # the original's all-ones (offset) column for heads
    ata = torch.zeros(k + extra, k + extra, dtype=torch.float64)
    atb = torch.zeros(k + extra, dtype=torch.float64)
    btb = 0.0
    cls_only = cls_only_last and unit == last_unit
    cap = Capture(model, proj)
    w = proj.weight.detach().double()                     # [D, in]
    bias = proj.bias.detach().double() if proj.bias is not None else 0.0
    if kind == "neuron":
        wk = w[:, kept]                                   # [D, k] down columns of the kept neurons
        wtw = wk.t() @ wk                                 # batch-independent half of A^T A
    try:
        for batch in batches:
            family.set_masks(head_mask=dict(enumerate(teacher_masks[0])), neuron_mask=dict(enumerate(teacher_masks[1])))
            _, _, t_target = cap.run(batch)
            family.set_masks(head_mask=dict(enumerate(head_s)), neuron_mask=dict(enumerate(neuron_s)))
            x, out, s_target = cap.run(batch)
            if t_target is None or s_target is None:
                raise RuntimeError("no norm runs after the projection: cannot recover the residual")
            residual = _tokens(s_target - out, batch, cls_only).double()
            target = _tokens(t_target, batch, cls_only).double()
            x = _tokens(x, batch, cls_only).double()
            b = target - bias - residual                  # [N, D]
            btb += float(b.pow(2).sum())
            if kind == "head":
                n, dh, g = x.shape[0], blk.head_dim, blk.group_size
                nq = x.shape[1] // dh
                per_head = torch.einsum("nqd,eqd->qne", x.view(n, nq, dh), w.view(w.shape[0], nq, dh))
                per_unit = per_head.view(nq // g, g, n, -1).sum(1)[kept]      # [k, N, D]
                ata[:k, :k] += torch.einsum("kne,jne->kj", per_unit, per_unit)
                ata[:k, k] += per_unit.sum((1, 2))
                ata[k, :k] += per_unit.sum((1, 2))
                ata[k, k] += b.numel()
                atb[:k] += torch.einsum("kne,ne->k", per_unit, b)
                atb[k] += b.sum()
            else:
                a = x[:, kept]                            # [N, k] activations
                # A = [a_n * w_n for kept n] flattened over (token, output): A^T A = (a^T a) o (W^T W)
                ata += (a.t() @ a) * wtw
                atb += ((b @ wk) * a).sum(0)
    finally:
        cap.remove()
        family.clear_masks()
    return ata, atb, btb, kept


@torch.no_grad()
def rescale_masks(model, family, batches, teacher_masks, student_masks, *, damp=1.0, bound=10.0,
                  on_bad="stop", skip_first_layer_heads=True, cls_only_last=False):
    """Rescale the nonzero values of student masks ([head unit masks], [neuron masks]) in
    forward order. Returns (head_masks, neuron_masks, report): one report entry per unit with
    the reconstruction error before and after and the status."""
    head_s = [m.detach().clone().float() for m in student_masks[0]]
    neuron_s = [m.detach().clone().float() for m in student_masks[1]]
    teacher = ([m.detach().float() for m in teacher_masks[0]], [m.detach().float() for m in teacher_masks[1]])
    was_training = model.training
    model.eval()
    order = forward_order(model, family, batches[0])
    last_unit = order[-1] if order else None
    attn = family.attention_blocks()
    report = []
    try:
        for unit in order:
            kind, i = unit
            masks = head_s if kind == "head" else neuron_s
            entry = {"unit": kind, "block": i, "layer": (attn[i].layer if kind == "head" else family.ffn_blocks()[i].layer)}
            if int((masks[i] != 0).sum()) == 0:
                report.append({**entry, "status": "empty"})
                continue
            if kind == "head" and skip_first_layer_heads and entry["layer"] == 0:
                report.append({**entry, "status": "skipped_first_layer"})
                continue
            ata, atb, btb, kept = accumulate(model, family, unit, batches, teacher, (head_s, neuron_s),
                                             cls_only_last, last_unit)
            k = kept.numel()
            x, ok = solve(ata, atb, damp)
            scales = x[:k]
            before = _sq_error(ata[:k, :k], atb[:k], btb, torch.ones(k, dtype=torch.float64))
            entry.update(err_before=before, kept=k)
            if not ok or scales.max() > bound or scales.min() < -bound:
                entry.update(status="failed" if not ok else "out_of_bounds",
                             scale_min=float(scales.min()), scale_max=float(scales.max()))
                report.append(entry)
                if on_bad == "stop":
                    break
                continue
            entry.update(status="rescaled", err_after=_sq_error(ata[:k, :k], atb[:k], btb, scales),
                         scale_min=float(scales.min()), scale_max=float(scales.max()))
            masks[i][kept] = masks[i][kept] * scales.to(masks[i].dtype).to(masks[i].device)
            report.append(entry)
    finally:
        family.clear_masks()
        model.train(was_training)
    return head_s, neuron_s, report
