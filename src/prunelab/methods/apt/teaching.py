"""The self-distillation lifecycle of APT, in one object: teacher creation, (re)snapshots,
hidden-state capture, the layer transform Tr, the loss, and keeping all of it in step with
the student's pruning.

Invariant: whatever replaces a trainable parameter (Tr's LoRA factors are re-created when the
teacher's width changes) is followed by ``state.rebuild_optimizer()`` in the same call, so
the optimizer always holds exactly the model's live trainable parameters -- at pruning steps
(``on_hidden_pruned`` runs inside the plugin's pruning step, which rebuilds) and at teacher
re-snapshots taken from ``on_eval`` or ``begin_step`` (which rebuild here).

Teachers (see distill.py):
- "self" (default, the paper's): ``SharedTeacher`` -- frozen copies of the adapters and task
  head over the student's own frozen weights, which are pruned together with the student;
  nothing else is held in memory.
- "self_snapshot": ``SnapshotTeacher(share=True)`` -- a structural copy that shares the frozen
  tensors copy-on-prune (after pruning it keeps the weights the student dropped).
- "self_copy": ``SnapshotTeacher(share=False)`` -- a full frozen copy.
- "ft_teacher" / "lora_teacher": ``FrozenTeacher``, a separately trained model.
"""
from __future__ import annotations

import random

import torch

from prunelab.methods.apt import distill as D
from prunelab.methods.apt.adapter import LayerTransform

REFRESHING = ("self", "self_snapshot", "self_copy")


