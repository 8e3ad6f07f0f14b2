"""A loop observer that checks, after every optimizer step, what any method must keep true.

- The optimizer updates exactly the model's trainable parameters: no orphan (a trainable
  parameter the optimizer never sees, e.g. one created by pruning without a rebuild) and no
  stale tensor (an optimizer parameter the model no longer holds, or optimizer state whose
  shape no longer matches its parameter). A method may train helper parameters outside the
  model (CoFi's layer transform) by listing them in `plugin.extra_trainable_parameters()`.
- The LR schedule continues across optimizer rebuilds: every group's lr is its initial lr
  times the loop's schedule at the current step (a rebuilt scheduler starting over at step 0
  would restart the warm-up).

Parameters are checked before every optimizer step and after every one that another follows;
the LR after every step. Pass `TrainingInvariants(plugin)` in `callbacks=`; it runs after the plugin, so it sees the
state the plugin left (including an optimizer it just rebuilt). Used by the test battery.
"""
from __future__ import annotations

import math

from prunelab.train.callbacks import Callback


class InvariantViolation(AssertionError):
    pass


class TrainingInvariants(Callback):
    def __init__(self, plugin=None, rel_tol: float = 1e-6):
        self.plugin = plugin
        self.rel_tol = rel_tol
        self.steps_checked = 0
        self.rebuilds = 0          # optimizer objects seen after the first
        self._last_optimizer = None

    # Parameters are checked whenever another optimizer step will follow: before each step
    # (after the plugin's on_step_start) and after it. A method may swap the model after the
    # last step (Mask Tuning prunes then), as nothing is updated any more.
    def on_train_start(self, state):
        self._check_params(state, state.optimizer, "at the start")

    def on_step_start(self, state):
        self._check_params(state, state.optimizer, f"before step {state.step + 1}")

    def on_step_end(self, state):
        opt = state.optimizer
        if opt is not self._last_optimizer:
            self.rebuilds += self._last_optimizer is not None
            self._last_optimizer = opt
        where = f"after step {state.step}"
        if state.step < state.total_steps:
            self._check_params(state, opt, where)
        self._check_lr(state, opt, where)
        self.steps_checked += 1

    def _check_params(self, state, opt, where):
        in_opt = [p for g in opt.param_groups for p in g["params"]]
        ids = [id(p) for p in in_opt]
        if len(ids) != len(set(ids)):
            raise InvariantViolation(f"{where}: a parameter is in the optimizer twice")
        names = {id(p): n for n, p in state.model.named_parameters()}
        trainable = {id(p) for p in state.model.parameters() if p.requires_grad}
        extra = getattr(self.plugin, "extra_trainable_parameters", None)
        allowed_outside = {id(p) for p in extra()} if extra else set()
        orphans = [names[i] for i in trainable - set(ids)]
        if orphans:
            raise InvariantViolation(f"{where}: trainable parameters the optimizer does not update: {orphans[:5]}")
        stale = [tuple(p.shape) for p in in_opt if id(p) not in trainable and id(p) not in allowed_outside]
        if stale:
            raise InvariantViolation(f"{where}: the optimizer updates {len(stale)} tensors that are not trainable "
                                     f"parameters of the model (stale or frozen), shapes {stale[:5]}")
        for p, s in opt.state.items():
            for key, value in s.items():
                if getattr(value, "dim", lambda: 0)() and tuple(value.shape) != tuple(p.shape):
                    raise InvariantViolation(f"{where}: optimizer state {key} has shape {tuple(value.shape)} "
                                             f"for a parameter of shape {tuple(p.shape)}")

    def _check_lr(self, state, opt, where):
        from prunelab.train.loop import lr_factor

        tc = state.config.train
        total = state.total_steps
        factor = lr_factor(state.step, total, int(tc.warmup_ratio * total))
        for i, g in enumerate(opt.param_groups):
            want = g.get("initial_lr", g["lr"]) * factor
            if not math.isclose(g["lr"], want, rel_tol=self.rel_tol, abs_tol=1e-12):
                raise InvariantViolation(f"{where}: param group {i} has lr {g['lr']:.3g}, the schedule says "
                                         f"{want:.3g} (factor {factor:.3g} of {g.get('initial_lr')}): "
                                         f"the LR schedule did not continue across an optimizer rebuild")
