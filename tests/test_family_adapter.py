"""FamilyAdapter API: structure, GQA units, LoRA targets, masks (validation, soft masks, hooks)."""
import copy
from types import SimpleNamespace as NS

import pytest
import torch
from torch import nn

from prunelab.errors import PrunelabError
from prunelab.models import AttentionBlock, FamilyAdapter, get_family, load_model, register_family
from prunelab.models.testing import example_batch, outputs, random_masks

torch.set_num_threads(1)  # tiny models: avoid OpenMP stalls on shared cores


def test_family_by_model_type():
    assert get_family(load_model("tiny-bert").model).name == "bert"
    assert get_family(load_model("tiny-roberta").model).name == "bert"
    assert get_family(load_model("tiny-t5").model).name == "t5"
    assert get_family(load_model("tiny-llama").model).name == "llama"


def test_unknown_family_is_one_line_error():
    class Fake(nn.Module):
        config = NS(model_type="bret")
    with pytest.raises(PrunelabError) as e:
        get_family(Fake())
    assert "bert" in str(e.value) and "\n" not in str(e.value)


def test_register_new_family():
    class Mine(FamilyAdapter):
        name = "mine"

    class Fake(nn.Module):
        config = NS(model_type="mine-type")
    register_family(["mine-type"], Mine)
    assert isinstance(get_family(Fake()), Mine)


def test_bert_structure():
    fam = get_family(load_model("tiny-bert", NS(kind="classification", num_labels=2)).model)
    assert (fam.num_layers, fam.hidden_size) == (2, 64)
    blocks = fam.attention_blocks()
    assert [b.kind for b in blocks] == ["self", "self"]
    b = blocks[0]
    assert isinstance(b, AttentionBlock) and (b.num_heads, b.num_kv_heads, b.head_dim, b.group_size) == (4, 4, 16, 1)
    assert fam.ffn_blocks()[1].size == 128 and len(fam.ffn_blocks()[1].up) == 1
    assert fam.head_groups(0) == [[0], [1], [2], [3]]
    assert len(fam.embedding_modules()) == 3
    assert len(fam.backbone_linears()) == 2 * 6
    assert fam.lora_targets() == [
        "bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.0.attention.self.value",
        "bert.encoder.layer.1.attention.self.query", "bert.encoder.layer.1.attention.self.value",
        "bert.encoder.layer.0.intermediate.dense", "bert.encoder.layer.1.intermediate.dense"]


def test_t5_structure_encoder_then_decoder():
    fam = get_family(load_model("tiny-t5-gated", NS(kind="seq2seq")).model)
    assert fam.num_layers == 4
    assert [(b.layer, b.kind) for b in fam.attention_blocks()] == [
        (0, "self"), (1, "self"), (2, "self"), (2, "cross"), (3, "self"), (3, "cross")]
    assert [len(f.up) for f in fam.ffn_blocks()] == [2, 2, 2, 2]
    assert fam.lora_targets(["up_all"])[:2] == ["encoder.block.0.layer.1.DenseReluDense.wi_0",
                                                "encoder.block.0.layer.1.DenseReluDense.wi_1"]


def test_llama_gqa_units():
    fam = get_family(load_model("tiny-llama", NS(kind="lm")).model)
    b = fam.attention_blocks()[0]
    assert (b.num_heads, b.num_kv_heads, b.group_size, b.num_units) == (4, 2, 2, 2)
    assert fam.head_groups(0) == [[0, 1], [2, 3]]
    assert fam.lora_targets() == ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
                                  "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]
    fam.prune_heads(0, [1])  # keep group 1 = q heads 2, 3 and kv head 1
    b = fam.attention_blocks()[0]
    assert (b.num_heads, b.num_kv_heads, b.q.out_features, b.k.out_features) == (2, 1, 32, 16)
    assert b.module.num_key_value_groups == 2


def test_unknown_lora_role():
    fam = get_family(load_model("tiny-bert").model)
    with pytest.raises(PrunelabError, match="did you mean"):
        fam.lora_targets(["qq"])


def test_layer_outputs_module_gives_layer_hidden_state():
    for name in ("tiny-bert", "tiny-t5", "tiny-llama"):
        model = load_model(name).model
        fam = get_family(model)
        seen = []
        handles = [fam.layer_outputs_module(i).register_forward_hook(lambda m, a, o: seen.append(o))
                   for i in range(fam.num_layers)]
        outputs(model, example_batch(model))
        for h in handles:
            h.remove()
        assert len(seen) == fam.num_layers
        assert all(isinstance(o, torch.Tensor) and o.shape[-1] == fam.hidden_size for o in seen)


