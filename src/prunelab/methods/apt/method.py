"""APT as a MethodPlugin: adapters, salience, masks, pruning, tuning and distillation wired
into the training loop only through callbacks.

Per training step t (``state.step`` at on_step_start):

  on_step_start   turn on salience hooks (t in the pruning window) and hidden-state capture
                  (t in the distillation window); take the first teacher snapshot at the start
  forward         (the loop) LoRA hooks add s B A x; mask hooks scale heads/neurons/hidden dims
  compute_loss    teacher forward (no grad), L = mu L_distill + (1 - mu) L_ft
  backward        (the loop) gradient hooks sum |dL/dH| per channel
  after_backward  S_new -> EMA; adapter importance -> EMA
  on_step_end     s = t + 1: inside a mask window move masks +-0.01 towards the current top
                  prefix; at a pruning step snap masks, remove the pruned blocks physically,
                  grow adapter ranks, rebuild optimizer and LR scheduler
  on_eval         re-take the teacher when the dev score improved (teaching.Distiller; it
                  rebuilds the optimizer when that re-creates Tr's parameters)

Lifecycles live in their own objects: the distillation lifecycle (teacher, hidden-state
capture, Tr, losses) in teaching.Distiller, rank growth in tuning.RankController, salience in
salience.SalienceCollector / SalienceEMA, masks in pruner.MaskState; this plugin sequences
them and owns the physical pruning.

finalize merges the adapters into W, drops every APT module and hook, and returns the plain
(physically pruned) Hugging Face model; ``prunelab.export.save_pruned`` saves it.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from prunelab.methods.apt import distill as D
from prunelab.methods.apt.adapter import AdapterSet, head_rows
from prunelab.methods.apt.config import APTConfig
from prunelab.methods.apt.pruner import MaskState, Structure, align_keep, densities, keep_size, measured_size, select, select_uniform, unit_heads
from prunelab.methods.apt.salience import (DENSITY_LEVEL, HOOKED, SalienceCollector, SalienceEMA,
                                           magnitude_scores, random_density, uniform_density)
from prunelab.methods.apt.schedule import Plan, build_plan
from prunelab.methods.apt.teaching import Distiller
from prunelab.methods.apt.tuning import RankController
from prunelab.train.callbacks import MethodPlugin
from prunelab.train.measure import cuda_sync_if_used

HEAD_TASKS = ("classification", "regression", "qa")


class APTModules(nn.Module):
    """Everything APT attaches to the model (so .to(), parameter counts and the optimizer see it)."""

    def __init__(self):
        super().__init__()
        self.adapters = AdapterSet()
        self.transform: LayerTransform | None = None


def head_parameter_names(model, task_kind: str) -> list[str]:
    """Trainable task-head parameters: those outside the pretrained base model (classifier,
    qa_outputs, score), as peft's modules_to_save does for the LoRA baseline."""
    if task_kind not in HEAD_TASKS:
        return []
    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, None) if prefix else None
    if base is None or base is model:
        return []
    base_ids = {id(p) for p in base.parameters()}
    return [n for n, p in model.named_parameters() if id(p) not in base_ids and not n.startswith("prunelab_apt.")]


