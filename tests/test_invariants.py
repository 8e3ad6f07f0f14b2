"""TrainingInvariants (the battery's observer) catches orphans, stale tensors and a restarted LR schedule."""
from types import SimpleNamespace as NS

import pytest
import torch

from prunelab.train.invariants import InvariantViolation, TrainingInvariants
from prunelab.train.loop import lr_factor

TOTAL, WARMUP_RATIO = 10, 0.2


def state_for(model, params, step=0, base=0):
    opt = torch.optim.AdamW(params, lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(base + i, TOTAL, 2))
    for _ in range(step - base):
        opt.step()
        sched.step()
    config = NS(train=NS(warmup_ratio=WARMUP_RATIO))
    return NS(model=model, optimizer=opt, scheduler=sched, step=step, total_steps=TOTAL, config=config)


def test_consistent_state_passes():
    model = torch.nn.Linear(3, 2)
    obs = TrainingInvariants()
    obs.on_train_start(state_for(model, list(model.parameters())))
    obs.on_step_end(state_for(model, list(model.parameters()), step=4))          # one scheduler all along
    obs.on_step_end(state_for(model, list(model.parameters()), step=4, base=4))  # rebuilt at step 4
    assert obs.steps_checked == 2


def test_orphan_and_stale_parameters_are_caught():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(InvariantViolation, match="does not update"):
        TrainingInvariants().on_step_start(state_for(model, [model.weight]))
    old = model.weight
    model.weight = torch.nn.Parameter(torch.zeros(1, 3))     # "pruned" without a rebuild
    with pytest.raises(InvariantViolation, match="not trainable parameters"):
        TrainingInvariants().on_step_start(state_for(model, [old, model.weight, model.bias]))


def test_helper_parameters_outside_the_model_need_declaring():
    model, helper = torch.nn.Linear(3, 2), torch.nn.Linear(2, 2)
    params = list(model.parameters()) + list(helper.parameters())
    with pytest.raises(InvariantViolation):
        TrainingInvariants().on_step_start(state_for(model, params))
    plugin = NS(extra_trainable_parameters=lambda: list(helper.parameters()))
    TrainingInvariants(plugin).on_step_start(state_for(model, params))


def test_lr_schedule_restarted_by_a_rebuild_is_caught():
    model = torch.nn.Linear(3, 2)
    state = state_for(model, list(model.parameters()), step=0)   # a scheduler starting at step 0 ...
    state.step = 5                                                # ... while the run is at step 5
    with pytest.raises(InvariantViolation, match="LR schedule"):
        TrainingInvariants().on_step_end(state)
