"""APT end to end on tiny models: the loop, physical pruning while training, finalize, export,
and what each ablation option changes."""
import pytest
import torch

from prunelab.config import RunConfig, TrainConfig
from prunelab.methods.apt.pruner import Keep, measured_size
from prunelab.methods.apt.testing import make_plugin, randomize_adapters, train_plugin
from prunelab.models.testing import example_batch, outputs
from prunelab.train.callbacks import Callback

WIDE_BERT = dict(hidden_size=256, num_attention_heads=16, intermediate_size=512, num_hidden_layers=6)
MID_BERT = dict(hidden_size=128, num_attention_heads=8, intermediate_size=256, num_hidden_layers=4)


class Watch(Callback):
    """Counts optimizer rebuilds and model forwards; checks optimizer shapes after each."""

    def __init__(self, model):
        self.rebuilds, self.forwards, self.steps = 0, 0, 0
        model.register_forward_pre_hook(lambda m, a: self._fwd())

    def _fwd(self):
        self.forwards += 1

    def on_train_start(self, state):
        inner = state._rebuild

        def rebuild():
            self.rebuilds += 1
            inner()
            opt = {id(p) for g in state.optimizer.param_groups for p in g["params"]}
            live = {id(p) for p in state.model.parameters() if p.requires_grad}
            assert opt == live                      # the new optimizer holds exactly the live parameters
        state._rebuild = rebuild

    def on_step_end(self, state):
        self.steps += 1


def _run(steps=30, model_name="tiny-bert", kind="classification", overrides=None, **args):
    plugin, model, task, ctx = make_plugin(model_name, kind=kind, steps=steps, config_overrides=overrides,
                                           **{"preset": "tiny", **args})
    watch = Watch(model)
    res = train_plugin(plugin, model, task, ctx, callbacks=[watch])
    return plugin, model, res, watch


def test_training_prunes_physically_to_the_budget_and_finalizes_to_a_plain_model():
    plugin, model, res, watch = _run(steps=40, overrides=WIDE_BERT)
    dense = plugin.dense_measured
    assert abs(1 - measured_size(plugin.family) / dense - 0.6) <= 0.01
    assert watch.rebuilds == len(plugin.plan.steps)           # optimizer + scheduler at every pruning step
    assert any(a.units < 16 for a in plugin.structure.attn) or plugin.structure.hidden < 256
    model.eval()
    batch = example_batch(model)
    before = outputs(model, batch)
    final = plugin.finalize(model)
    m = res.state.extra_metrics
    assert m["apt_sparsity"] == pytest.approx(1 - measured_size(plugin.family) / dense)
    assert abs(m["apt_sparsity"] - 0.6) <= 0.01 and m["apt_sparsity_target"] == 0.6
    assert m["apt_tunable_params_final"] > m["apt_tunable_params_start"]
    assert len(m["apt_prune_step_seconds"]) == len(plugin.plan.steps)
    assert "prunelab_apt" not in dict(final.named_children())
    assert not any(p.requires_grad for p in final.parameters())
    assert all(len(mod._forward_hooks) == 0 and len(mod._forward_pre_hooks) == 0
               for mod in list(final.modules())[1:])          # (the root holds the test's own counter)
    torch.testing.assert_close(outputs(final, batch), before, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,kind", [("tiny-t5", "seq2seq"), ("tiny-llama", "lm")])
def test_other_families_train_prune_and_finalize(name, kind):
    plugin, model, res, _ = _run(steps=20, model_name=name, kind=kind)
    assert measured_size(plugin.family) < plugin.dense_measured
    model.eval()
    batch = example_batch(model)
    before = outputs(model, batch)
    final = plugin.finalize(model)
    torch.testing.assert_close(outputs(final, batch), before, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,kind", [("tiny-bert", "classification"), ("tiny-t5", "seq2seq"),
                                       ("tiny-llama", "lm")])
def test_export_round_trip(name, kind, tmp_path):
    from prunelab.export import load_pruned, save_pruned

    plugin, model, _, _ = make_plugin(name, kind=kind)
    randomize_adapters(plugin)
    g = torch.Generator().manual_seed(0)
    s = plugin.structure

    def draw(n):
        k = torch.rand(n, generator=g) < 0.6
        k[0] = True
        return k
    plugin._remove(Keep({a.index: draw(a.units) for a in s.attn}, {b.index: draw(b.units) for b in s.ffn},
                        draw(s.hidden)))
    plugin.state = None
    final = plugin.finalize(model).eval()
    batch = example_batch(final)
    want = outputs(final, batch)
    save_pruned(final, tmp_path / "m", plugin.loaded.tokenizer)
    again = load_pruned(tmp_path / "m")
    torch.testing.assert_close(outputs(again, batch), want, rtol=1e-5, atol=1e-5)