def test_gqa_mask_per_unit_equals_per_head():
    model = load_model("tiny-llama", NS(kind="lm"), dtype=torch.float64).model
    x = example_batch(model)
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    get_family(a).set_masks(head_mask={0: torch.tensor([0.0, 1.0])})
    get_family(b).set_masks(head_mask={0: torch.tensor([0.0, 0.0, 1.0, 1.0])})
    torch.testing.assert_close(outputs(a, x), outputs(b, x))


def test_mask_validation_errors():
    fam = get_family(load_model("tiny-bert").model)
    with pytest.raises(PrunelabError, match="head mask"):
        fam.set_masks(head_mask={0: torch.ones(3)})
    with pytest.raises(PrunelabError, match="neuron mask"):
        fam.set_masks(neuron_mask={1: torch.ones(5)})
    with pytest.raises(PrunelabError, match="hidden mask"):
        fam.set_masks(hidden_mask=torch.ones(5))
    with pytest.raises(PrunelabError, match="block 7"):
        fam.set_masks(head_mask={7: torch.ones(4)})


def test_clear_masks_restores_outputs_and_pruning_needs_cleared_masks():
    model = load_model("tiny-t5", NS(kind="seq2seq")).model
    x = example_batch(model)
    dense = outputs(model, x)
    fam = get_family(model)
    fam.set_masks(**random_masks(fam))
    assert fam.masks_active() and get_family(model).masks_active()  # state lives on the model
    assert not torch.allclose(outputs(model, x), dense)
    with pytest.raises(PrunelabError, match="clear_masks"):
        fam.prune_neurons(0, [0, 1])
    fam.clear_masks()
    assert not fam.masks_active()
    torch.testing.assert_close(outputs(model, x), dense, atol=0, rtol=0)


def test_mask_tensors_are_live_and_soft_masks_get_gradients():
    model = load_model("tiny-llama", NS(kind="lm")).model
    fam = get_family(model)
    head = torch.full((4,), 0.7, requires_grad=True)
    neuron = torch.full((128,), 0.9, requires_grad=True)
    hidden = torch.full((64,), 0.8, requires_grad=True)
    fam.set_masks(head_mask={1: head}, neuron_mask={0: neuron}, hidden_mask=hidden)
    x = example_batch(model)
    out = model(**x).logits
    out.pow(2).mean().backward()
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in (head, neuron, hidden))
    with torch.no_grad():  # in-place updates (e.g. APT's mask decay) take effect without set_masks
        before = outputs(model, x)
        head.sub_(0.5)
        assert not torch.allclose(outputs(model, x), before)


def test_prune_hidden_refuses_unknown_linear():
    model = load_model("tiny-bert").model
    model.extra = nn.Linear(64, 10)  # something attached by a method, unknown to the adapter
    fam = get_family(model)
    with pytest.raises(PrunelabError, match="extra"):
        fam.prune_hidden(range(60))
    fam.prune_hidden(range(60), also=[("in", model.extra)])
    assert model.extra.in_features == 60 and fam.hidden_size == 60


def test_prune_keeps_tied_weights_tied():
    model = load_model("tiny-t5", NS(kind="seq2seq")).model
    fam = get_family(model)
    fam.prune_hidden(range(0, 32, 2))
    assert model.lm_head.weight is model.shared.weight is model.encoder.embed_tokens.weight
    assert model.shared.weight.shape == (30522, 16)
    llama = load_model("tiny-llama", NS(kind="lm")).model
    get_family(llama).prune_hidden(range(40))
    assert llama.lm_head.weight is llama.model.embed_tokens.weight


def test_prune_index_errors():
    fam = get_family(load_model("tiny-bert").model)
    with pytest.raises(PrunelabError, match="head unit"):
        fam.prune_heads(0, [4])
    with pytest.raises(PrunelabError, match="neuron"):
        fam.prune_neurons(0, [-1])


def test_widths_after_pruning():
    fam = get_family(load_model("tiny-t5", NS(kind="seq2seq")).model)
    fam.prune_heads(1, [0, 3])
    fam.prune_neurons(2, range(10))
    fam.prune_hidden(range(20))
    w = fam.widths()
    assert w["heads"] == [4, 2, 4, 4, 4, 4] and w["ffn"] == [64, 64, 10, 64] and w["hidden"] == 20
    assert w["head_ids"][1] == [0, 3] and w["head_ids"][0] == [0, 1, 2, 3]
