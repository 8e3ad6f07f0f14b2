"""The callback protocol methods plug into, and the state the loop shares with them.

The loop calls, in order: prepare (before the optimizer exists), on_train_start, then per
step on_step_start -> forward -> compute_loss -> backward -> after_backward -> optimizer step
-> on_step_end; on_eval after each dev evaluation; on_train_end; finalize (physical pruning,
adapter merge) before inference is measured. A method that changes parameter shapes calls
`state.rebuild_optimizer()`; the loop makes a fresh optimizer *and* scheduler, the scheduler
continuing from the current step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch


@dataclass
class TrainState:
    model: torch.nn.Module
    config: Any                      # RunConfig
    task: Any
    family: Any                      # FamilyAdapter of the (unwrapped) model
    total_steps: int
    step: int = 0                    # optimizer steps done
    epoch: int = 0
    train_seconds: float = 0.0       # training time, evaluations excluded
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    batch: dict | None = None        # the current training batch
    outputs: Any = None              # model outputs of the current step
    loss: torch.Tensor | None = None
    best_score: float | None = None
    last_score: float | None = None
    log: dict = field(default_factory=dict)       # per-step scalars methods want recorded
    extra_metrics: dict = field(default_factory=dict)  # method metrics for the run record
    _rebuild: Callable[[], None] | None = None

    def rebuild_optimizer(self):
        """Call after parameters were added, removed or reshaped."""
        if self._rebuild is not None:
            self._rebuild()

    @property
    def progress(self) -> float:
        return self.step / max(1, self.total_steps)


class Callback:
    """No-op base; override what you need."""

    def on_train_start(self, state: TrainState): ...
    def on_step_start(self, state: TrainState): ...
    def compute_loss(self, state: TrainState, loss: torch.Tensor) -> torch.Tensor:
        return loss
    def after_backward(self, state: TrainState): ...
    def on_step_end(self, state: TrainState): ...
    def on_eval(self, state: TrainState, metrics: dict): ...
    def on_train_end(self, state: TrainState): ...


class MethodPlugin(Callback):
    """What a method's build() returns: callbacks plus model-level hooks."""

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """Wrap/modify the model before training (adapters, masks). Returns the model to train."""
        return model

    def trainable_parameters(self, model: torch.nn.Module):
        return [p for p in model.parameters() if p.requires_grad]

    def param_groups(self, model: torch.nn.Module, lr: float, weight_decay: float) -> list[dict]:
        return [{"params": self.trainable_parameters(model), "lr": lr, "weight_decay": weight_decay}]

    def finalize(self, model: torch.nn.Module) -> torch.nn.Module:
        """After training: merge adapters, physically remove pruned structures. Returns the deployable model."""
        return model


class CallbackList(Callback):
    def __init__(self, callbacks):
        self.callbacks = list(callbacks)

    def _each(self, name, *args):
        for cb in self.callbacks:
            getattr(cb, name)(*args)

    def on_train_start(self, s): self._each("on_train_start", s)
    def on_step_start(self, s): self._each("on_step_start", s)
    def after_backward(self, s): self._each("after_backward", s)
    def on_step_end(self, s): self._each("on_step_end", s)
    def on_eval(self, s, m): self._each("on_eval", s, m)
    def on_train_end(self, s): self._each("on_train_end", s)

    def compute_loss(self, s, loss):
        for cb in self.callbacks:
            loss = cb.compute_loss(s, loss)
        return loss
