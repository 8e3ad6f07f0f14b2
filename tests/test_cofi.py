"""CoFi (Xia et al. 2022) on tiny random models: hard-concrete sampling vs expected size (Monte
Carlo), Lagrangian convergence, deterministic masks, fold == mask, v4 alignment, teacher cache,
and prune_distill / lora_prune_distill runs with export."""
from types import SimpleNamespace as NS

import pytest
import torch
import transformers

from prunelab.methods.cofi import distill as D
from prunelab.methods.cofi.config import CoFiConfig, LoRACoFiConfig
from prunelab.methods.cofi.l0 import L0Masks, deterministic, prob_nonzero, sample
from prunelab.methods.cofi.lagrangian import Lagrangian, target_sparsity
from prunelab.methods.cofi.method import _scale_hook, fold_and_prune
from prunelab.models import load_model
from prunelab.models.testing import example_batch, outputs
from prunelab.tasks import get_task

torch.set_num_threads(1)
transformers.utils.logging.disable_progress_bar()
CLS = NS(kind="classification", num_labels=2)
WIDE = {"num_attention_heads": 16, "intermediate_size": 512}   # finer units: less rounding


def test_hard_concrete_sampling_matches_probability():
    g = torch.Generator().manual_seed(0)
    log_alpha = torch.tensor([-4.0, -1.0, 0.0, 1.0, 4.6])
    draws = sample(log_alpha.expand(20000, -1), 2 / 3, g)
    assert draws.min() >= 0 and draws.max() <= 1
    assert (draws == 0).any() and (draws == 1).any()                  # exact zeros and ones occur
    mc = (draws != 0).float().mean(0)
    assert torch.allclose(mc, prob_nonzero(log_alpha, 2 / 3), atol=0.012)


def test_expected_size_matches_monte_carlo():
    lm = load_model("tiny-bert", CLS, config_overrides=WIDE)
    l0 = L0Masks(lm.family)
    torch.manual_seed(0)
    with torch.no_grad():                     # spread the log alphas so every granularity matters
        for p in l0.parameters():
            p.copy_(torch.empty_like(p).uniform_(-2, 3))
        l0.mha.uniform_(0, 3), l0.ffn.uniform_(0, 3)   # whole-layer draws dominate the variance
    g = torch.Generator().manual_seed(1)
    mc = sum(l0.sparsity_of(l0.sample(g)) for _ in range(800)) / 800
    assert mc == pytest.approx(float(l0.expected_sparsity().detach()), abs=0.01)
    assert l0.prunable_size() == 2 * (4 * 64 * 64 + 2 * 64 * 512)    # CoFi's 4d^2 + 2dF per layer


def test_deterministic_mask_rule():
    la = torch.tensor([3.0, -3.0, 0.5, -0.2, 4.0, -4.0])
    z = deterministic(la, 2 / 3)
    zeros = int(round(float(la.numel() - prob_nonzero(la, 2 / 3).sum())))
    assert int((z == 0).sum()) == zeros
    assert set(torch.nonzero(z == 0).flatten().tolist()) == set(la.argsort()[:zeros].tolist())
    assert torch.allclose(z[z != 0], torch.sigmoid(la[z != 0] / (2 / 3) * 0.8))


@pytest.mark.parametrize("target", [0.4, 0.6])
def test_lagrangian_drives_expected_sparsity_to_target(target):
    lm = load_model("tiny-bert", CLS, config_overrides=WIDE)
    torch.manual_seed(0)
    l0, lag = L0Masks(lm.family), Lagrangian()
    opt, lag_opt = torch.optim.AdamW(l0.parameters(), lr=0.05, weight_decay=0.0), lag.optimizer(0.05)
    assert lag_opt.param_groups[0]["lr"] < 0                    # gradient ascent, as the original
    for step in range(300):
        loss = lag(l0.expected_sparsity(), target_sparsity(step, 50, target))
        loss.backward()
        opt.step(), lag_opt.step()
        opt.zero_grad(), lag_opt.zero_grad()
        l0.constrain()
    assert float(l0.expected_sparsity().detach()) == pytest.approx(target, abs=0.01)
    assert float(lag.lambda_2.detach()) > 0
    assert l0.sparsity_of(l0.deterministic("expected")) == pytest.approx(target, abs=0.03)
    for p in l0.parameters():
        assert p.min() >= -4.61 and p.max() <= 4.61              # clamped to [ln 0.01, ln 100]


def test_target_schedule():
    assert target_sparsity(0, 10, 0.6) == 0.0
    assert target_sparsity(5, 10, 0.6) == pytest.approx(0.3)
    assert target_sparsity(50, 10, 0.6) == 0.6 and target_sparsity(0, 0, 0.6) == 0.6


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-llama"])
def test_fold_and_prune_equals_masked_model(name):
    lm = load_model(name, CLS)
    model, fam = lm.model, lm.family
    l0 = L0Masks(fam)
    torch.manual_seed(2)
    with torch.no_grad():
        for p in l0.parameters():
            p.copy_(torch.empty_like(p).uniform_(-3, 4))
        l0.mha[0] = -4.0                                           # drop a whole attention layer
    z = l0.deterministic()
    assert float(z["mha"][0]) == 0.0
    holder = {"mha": z["mha"], "ffn": z["ffn"]}
    hooks = [b.o.register_forward_hook(_scale_hook(holder, "mha", i)) for i, b in enumerate(fam.attention_blocks())]
    hooks += [f.down.register_forward_hook(_scale_hook(holder, "ffn", i)) for i, f in enumerate(fam.ffn_blocks())]
    fam.set_masks(head_mask=dict(enumerate(z["head"])), neuron_mask=dict(enumerate(z["int"])), hidden_mask=z["hidden"])
    inputs = example_batch(model)
    want = outputs(model, inputs)
    for h in hooks:
        h.remove()
    counts = fold_and_prune(fam, z)
    assert torch.allclose(outputs(model, inputs), want, atol=1e-5)
    assert counts["attn_layers_removed"] >= 1 and fam.widths()["heads"][0] == 0
    assert fam.hidden_size == int((z["hidden"] != 0).sum())


