"""CoFi as a prunelab method: one run of the one loop, in three phases (fractions of the run):

  [0, pre)      fine-tune (distilling from the teacher), no masks
  [pre, end)    prune: every step samples hard-concrete masks at five granularities; the loss
                adds the Lagrangian term; the L0 log alphas (lr reg_lr) and the multipliers
                (lr -reg_lr, gradient ascent) have their own optimizers, stepped after the
                backward and outside the loop's gradient clipping, as CoFi's separate
                l0_optimizer / lagrangian_optimizer; dev evaluations see the deterministic masks
  step `end`    deterministic masks are folded into the weights (head/neuron values into the
                output-projection columns, whole-layer values into o / down weights and bias)
                and the family adapter removes heads, neurons, layers and hidden dims physically;
                a LoRA model is merged first and gets fresh adapters afterwards
  [end, total)  fine-tune the pruned model (still distilling by default)

The backbone learning rate follows CoFi's two runs: a linear schedule (with the run's warm-up
ratio) that reaches 0 at the pruning step, then a fresh linear decay from final_ft_lr for the
final fine-tuning. The plugin sets the lr of its groups at every step start (the loop's
scheduler runs after the optimizer step, so the value set here is the one used).
"""
from __future__ import annotations

import time

import torch
from torch import nn

from prunelab.methods.cofi import distill as D
from prunelab.methods.cofi.config import CoFiConfig, LoRACoFiConfig
from prunelab.methods.cofi.l0 import L0Masks
from prunelab.methods.cofi.lagrangian import Lagrangian, target_sparsity
from prunelab.methods.masktune.method import LAYOUT_COMPONENT
from prunelab.methods.registry import Component, Method, register_method
from prunelab.train.callbacks import MethodPlugin
from prunelab.train.loop import eval_steps, lr_factor


def _is_peft(model) -> bool:
    return hasattr(model, "merge_and_unload") and hasattr(model, "peft_config")


def _scale_hook(holder: dict, key: str, index: int):
    """Forward hook multiplying a module's output by holder[key][index] (whole-layer masks:
    CoFi scales the attention output / FFN output, bias included)."""
    def hook(module, args, out):
        z = holder.get(key)
        if z is None:
            return None
        v = z[index].to(out.dtype)
        return out * v
    return hook


def fold_and_prune(family, z: dict, also=()) -> dict:
    """Fold deterministic CoFi masks into the weights and remove what they zero. Returns counts."""
    family.clear_masks()
    attn, ffn = family.attention_blocks(), family.ffn_blocks()
    keep_heads, keep_neurons = [], []
    with torch.no_grad():
        for i, blk in enumerate(attn):
            dev = blk.o.weight.device
            hz = z["head"][i].float().to(dev) if z.get("head") is not None else torch.ones(blk.num_units, device=dev)
            mz = float(z["mha"][i]) if z.get("mha") is not None else 1.0
            cols = (hz * mz).repeat_interleave(blk.group_size).repeat_interleave(blk.head_dim)
            blk.o.weight.mul_(cols.to(blk.o.weight.dtype)[None, :])
            if blk.o.bias is not None:
                blk.o.bias.mul_(mz)
            keep_heads.append(torch.nonzero(hz * mz != 0).flatten().tolist())
        for i, f in enumerate(ffn):
            dev = f.down.weight.device
            iz = z["int"][i].float().to(dev) if z.get("int") is not None else torch.ones(f.size, device=dev)
            fz = float(z["ffn"][i]) if z.get("ffn") is not None else 1.0
            f.down.weight.mul_((iz * fz).to(f.down.weight.dtype)[None, :])
            if f.down.bias is not None:
                f.down.bias.mul_(fz)
            keep_neurons.append(torch.nonzero(iz * fz != 0).flatten().tolist())
    for i, keep in enumerate(keep_heads):
        family.prune_heads(i, keep)
    for i, keep in enumerate(keep_neurons):
        family.prune_neurons(i, keep)
    hidden_kept = family.hidden_size
    if z.get("hidden") is not None:
        keep = torch.nonzero(z["hidden"] != 0).flatten().tolist()
        family.prune_hidden(keep, also=also)
        hidden_kept = len(keep)
    return {"heads_kept": sum(len(k) for k in keep_heads), "heads_total": sum(b.num_units for b in attn),
            "neurons_kept": sum(len(k) for k in keep_neurons), "neurons_total": sum(f.size for f in ffn),
            "attn_layers_removed": sum(1 for k in keep_heads if not k),
            "ffn_layers_removed": sum(1 for k in keep_neurons if not k),
            "hidden_kept": hidden_kept}