# -- ablation options: each changes what it should ---------------------------------------------------
def test_tuning_options():
    p, *_ = _run(tuning="static")
    assert set(p.adapters.ranks().values()) == {8}
    p, *_ = _run(tuning="static", static_rank=32)
    assert set(p.adapters.ranks().values()) == {32}
    p, *_ = _run(tuning="uniform")
    assert min(p.adapters.ranks().values()) > 8                # every adapter grew
    p, *_ = _run()                                              # adaptive: only some grew
    ranks = p.adapters.ranks().values()
    assert min(ranks) == 8 and max(ranks) > 8
    p, m, *_ = _run(tuning="none")
    assert len(p.adapters.student) == 0


def test_pruning_off_keeps_the_dense_model_but_still_grows_ranks():
    p, m, _, watch = _run(pruning="off")
    assert measured_size(p.family) == p.dense_measured and p.collector._handles == []
    assert max(p.adapters.ranks().values()) > 8


def test_distillation_none_runs_one_forward_per_step():
    p, m, _, watch = _run(steps=20, distill="none")
    assert p.teacher is None and p.apt.transform is None
    assert watch.forwards == watch.steps + 2                   # + two dev evaluations (one batch each)


def test_self_distillation_runs_the_teacher_only_while_distilling():
    p, m, _, watch = _run(steps=20)
    distilled = sum(1 for t in range(20) if p.plan.mu(t) > 0)
    assert watch.forwards == watch.steps + distilled + 2


def test_no_layer_loss_has_no_transform():
    p, *_ = _run(layer_loss=False)
    assert p.apt.transform is None and p.teacher is not None


def test_fixed_masks_freeze_the_ranking():
    p, *_ = _run(steps=20, masks="fixed", overrides=MID_BERT)
    assert p.frozen_density is not None
    a, *_ = _run(steps=20, masks="adaptive", overrides=MID_BERT)
    assert a.frozen_density is None


def test_schedule_options_move_the_pruning_steps():
    p, *_ = _run(steps=40, schedule="last_quarter")
    assert p.plan.steps == (30,)
    p, *_ = _run(steps=40, schedule="init")
    assert p.plan.steps == (2,)
    p, *_ = _run(steps=40, schedule="gradual")
    assert p.plan.steps[-1] == 36


def test_salience_options_change_the_selection():
    keeps = {}
    for sal in ("outlier_aware", "magnitude", "random", "uniform"):
        p, *_ = _run(steps=12, salience=sal, distill="none", overrides=MID_BERT)
        keeps[sal] = p.family.widths()
    assert keeps["random"] != keeps["outlier_aware"] and keeps["uniform"] != keeps["outlier_aware"]
    assert keeps["magnitude"] != keeps["outlier_aware"]


def test_ft_teacher_is_trained_separately(tmp_path):
    p, m, res, _ = _run(steps=10, distill="ft_teacher")
    assert p.teacher is not None and p.teacher.shares_weights is False
    p.finalize(m)
    assert res.state.extra_metrics["teacher_train_seconds"] > 0


def test_run_records_apt_metrics(sst2_dir, tmp_path):
    from prunelab.run import run

    cfg = RunConfig(model="tiny-bert", task="glue/sst2", method="apt", method_args={"preset": "tiny"},
                    data_dir=sst2_dir, train=TrainConfig(batch_size=8, max_steps=20, eval_points=2, lr=1e-3),
                    measure={"batch_sizes": [4], "seq_len": 16, "repeats": 1, "warmup": 0, "real_lengths": False})
    row = run(cfg, tmp_path / "r.db")
    assert row["status"] == "done", row.get("error")
    m = row["metrics"]
    assert m["params"] < m["dense_params"] and m["apt_sparsity"] > 0.5
    assert m["apt_plan"]["steps"] and m["apt_ranks_final"]
    assert set(m["apt_step_seconds"]) == {"before_pruning", "pruning", "after_pruning"}
    assert sum(m["apt_steps_per_phase"].values()) == 20 and all(v > 0 for v in m["apt_step_seconds"].values())
