"""Recency-anchored residual scoring (SDTPConfig.prior_weight) on a tiny LLaMA."""
import dataclasses

import pytest
import torch

from prunelab.errors import PrunelabError
from prunelab.methods.sdtp import PrunerStack, make_config, prefill, train_pruners
from prunelab.methods.sdtp._load import tiny_llama
from prunelab.methods.sdtp.modules import keep_score, recency_prior


@pytest.fixture(scope="module")
def model():
    m = tiny_llama(8)
    m.requires_grad_(False)
    return m


def _recency_kept(model, cfg, ids, layers):
    n = ids.size(1)
    rec = (torch.arange(n, dtype=torch.float32) / n)[None, None].expand(ids.size(0), len(layers), -1)
    _, st = prefill(model, dataclasses.replace(cfg, pruner="saliency"), ids, saliency=rec)
    return st.kept_index, [k.tolist() for k in st.kept_per_stage]


@pytest.mark.parametrize("preset", ["paper", "seed"])
def test_zero_residual_equals_recency_exactly(model, preset):
    cfg = make_config(preset, "tiny", prior_weight=1.0)
    layers = cfg.stage_layers(8)
    stack = PrunerStack(model.config.hidden_size, layers, cfg.pruner_hidden_frac, cfg.pos_features, cfg.prior_weight)
    stack.reset_residual()
    g = torch.Generator().manual_seed(0)
    for n in (40, 64, 97):
        ids = torch.randint(0, 1000, (1, n), generator=g)
        _, st = prefill(model, cfg, ids, pruners=stack.eval())
        rec_idx, rec_counts = _recency_kept(model, cfg, ids, layers)
        assert [k.tolist() for k in st.kept_per_stage] == rec_counts
        assert st.kept_index == rec_idx
        assert len(st.kept_index[-1][0]) < n                  # it did prune