@torch.no_grad()
def uniform_masks(z: dict, l0, family) -> dict:
    """layout=uniform: the same number of heads and of neurons in every layer.

    Each layer keeps its top-k units by log alpha (the order CoFi's deterministic masks zero
    them in), with k = the mean kept count per layer of the free masks (at least 1); a unit
    kept only now gets its soft value sigmoid(log alpha / beta * 0.8), a layer whose layer
    mask was zero gets its layer value back. Then k shrinks (neurons first) until the size is
    within the free masks' size (the budget). Hidden dims follow the family's stock rule
    (BERT: hidden == heads x head_dim; LLaMA: hidden % q heads == 0), top by log alpha."""
    from prunelab.errors import PrunelabError

    t, mag = l0.temperature, l0.magical_number
    soft = lambda p: torch.sigmoid(p / t * mag)  # noqa: E731
    attn, ffn = family.attention_blocks(), family.ffn_blocks()
    nz = lambda v, i: (v[i] != 0).float() if v is not None else 1.0  # noqa: E731

    def kept(units, layer, n):
        if units is None:
            return [n[i] for i in range(len(n))]
        return [int(((units[i] != 0).float() * nz(layer, i)).sum()) for i in range(len(units))]

    def top(logas, layer_logas, count, n):
        if logas is None:
            return None, None
        if count < n[0] and len(set(n)) > 1:
            raise PrunelabError(f"layout=uniform needs equal widths per layer, got {n}")
        units = []
        for p in logas:
            v = torch.zeros_like(p)
            idx = torch.topk(p, k=count).indices
            v[idx] = soft(p[idx])
            units.append(v)
        layer = None if layer_logas is None else soft(layer_logas)
        return units, layer

    n_h, n_n = [b.num_units for b in attn], [f.size for f in ffn]
    h_counts, n_counts = kept(z.get("head"), z.get("mha"), n_h), kept(z.get("int"), z.get("ffn"), n_n)
    k_h = max(1, int(round(sum(h_counts) / max(1, len(h_counts)))))
    k_n = max(1, int(round(sum(n_counts) / max(1, len(n_counts)))))
    rule, hd, g = family.stock_hidden_rule, attn[0].head_dim, attn[0].group_size
    if rule == "heads_x_head_dim" and l0.hidden is None:
        k_h = n_h[0]                       # hidden is not pruned: BERT must keep every head
    if l0.head is None:
        k_h = n_h[0]
    if l0.int is None:
        k_n = n_n[0]
    budget = 1.0 - l0.sparsity_of(z)       # kept fraction of the free masks

    def build(k_h, k_n):
        out = dict(z)
        out["head"], out["mha"] = top(l0.head, l0.mha, k_h, n_h) if l0.head is not None else (z.get("head"), None)
        out["int"], out["ffn"] = top(l0.int, l0.ffn, k_n, n_n) if l0.int is not None else (z.get("int"), None)
        if l0.head is not None and l0.mha is not None and out["head"] is None:
            out["mha"] = soft(l0.mha)
        if l0.hidden is not None:
            d = len(l0.hidden)
            if rule == "heads_x_head_dim":
                d = min(d, k_h * hd)
            elif rule == "multiple_of_heads":
                d = int((z["hidden"] != 0).sum()) if z.get("hidden") is not None else d
                d -= d % (k_h * g)
            else:
                d = int((z["hidden"] != 0).sum()) if z.get("hidden") is not None else d
            h = torch.zeros_like(l0.hidden)
            h[torch.topk(l0.hidden, k=d).indices] = 1.0
            out["hidden"] = h
        return out

    out = build(k_h, k_n)
    while 1.0 - l0.sparsity_of(out) > budget + 1e-9 and (k_n > 1 or k_h > 1):
        if k_n > 1 and (rule != "heads_x_head_dim" or l0.hidden is None or k_n * 1.0 / n_n[0] > k_h * 1.0 / n_h[0]):
            k_n -= 1
        elif k_h > 1 and not (rule == "heads_x_head_dim" and l0.hidden is None) and l0.head is not None:
            k_h -= 1
        elif k_n > 1:
            k_n -= 1
        else:
            break
        out = build(k_h, k_n)
    return out


