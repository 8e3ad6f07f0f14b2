"""When APT prunes, grows adapters and distils: a plan of integer steps built from fractions.

Step convention: ``s`` is the number of optimizer steps done (``state.step`` at on_step_end).
Pruning step ``p`` means "after p steps": masks snap to 0/1 and pruned blocks are removed at
on_step_end when s == p. Mask window k covers s in [window_start[k], p_k): after each of those
steps the masks move by +-mask_rate[k], where

    mask_rate[k] = max(mask_lr, 1 / (p_k - window_start[k] - 1/2))

(the half step absorbs float rounding: the last move clamps at 0), so a block that stays in the drop set for the whole window reaches exactly 0 before the snap
(and the model trains its last window step without it), whatever the run length. The code's
fixed 0.01 needs 100 steps; its 200-step windows allow that, but a 500-step run has ~15-step
windows (masks would only reach 0.85 and the snap would still be a jump). Salience is collected on the training batches of steps
t in [start, end) (t = state.step at on_step_start).

Retained fraction (cubic, applied to the *retained* fraction as the released code does; the
paper's gamma_t = gamma_T + (1 - gamma_T)(1 - t/T)^3 read with gamma as sparsity would start
fully pruned):

    retained(s) = min(1, c_T + (1 - c_T) * ((end - s) / (end - warm_end))^3),  c_T = 1 - sparsity

Pruning steps are linspace(start, end, n + 1) without its first entry (the code drops it too),
so the last pruning step is ``end`` and reaches c_T exactly.

Tuning budget (paper section 4, code ParamController): linear over the same steps from N0 to
budget_growth * N0, i.e. multiplier 1 + (g - 1)(p_k - start)/(end - start) at pruning step k.

Distillation weight (seed 003): mu = min(1, (t - start)/(end - start)) from the pruning start,
1 until ``distill_end``, and 0 afterwards (plain fine-tuning of the pruned model).

Schedule kinds (the "pruning schedule" ablation component):
- early: the configured fractions (default 10% -> 40%, the paper's "prune early").
- gradual: the same start, pruning spread until 90% of the run; distillation until 95%.
- last_quarter: salience from 50%, all pruning at once at 75% (no mask window, no warm-up),
  distillation to the end of the run ("prune all at once in the last quarter", "late pruning").
- init: one-shot pruning right after a short calibration (2% of the run, at least 2 steps,
  of ordinary training batches: salience needs gradients), no mask window ("one-shot pruning
  at initialization"); distillation as configured.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

GRADUAL_END, GRADUAL_DISTILL_END = 0.9, 0.95
LATE_START, LATE_PRUNE = 0.5, 0.75
INIT_CALIBRATION = 0.02


@dataclass(frozen=True)
class Plan:
    total: int
    start: int
    end: int
    warm_end: int
    steps: tuple           # pruning steps, strictly increasing, each in (start, end]
    retained: tuple        # target retained fraction at each pruning step
    window_starts: tuple   # first step of each pruning step's mask window
    budgets: tuple         # tuning budget / N0 at each pruning step
    distill_end: int
    final_retained: float
    mask_rates: tuple = ()  # per-step mask move inside each pruning step's window

    # -- queries -----------------------------------------------------------------------------
    def retained_at(self, s: int) -> float:
        c = self.final_retained
        if s >= self.end:
            return c
        if self.end <= self.warm_end or s <= self.warm_end:
            return 1.0
        return min(1.0, c + (1 - c) * ((self.end - s) / (self.end - self.warm_end)) ** 3)

    def pruning_index(self, s: int) -> int | None:
        """k if s is the k-th pruning step."""
        try:
            return self.steps.index(s)
        except ValueError:
            return None

    def window_index(self, s: int) -> int | None:
        """k if the masks should move after step s (s inside the window of pruning step k)."""
        for k, p in enumerate(self.steps):
            if self.window_starts[k] <= s < p:
                return k
        return None

    def collecting(self, t: int) -> bool:
        return self.start <= t < self.end

    def mu(self, t: int) -> float:
        if t < self.start or t >= self.distill_end:
            return 0.0
        return min(1.0, (t - self.start) / max(1, self.end - self.start))

    def distilling(self, t: int) -> bool:
        return self.start <= t < self.distill_end

    def to_dict(self) -> dict:
        return {"total": self.total, "start": self.start, "end": self.end, "warm_end": self.warm_end,
                "steps": list(self.steps), "retained": [round(r, 4) for r in self.retained],
                "window_starts": list(self.window_starts), "budgets": [round(b, 4) for b in self.budgets],
                "mask_rates": [round(r, 4) for r in self.mask_rates],
                "distill_end": self.distill_end}


def _fractions(cfg) -> dict:
    """(start, warm-up, end, distill_end, n, window) as fractions for the schedule kind."""
    f = dict(start=cfg.prune_start, warmup=cfg.sparsity_warmup, end=cfg.prune_end,
             distill_end=cfg.distill_end, n=cfg.num_prunings, window=cfg.mask_window)
    if cfg.schedule == "gradual":
        f.update(end=max(GRADUAL_END, cfg.prune_end), distill_end=max(GRADUAL_DISTILL_END, cfg.distill_end))
    elif cfg.schedule == "last_quarter":
        f.update(start=LATE_START, warmup=0.0, end=LATE_PRUNE, distill_end=1.0, n=1, window=0.0)
    elif cfg.schedule == "init":
        f.update(start=0.0, warmup=0.0, end=INIT_CALIBRATION, n=1, window=0.0)
    return f


def build_plan(cfg, total_steps: int) -> Plan:
    """The integer plan for a run of ``total_steps`` optimizer steps."""
    T = max(1, int(total_steps))
    f = _fractions(cfg)
    start = min(T - 1, int(round(f["start"] * T))) if T > 1 else 0
    end = int(round(f["end"] * T))
    if cfg.schedule == "init":
        end = max(end, 2)
    end = min(max(end, start + 1), T)
    warm_end = min(end, start + int(round(f["warmup"] * T)))
    distill_end = min(T, max(end, int(round(f["distill_end"] * T))))
    n = int(f["n"])
    raw = [start + (end - start) * (k + 1) / n for k in range(n)]
    steps = []
    for x in raw:  # short runs: fewer, distinct pruning steps rather than several at one step
        p = min(end, max(start + 1, int(round(x))))
        if not steps or p > steps[-1]:
            steps.append(p)
    if steps[-1] != end:
        steps.append(end)
    c = 1.0 - cfg.sparsity
    plan0 = Plan(T, start, end, warm_end, tuple(steps), (), (), (), distill_end, c)
    retained = tuple(plan0.retained_at(p) for p in steps)
    windows, prev, lo = [], start, start
    for p in steps:
        # after step `prev` of an earlier pruning step no mask moves (it is the snap), so a
        # later window starts one step after it at the earliest
        length = int(math.floor(f["window"] * (p - prev)))
        windows.append(max(lo, p - length))
        prev, lo = p, p + 1
    g = cfg.budget_growth
    budgets = tuple(1 + (g - 1) * (p - start) / max(1, end - start) for p in steps)
    rates = tuple(max(cfg.mask_lr, 1.0 / (p - w - 0.5)) if p > w else 1.0 for p, w in zip(steps, windows))
    return Plan(T, start, end, warm_end, tuple(steps), retained, tuple(windows), budgets, distill_end, c, rates)
