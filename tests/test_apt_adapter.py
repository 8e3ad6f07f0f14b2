"""APT adapter: dynamic-rank LoRA; growth leaves outputs unchanged; pruning keeps it in sync."""
import torch

from prunelab.methods.apt.adapter import APTAdapter, LayerTransform
from prunelab.methods.apt.testing import make_plugin, randomize_adapters
from prunelab.models.testing import example_batch, outputs


def test_growth_keeps_the_delta_and_initialises_as_the_paper_says():
    torch.manual_seed(0)
    ad = APTAdapter(16, 12, rank=8, scaling=2.0)
    ad.B.data.normal_()
    x = torch.randn(3, 16)
    before = ad(x)
    ad.grow(20, torch.Generator().manual_seed(1))
    assert ad.rank == 20 and ad.A.shape == (20, 16) and ad.B.shape == (12, 20)
    assert torch.equal(ad.B[:, 8:], torch.zeros(12, 12))                  # new B columns are zero
    assert ad.A[8:].abs().sum() > 0 and ad.scaling == 2.0                 # new A rows Gaussian, s fixed
    torch.testing.assert_close(ad(x), before, rtol=0, atol=1e-6)


def test_pruning_the_adapter_equals_slicing_its_delta():
    torch.manual_seed(0)
    ad = APTAdapter(10, 8, rank=4, scaling=2.0)
    ad.B.data.normal_()
    full = ad.delta_weight()
    rows, cols = torch.tensor([0, 3, 5]), torch.tensor([1, 2, 7, 9])
    ad.prune_out(rows)
    ad.prune_in(cols)
    torch.testing.assert_close(ad.delta_weight(), full[rows][:, cols])


def test_transform_starts_as_identity_and_prunes_both_sides():
    tr = LayerTransform(6, rank=2, scaling=2.0)
    x = torch.randn(2, 3, 6)
    torch.testing.assert_close(tr(x), x)
    keep = torch.tensor([0, 2, 5])
    tr.prune_in(keep)
    tr.prune_out(keep)
    torch.testing.assert_close(tr(x[..., keep]), x[..., keep])


def test_rank_growth_leaves_model_outputs_unchanged():
    plugin, model, _, _ = make_plugin("tiny-bert")
    randomize_adapters(plugin)
    model.eval()
    batch = example_batch(model)
    before = outputs(model, batch)
    plugin.ranks.importance = {k: float(i) for i, k in enumerate(plugin.adapters.student)}
    grown = plugin.ranks.grow(2.0)
    assert grown and all(new == 16 for _, new in grown.values())
    assert len(grown) == len(plugin.adapters.student) // 2                 # the top half
    top = sorted(plugin.ranks.importance, key=plugin.ranks.importance.get)[-len(grown):]
    assert set(grown) == set(top)
    torch.testing.assert_close(outputs(model, batch), before, rtol=0, atol=1e-6)


def test_adapters_sit_on_q_v_up_and_merge_exactly():
    plugin, model, _, _ = make_plugin("tiny-bert")
    assert sorted({k.split("_")[1] for k in plugin.adapters.student}) == ["q", "up", "v"]
    plugin_l, _, _, _ = make_plugin("tiny-llama")
    assert sorted({k.split("_")[1] for k in plugin_l.adapters.student}) == ["q", "v"]
    plugin_t, model_t, _, _ = make_plugin("tiny-t5", kind="seq2seq")
    kinds = [b.kind for b in plugin_t.family.attention_blocks()]
    assert "cross" in kinds and len([k for k in plugin_t.adapters.student if k.endswith("_q")]) == len(kinds)
    randomize_adapters(plugin)
    model.eval()
    batch = example_batch(model)
    before = outputs(model, batch)
    plugin.state = None
    merged = plugin.finalize(model)
    assert "prunelab_apt" not in dict(merged.named_children())
    torch.testing.assert_close(outputs(merged, batch), before, rtol=1e-5, atol=1e-5)
