"""Mask Tuning as a prunelab method: tune (full FT or LoRA) with the one loop, then prune
post-training with Kwon et al.'s pipeline, then (optionally) re-tune with LoRA.

Where the pruning happens: in `on_step_end` of step `total - retune_steps`, i.e. inside the
loop's timed region. So time-to-accuracy includes the pruning pipeline (as in APT's Table 2),
the dev evaluation that follows is of the pruned model, and with re-tuning the remaining steps
train the pruned model in the same loop (same data budget as every other method). A LoRA model
is merged before pruning (APT's LoRA+Prune: LoRA fine-tune -> merge -> Mask Tuning); re-tuning
attaches fresh adapters to the pruned weights. The pipeline itself needs no gradient on the
weights: Fisher of the masks from ~2048 samples, search, per-layer rearrangement, per-layer
rescaling, then mask values are folded into the output projections and the family adapter
removes the pruned heads and neurons physically.
"""
from __future__ import annotations

import math
import time

import torch

from prunelab.methods.masktune import fisher as F
from prunelab.methods.masktune.config import LoRAPruneConfig, MaskTuneConfig
from prunelab.methods.masktune.rearrange import rearrange_masks
from prunelab.methods.masktune.rescale import rescale_masks
from prunelab.methods.masktune.search import search, search_uniform, total_cost, unit_costs
from prunelab.methods.registry import Component, Method, register_method
from prunelab.train.callbacks import MethodPlugin

CLS_POOLED = ("bert", "roberta", "prunelab-bert", "prunelab-roberta")


def fold_and_prune(family, head_masks, neuron_masks) -> None:
    """Multiply each kept unit's output-projection columns by its mask value, then remove the
    zero-mask units physically with the family adapter."""
    family.clear_masks()
    with torch.no_grad():
        for i, (blk, m) in enumerate(zip(family.attention_blocks(), head_masks)):
            scale = m.detach().float().to(blk.o.weight.device)
            if not torch.all((scale == 0) | (scale == 1)):
                per_q = scale.repeat_interleave(blk.group_size)            # unit -> its q heads
                cols = per_q.repeat_interleave(blk.head_dim)
                blk.o.weight.mul_(cols.to(blk.o.weight.dtype)[None, :])
        for f, m in zip(family.ffn_blocks(), neuron_masks):
            scale = m.detach().float().to(f.down.weight.device)
            if not torch.all((scale == 0) | (scale == 1)):
                f.down.weight.mul_(scale.to(f.down.weight.dtype)[None, :])
    # keep every nonzero unit: rescaled values may be negative (prune_masked keeps only > 0)
    keep_heads = [torch.nonzero(m != 0).flatten().tolist() for m in head_masks]
    keep_neurons = [torch.nonzero(m != 0).flatten().tolist() for m in neuron_masks]
    for i, keep in enumerate(keep_heads):
        family.prune_heads(i, keep)
    for i, keep in enumerate(keep_neurons):
        family.prune_neurons(i, keep)


