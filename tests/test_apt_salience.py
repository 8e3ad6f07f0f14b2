"""Salience: exact kurtosis of W x X from moments, hooks on ordinary batches, EMA with decay."""
import pytest
import torch

from prunelab.methods.apt.pruner import select
from prunelab.methods.apt.salience import (SalienceEMA, kurtosis_from_moments, outlier_term, uniform_density,
                                           weight_column_moments)
from prunelab.methods.apt.testing import make_plugin
from prunelab.models.testing import example_batch


def _excess_kurtosis(v):
    v = v.double().flatten()
    c = v - v.mean()
    return (c ** 4).mean() / (c ** 2).mean() ** 2 - 3


def test_outlier_term_equals_kurtosis_of_the_materialised_products():
    torch.manual_seed(0)
    W = torch.randn(5, 6) + torch.tensor([0, 0, 0, 0, 0, 4.0])   # an outlier column
    X = torch.randn(40, 6) * torch.tensor([1, 1, 1, 1, 8.0, 1])   # tokens x channels
    x_mom = torch.stack([(X.double() ** k).mean(0) for k in range(1, 5)])
    got = outlier_term(weight_column_moments(W), x_mom, width=2)  # units of 2 channels
    for u in range(3):
        cols = [2 * u, 2 * u + 1]
        O = torch.cat([torch.outer(W[:, j], X[:, j]).flatten() for j in cols])   # O_{:,j} = W_{:,j} x_j^T
        assert got[u] == pytest.approx(max(0.0, float(_excess_kurtosis(O))) ** 0.5, rel=1e-6)
    assert kurtosis_from_moments(x_mom).shape == (6,)


@pytest.mark.parametrize("method", ["outlier_aware", "standard", "gradient", "fisher"])
def test_hooks_score_every_unit_from_the_training_batch_alone(method):
    plugin, model, _, _ = make_plugin("tiny-bert", salience=method)
    calls = []
    h = model.register_forward_pre_hook(lambda m, a, k=None: calls.append(1))
    batch = {**example_batch(model), "labels": torch.tensor([0, 1])}
    plugin.collector.active = True
    plugin.collector.reset()
    model.train()
    model(**batch).loss.backward()
    s = plugin.collector.scores(plugin.structure)
    h.remove()
    assert len(calls) == 1                                 # no extra passes
    assert set(s["head"]) == {0, 1} and s["head"][0].shape == (4,) and s["neuron"][1].shape == (128,)
    assert s["hidden"].shape == (64,)
    for v in (*s["head"].values(), *s["neuron"].values(), s["hidden"]):
        assert torch.isfinite(v).all() and (v >= 0).all() and v.sum() > 0


def test_kurtosis_only_changes_scores_by_the_outlier_term():
    a_plugin, model, _, _ = make_plugin("tiny-bert", salience="standard")
    b_plugin, model_b, _, _ = make_plugin("tiny-bert", salience="outlier_aware")
    batch = {**example_batch(model), "labels": torch.tensor([0, 1])}
    out, seen = [], []
    b_plugin.family.ffn_blocks()[0].down.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
    for plugin, m in ((a_plugin, model), (b_plugin, model_b)):
        plugin.collector.active = True
        plugin.collector.moment_tokens = 10 ** 6           # all tokens: deterministic
        plugin.collector.reset()
        m.eval()                                           # no dropout: the same forward in both
        m(**batch).loss.backward()
        out.append(plugin.collector.scores(plugin.structure))
    diff = out[1]["neuron"][0] - out[0]["neuron"][0]
    assert (diff >= 0).all() and diff.max() > 0
    # the neuron term is sqrt(Kurt) of O = W_down[:, j] x_j^T over rows and tokens
    W = b_plugin.family.ffn_blocks()[0].down.weight.detach()
    X = seen[0].reshape(-1, W.shape[1])
    want = torch.stack([_excess_kurtosis(torch.outer(W[:, j], X[:, j])).clamp_min(0).sqrt()
                        for j in range(W.shape[1])])
    torch.testing.assert_close(diff, want, rtol=1e-3, atol=1e-4)


def test_ema_decays_virtually_pruned_units_and_reindexes():
    ema = SalienceEMA(0.85)
    one = {"head": {0: torch.ones(3, dtype=torch.float64)}, "neuron": {}, "hidden": torch.ones(2, dtype=torch.float64)}
    ema.update(one)
    assert torch.allclose(ema.value["head"][0], torch.full((3,), 0.15, dtype=torch.float64))
    zero = {"head": {0: torch.tensor([False, True, False])}, "neuron": {}, "hidden": torch.tensor([False, False])}
    ema.update(one, zero)
    h = ema.value["head"][0]
    assert h[0] == pytest.approx(0.85 * 0.15 + 0.15) and h[1] == pytest.approx(0.85 * 0.15)


def test_uniform_density_prunes_every_block_evenly():
    plugin, _, _, _ = make_plugin("tiny-bert")
    s = plugin.structure
    keep = select(s, uniform_density(s), 0.4 * s.size())
    fr = [float(v.float().mean()) for v in keep.neuron.values()] + [float(keep.hidden.float().mean())]
    assert max(fr) - min(fr) <= 0.05


def test_magnitude_and_random_scorers_need_no_hooks():
    for method in ("magnitude", "random", "uniform"):
        plugin, _, _, _ = make_plugin("tiny-bert", salience=method)
        assert plugin.collector._handles == []
        d = plugin._density()
        assert d["hidden"].shape == (64,) and torch.isfinite(d["head"][0]).all()