class APTPlugin(MethodPlugin):
    def __init__(self, loaded, config: APTConfig, ctx):
        self.loaded, self.cfg, self.ctx = loaded, config, ctx
        self.family = loaded.family
        self.task = ctx.task
        self.kind = getattr(ctx.task, "kind", "classification")
        self.seed = int(getattr(ctx.config, "seed", 0))
        self.model = None
        self.state = None
        self.plan: Plan | None = None
        self.info: dict = {}
        self.external_teacher = None
        if config.distill in ("ft_teacher", "lora_teacher"):
            # trained here, before the run re-seeds, so the student's data order is unchanged
            if config.teacher_path:
                from prunelab.models.load import load_model
                self.external_teacher = load_model(config.teacher_path, ctx.task).model.to(ctx.device)
            else:
                self.external_teacher, info = D.train_teacher(config.distill, loaded, ctx, config.teacher_lr)
                self.info.update(info)

    # ------------------------------------------------------------------------------ set-up
    def prepare(self, model):
        cfg, fam = self.cfg, self.family
        self.model = model
        for p in model.parameters():
            p.requires_grad_(False)
        self.head_names = head_parameter_names(model, self.kind)
        params = dict(model.named_parameters())
        for n in self.head_names:
            params[n].requires_grad_(True)
        self.groups = {i: b.group_size for i, b in enumerate(fam.attention_blocks())}

        self.apt = APTModules()
        model.add_module("prunelab_apt", self.apt)
        self.adapters = self.apt.adapters
        if cfg.tuning != "none":
            targets = set(cfg.targets or fam.default_lora)
            for b, blk in enumerate(fam.attention_blocks()):
                for role in ("q", "k", "v", "o"):
                    if role in targets:
                        self.adapters.add(AdapterSet.key("attn", b, role), getattr(blk, role), cfg.start_rank,
                                          cfg.scaling)
            for b, blk in enumerate(fam.ffn_blocks()):
                if "up" in targets:
                    self.adapters.add(AdapterSet.key("ffn", b, "up"), blk.up[0], cfg.start_rank, cfg.scaling)
                if "down" in targets:
                    self.adapters.add(AdapterSet.key("ffn", b, "down"), blk.down, cfg.start_rank, cfg.scaling)
        self.adapters.install(self._linear)
        self.apt.to(next(model.parameters()).device)

        self.structure = Structure.from_family(fam, self.groups)
        self.dense_size = self.structure.size()
        self.dense_measured = measured_size(fam)
        self.dense_nonemb = fam.param_count(non_embedding=True)
        self.masks = MaskState(self.structure)
        self.pruning = cfg.pruning != "off"
        self.collector = SalienceCollector(fam, cfg.salience, self.groups, self._effective_weight,
                                           cfg.outlier_unit)
        if self.pruning:
            self.collector.install()
        self.ema = SalienceEMA(cfg.ema)
        self.frozen_density = None
        self.last_keep = None
        self.rng = torch.Generator().manual_seed(1_000_003 + self.seed)
        self.ranks = RankController(self.adapters, cfg.tuning, cfg.max_rank, cfg.grow_fraction, cfg.ema, self.seed)
        self.distiller = Distiller(self, self.external_teacher)
        self.prune_seconds: list[float] = []
        self.growth_log: list[dict] = []
        self.phase_seconds: dict = {}
        return model

    # views of the distillation lifecycle (tests and metrics read them)
    @property
    def teacher(self):
        return self.distiller.teacher if hasattr(self, "distiller") else None

    @property
    def capture(self):
        return self.distiller.capture

    @property
    def hidden_ids(self):
        return self.distiller.hidden_ids

    def adapter_names(self) -> dict:
        names = {id(m): n for n, m in self.model.named_modules()}
        return {k: names[id(self._linear(k))] for k in self.adapters.student.keys()}

    def _linear(self, key: str) -> nn.Linear:
        kind, b, role = AdapterSet.parse(key)
        if kind == "attn":
            return getattr(self.family.attention_blocks()[b], role)
        blk = self.family.ffn_blocks()[b]
        return blk.up[0] if role == "up" else blk.down

    def _effective_weight(self, kind, b, role, linear) -> torch.Tensor:
        key = AdapterSet.key(kind, b, role)
        w = linear.weight
        if key in self.adapters.student:
            w = w + self.adapters.student[key].delta_weight().to(w.dtype)
        return w

    def on_train_start(self, state):
        self.state = state
        self.plan = build_plan(self.cfg, state.total_steps)
        self.n0 = self.adapters.num_params()
        self.info["apt_plan"] = self.plan.to_dict()

    # ------------------------------------------------------------------------------ per step
    def on_step_start(self, state):
        self._t_step = time.perf_counter()
        t = state.step
        plan = self.plan
        self.t = t
        collect = self.pruning and plan.collecting(t)
        self.collector.active = collect and self.cfg.salience in HOOKED
        if self.collector.active:
            self.collector.reset()
        self.observe_adapters = plan.collecting(t) and self.cfg.tuning in ("adaptive", "uniform")
        self.distiller.begin_step(state, t, plan)

    def compute_loss(self, state, loss):
        kw = None if self.masks.all_ones() else self.masks.family_masks()
        surviving = self._surviving() if self.distiller.distilling else {}
        return self._differentiable(self.distiller.loss(state, loss, kw, surviving, self.kind))

    @staticmethod
    def _differentiable(loss):
        # Pruning may remove every block an adapter sat on (e.g. all heads of a LLaMA whose
        # adapters are on q and v only): nothing left to train, but the loop still calls backward.
        if not loss.requires_grad and loss.grad_fn is None:
            loss = loss.detach().requires_grad_(True)
        return loss

    def _surviving(self) -> dict[int, bool]:
        heads, neurons = {}, {}
        for a in self.structure.attn:
            alive = int((self.masks.head[a.index] > 0).sum()) if a.units else 0
            heads[a.layer] = heads.get(a.layer, 0) + alive
        for f in self.structure.ffn:
            alive = int((self.masks.neuron[f.index] > 0).sum()) if f.units else 0
            neurons[f.layer] = neurons.get(f.layer, 0) + alive
        return {i: heads.get(i, 1) > 0 and neurons.get(i, 1) > 0 for i in range(self.family.num_layers)}

    def after_backward(self, state):
        if self.pruning and self.plan.collecting(self.t):
            new, is_density = None, False
            if self.cfg.salience in HOOKED:
                new = self.collector.scores(self.structure, self._adapter_salience())
                self.collector.active = False
            elif self.cfg.salience == "magnitude":
                new = magnitude_scores(self.family, self.structure, self._effective_weight)
            elif self.cfg.salience == "random":
                new = random_density(self.structure, self.rng)
            if new is not None:
                self.ema.update(mean_over_processes(new), self.masks.zero_units())
        if self.observe_adapters:
            self.ranks.observe()

    @torch.no_grad()
    def _adapter_salience(self) -> dict:
        """Paper Eq. 9's tuning-weight term: s * sum_q |dL/dW_B[i, q] * W_B[i, q]| per output row
        i of every adapter, summed into the unit that owns the row (heads: q / k / v rows;
        neurons: up rows; hidden dims: o / down rows)."""
        out = {"head": {}, "neuron": {}, "hidden": None}
        attn = {a.index: a for a in self.structure.attn}
        for key, ad in self.adapters.student.items():
            if ad.B.grad is None:
                continue
            kind, b, role = AdapterSet.parse(key)
            rows = (ad.B.grad * ad.B).abs().sum(1).double().cpu() * ad.scaling
            if role in ("o", "down"):
                out["hidden"] = rows if out["hidden"] is None else out["hidden"] + rows
            elif kind == "attn":
                a = attn[b]
                width = a.head_dim * (a.group if role == "q" else 1)
                if a.units and rows.numel() == a.units * width:
                    v = rows.reshape(a.units, width).sum(-1)
                    out["head"][b] = v if b not in out["head"] else out["head"][b] + v
            elif role == "up":
                out["neuron"][b] = rows if b not in out["neuron"] else out["neuron"][b] + rows
        return out

    def on_step_end(self, state):
        try:
            self._step_end(state)
        finally:
            self._time_phase(state.step - 1)

    def _time_phase(self, t: int) -> None:
        """Wall seconds from on_step_start to the end of on_step_end, per phase of the plan:
        before the first pruning step, while pruning / distilling, and after (the pruned model
        fine-tuned alone). These are the step times the benchmark compares with LoRA's."""
        if getattr(self, "_t_step", None) is None:
            return
        cuda_sync_if_used()
        dt = time.perf_counter() - self._t_step
        self._t_step = None
        phase = "before_pruning" if t < self.plan.steps[0] else "pruning" if t < self.plan.distill_end else "after_pruning"
        acc = self.phase_seconds.setdefault(phase, [0.0, 0])
        acc[0] += dt
        acc[1] += 1

    def _step_end(self, state):
        s = state.step
        k = self.plan.pruning_index(s)
        if k is not None:
            self._pruning_step(state, k)
            return
        w = self.plan.window_index(s) if self.pruning else None
        if w is not None:
            keep = self._select(self.plan.retained[w])
            self.last_keep = keep
            self.masks.move(keep, self.plan.mask_rates[w])
            self.family.set_masks(**self.masks.family_masks())

    def on_eval(self, state, metrics):
        self.distiller.on_eval(state, metrics.get("score"), self.task.higher_is_better, self.plan)

    # ------------------------------------------------------------------------------ pruning
    def _density(self) -> dict:
        sal = self.cfg.salience
        if sal == "uniform":
            return uniform_density(self.structure)
        value = self.ema.value
        if value is None:  # no salience yet (e.g. a pruning step with no collection): weights
            value = magnitude_scores(self.family, self.structure, self._effective_weight)
            return densities(self.structure, value)
        return densities(self.structure, value, is_density=sal in DENSITY_LEVEL)

    def _select(self, retained: float):
        if self.cfg.masks == "fixed":
            if self.frozen_density is None:
                self.frozen_density = self._density()
            dens = self.frozen_density
        else:
            dens = self._density()
        enabled = tuple(k for k, on in (("head", self.cfg.prune_heads), ("neuron", self.cfg.prune_neurons),
                                        ("hidden", self.cfg.prune_hidden)) if on)
        if self.cfg.layout == "uniform":
            fam = self.family
            return select_uniform(self.structure, dens, retained * self.dense_size, enabled,
                                  fam.stock_hidden_rule, fam.stock_aligned_heads)
        keep = select(self.structure, dens, retained * self.dense_size, enabled)
        return align_keep(self.structure, keep, dens, self.cfg.align)

    def _pruning_step(self, state, k: int):
        t0 = time.perf_counter()
        changed = False
        if self.pruning:
            keep = self._select(self.plan.retained[k])
            self.masks.snap(keep)
            self.family.clear_masks()
            changed = self._remove(keep)
        prev = self.plan.budgets[k - 1] if k > 0 else 1.0
        grown = self.ranks.grow(self.plan.budgets[k] / prev, step=state.step)
        if grown:
            self.growth_log.append({"step": state.step, "grown": {key: v[1] for key, v in grown.items()}})
        if changed or grown:
            state.rebuild_optimizer()
        self.prune_seconds.append(time.perf_counter() - t0)
        state.log["apt_retained"] = round(self.structure.size() / self.dense_size, 4)
        state.log["apt_tunable"] = self.adapters.num_params()

    @torch.no_grad()
    def _remove(self, keep) -> bool:
        """Physically remove what `keep` drops, in the model and in everything APT holds."""
        fam, changed = self.family, False
        self.distiller.before_prune()
        for a in self.structure.attn:
            kh = keep.head[a.index]
            if bool(kh.all()):
                continue
            units = torch.nonzero(kh).flatten().tolist()
            q_rows = head_rows(unit_heads(kh, a.group), a.head_dim)
            kv_rows = head_rows(units, a.head_dim)
            fam.prune_heads(a.index, units)
            self.adapters.prune_heads(a.index, q_rows, kv_rows)
            changed = True
        for f in self.structure.ffn:
            kn = keep.neuron[f.index]
            if bool(kn.all()):
                continue
            idx = torch.nonzero(kn).flatten()
            fam.prune_neurons(f.index, idx.tolist())
            self.adapters.prune_neurons(f.index, idx)
            changed = True
        if not bool(keep.hidden.all()):
            old_d = self.structure.hidden
            idx = torch.nonzero(keep.hidden).flatten()
            fam.prune_hidden(idx.tolist())
            self.adapters.prune_hidden(idx)
            self.distiller.on_hidden_pruned(idx, old_d)
            changed = True
        self.ema.reindex(keep)
        if self.frozen_density is not None:
            fd = self.frozen_density
            self.frozen_density = {"head": {b: v[keep.head[b]] for b, v in fd["head"].items()},
                                   "neuron": {b: v[keep.neuron[b]] for b, v in fd["neuron"].items()},
                                   "hidden": fd["hidden"][keep.hidden]}
        self.structure = Structure.from_family(fam, self.groups)
        self.masks.reset(self.structure)
        self.last_keep = None
        return changed

    # ------------------------------------------------------------------------------ the end
    def finalize(self, model):
        model = self.model if self.model is not None else model
        fam = self.family
        if isinstance(self.teacher, D.SnapshotTeacher):
            self.teacher.close()      # its copy shares W with the student: drop it before merging into W
        snapped = False
        if self.pruning and not self.masks.all_ones():
            # the run ended inside a mask window: keep units whose mask is still >= 0.5
            keep = self.masks.as_keep()
            keep.head = {b: m >= 0.5 for b, m in self.masks.head.items()}
            keep.neuron = {b: m >= 0.5 for b, m in self.masks.neuron.items()}
            keep.hidden = self.masks.hidden >= 0.5
            if self.cfg.layout == "uniform" and getattr(self, "last_keep", None) is not None:
                keep = self.last_keep     # thresholded soft masks need not be uniform; the selection is
            fam.clear_masks()
            self._remove(keep)
            snapped = True
        fam.clear_masks()
        self.adapters.merge_into(self._linear)
        self.adapters.remove_hooks()
        self.collector.remove()
        self.distiller.close()
        if "prunelab_apt" in model._modules:
            del model._modules["prunelab_apt"]
        for p in model.parameters():
            p.requires_grad_(False)
        self._record_metrics(snapped)
        self.distiller.teacher = None
        self.external_teacher = None
        return model

    def _record_metrics(self, snapped: bool):
        fam, cfg = self.family, self.cfg
        final_measured = measured_size(fam)
        m = {
            "apt_sparsity_target": cfg.sparsity if self.pruning else 0.0,
            "apt_sparsity": 1 - final_measured / self.dense_measured,
            "apt_prunable_params_dense": self.dense_measured,
            "apt_prunable_params": final_measured,
            "apt_nonemb_param_ratio": fam.param_count(non_embedding=True) / self.dense_nonemb,
            "apt_widths": fam.widths(),
            "apt_ranks_final": self.adapters.ranks(),
            "apt_tunable_params_start": getattr(self, "n0", None),
            "apt_tunable_params_final": self.adapters.num_params(),
            "apt_prune_step_seconds": [round(x, 4) for x in self.prune_seconds],
            "apt_prune_seconds_total": round(sum(self.prune_seconds), 4),
            "apt_step_seconds": {k: v[0] / v[1] for k, v in getattr(self, "phase_seconds", {}).items() if v[1]},
            "apt_steps_per_phase": {k: v[1] for k, v in getattr(self, "phase_seconds", {}).items()},
            "apt_teacher_refreshes": self.distiller.refreshes,
            "apt_teacher": self.cfg.distill,
            "apt_growth": self.growth_log,
            "apt_finalize_snapped": snapped,
            **self.info,
        }
        if self.state is not None:
            self.state.extra_metrics.update(m)
        self.metrics = m


def mean_over_processes(scores: dict) -> dict:
    """Several processes (accelerate launch): each rank saw its own share of the batch, so average
    the salience over the ranks; they then take the same pruning decision and stay identical."""
    from accelerate import PartialState
    from accelerate.utils import reduce

    return reduce(scores, reduction="mean") if PartialState().num_processes > 1 else scores


def build(loaded, config: APTConfig, ctx) -> APTPlugin:
    return APTPlugin(loaded, config, ctx)
