"""Self-distillation: quarter sampling, layer mapping around pruned layers, losses, mu mixing, teachers."""
import random

import pytest
import torch
from types import SimpleNamespace

from prunelab.methods.apt import distill as D
from prunelab.methods.apt.pruner import Keep
from prunelab.methods.apt.testing import make_plugin, train_plugin
from prunelab.train.callbacks import Callback


def test_one_teacher_layer_per_quarter():
    rng = random.Random(0)
    for _ in range(20):
        got = D.quarter_layers(list(range(6)), rng)
        assert len(got) == 4 and got[0] in (0, 1) and got[1] in (2, 3) and got[2] == 4 and got[3] == 5
    assert D.quarter_layers([0, 1], rng) == [0, 1]


def test_mapping_skips_pruned_layers_by_least_mse():
    layers = list(range(6))
    surviving = {0: True, 1: True, 2: False, 3: False, 4: True, 5: True}
    mse = {(2, 1): 0.5, (2, 4): 0.2, (3, 1): 0.1, (3, 4): 0.3}
    pairs = D.map_layers([0, 2, 3, 5], layers, surviving, lambda t, s: mse[(t, s)])
    assert pairs == [(0, 0), (2, 4), (3, 1), (5, 5)]
    assert D.map_layers([0], [0, 1], {0: False, 1: False}, lambda t, s: 0) == []
    assert D.map_layers([0], [0, 1], {0: False, 1: True}, lambda t, s: 0) == [(0, 1)]


def test_prediction_loss_is_tau_squared_kl():
    torch.manual_seed(0)
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    out = lambda z: SimpleNamespace(logits=z)  # noqa: E731
    got = D.prediction_loss(out(s), out(t), "classification", 4.0, {})
    p_t = torch.softmax(t / 4, -1)
    want = (p_t * (p_t.log() - torch.log_softmax(s / 4, -1))).sum(-1).mean() * 16
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    assert float(D.prediction_loss(out(s), out(s), "classification", 4.0, {})) == pytest.approx(0, abs=1e-6)
    tok = D.prediction_loss(out(torch.randn(2, 5, 7)), out(torch.randn(2, 5, 7)), "seq2seq", 4.0,
                            {"labels": torch.tensor([[1, 2, -100, -100, -100], [1, 2, 3, 4, 5]])})
    assert torch.isfinite(tok)


class Recorder(Callback):
    def __init__(self):
        self.rows = []

    def on_step_end(self, state):
        self.rows.append({"step": state.step, "loss": float(state.loss.detach()), **dict(state.log)})
        state.log.clear()


def test_loss_is_mu_mix_of_distillation_and_fine_tuning():
    plugin, model, task, ctx = make_plugin("tiny-bert", steps=20, preset="tiny")
    rec = Recorder()
    train_plugin(plugin, model, task, ctx, callbacks=[rec])
    plan = plugin.plan
    mixed = [r for r in rec.rows if "apt_mu" in r]
    assert mixed and all(plan.distilling(r["step"] - 1) for r in mixed)
    for r in mixed:
        t = r["step"] - 1
        assert r["apt_mu"] == pytest.approx(plan.mu(t), abs=1e-4)
        want = r["apt_mu"] * (r["apt_l_pred"] + 0.9 * r["apt_l_layer"]) + (1 - r["apt_mu"]) * r["apt_l_ft"]
        assert r["loss"] == pytest.approx(want, rel=1e-4, abs=1e-6)
    # no teacher before the pruning start or after distill_end: plain fine-tuning
    assert all("apt_mu" not in r for r in rec.rows if r["step"] - 1 >= plan.distill_end or r["step"] - 1 <= plan.start)


def test_layer_loss_maps_around_layers_without_heads():
    plugin, model, task, ctx = make_plugin("tiny-bert", config_overrides={"num_hidden_layers": 6},
                                           distill="self_snapshot")
    s = plugin.structure
    keep = Keep({a.index: torch.ones(a.units, dtype=torch.bool) for a in s.attn},
                {b.index: torch.ones(b.units, dtype=torch.bool) for b in s.ffn}, torch.ones(s.hidden, dtype=torch.bool))
    keep.head[4] = torch.zeros(4, dtype=torch.bool)          # layer 4 loses every head
    plugin._remove(keep)
    assert plugin._surviving() == {0: True, 1: True, 2: True, 3: True, 4: False, 5: True}
    plugin.distiller.layer_rng = random.Random(0)
    plugin.plan = None
    for _ in range(10):
        plugin.distiller.take_teacher(None)
        batch = task.collate(ctx.train_features[:4])
        plugin.capture.store = {}
        out = model(**batch)
        hidden = plugin.capture.store
        plugin.capture.store = None
        t_out, t_hidden = plugin.teacher.forward(model, batch, plugin.family, plugin.capture, None)
        loss = plugin.distiller._layer_loss(hidden, t_hidden, batch, plugin._surviving())
        pairs = plugin.distiller.step_log["pairs"]
        assert all(s_ != 4 for _, s_ in pairs) and (4, 3) in pairs or (4, 5) in pairs or all(t != 4 for t, _ in pairs)
        assert torch.isfinite(loss)