class CoFiPlugin(MethodPlugin):
    def __init__(self, loaded, config: CoFiConfig, ctx):
        self.loaded, self.config, self.ctx = loaded, config, ctx
        self.family = loaded.family
        self.device = ctx.device
        self.teacher = self.teacher_family = None
        self.teacher_info: dict = {}
        if config.distill:
            t0 = time.perf_counter()
            self.teacher, self.teacher_family, self.teacher_info = D.get_teacher(
                ctx, config.teacher_lr, config.teacher_steps, config.teacher_seed, config.teacher_cache)
            self.teacher_info["teacher_setup_seconds"] = time.perf_counter() - t0
        self.pruned = False
        self.state = None
        self.z: dict | None = None
        self._layer_z: dict = {}
        self._handles: list = []
        self.layer_transform = None
        self.report: dict = {}

    # ---- set-up --------------------------------------------------------------------------------
    def _lora(self):
        from prunelab.methods.lora import lora_plugin_from

        return lora_plugin_from(self.loaded, self.ctx.task, self.config)

    def prepare(self, model):
        c = self.config
        if c.tuning == "lora":
            model = self._lora().prepare(model)
        else:
            for p in model.parameters():
                p.requires_grad_(True)
        dev = next(model.parameters()).device
        self.l0 = L0Masks(self.family, c.granularities(), c.droprate_init, c.temperature, c.magical_number).to(dev)
        self.lagrangian = Lagrangian().to(dev)
        # whole-layer masks scale the output projections' outputs; hooks are attached to the
        # modules the adapter sees now (LoRA wrappers included, so adapters are scaled too)
        for i, b in enumerate(self.family.attention_blocks()):
            self._handles.append(b.o.register_forward_hook(_scale_hook(self._layer_z, "mha", i)))
        for i, f in enumerate(self.family.ffn_blocks()):
            self._handles.append(f.down.register_forward_hook(_scale_hook(self._layer_z, "ffn", i)))
        if c.distill:
            d_s, d_t = self.family.hidden_size, self.teacher_family.hidden_size
            self.layer_transform = nn.Linear(d_s, d_t).to(dev)
            # identity start: with a few hundred steps at the backbone lr a randomly initialised
            # transform (CoFi) would barely train and make the layer loss noise
            with torch.no_grad():
                self.layer_transform.weight.copy_(torch.eye(d_t, d_s))
                self.layer_transform.bias.zero_()
            self.student_out = D.LayerOutputs(self.family)
            self.teacher_out = D.LayerOutputs(self.teacher_family)
            self.teacher_ids = list(c.teacher_layers or D.default_teacher_layers(self.teacher_family.num_layers))
        return model

    def extra_trainable_parameters(self):
        """Trained alongside the model but not part of it (see train/invariants.py)."""
        return list(self.layer_transform.parameters()) if self.layer_transform is not None else []

    def param_groups(self, model, lr, weight_decay):
        groups = [{"params": self.trainable_parameters(model), "lr": lr, "weight_decay": weight_decay, "cofi": True}]
        if self.layer_transform is not None:
            groups.append({"params": list(self.layer_transform.parameters()), "lr": lr,
                           "weight_decay": weight_decay, "cofi": True})
        return groups

    def on_train_start(self, state):
        self.state = state
        c, tc, total = self.config, state.config.train, state.total_steps
        self.pre, self.warm, self.end = c.phases(total)
        self.evals = eval_steps(total, tc.eval_points)
        self.base_lr, self.final_lr = tc.lr, (c.final_ft_lr or tc.lr)
        self.warmup = int(tc.warmup_ratio * self.end)
        self.l0_opt = torch.optim.AdamW(self.l0.parameters(), lr=c.reg_lr, weight_decay=0.0)
        self.lag_opt = self.lagrangian.optimizer(c.reg_lr)
        state.extra_metrics.update({k: v for k, v in self.teacher_info.items()})
        state.extra_metrics.update(cofi_pre_steps=self.pre, cofi_warmup_steps=self.warm, cofi_prune_step=self.end)

    # ---- per step ------------------------------------------------------------------------------
    def _pruning(self, step: int) -> bool:
        return not self.pruned and self.pre <= step < self.end

    def _apply(self, z: dict | None):
        self.z = z
        if z is None:
            self.family.clear_masks()
            self._layer_z.clear()
            return
        self.family.set_masks(head_mask=dict(enumerate(z["head"])) if z.get("head") is not None else None,
                              neuron_mask=dict(enumerate(z["int"])) if z.get("int") is not None else None,
                              hidden_mask=z.get("hidden"))
        self._layer_z["mha"], self._layer_z["ffn"] = z.get("mha"), z.get("ffn")

    def _lr(self, step: int) -> float:
        if step < self.end:
            return self.base_lr * lr_factor(step, self.end, self.warmup)
        return self.final_lr * max(0.0, (self.state.total_steps - step) / max(1, self.state.total_steps - self.end))

    def on_step_start(self, state):
        lr = self._lr(state.step)
        for g in state.optimizer.param_groups:
            if g.get("cofi"):
                g["lr"] = lr
        if self._pruning(state.step):
            self._apply(self.l0.sample())
        if self.config.distill:
            self.student_out.active = True

    def compute_loss(self, state, loss):
        c, step = self.config, state.step
        pruning = self._pruning(step)
        if c.distill and (not self.pruned or c.distill_final):
            self.student_out.active = False
            with torch.no_grad():
                self.teacher_out.active = True
                t_out = self.teacher(**state.batch)
                self.teacher_out.active = False
            t_layers, s_layers = self.teacher_out.take(), self.student_out.take()
            pred = D.output_loss(state.outputs, t_out, c.distill_temp)
            existing = None
            if pruning and self.z is not None and self.z.get("mha") is not None:
                existing = self.z["mha"].detach() != 0
            lay, _ = D.layer_loss(t_layers, s_layers, self.layer_transform, self.teacher_ids, existing)
            loss = c.distill_ce_alpha * pred + c.distill_layer_alpha * lay
            state.log.update(distill_pred=float(pred.detach()), distill_layer=float(lay.detach()))
        elif c.distill:
            self.student_out.active = False
            self.student_out.take()
        if pruning:
            expected = self.l0.expected_sparsity()
            target = target_sparsity(step - self.pre, self.warm, c.sparsity, c.start_sparsity)
            lag = self.lagrangian(expected, target)
            loss = loss + lag
            state.log.update(expected_sparsity=float(expected.detach()), current_target=target,
                             lambda_1=float(self.lagrangian.lambda_1.detach()),
                             lambda_2=float(self.lagrangian.lambda_2.detach()))
        return loss

    def after_backward(self, state):
        if self._pruning(state.step):
            self.l0_opt.step()
            self.lag_opt.step()
            self.l0_opt.zero_grad(set_to_none=True)
            self.lag_opt.zero_grad(set_to_none=True)
            self.l0.constrain()

    def on_step_end(self, state):
        if not self.pruned and state.step >= self.end:
            self._prune(state)
        elif self._pruning(state.step) and state.step in self.evals:
            self._apply(self.l0.deterministic(self.config.mask_rule))   # the dev evaluation that follows sees these
        elif not self._pruning(state.step):
            self._apply(None)

    # ---- pruning -------------------------------------------------------------------------------
    def _prune(self, state=None):
        from prunelab.models.family import get_family

        c = self.config
        z = self.l0.deterministic(c.mask_rule)
        expected = float(self.l0.expected_sparsity().detach())
        if c.layout == "uniform":
            z = uniform_masks(z, self.l0, self.family)
        achieved = self.l0.sparsity_of(z)
        self._apply(None)
        for h in self._handles:
            h.remove()
        self._handles = []
        model = state.model if state is not None else self._final_model
        merged = model.merge_and_unload() if _is_peft(model) else model
        family = self.family if getattr(self.family, "model", None) is merged else get_family(merged)
        before = family.param_count(non_embedding=True)
        also = [("in", self.layer_transform)] if self.layer_transform is not None else []
        counts = fold_and_prune(family, z, also=also)
        after = family.param_count(non_embedding=True)
        self.pruned = True
        self.report = {
            "target_sparsity": c.sparsity,
            "expected_sparsity": expected,
            "achieved_sparsity": achieved,
            "constraint_error": achieved - c.sparsity,
            "nonemb_param_ratio": after / before,
            "lambda_1": float(self.lagrangian.lambda_1.detach()), "lambda_2": float(self.lagrangian.lambda_2.detach()),
            **counts,
            "widths": family.widths(),           # per-layer heads / FFN sizes and hidden size after pruning
        }
        if state is not None:
            for key in ("expected_sparsity", "current_target", "lambda_1", "lambda_2"):
                state.log.pop(key, None)            # later curve points are of the pruned model
            self.report["cofi_pruned_at_step"] = state.step
            state.extra_metrics.update(self.report)
            if state.step < state.total_steps:             # final fine-tuning follows
                from prunelab.methods.lora import continue_training

                merged = continue_training(state, merged, self._lora() if c.tuning == "lora" else None)
        return merged

    def finalize(self, model):
        if not self.pruned:
            self._final_model = model
            model = self._prune(None)
        if _is_peft(model):
            model = model.merge_and_unload()
        for h in self._handles:
            h.remove()
        if self.config.distill:
            self.student_out.remove()
            self.teacher_out.remove()
        self.teacher = None                                 # free the teacher before inference is measured
        return model