def prune_model(model, family, task, tokenizer, features, config: MaskTuneConfig, seed: int, device) -> dict:
    """Kwon et al.'s post-training pruning of `model` in place. Returns a report of metrics."""
    t0 = time.perf_counter()
    batches = F.sample_batches(task, tokenizer, features, config.num_samples, config.sample_batch_size, seed, device)
    seq_len = config.seq_len or F.mean_length(batches)
    head_grads, neuron_grads = F.collect_mask_grads(model, family, batches)
    head_fisher, neuron_fisher = F.fisher(head_grads), F.fisher(neuron_grads)
    t_fisher = time.perf_counter() - t0

    keep = 1.0 - config.sparsity
    hc, nc = unit_costs(family, config.constraint, seq_len)
    if config.layout == "uniform":   # equal counts per layer; rearrangement keeps each layer's count
        find = lambda *a: search_uniform(*a, aligned=family.stock_aligned_heads,  # noqa: E731
                                         keep_heads=family.stock_hidden_rule == "heads_x_head_dim")
    else:
        find = search
    head_m, neuron_m = find(head_fisher, neuron_fisher, hc, nc, keep)
    if config.rearrange:
        if not (config.layout == "uniform" and family.stock_aligned_heads):   # T5: same heads in every layer
            head_m = rearrange_masks(head_m, head_grads)
        neuron_m = rearrange_masks(neuron_m, neuron_grads)
    # the cost of what is kept, in both currencies (the constraint's, and the other one)
    mac_h, mac_n = unit_costs(family, "mac", seq_len)
    par_h, par_n = unit_costs(family, "params")
    ones_h = [torch.ones_like(m) for m in head_m]
    ones_n = [torch.ones_like(m) for m in neuron_m]
    mac_ratio = total_cost(head_m, neuron_m, mac_h, mac_n) / total_cost(ones_h, ones_n, mac_h, mac_n)
    param_ratio = total_cost(head_m, neuron_m, par_h, par_n) / total_cost(ones_h, ones_n, par_h, par_n)
    achieved = mac_ratio if config.constraint == "mac" else param_ratio

    report = []
    t1 = time.perf_counter()
    if config.rescale:
        # the rescale teacher: masks at the intermediate constraint sqrt(keep) (Kwon's schedule)
        t_head, t_neuron = find(head_fisher, neuron_fisher, hc, nc, math.sqrt(keep))
        dev = next(model.parameters()).device
        head_m, neuron_m, report = rescale_masks(
            model, family, batches, ([m.to(dev) for m in t_head], [m.to(dev) for m in t_neuron]),
            ([m.to(dev) for m in head_m], [m.to(dev) for m in neuron_m]),
            damp=config.lsmr_damp, bound=config.rescale_bound, on_bad=config.on_bad_solution,
            skip_first_layer_heads=config.skip_first_layer_heads,
            cls_only_last=(getattr(model.config, "model_type", "") in CLS_POOLED
                           and task.kind in ("classification", "regression")))
    t_rescale = time.perf_counter() - t1

    before = family.param_count(non_embedding=True)
    fold_and_prune(family, head_m, neuron_m)
    after = family.param_count(non_embedding=True)
    rescaled = [r for r in report if r.get("status") == "rescaled"]
    err_ratio = [r["err_after"] / r["err_before"] for r in rescaled if r.get("err_before")]
    return {
        "mt_seconds": time.perf_counter() - t0,
        "mt_fisher_seconds": t_fisher,
        "mt_rescale_seconds": t_rescale,
        "mt_seq_len": seq_len,
        "mt_constraint": config.constraint,
        "mt_target_keep": keep,
        "mt_achieved_keep": achieved,
        "constraint_error": achieved - keep,
        "mac_ratio": mac_ratio,
        "prunable_param_ratio": param_ratio,
        "nonemb_param_ratio": after / before,
        "achieved_sparsity": 1.0 - achieved,
        "heads_kept": int(sum(float((m != 0).sum()) for m in head_m)),
        "heads_total": int(sum(m.numel() for m in head_m)),
        "neurons_kept": int(sum(float((m != 0).sum()) for m in neuron_m)),
        "neurons_total": int(sum(m.numel() for m in neuron_m)),
        "mt_units_rescaled": len(rescaled),
        "mt_rescale_stopped": any(r.get("status") in ("failed", "out_of_bounds") for r in report),
        "mt_rescale_err_ratio": (sum(err_ratio) / len(err_ratio)) if err_ratio else None,
        "widths": family.widths(),            # per-layer heads / FFN sizes of the pruned model
        "_rescale_report": report,
    }


def _is_peft(model) -> bool:
    return hasattr(model, "merge_and_unload") and hasattr(model, "peft_config")