class Distiller:
    def __init__(self, plugin, external_teacher=None):
        self.p = plugin
        cfg, fam = plugin.cfg, plugin.family
        self.cfg, self.family, self.model = cfg, fam, plugin.model
        self.enabled = cfg.distill != "none"
        self.capture = D.LayerCapture()
        self.capture.install([fam.layer_outputs_module(i) for i in range(fam.num_layers)])
        self.stacks = self._stacks()
        self.teacher = None
        self.hidden_ids = torch.arange(fam.hidden_size)   # original indices of the student's live hidden dims
        self.tr_out_ids = torch.arange(fam.hidden_size)   # Tr's output rows = these teacher dims
        self.mu, self.distilling = 0.0, False
        self.best = None
        self.ft_ema = None          # EMA of the student's label loss (every step)
        self.teacher_ft = None      # ft_ema when the teacher was last taken
        self.step_log: dict = {}
        self.layer_rng = random.Random(7919 + plugin.seed)
        if not self.enabled:
            return
        if cfg.distill == "self":
            self.teacher = D.SharedTeacher(plugin.adapters, plugin.head_names)
        elif cfg.distill in ("self_snapshot", "self_copy"):
            self.teacher = D.SnapshotTeacher(share=cfg.distill == "self_snapshot")
        elif external_teacher is not None:
            self.teacher = D.FrozenTeacher(external_teacher, self.layer_names(), cfg.distill)
        if cfg.layer_loss:
            plugin.apt.transform = LayerTransform(fam.hidden_size, cfg.transform_rank, cfg.scaling,
                                                  device=next(self.model.parameters()).device)

    @property
    def transform(self):
        return self.p.apt.transform

    def _stacks(self) -> list[list[int]]:
        """Layer indices per stack: encoder and decoder for T5 (decoder layers have cross-attention)."""
        n = self.family.num_layers
        dec = sorted({b.layer for b in self.family.attention_blocks() if b.kind == "cross"})
        enc = [i for i in range(n) if i not in dec]
        return [s for s in (enc, dec) if s]

    def layer_names(self) -> list[str]:
        names = {id(m): n for n, m in self.model.named_modules()}
        return [names[id(self.family.layer_outputs_module(i))] for i in range(self.family.num_layers)]

    # -- per step ----------------------------------------------------------------------------
    def begin_step(self, state, t: int, plan) -> None:
        self.mu = plan.mu(t) if self.enabled else 0.0
        if self.enabled and plan.distilling(t) and not self.ready:
            self.take_teacher(state)
        elif (self.enabled and self.cfg.teacher_refresh == "train_loss" and self.cfg.distill in REFRESHING
              and self.ready and plan.distilling(t) and t in plan.steps and self.ft_ema is not None
              and self.teacher_ft is not None and self.ft_ema < self.teacher_ft):
            # the code's momentum teacher is re-taken before every pruning step whose dev score
            # improved; without a dev pass there, the student's label-loss EMA stands in for it
            self.take_teacher(state)
        self.distilling = self.mu > 0 and self.teacher is not None
        self.capture.store = {} if (self.distilling and self.cfg.layer_loss) else None

    @property
    def ready(self) -> bool:
        return self.teacher is not None and self.teacher.ready

    def take_teacher(self, state) -> None:
        """(Re)take the self-distillation teacher from the current student."""
        self.teacher_ft = self.ft_ema
        if isinstance(self.teacher, D.SnapshotTeacher):
            self.teacher.snapshot(self.model, self.p.adapter_names(), self.layer_names(), self.p.adapters,
                                  self.hidden_ids)
            tr = self.transform
            if tr is not None and not torch.equal(self.tr_out_ids, self.hidden_ids):
                # the new teacher is as wide as the student now: Tr's output rows follow it, and
                # the new LoRA factors must be in the optimizer
                pos = torch.searchsorted(self.tr_out_ids, self.hidden_ids)
                tr.prune_out(pos)
                self.tr_out_ids = self.hidden_ids.clone()
                if state is not None:
                    state.rebuild_optimizer()
        elif isinstance(self.teacher, D.SharedTeacher):
            self.teacher.snapshot(self.model)

    def on_eval(self, state, score, higher_is_better: bool, plan) -> None:
        """The paper's momentum teacher: re-take it whenever the dev score improves."""
        if score is None or self.cfg.distill not in REFRESHING or self.teacher is None:
            return
        better = self.best is None or (score > self.best if higher_is_better else score < self.best)
        if not better:
            return
        self.best = score
        # before distillation the first teacher is taken at its start; after it, none is used
        if self.teacher.ready and plan.distilling(state.step):
            self.take_teacher(state)

    # -- loss --------------------------------------------------------------------------------
    def loss(self, state, loss, masks_kw: dict | None, surviving: dict, kind: str):
        student_hidden = self.capture.store
        self.capture.store = None
        v = float(loss.detach())
        self.ft_ema = v if self.ft_ema is None else 0.9 * self.ft_ema + 0.1 * v
        if not self.distilling:
            return loss
        cfg, batch = self.cfg, state.batch
        t_out, t_hidden = self.teacher.forward(self.model, batch, self.family, self.capture, masks_kw)
        l_pred = D.prediction_loss(state.outputs, t_out, kind, cfg.temperature, batch)
        l_layer = self._layer_loss(student_hidden or {}, t_hidden, batch, surviving) if cfg.layer_loss \
            else loss.new_zeros(())
        l_distill = cfg.pred_weight_for(kind) * l_pred + cfg.layer_weight * l_layer
        state.log.update({"apt_mu": round(self.mu, 4), "apt_l_pred": float(l_pred.detach()),
                          "apt_l_layer": float(l_layer.detach()), "apt_l_ft": float(loss.detach())})
        return self.mu * l_distill + (1 - self.mu) * loss

    def _layer_loss(self, s_hidden: dict, t_hidden: dict, batch: dict, surviving: dict) -> torch.Tensor:
        tr = self.transform
        losses = []
        for si, layers in enumerate(self.stacks):
            mask = batch.get("attention_mask") if si == 0 else batch.get("decoder_attention_mask")

            def mse(t, s, mask=mask):
                return D.masked_mse(tr(s_hidden[s]), t_hidden[t], mask)

            teacher_layers = [i for i in D.quarter_layers(layers, self.layer_rng) if i in t_hidden]
            pairs = D.map_layers(teacher_layers, layers, surviving,
                                 lambda t, s: float(mse(t, s).detach()) if s in s_hidden else float("inf"))
            terms = [mse(t, s) for t, s in pairs if s in s_hidden]
            if terms:
                losses.append(torch.stack(terms).sum())
            self.step_log["pairs"] = pairs
        if not losses:
            return torch.zeros((), device=next(self.model.parameters()).device)
        return torch.stack(losses).mean()

    # -- pruning -----------------------------------------------------------------------------
    def before_prune(self) -> None:
        if isinstance(self.teacher, D.SnapshotTeacher):
            self.teacher.before_student_prune()

    @torch.no_grad()
    def on_hidden_pruned(self, idx: torch.Tensor, old_d: int) -> None:
        """The student kept hidden dims `idx` (positions among its old ones). Called inside the
        plugin's pruning step, which rebuilds the optimizer afterwards."""
        self.hidden_ids = self.hidden_ids[idx.to(self.hidden_ids.device)]
        tr = self.transform
        if tr is not None:
            tr.prune_in(idx)
            if isinstance(self.teacher, D.SharedTeacher):   # the teacher's width is the student's
                tr.prune_out(idx)
                self.tr_out_ids = self.hidden_ids.clone()
        if isinstance(self.teacher, D.SharedTeacher):
            self.teacher.prune_hidden(self.model, idx, old_d)

    def close(self) -> None:
        if isinstance(self.teacher, D.SnapshotTeacher):
            self.teacher.close()      # its copy shares W with the student: drop it before merging into W
        self.capture.remove()

    @property
    def refreshes(self) -> int:
        return getattr(self.teacher, "refreshes", 0) if self.teacher is not None else 0
