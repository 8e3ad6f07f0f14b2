"""SDTP config, presets, keep-ratio definition and ablation components."""
import dataclasses

import pytest
import torch

from prunelab.errors import PrunelabError
from prunelab.methods.sdtp import COMPONENTS, SDTPConfig, make_config
from prunelab.methods.sdtp.config import TRAINING_FIELDS
from prunelab.methods.sdtp.select import protected_mask, select, target_counts


@pytest.mark.parametrize("field,value,needle", [
    ("pruner", "mlpp", "mlp"), ("selection", "top_k", "topk"), ("mask", "medium", "hard"),
    ("propagation", "global", "cumulative"), ("layers", "every", "schedule"), ("keep_ratio_mode", "x", "per_stage"),
])
def test_bad_choice_names_valid_ones(field, value, needle):
    with pytest.raises(PrunelabError) as e:
        SDTPConfig(**{field: value})
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("kw", [dict(keep_ratio=0.0), dict(keep_ratio=1.5), dict(train_cont_len=300),
                                dict(layers="0,3"), dict(protect="yes"), dict(top_p=0), dict(train_steps=0)])
def test_bad_values_rejected(kw):
    with pytest.raises(PrunelabError):
        SDTPConfig(**kw)


def test_stage_layers_schedule():
    assert SDTPConfig().stage_layers(32) == list(range(3, 31, 3))          # paper: 1-indexed 4, 7, ..., 31
    s30 = SDTPConfig().stage_layers(30)
    assert len(s30) == 10 and s30[0] == 3 and s30[-1] == 28
    assert SDTPConfig(layers="single").stage_layers(32) == [3]
    assert SDTPConfig(layers="fixed3").stage_layers(32) == [3, 17, 30]
    assert SDTPConfig(layers="first2").stage_layers(32) == [3, 6]
    assert SDTPConfig(layers="last2").stage_layers(32) == [27, 30]
    assert SDTPConfig(layers="2, 5").stage_layers(8) == [2, 5]
    with pytest.raises(PrunelabError):
        SDTPConfig(layers=(2, 9)).stage_layers(8)


def test_keep_ratio_definitions():
    per = make_config("paper").cumulative_keep(10)
    assert per[-1] == pytest.approx(0.9 ** 10) and per[0] == pytest.approx(0.9)
    over = make_config("seed").cumulative_keep(10)
    assert over[-1] == pytest.approx(0.7) and over[4] == pytest.approx(0.7 ** 0.5)
    assert make_config("seed", layers="single").cumulative_keep(1) == [pytest.approx(0.7)]


def test_target_counts_exact():
    n, p = torch.tensor([100, 10]), torch.tensor([20, 5])
    inside = SDTPConfig(count_protected=True)
    assert target_counts(inside, 0.7, n, p).tolist() == [70, 7]
    assert target_counts(inside, 0.1, n, p).tolist() == [20, 5]           # never below the protected
    outside = SDTPConfig(count_protected=False)
    assert target_counts(outside, 0.5, n, p).tolist() == [20 + 40, 5 + 3]  # ceil(0.5 * 5) = 3


def test_protected_tokens():
    pos = torch.arange(100)[None]
    valid = torch.ones_like(pos, dtype=torch.bool)
    seed = protected_mask(make_config("seed"), pos, valid, torch.tensor([100]))
    assert seed[0].nonzero().flatten().tolist() == [0, 1, 2, 3] + list(range(84, 100))
    paper = protected_mask(make_config("paper"), pos, valid, torch.tensor([100]))
    assert paper[0].nonzero().flatten().tolist() == [0, 1, 2, 3] + list(range(90, 100))
    off = protected_mask(make_config("seed", protect=False), pos, valid, torch.tensor([100]))
    assert off[0].nonzero().flatten().tolist() == [99]                    # the last token always


def test_select_rules():
    score = torch.tensor([[5., 1., 4., 2., 3., 0.]])
    prob = torch.tensor([[.9, .1, .8, .2, .6, .05]])
    cand = torch.ones(1, 6, dtype=torch.bool)
    prot = torch.tensor([[False, True, False, False, False, False]])
    topk = select(SDTPConfig(), score, prob, cand, prot, torch.tensor([3]))
    assert topk[0].nonzero().flatten().tolist() == [0, 1, 2]
    thr = select(SDTPConfig(selection="threshold", threshold=0.5), score, prob, cand, prot, torch.tensor([3]))
    assert thr[0].nonzero().flatten().tolist() == [0, 1, 2, 4]
    topp = select(SDTPConfig(selection="topp", top_p=0.5), score, prob, cand, prot, torch.tensor([3]))
    assert topp[0].nonzero().flatten().tolist() == [0, 1, 2]               # .9 + .8 of 2.55 >= .5
    only = select(SDTPConfig(), score, prob, torch.tensor([[1, 1, 0, 1, 1, 1]]).bool(), prot, torch.tensor([3]))
    assert only[0].nonzero().flatten().tolist() == [0, 1, 4]               # non-candidates never chosen


def test_presets_and_registry_view():
    for name, args in SDTPConfig.PRESETS.items():
        SDTPConfig(**args)
    assert make_config("paper", "tiny").train_steps < make_config("paper", "cpu").train_steps
    with pytest.raises(PrunelabError):
        make_config("papr")
    with pytest.raises(PrunelabError):
        make_config("paper", "huge")


def test_components_apply_and_change_config():
    fields = {f.name for f in dataclasses.fields(SDTPConfig)}
    base = make_config("seed")
    for name, comp in COMPONENTS.items():
        assert comp["default"] in comp["options"], name
        assert comp["remove"] is None or comp["remove"] in comp["options"], name
        assert comp["aliases"], name
        for opt, over in comp["options"].items():
            assert set(over) <= fields, (name, opt)
            dataclasses.replace(base, **over)
        if comp.get("numeric"):
            assert comp["numeric"] in fields
    seed_rows = ["pruner", "pruning_layers", "keep_ratio", "head_tail_preserve", "rope_fix", "losses", "selection",
                 "mask", "mask_propagation", "attention_mask_update", "pipeline_pre_pruning", "communication_layers"]
    assert set(seed_rows) <= set(COMPONENTS)


def test_hash_covers_training_fields_only():
    base = make_config("seed")
    assert base.hash() == dataclasses.replace(base, rope_fix=False, selection="topp", mask_update=False).hash()
    assert base.hash() != dataclasses.replace(base, keep_ratio=0.5).hash()
    assert base.hash() != base.hash({"model": "x"})
    assert "rope_fix" not in TRAINING_FIELDS and "mask" in TRAINING_FIELDS


def test_registered_with_method_registry():
    from prunelab.methods.registry import get_method

    m = get_method("sdtp")
    assert m.runner is not None and set(m.components) == set(COMPONENTS)
    cfg = m.make_config({"preset": "paper", "keep_ratio": "0.8"})
    assert cfg.keep_ratio == 0.8 and cfg.keep_ratio_mode == "per_stage"
    assert m.components["rope_fix"].overrides("off") == {"rope_fix": False}
    with pytest.raises(PrunelabError):
        m.make_config({"selection": "nucleus"})