class MaskTunePlugin(MethodPlugin):
    def __init__(self, loaded, config: MaskTuneConfig, ctx):
        self.loaded, self.config, self.ctx = loaded, config, ctx
        self.pruned = False
        self.retuning = False
        self.state = None
        self.report: dict = {}

    def _lora(self):
        from prunelab.methods.lora import lora_plugin_from

        return lora_plugin_from(self.loaded, self.ctx.task, self.config)

    def prepare(self, model):
        if self.config.base == "lora":
            return self._lora().prepare(model)
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def on_train_start(self, state):
        self.state = state
        self.prune_step = state.total_steps - self.config.retune_steps_for(state.total_steps)

    def on_step_start(self, state):
        if self.retuning:
            # Re-tuning gets its own linear decay from retune_lr to 0, as a fresh run would (the
            # loop's schedule is nearly spent this late). The loop's scheduler runs after the
            # optimizer step, so the value set here is the one this step uses.
            lr = (self.config.retune_lr or state.config.train.lr) * \
                max(0.0, (state.total_steps - state.step) / max(1, state.total_steps - self.prune_step))
            for g in state.optimizer.param_groups:
                g["lr"] = lr

    def on_step_end(self, state):
        if not self.pruned and state.step >= self.prune_step:
            state.model = self._prune(state.model, state)

    def _prune(self, model, state=None):
        from prunelab.models.family import get_family

        merged = model.merge_and_unload() if _is_peft(model) else model
        family = self.loaded.family if getattr(self.loaded.family, "model", None) is merged else get_family(merged)
        cfg = self.ctx.config
        report = prune_model(merged, family, self.ctx.task, self.ctx.tokenizer, self.ctx.train_features,
                             self.config, cfg.seed, next(merged.parameters()).device)
        self.rescale_report = report.pop("_rescale_report")
        self.pruned = True
        report["mt_prune_step"] = state.step if state is not None else None
        self.report = report
        if state is not None:
            state.extra_metrics.update(report)
            if state.step < state.total_steps:          # re-tuning follows
                self.retuning = True
                from prunelab.methods.lora import continue_training

                merged = continue_training(state, merged, self._lora() if self.config.base == "lora" else None)
        return merged

    def finalize(self, model):
        if not self.pruned:                              # the loop stopped before the pruning step
            model = self._prune(model)
        if _is_peft(model):
            model = model.merge_and_unload()
        return model


def build(loaded, config: MaskTuneConfig, ctx) -> MethodPlugin:
    return MaskTunePlugin(loaded, config, ctx)


LAYOUT_COMPONENT = Component(
    "layout", default="free", options={"free": {"layout": "free"}, "uniform": {"layout": "uniform"}}, remove="uniform",
    aliases=["layout", "pruning layout", "per-layer widths", "uniform layers", "stock checkpoint"],
    option_aliases={"uniform": ["uniform layout", "equal widths in every layer", "same number of heads per layer"],
                    "free": ["free layout", "per-layer widths"]},
    description=("whether pruning may leave different numbers of heads / FFN neurons in different layers, or must keep "
                 "the same widths in every layer so the pruned model is a stock transformers checkpoint"),
    option_descriptions={"free": "each layer keeps its own number of heads and neurons",
                         "uniform": "every layer keeps the same number of heads and FFN neurons; the export loads "
                                    "with plain from_pretrained, no remote code"})


def _components() -> dict:
    onoff = lambda name, key, aliases: Component(  # noqa: E731
        name, default="on", options={"on": {key: True}, "off": {key: False}}, remove="off", aliases=aliases)
    return {
        "rearrange": onoff("rearrange", "rearrange", ["mask rearrangement", "greedy rearrangement"]),
        "rescale": onoff("rescale", "rescale", ["mask tuning", "mask rescaling", "least squares rescaling"]),
        "constraint": Component("constraint", default="mac", options={"mac": {"constraint": "mac"},
                                                                      "params": {"constraint": "params"}},
                                aliases=["constraint", "budget"]),
        "sparsity": Component("sparsity", default="default", options={"default": {}}, numeric="sparsity",
                              numeric_range=(0.0, 0.99), aliases=["sparsity", "pruning ratio"]),
        "layout": LAYOUT_COMPONENT,
        "retune": Component("retune", default="none", options={"none": {"retune_fraction": 0.0},
                                                               "retune": {"retune_fraction": 0.2}},
                            remove="none", aliases=["retraining", "re-tuning", "retrain"]),
    }


register_method(Method("masktune", MaskTuneConfig, build, components=_components(),
                       description="Kwon et al. 2022 post-training pruning (Fisher mask search, rearrangement, "
                                   "LSMR rescaling) after FT (base=ft) or LoRA (base=lora)"))
register_method(Method("lora_prune", LoRAPruneConfig, build, components=_components(),
                       description="APT's LoRA+Prune: LoRA fine-tuning, merge, Mask Tuning (MAC constraint), "
                                   "optional LoRA re-tuning (retune_steps / retune_fraction)"))
