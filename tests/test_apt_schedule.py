"""APT schedule: cubic retained fraction, pruning steps, mask windows, budgets, mu; schedule kinds."""
import pytest

from prunelab.methods.apt.config import APTConfig
from prunelab.methods.apt.schedule import build_plan


def test_default_plan_is_cubic_and_reaches_the_target():
    p = build_plan(APTConfig(), 400)
    assert (p.start, p.end, p.warm_end, p.distill_end) == (40, 160, 80, 160)
    assert len(p.steps) == 10 and list(p.steps) == sorted(set(p.steps)) and p.steps[-1] == p.end
    assert all(p.start < s <= p.end for s in p.steps)
    assert p.retained[-1] == pytest.approx(0.4)
    assert all(a >= b for a, b in zip(p.retained, p.retained[1:]))          # monotone
    assert p.retained_at(p.warm_end) == 1.0 and p.retained_at(p.start) == 1.0
    s = 110  # cubic in the remaining fraction
    assert p.retained_at(s) == pytest.approx(0.4 + 0.6 * ((160 - s) / (160 - 80)) ** 3)
    # mask windows sit inside the gap before each pruning step; after a snap (no mask move at
    # the pruning step itself) the next window starts one step later
    prev, lo = p.start, p.start
    for w, s, r in zip(p.window_starts, p.steps, p.mask_rates):
        assert lo <= w <= s and s - w == min(int(1.0 * (s - prev)), s - lo)
        assert r == pytest.approx(max(0.01, 1 / (s - w - 0.5)))
        prev, lo = s, s + 1
    assert p.window_index(p.steps[3] - 1) == 3 and p.pruning_index(p.steps[3]) == 3
    assert p.window_index(p.steps[-1]) is None and p.pruning_index(p.steps[-1] + 1) is None


def test_budget_grows_linearly_to_four_times():
    p = build_plan(APTConfig(), 400)
    assert p.budgets[-1] == pytest.approx(4.0)
    for s, b in zip(p.steps, p.budgets):
        assert b == pytest.approx(1 + 3 * (s - p.start) / (p.end - p.start))


def test_mu_schedule_seed_003():
    p = build_plan(APTConfig(distill_end=0.5), 400)     # a distillation phase after pruning, as in the paper
    assert p.mu(0) == 0 and p.mu(p.start - 1) == 0 and p.mu(p.start) == 0
    for t in (50, 100, 159):
        assert p.mu(t) == pytest.approx(min(1.0, (t - p.start) / (p.end - p.start)))
    assert p.mu(p.end) == 1 and p.mu(p.distill_end - 1) == 1
    assert p.mu(p.distill_end) == 0 and p.mu(399) == 0       # plain fine-tuning afterwards
    assert p.distilling(p.start) and not p.distilling(p.distill_end)


def test_paper_preset_reproduces_the_released_schedule():
    """RoBERTa SST-2, 40 epochs at 2,105 steps: the brief's pruning steps and retained ratios."""
    cfg = APTConfig(**APTConfig.PRESETS["paper"])
    p = build_plan(cfg, 2105 * 40)
    assert p.start == 200 and p.end == 6315 and p.warm_end == 2305 and p.distill_end == 42100
    expect = [811, 1423, 2034, 2646, 3257, 3869, 4480, 5092, 5703, 6315]
    assert all(abs(a - b) <= 1 for a, b in zip(p.steps, expect))
    assert [round(r, 2) for r in p.retained] == pytest.approx([1, 1, 1, .86, .67, .54, .46, .42, .40, .40], abs=0.011)
    assert all(200 - 2 <= s - w <= 200 for s, w in zip(p.steps, p.window_starts))   # 200-step mask window


def test_schedule_kinds():
    g = build_plan(APTConfig(schedule="gradual"), 1000)
    assert g.end == 900 and g.distill_end == 950 and len(g.steps) == 10 and g.start == 100
    late = build_plan(APTConfig(schedule="last_quarter"), 1000)
    assert late.steps == (750,) and late.start == 500 and late.retained == (pytest.approx(0.4),)
    assert late.window_starts == (750,) and late.distill_end == 1000
    init = build_plan(APTConfig(schedule="init"), 1000)
    assert init.steps == (20,) and init.start == 0 and init.window_starts == (20,)
    tiny = build_plan(APTConfig(schedule="init"), 30)
    assert tiny.steps == (2,)


def test_short_runs_keep_distinct_pruning_steps():
    p = build_plan(APTConfig(), 30)
    assert list(p.steps) == sorted(set(p.steps)) and p.steps[-1] == p.end
    assert p.retained[-1] == pytest.approx(0.4)
