"""Invariants of APT's lifecycles (issue 10): the optimizer always holds exactly the live
trainable parameters, a teacher snapshot leaves the student's hooks untouched, masks decay to
zero before every snap, and the default teacher shares (and prunes with) the frozen weights."""
import pytest
import torch

from prunelab.methods.apt import distill as D
from prunelab.methods.apt.config import APTConfig
from prunelab.methods.apt.pruner import MaskState, Structure
from prunelab.methods.apt.schedule import build_plan
from prunelab.methods.apt.testing import make_plugin, randomize_adapters, train_plugin
from prunelab.models.testing import example_batch, outputs
from prunelab.train.callbacks import Callback


class OptimizerInvariant(Callback):
    """After every plugin callback that may reshape parameters: optimizer params == live trainable params."""

    def __init__(self):
        self.checks = 0

    def _check(self, state, where):
        opt = {id(p) for g in state.optimizer.param_groups for p in g["params"]}
        live = {id(p) for p in state.model.parameters() if p.requires_grad}
        assert opt == live, f"optimizer out of sync with the model's trainable parameters after {where} " \
                            f"(step {state.step}: {len(live - opt)} live parameters not in the optimizer)"
        self.checks += 1

    def on_step_start(self, state):
        self._check(state, "on_step_start")

    def on_step_end(self, state):
        self._check(state, "on_step_end")

    def on_eval(self, state, metrics):
        self._check(state, "on_eval")


class Improving:
    """Wraps a task so that every dev evaluation scores better than the last (the teacher is
    then re-taken at every evaluation inside the distillation window)."""

    def __init__(self, task):
        self.task, self.n = task, 0

    def __getattr__(self, name):
        return getattr(self.task, name)

    def evaluate(self, *a, **k):
        self.n += 1
        return {"score": float(self.n)}


@pytest.mark.parametrize("distill", ["self_snapshot", "self"])
def test_optimizer_holds_exactly_the_live_trainable_parameters_through_teacher_refreshes(distill):
    # hidden dims are pruned at steps 6 and 10; dev evaluations at 5, 10, 15, 20 all improve,
    # so the teacher is re-taken after the hidden dims shrank (snapshot teacher: Tr's output
    # rows follow it and its LoRA factors are re-created)
    plugin, model, task, ctx = make_plugin("tiny-bert", steps=20, preset="tiny", prune_heads=False,
                                           prune_neurons=False, sparsity=0.3, distill=distill)
    ctx.config.train.eval_points = 4
    inv = OptimizerInvariant()
    ctx.task = plugin.task = Improving(task)
    train_plugin(plugin, model, ctx.task, ctx, callbacks=[inv])
    assert plugin.family.hidden_size < 64 and plugin.teacher.refreshes >= 2
    assert inv.checks >= 40


def test_tr_keeps_training_after_a_refresh():
    plugin, model, task, ctx = make_plugin("tiny-bert", steps=20, preset="tiny", prune_heads=False,
                                           prune_neurons=False, sparsity=0.3, distill="self_snapshot")
    ctx.config.train.eval_points = 4
    seen = {}

    class Probe(Callback):
        def on_eval(self, state, metrics):
            if state.step == 10:
                seen["B"] = plugin.apt.transform.lora.B.detach().clone()

    ctx.task = plugin.task = Improving(task)
    train_plugin(plugin, model, ctx.task, ctx, callbacks=[Probe()])
    B = plugin.apt.transform.lora.B
    assert B.shape == seen["B"].shape and not torch.equal(B.detach(), seen["B"])   # it moved after step 10


def _hooks(model):
    return [(n, tuple(m._forward_hooks.values()), tuple(m._forward_pre_hooks.values()))
            for n, m in model.named_modules()]


@pytest.mark.parametrize("name,kind", [("tiny-llama", "lm"), ("tiny-t5", "seq2seq"), ("tiny-bert", "classification")])
def test_snapshot_leaves_the_students_hooks_and_outputs_unchanged(name, kind):
    plugin, model, task, ctx = make_plugin(name, kind=kind, distill="self_snapshot",
                                           targets=("q", "v", "o", "up", "down"))
    randomize_adapters(plugin)
    s = plugin.structure
    plugin.masks.move(plugin._select(0.5), 0.3)              # soft masks, as inside a window
    plugin.family.set_masks(**plugin.masks.family_masks())
    plugin.collector.active = False
    model.eval()
    batch = example_batch(model)
    before, hooks = outputs(model, batch), _hooks(model)
    plugin.distiller.take_teacher(None)
    assert _hooks(model) == hooks                             # same hook objects, same order
    torch.testing.assert_close(outputs(model, batch), before)
    assert all(len(m._forward_pre_hooks) == 0 for m in plugin.teacher.module.modules())   # no student hooks copied
    assert s.hidden == plugin.structure.hidden