def test_v4_alignment_order_and_survivors():
    losses = torch.tensor([[0.1, 0.5, 0.9, 0.9],
                           [0.9, 0.1, 0.2, 0.9],
                           [0.9, 0.9, 0.3, 0.1]])
    assert D.align_v4(losses) == [0, 1, 3]
    # layer 3 removed: the last teacher layer takes layer 2, the middle one must go below it
    assert D.align_v4(losses, torch.tensor([True, True, True, False])) == [0, 1, 2]
    assert D.default_teacher_layers(12) == [2, 5, 8, 11]
    assert D.default_teacher_layers(6) == [1, 2, 4, 5]


def test_config_validation_and_phases():
    from prunelab.errors import PrunelabError

    c = CoFiConfig()
    assert c.granularities() == ("head", "mha", "int", "ffn", "hidden")
    assert c.phases(400) == (10, 20, 200)                     # CoFi's 1/40, 2/40, 20/40 shape
    assert LoRACoFiConfig().tuning == "lora"
    for bad in ({"tuning": "x"}, {"sparsity": 1.0}, {"pre_finetune_frac": 0.6, "final_finetune_frac": 0.5},
                {"prune_heads": False, "prune_mha": False, "prune_neurons": False, "prune_ffn": False,
                 "prune_hidden": False}, {"mask_rule": "x"}):
        with pytest.raises(PrunelabError):
            CoFiConfig(**bad)


# ---- runs -------------------------------------------------------------------------------------
def _config(method, args, sst2_dir, tmp_path, steps=16):
    from prunelab.config import MeasureConfig, RunConfig, TrainConfig

    return RunConfig(model="tiny-bert", task="glue/sst2", method=method, method_args=args, data_dir=sst2_dir,
                     output_dir=str(tmp_path / method),
                     train=TrainConfig(lr=1e-3, batch_size=8, max_steps=steps, eval_points=4, max_length=32),
                     measure=MeasureConfig(throughput=False))


def test_teacher_is_cached(sst2_dir, tmp_path, monkeypatch):
    from prunelab.run import RunContext

    monkeypatch.setenv("PRUNELAB_CACHE", str(tmp_path / "cache"))
    cfg = _config("prune_distill", {}, sst2_dir, tmp_path, steps=3)
    task = get_task("glue/sst2")
    lm = load_model("tiny-bert", task)
    feats = task.encode(task.load("train", sst2_dir), lm.tokenizer, 32)
    ctx = RunContext(cfg, task, lm.tokenizer, feats, feats[:12], torch.device("cpu"))
    t1, _, info1 = D.get_teacher(ctx, 5e-5, None, 0)
    t2, _, info2 = D.get_teacher(ctx, 5e-5, None, 0)
    assert not info1["teacher_cached"] and info2["teacher_cached"] and info1["teacher_key"] == info2["teacher_key"]
    assert info2["teacher_steps"] == 3
    for a, b in zip(t1.state_dict().values(), t2.state_dict().values()):
        assert torch.equal(a, b)
    _, _, info3 = D.get_teacher(ctx, 1e-4, None, 0)                  # other settings, other teacher
    assert info3["teacher_key"] != info1["teacher_key"]


@pytest.mark.parametrize("method", ["prune_distill", "lora_prune_distill"])
def test_cofi_run_prunes_and_exports(method, sst2_dir, tmp_path, monkeypatch):
    from prunelab.export import load_pruned
    from prunelab.run import run

    monkeypatch.setenv("PRUNELAB_CACHE", str(tmp_path / "cache"))
    args = {"reg_lr": 0.3, "pre_finetune_frac": 0.1, "lagrangian_warmup_frac": 0.1, "final_finetune_frac": 0.25}
    row = run(_config(method, args, sst2_dir, tmp_path), store=str(tmp_path / "runs.db"))
    assert row["status"] == "done", row.get("error")
    m = row["metrics"]
    assert m["cofi_pruned_at_step"] == 12 and m["train_steps"] == 16
    assert m["nonemb_param_ratio"] < 1.0 and m["achieved_sparsity"] > 0.05
    assert "teacher_score" in m and m["expected_sparsity"] > 0.05
    pruning_points = [c for c in row["curve"] if c["step"] <= 8]
    assert all("expected_sparsity" in c for c in pruning_points)
    if method == "lora_prune_distill":
        assert m["params_trainable_start"] < 0.1 * m["dense_params"]
    reloaded = load_pruned(m["output_dir"])
    assert sum(p.numel() for p in reloaded.parameters()) == m["params"]