def _hidden_only(**kw):
    return make_plugin("tiny-bert", steps=20, preset="tiny", prune_heads=False, prune_neurons=False,
                       sparsity=0.3, **kw)


def test_snapshot_teacher_shares_frozen_tensors_until_the_student_prunes_them():
    plugin, model, task, ctx = _hidden_only(distill="self_snapshot")
    plugin.plan = None
    plugin.distiller.take_teacher(None)
    teacher = plugin.teacher
    student = {n: p for n, p in model.named_parameters() if not n.startswith("prunelab_apt")}
    twin = dict(teacher.module.named_parameters())
    shared = [n for n, p in student.items() if not p.requires_grad]
    assert shared and all(twin[n] is student[n] for n in shared)            # no second copy
    assert all(twin[n] is not student[n] for n, p in student.items() if p.requires_grad)
    s = plugin.structure
    keep = Keep({a.index: torch.ones(a.units, dtype=torch.bool) for a in s.attn},
                {b.index: torch.ones(b.units, dtype=torch.bool) for b in s.ffn},
                torch.arange(s.hidden) % 4 != 0)
    plugin._remove(keep)
    assert plugin.family.hidden_size == 48 and teacher.module.config.hidden_size == 64
    assert dict(teacher.module.named_parameters())["bert.encoder.layer.0.attention.self.query.weight"].shape == (64, 64)
    batch = task.collate(ctx.train_features[:4])
    plugin.capture.store = {}
    model(**batch)
    hidden = plugin.capture.store
    plugin.capture.store = None
    t_out, t_hidden = teacher.forward(model, batch, plugin.family, plugin.capture, None)
    assert t_hidden[0].shape[-1] == 64 and plugin.apt.transform.base.shape == (64, 48)
    assert torch.isfinite(plugin.distiller._layer_loss(hidden, t_hidden, batch, plugin._surviving()))
    # a refresh after pruning re-takes the (now pruned) student; Tr follows the teacher's dims
    plugin.distiller.take_teacher(None)
    assert teacher.module.config.hidden_size == 48 or teacher.module.bert.embeddings.word_embeddings.weight.shape[1] == 48
    assert plugin.apt.transform.base.shape == (48, 48)


def test_teacher_variants_after_training():
    for distill, kind in (("self_snapshot", D.SnapshotTeacher), ("self_copy", D.SnapshotTeacher),
                          ("self", D.SharedTeacher)):
        plugin, model, task, ctx = _hidden_only(distill=distill)
        train_plugin(plugin, model, task, ctx)
        assert isinstance(plugin.teacher, kind) and plugin.teacher.refreshes >= 1
        d = plugin.family.hidden_size
        tr = plugin.apt.transform
        assert tr.base.shape[1] == d and tr.base.shape[0] == len(plugin.distiller.tr_out_ids) >= d
    # self_copy owns its tensors
    plugin, model, task, ctx = _hidden_only(distill="self_copy")
    plugin.plan = None
    plugin.distiller.take_teacher(None)
    twin = dict(plugin.teacher.module.named_parameters())
    assert all(twin[n] is not p for n, p in model.named_parameters() if n in twin)
    # the no-copy teacher's head copies follow the student's hidden pruning
    plugin, model, task, ctx = _hidden_only(distill="self")
    train_plugin(plugin, model, task, ctx)
    head = plugin.teacher.head["classifier.weight"]
    assert head.shape == dict(model.named_parameters())["classifier.weight"].shape


def _teacher_takes(teacher_refresh):
    sched = {"num_prunings": 4, "prune_start": 0.1, "prune_end": 0.6, "sparsity_warmup": 0.0, "distill_end": 0.8}
    plugin, model, task, ctx = make_plugin("tiny-bert", n_train=256, steps=40, batch_size=8,
                                           teacher_refresh=teacher_refresh, **sched)
    calls = []
    orig = plugin.distiller.take_teacher

    def spy(state):
        calls.append(state.step)
        return orig(state)
    plugin.distiller.take_teacher = spy
    train_plugin(plugin, model, task, ctx)
    return calls, plugin.plan


def test_train_loss_refresh_retakes_the_self_teacher_before_pruning_steps():
    # eval: the teacher taken at distillation start (step 4 of 40) stays until a dev eval improves,
    # however little the student knew then; train_loss: re-taken before pruning steps whose
    # label-loss EMA improved (the code's pre-pruning momentum refresh)
    calls_eval, plan = _teacher_takes("eval")
    calls_train, _ = _teacher_takes("train_loss")
    assert not set(calls_eval) & set(plan.steps)
    assert set(calls_train) & set(plan.steps)
    assert calls_train[0] == calls_eval[0] == plan.start
