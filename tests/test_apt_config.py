"""APT config validation, presets, ablation components and the seed plans' mapping."""
import dataclasses
import glob
import os

import pytest

from prunelab.errors import PrunelabError
from prunelab.methods.apt.components import COMPONENTS
from prunelab.methods.apt.config import APTConfig
from prunelab.methods.registry import get_method
from paths import SEEDS as SEEDS_DIR

SEEDS = str(SEEDS_DIR)


def test_defaults_follow_paper_and_seed_003():
    c = APTConfig()
    assert (c.rank, c.alpha, c.max_rank, c.scaling) == (8, 16.0, 64, 2.0)
    assert (c.ema, c.temperature, c.layer_weight, c.sparsity, c.budget_growth) == (0.85, 4.0, 0.9, 0.6, 4.0)
    assert c.pred_weight_for("classification") == 1.0 and c.pred_weight_for("qa") == 0.1
    assert c.pred_weight_for("seq2seq") == 0.1


@pytest.mark.parametrize("bad", [{"sparsity": 1.0}, {"rank": 0}, {"salience": "kurt"}, {"max_rank": 4},
                                 {"prune_start": 0.5, "prune_end": 0.4}, {"distill_end": 0.2},
                                 {"targets": ["q", "x"]}, {"mask_lr": 0}, {"static_rank": 128}])
def test_bad_values_are_one_line_errors(bad):
    with pytest.raises(PrunelabError):
        get_method("apt").make_config(bad)


def test_presets():
    m = get_method("apt")
    paper = m.make_config({"preset": "paper"})
    assert paper.prune_end == 0.075 and paper.distill_end == 0.5 and paper.num_prunings == 10
    assert m.make_config({"preset": "cpu"}) == APTConfig()
    assert m.make_config({"preset": "paper", "sparsity": 0.4}).sparsity == 0.4


def _changed(a, b):
    return {f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)}


def test_each_option_changes_only_its_own_fields():
    m = get_method("apt")
    base = m.make_config({})
    for name, comp in m.components.items():
        assert comp.remove is not None, f"{name} needs a REMOVE option"
        for opt, overrides in comp.options.items():
            cfg = m.make_config(overrides)
            changed = _changed(cfg, base)
            assert changed <= set(overrides), (name, opt, changed)
            if opt == comp.default:
                assert not changed, (name, opt)
            elif name != "teacher_sharing" or opt != "shared":
                assert changed, f"{name}.{opt} changes nothing"
            # options compose with the paper preset without touching its schedule
            p = m.make_config({"preset": "paper", **overrides})
            assert _changed(p, m.make_config({"preset": "paper"})) <= set(overrides)
    assert m.components["sparsity"].numeric_overrides(0.35) == {"sparsity": 0.35}


def test_required_options_exist():
    need = {"salience": {"outlier_aware", "standard", "magnitude", "gradient", "fisher", "random", "uniform"},
            "tuning": {"adaptive", "static_initial", "static_intermediate", "static_final", "uniform", "none"},
            "distillation": {"self", "none", "no_layer_loss", "self_copy", "ft_teacher", "lora_teacher"},
            "schedule": {"early", "gradual", "last_quarter", "init"}, "masks": {"adaptive", "fixed"},
            "pruning": {"adaptive", "off"}}
    for comp, opts in need.items():
        assert opts <= set(COMPONENTS[comp]["options"]), comp


EXPECTED = {
    "000": [("tuning", "static_initial"), ("tuning", "static_intermediate"), ("tuning", "static_final"),
            ("distillation", "none"), ("schedule", "gradual"), ("schedule", "last_quarter"),
            ("masks", "fixed"), ("salience", "standard")],
    "001": [("salience", "magnitude"), ("salience", "gradient"), ("salience", "random"),
            ("tuning", "static_initial"), ("tuning", "uniform"), ("teacher_sharing", "full_copy"),
            ("schedule", "last_quarter"), ("schedule", "gradual"), ("schedule", "init")],
    "002": [("pruning", "off"), ("tuning", "static_initial"), ("salience", "random"), ("salience", "uniform"),
            ("distillation", "none"), ("sparsity", "sparsity=0.2"), ("sparsity", "sparsity=0.5"),
            ("sparsity", "sparsity=0.8")],
}


@pytest.mark.parametrize("seed", sorted(EXPECTED))
def test_seed_ablations_map_to_components(seed):
    files = glob.glob(os.path.join(SEEDS, f"{seed}_*.txt"))
    if not files:
        pytest.skip("seed plans not found")
    from prunelab.ablation.parse import load_plan
    from prunelab.ablation.resolve import resolve_plan

    res = resolve_plan(load_plan(files[0]), "apt")
    got = [(c.component, c.label) for item in res.items for c in item.choices]
    assert got == EXPECTED[seed]
    assert not res.unresolved


@pytest.mark.parametrize("name", ["apt.yaml", "apt_paper.yaml"])
def test_example_configs_resolve(name):
    import yaml

    from prunelab.config import RunConfig

    path = os.path.join(os.path.dirname(__file__), "..", "examples", name)
    cfg = RunConfig.from_dict(yaml.safe_load(open(path))).resolve()
    assert cfg.method == "apt" and cfg.method_args["sparsity"] == 0.6
