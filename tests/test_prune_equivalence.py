"""Masked model == physically pruned model (the Sheared-LLaMA check), for every family."""
import copy
from types import SimpleNamespace as NS

import pytest
import torch

from prunelab.models import get_family, load_model
from prunelab.models.testing import example_batch, outputs, random_masks

# Tiny models: one thread avoids OpenMP barrier stalls when other processes share the 2 cores
# (16 ms -> 20 us per tiny matmul here).
torch.set_num_threads(1)

TASKS = {
    "tiny-bert": NS(kind="classification", num_labels=3),
    "tiny-roberta": NS(kind="qa", num_labels=2),
    "tiny-t5": NS(kind="seq2seq"),
    "tiny-t5-gated": NS(kind="seq2seq"),
    "tiny-llama": NS(kind="lm"),
}
PARTS = {"heads": dict(neurons=False, hidden=False), "neurons": dict(heads=False, hidden=False),
         "hidden": dict(heads=False, neurons=False), "all": {}}


def _masked_and_pruned(model, masks):
    masked = copy.deepcopy(model)
    get_family(masked).set_masks(**masks)
    pruned = copy.deepcopy(model)
    get_family(pruned).prune_masked(**masks)
    return masked, pruned


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("name", TASKS)
def test_masked_equals_pruned(name, part):
    model = load_model(name, TASKS[name], dtype=torch.float64).model
    x = example_batch(model)
    masks = random_masks(get_family(model), **PARTS[part])
    masked, pruned = _masked_and_pruned(model, masks)
    y_dense, y_masked, y_pruned = outputs(model, x), outputs(masked, x), outputs(pruned, x)
    assert (y_masked - y_dense).abs().max() > 1e-6  # the masks really change the model
    torch.testing.assert_close(y_pruned, y_masked, atol=1e-10, rtol=0)
    assert get_family(pruned).param_count() < get_family(model).param_count()


def test_masked_equals_pruned_fp32_eager():
    task = TASKS["tiny-llama"]
    model = load_model("tiny-llama", task, config_overrides={"attn_implementation": "eager"}).model
    x = example_batch(model)
    masked, pruned = _masked_and_pruned(model, random_masks(get_family(model)))
    torch.testing.assert_close(outputs(pruned, x), outputs(masked, x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-t5", "tiny-llama"])
def test_zero_width_blocks(name):
    """All heads of some blocks and all neurons of one FFN pruned: the branch is skipped."""
    model = load_model(name, TASKS[name], dtype=torch.float64).model
    fam = get_family(model)
    masks = random_masks(fam)
    blocks = fam.attention_blocks()
    zero_blocks = [0, 2, len(blocks) - 1] if name == "tiny-t5" else [0]  # t5: enc, dec self, dec cross
    for b in zero_blocks:
        masks["head_mask"][b] = torch.zeros(blocks[b].num_heads, dtype=torch.float64)
    masks["neuron_mask"][1] = torch.zeros(fam.ffn_blocks()[1].size, dtype=torch.float64)
    masked, pruned = _masked_and_pruned(model, masks)
    x = example_batch(model)
    torch.testing.assert_close(outputs(pruned, x), outputs(masked, x), atol=1e-10, rtol=0)
    w = get_family(pruned).widths()
    assert all(w["heads"][b] == 0 for b in zero_blocks) and w["ffn"][1] == 0
    if name != "tiny-bert":  # cached generation works with empty layers too
        gen = {k: v for k, v in x.items() if k != "decoder_input_ids"}
        kw = dict(max_new_tokens=4, do_sample=False, pad_token_id=0)
        assert torch.equal(masked.generate(**gen, **kw), pruned.generate(**gen, **kw))


def _analytic_params(name, w, task_params):
    """Parameter count from widths alone (independent of the adapter code)."""
    h, hd, V = w["hidden"], w["head_dim"], 30522
    if name == "tiny-bert":
        n = V * h + 128 * h + 2 * h + 2 * h  # word, position, token-type embeddings + LayerNorm
        for heads, f in zip(w["heads"], w["ffn"]):
            a = heads * hd
            n += 3 * (h * a + a) + (a * h + h) + 2 * h + (h * f + f) + (f * h + h) + 2 * h
        return n + (h * h + h) + task_params(h)  # pooler + classifier
    if name == "tiny-llama":
        n = V * h + h  # tied embeddings + final norm
        for q, kv, f in zip(w["heads"], w["kv_heads"], w["ffn"]):
            n += 2 * h + h * q * hd * 2 + h * kv * hd * 2 + 3 * h * f
        return n
    if name.startswith("tiny-t5"):
        gated = name.endswith("gated")
        n = V * h + 2 * 8 * 4  # shared/tied embeddings + one full bias table (8 buckets x 4 heads) per stack
        n += sum(h + 4 * h * heads * hd for heads in w["heads"])  # norm + q, k, v, o per attention
        n += sum(h + (3 if gated else 2) * h * f for f in w["ffn"]) + 2 * h  # FFNs, final norms
        return n
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-t5", "tiny-t5-gated", "tiny-llama"])
def test_param_count_matches_analytic(name):
    model = load_model(name, TASKS[name] if name != "tiny-bert" else NS(kind="classification", num_labels=3)).model
    fam = get_family(model)
    fam.prune_masked(**random_masks(fam, seed=3))
    extra = (lambda h: h * 3 + 3) if name == "tiny-bert" else None
    assert fam.param_count(non_embedding=False) == _analytic_params(name, fam.widths(), extra)


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-t5-gated", "tiny-llama"])
def test_block_costs_are_exact(name):
    """Pruning one unit removes exactly block_param_costs() non-embedding parameters."""
    fam = get_family(load_model(name, TASKS[name]).model)
    costs = fam.block_param_costs()
    before = fam.param_count()
    fam.prune_heads(1, range(1, fam.attention_blocks()[1].num_units))
    assert before - fam.param_count() == costs["head"][1]
    before = fam.param_count()
    fam.prune_neurons(0, range(1, fam.ffn_blocks()[0].size))
    assert before - fam.param_count() == costs["neuron"][0]
    costs, before = fam.block_param_costs(), fam.param_count()
    fam.prune_hidden(range(1, fam.hidden_size))
    assert before - fam.param_count() == costs["hidden"]


def test_apt_block_cost_formula_bert():
    # APT (param.py): head 4*d_m*d_h + 3*d_h, neuron 2*d_m + 1.
    fam = get_family(load_model("tiny-bert").model)
    costs = fam.block_param_costs()
    assert costs["head"] == [4 * 64 * 16 + 3 * 16] * 2 and costs["neuron"] == [2 * 64 + 1] * 2