def build(loaded, config: CoFiConfig, ctx) -> MethodPlugin:
    return CoFiPlugin(loaded, config, ctx)


def _components() -> dict:
    def onoff(name, keys, aliases):
        return Component(name, default="on", options={"on": {k: True for k in keys}, "off": {k: False for k in keys}},
                         remove="off", aliases=aliases)
    return {
        "distill": onoff("distill", ["distill"], ["distillation", "knowledge distillation", "teacher"]),
        "layer_masks": onoff("layer_masks", ["prune_mha", "prune_ffn"], ["layer masks", "coarse-grained masks"]),
        "hidden_pruning": onoff("hidden_pruning", ["prune_hidden"], ["hidden dimension pruning", "hidden masks"]),
        "final_finetune": Component("final_finetune", default="on",
                                    options={"on": {}, "off": {"final_finetune_frac": 0.0}}, remove="off",
                                    aliases=["fine-tuning after pruning", "final fine-tuning"]),
        "sparsity": Component("sparsity", default="default", options={"default": {}}, numeric="sparsity",
                              numeric_range=(0.01, 0.99), aliases=["sparsity", "target sparsity"]),
        "layout": LAYOUT_COMPONENT,
    }


_DESC = ("CoFi (Xia et al. 2022): hard-concrete L0 masks on heads, attention layers, neurons, FFN layers and "
         "hidden dims, Lagrangian sparsity target, layer distillation from a fine-tuned teacher")
register_method(Method("prune_distill", CoFiConfig, build, components=_components(),
                       description="APT's Prune+Distill = " + _DESC))
register_method(Method("cofi", CoFiConfig, build, components=_components(), description="alias of prune_distill: " + _DESC))
register_method(Method("lora_prune_distill", LoRACoFiConfig, build, components=_components(),
                       description="APT's LoRA+Prune+Distill: CoFi with only LoRA, the task head and the L0 modules trained"))