def test_training_starts_from_recency_and_moves_the_residual(model):
    """train_pruners zero-initialises the residual; one step of training changes it (the
    prior itself has no parameters)."""
    cfg = make_config("seed", "tiny", prior_weight=2.0, train_steps=1, lm_weight=0.0, protect_last=4)
    layers = cfg.stage_layers(8)
    ids = torch.randint(0, 1000, (4, 48), generator=torch.Generator().manual_seed(1))
    sal = torch.rand(4, len(layers), 40, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    stack, _ = train_pruners(model, dataclasses.replace(cfg, lr=1e-12), ids, sal)
    h = torch.randn(2, 40, model.config.hidden_size)
    for l in layers:
        s = keep_score(stack[l](h))
        assert torch.allclose(s, 2.0 * recency_prior(torch.ones(2, 40, dtype=torch.bool)), atol=1e-6)
    stack2, _ = train_pruners(model, dataclasses.replace(cfg, lr=1e-2), ids, sal)
    assert any(float(stack2[l].fc2.weight.abs().sum()) > 0 for l in layers)


def test_prior_ordering_matches_position_among_alive():
    alive = torch.tensor([[True, False, True, True, False, True]])
    p = recency_prior(alive)
    idx = alive[0].nonzero().flatten()
    assert torch.all(p[0, idx][1:] > p[0, idx][:-1])
    assert float(p[0, 5]) == 0.0


def test_prior_weight_round_trips_and_ablates(tmp_path, model):
    layers = [2, 4]
    stack = PrunerStack(model.config.hidden_size, layers, 0.25, True, prior_weight=1.5)
    stack.save(str(tmp_path / "p.safetensors"))
    back = PrunerStack.load(str(tmp_path / "p.safetensors"), model.config.hidden_size)
    assert back.prior_weight == 1.5 and back[2].prior_weight == 1.5
    h = torch.randn(1, 10, model.config.hidden_size)
    assert torch.allclose(keep_score(back[2](h)), keep_score(stack[2](h)))
    off = PrunerStack(model.config.hidden_size, layers, 0.25, True)
    assert off.prior_weight == 0.0
    assert make_config("seed", prior_weight=0.0).hash() != make_config("seed").hash()
    with pytest.raises(PrunelabError):
        make_config("seed", prior_weight=-1.0)


def test_anchored_targets_prefer_recent_unless_salient():
    from prunelab.methods.sdtp.train import anchored_targets

    sal = torch.tensor([[0.9, 0.1, 0.2, 0.3, 0.0, 0.05]])
    key = anchored_targets(sal, 1.0)
    # token 0 (oldest, most salient) beats token 1 (older than 5, less salient)
    assert key[0, 0] > key[0, 1]
    assert torch.allclose(anchored_targets(torch.zeros(1, 4), 1.0), torch.tensor([[0.0, 0.5, 1.0, 1.5]]))
    cfg = make_config("seed", target_prior=2.0)
    assert cfg.hash() != make_config("seed").hash()
    with pytest.raises(PrunelabError):
        make_config("seed", target_prior=-0.5)


@pytest.mark.parametrize("shape,weight,steps,lr,floor", [("log", 1.0, 80, 5e-3, 0.9), ("linear", 4.0, 300, 1e-2, 0.85)])
def test_residual_learns_planted_tokens_against_the_prior(model, shape, weight, steps, lr, floor):
    """The residual can override the recency prior: planted answer tokens at random
    positions survive (the same planted-signal setting as test_sdtp_train; the steps are its
    PRIORS': the linear x4 prior needs a larger residual)."""
    from test_sdtp_train import _answers_kept, _planted

    ids, sal, where = _planted(32, 0)
    test_ids, _, test_where = _planted(8, 1)
    c = make_config("seed", "tiny", keep_ratio=0.5, protect_last=4, train_steps=steps, lr=lr, lm_weight=0.0,
                    train_batch_size=4, prior_weight=weight, prior_curve=shape, target_prior=0.0)
    layers = c.stage_layers(6)
    m6 = tiny_llama(6)
    m6.requires_grad_(False)
    stack, _ = train_pruners(m6, c, ids, sal[:, None].expand(-1, len(layers), -1).contiguous())
    share, _ = _answers_kept(m6, c, stack, test_ids, test_where)
    assert share >= floor


def test_prior_is_the_default_and_the_paper_is_reachable_by_name():
    """The learned selector defaults to the recency prior (config.py says why); the paper's
    pruner (the MLP alone) is the `paper-faithful` preset and the recency_prior REMOVE."""
    from prunelab.methods.registry import get_method
    from prunelab.methods.sdtp import COMPONENTS, SDTPConfig

    assert SDTPConfig().prior_weight == 4.0 and SDTPConfig().target_prior == 1.0
    assert SDTPConfig().prior_curve == "linear"
    for preset in ("seed", "paper"):
        assert make_config(preset).prior_weight == 4.0
    faithful = make_config("paper-faithful")
    assert faithful.prior_weight == 0.0 and faithful.target_prior == 0.0
    paper = make_config("paper")
    assert dataclasses.replace(paper, prior_weight=0.0, target_prior=0.0) == faithful   # same schedule, prior off
    m = get_method("sdtp")
    assert m.make_config({"preset": "paper-faithful-cpu"}).prior_weight == 0.0
    assert m.make_config({"preset": "paper-cpu"}).prior_weight == 4.0
    comp = COMPONENTS["recency_prior"]
    assert comp["default"] == "on" and comp["remove"] == "off"
    base = make_config("seed")
    assert dataclasses.replace(base, **comp["options"][comp["default"]]) == base
    off = dataclasses.replace(base, **comp["options"]["off"])
    assert off.prior_weight == 0.0 and off.target_prior == 0.0 and off.hash() != base.hash()
    assert m.components["recency_prior"].overrides(m.components["recency_prior"].remove)["prior_weight"] == 0.0


def test_default_config_trains_from_the_recency_ranking(model):
    """With no prior_weight given, train_pruners starts from exactly the recency ranking."""
    cfg = make_config("seed", "tiny", train_steps=1, lm_weight=0.0, protect_last=4, lr=1e-12)
    layers = cfg.stage_layers(8)
    ids = torch.randint(0, 1000, (2, 48), generator=torch.Generator().manual_seed(3))
    sal = torch.rand(2, len(layers), 40, generator=torch.Generator().manual_seed(4))
    stack, _ = train_pruners(model, cfg, ids, sal)
    assert stack.prior_weight == 4.0 and stack.prior_curve == "linear"
    h = torch.randn(1, 40, model.config.hidden_size)
    for l in layers:
        assert torch.allclose(keep_score(stack[l](h)), 4.0 * recency_prior(torch.ones(1, 40, dtype=torch.bool)), atol=1e-6)


def test_saved_configs_from_before_the_prior_load_without_it(tmp_path, model):
    """A saved sdtp_config.json without prior_weight was trained without the prior: loading it
    must not switch the new default on."""
    import json

    from prunelab.methods.sdtp.io import load_pruners, save_pruners

    cfg = make_config("paper", "tiny", prior_weight=0.0)
    stack = PrunerStack(model.config.hidden_size, cfg.stage_layers(8), cfg.pruner_hidden_frac, cfg.pos_features, 0.0)
    d = save_pruners(stack, cfg, tmp_path / "old")
    meta = json.loads((d / "sdtp_config.json").read_text())
    del meta["config"]["prior_weight"], meta["config"]["target_prior"]
    (d / "sdtp_config.json").write_text(json.dumps(meta))
    back_stack, back_cfg, _ = load_pruners(d)
    assert back_cfg.prior_weight == 0.0 and back_stack.prior_weight == 0.0
    new = save_pruners(PrunerStack(model.config.hidden_size, cfg.stage_layers(8), 0.25, True, 4.0),
                       make_config("paper", "tiny"), tmp_path / "new")
    assert load_pruners(new)[1].prior_weight == 4.0


def test_target_top_ranks_the_most_salient_tokens_first_whatever_their_age():
    from prunelab.methods.sdtp.train import anchored_targets

    sal = torch.tensor([[0.1, 0.95, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]])   # token 1: old and most salient
    plain = anchored_targets(sal, 2.0)
    assert int(plain.argmax()) == 9 and plain[0, 1] < plain[0, 5]     # the position term buries it
    top = anchored_targets(sal, 2.0, top=0.1)                         # ceil(0.1 x 10) = 1 token
    assert int(top.argmax()) == 1
    rest = [i for i in range(10) if i != 1]
    assert torch.equal(top[0, rest], plain[0, rest])                  # the others keep their order
    assert make_config("seed", target_top=0.05).hash() != make_config("seed").hash()
    assert "target_top" not in make_config("seed", target_top=0.0).training_key()     # off: the key of before
    with pytest.raises(PrunelabError, match="target_top"):
        make_config("seed", target_top=1.5)


def test_linear_prior_has_equal_steps_and_keeps_the_recency_order(model):
    """prior_curve='linear': the same ordering as the log prior (so a zero residual is still
    the recency baseline) but an equal step between any two alive neighbours, whatever their
    age; the log prior's step among the oldest tokens is far smaller than among recent ones."""
    alive = torch.tensor([[True, False, True, True, False, True, True, True]])
    idx = alive[0].nonzero().flatten()
    lin, log = recency_prior(alive, "linear")[0, idx], recency_prior(alive, "log")[0, idx]
    assert torch.equal(lin.argsort(), log.argsort())
    steps = lin[1:] - lin[:-1]
    assert torch.allclose(steps, torch.full_like(steps, 8.0 / len(idx)))
    assert float(lin[-1]) == 0.0
    long = recency_prior(torch.ones(1, 1000, dtype=torch.bool), "log")[0]
    assert float(long[1] - long[0]) < 0.01 * float(long[-1] - long[-2])

    cfg = make_config("paper", "tiny", prior_curve="linear")
    layers = cfg.stage_layers(8)
    stack = PrunerStack(model.config.hidden_size, layers, cfg.pruner_hidden_frac, cfg.pos_features,
                        cfg.prior_weight, cfg.prior_curve)
    stack.reset_residual()
    ids = torch.randint(0, 1000, (1, 64), generator=torch.Generator().manual_seed(3))
    _, st = prefill(model, cfg, ids, pruners=stack.eval())
    rec_idx, rec_counts = _recency_kept(model, cfg, ids, layers)
    assert st.kept_index == rec_idx and [k.tolist() for k in st.kept_per_stage] == rec_counts


def test_prior_curve_is_saved_validated_and_keyed(tmp_path, model):
    from prunelab.methods.sdtp import SDTPModel
    from prunelab.methods.sdtp.io import load_pruners, save_pruners

    cfg = make_config("paper", "tiny", prior_curve="linear")
    stack = PrunerStack(model.config.hidden_size, cfg.stage_layers(8), 0.25, True, cfg.prior_weight, "linear")
    back_stack, back_cfg, _ = load_pruners(save_pruners(stack, cfg, tmp_path / "lin"))
    assert back_stack.prior_curve == "linear" and back_stack[cfg.stage_layers(8)[0]].prior_curve == "linear"
    assert back_cfg.prior_curve == "linear"
    h = torch.randn(1, 12, model.config.hidden_size)
    l0 = cfg.stage_layers(8)[0]
    assert torch.allclose(keep_score(back_stack[l0](h)), keep_score(stack[l0](h)))
    # the key keeps the field's old name, so pruners cached before the rename are still found
    assert make_config("paper", prior_curve="linear").training_key()["prior_shape"] == "linear"
    assert "prior_shape" not in make_config("paper", prior_curve="log").training_key()   # log: the key of before
    assert "prior_shape" not in make_config("paper-faithful").training_key()            # no prior: no curve
    assert "prior_curve" not in make_config("paper").training_key()
    assert cfg.hash() != make_config("paper", "tiny", prior_curve="log").hash()
    with pytest.raises(PrunelabError, match="prior_curve.*linear"):
        make_config("paper", prior_curve="quadratic")
    with pytest.raises(PrunelabError, match="prior_curve"):
        SDTPModel(model, stack, make_config("paper", "tiny", prior_curve="log"))   # pruners linear, config log


def test_pruners_saved_under_the_old_field_name_load_with_their_curve(tmp_path, model):
    """prior_curve was called prior_shape until 2026-12: safetensors metadata and sdtp_config.json
    written under that name must load with the curve they name, not the missing-field default."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from prunelab.methods.sdtp.io import load_pruners, save_pruners

    cfg = make_config("paper", "tiny", prior_curve="linear")
    stack = PrunerStack(model.config.hidden_size, cfg.stage_layers(8), 0.25, True, cfg.prior_weight, "linear")
    d = save_pruners(stack, cfg, tmp_path / "old")
    meta = json.loads((d / "sdtp_config.json").read_text())
    meta["config"]["prior_shape"] = meta["config"].pop("prior_curve")
    (d / "sdtp_config.json").write_text(json.dumps(meta))
    weights = next(d.glob("*.safetensors"))
    with safe_open(str(weights), "pt") as f:
        tmeta = f.metadata()
    tmeta["prior_shape"] = tmeta.pop("prior_curve")
    save_file(load_file(str(weights)), str(weights), metadata=tmeta)
    back_stack, back_cfg, _ = load_pruners(d)
    assert back_cfg.prior_curve == "linear" and back_stack.prior_curve == "linear"