# -- mask windows --------------------------------------------------------------------------------
@pytest.mark.parametrize("preset,total", [("cpu", 500), ("cpu", 120), ("cpu", 200), ("paper", 84200),
                                          ("tiny", 20), ("tiny", 40)])
def test_every_preset_gives_windows_in_which_masks_reach_zero(preset, total):
    cfg = APTConfig(**APTConfig.PRESETS[preset])
    plan = build_plan(cfg, total)
    for p, w, r in zip(plan.steps, plan.window_starts, plan.mask_rates):
        m = torch.ones(1)
        for _ in range(w, p):                                 # the moves made inside the window
            m.add_(-r).clamp_(0, 1)
        assert float(m) == 0.0, (preset, total, p, w, r)


@pytest.mark.parametrize("preset,steps", [("tiny", 20), ("cpu", 40)])
def test_masks_read_zero_in_the_forward_before_each_snap(preset, steps):
    plugin, model, task, ctx = make_plugin("tiny-bert", steps=steps, preset=preset, distill="none",
                                           masks="fixed", config_overrides=dict(hidden_size=128,
                                           num_attention_heads=8, intermediate_size=256, num_hidden_layers=4))
    read = {}

    class Reader(Callback):
        def on_step_start(self, state):
            k = plugin.plan.pruning_index(state.step + 1)
            if k is not None and plugin.plan.window_starts[k] < plugin.plan.steps[k]:
                read[state.step + 1] = {"neuron": {b: m.clone() for b, m in plugin.masks.neuron.items()},
                                        "hidden": plugin.masks.hidden.clone(),
                                        "head": {b: m.clone() for b, m in plugin.masks.head.items()}}

        def on_step_end(self, state):
            if state.step in read:                           # the snap just happened: what did it drop?
                r = read[state.step]
                r["dropped"] = [float(v) for kind in ("head", "neuron") for b, m in r[kind].items()
                                for v in m[m < 1]]
    train_plugin(plugin, model, task, ctx, callbacks=[Reader()])
    masks_before_snaps = [r for r in read.values()]
    assert masks_before_snaps
    # every unit whose mask had started to fall in the window is at exactly 0 by the last forward
    partial = [v for r in masks_before_snaps for v in r["dropped"] if 0 < v < 1]
    zeros = [v for r in masks_before_snaps for v in r["dropped"] if v == 0]
    assert zeros and not partial


# -- memory: the default teacher shares and prunes with the frozen weights -----------------------
def _tensor_bytes(obj) -> int:
    seen, total = set(), 0
    tensors = []
    if isinstance(obj, dict):
        tensors = list(obj.values())
    elif isinstance(obj, torch.nn.Module):
        tensors = list(obj.parameters()) + list(obj.buffers())
    for t in tensors:
        if t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            total += t.untyped_storage().nbytes()
    return total


def test_default_teacher_holds_only_adapter_and_head_copies_after_pruning():
    plugin, model, task, ctx = make_plugin("tiny-bert", steps=20, preset="tiny")
    assert plugin.cfg.distill == "self" and isinstance(plugin.teacher, D.SharedTeacher)
    train_plugin(plugin, model, task, ctx)
    frozen = sum(p.numel() * p.element_size() for n, p in model.named_parameters()
                 if not p.requires_grad and not n.startswith("prunelab_apt"))
    held = _tensor_bytes(plugin.teacher.head) + _tensor_bytes(plugin.adapters.teacher)
    assert held < 0.1 * frozen
    # the snapshot option keeps the weights the student dropped since its snapshot
    from prunelab.methods.apt.pruner import Keep
    snap, smodel, _, _ = make_plugin("tiny-bert", distill="self_snapshot")
    snap.distiller.take_teacher(None)
    st = snap.structure
    snap._remove(Keep({a.index: torch.ones(a.units, dtype=torch.bool) for a in st.attn},
                      {b.index: torch.arange(b.units) % 2 == 0 for b in st.ffn},
                      torch.arange(st.hidden) % 4 != 0))
    student = {t.untyped_storage().data_ptr() for t in smodel.parameters()}
    extra = sum(p.untyped_storage().nbytes() for p in snap.teacher.module.parameters()
                if p.untyped_storage().data_ptr() not in student)
    assert extra > 0.5 * frozen
