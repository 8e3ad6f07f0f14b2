"""The training loop: callback order, optimizer/scheduler rebuild, divergence, eval curve."""
import math

import pytest
import torch

from prunelab.config import RunConfig, TrainConfig
from prunelab.methods.ft import FullFineTuning
from prunelab.models.load import load_model
from prunelab.tasks import get_task
from prunelab.train.loop import TrainingDiverged, lr_factor, train


def setup(sst2_dir, **train_kw):
    task = get_task("glue/sst2")
    loaded = load_model("tiny-bert", task)
    cfg = RunConfig(model="tiny-bert", data_dir=sst2_dir,
                    train=TrainConfig(batch_size=8, max_steps=6, eval_points=3, lr=1e-3, **train_kw))
    tr = task.encode(task.load("train", sst2_dir), loaded.tokenizer, 32)
    dev = task.encode(task.load("dev", sst2_dir), loaded.tokenizer, 32)
    return task, loaded, cfg, tr, dev


class Recorder(FullFineTuning):
    def __init__(self):
        self.calls = []

    def on_train_start(self, s): self.calls.append("start")
    def on_step_start(self, s): self.calls.append("step_start")
    def compute_loss(self, s, loss):
        self.calls.append("loss")
        return loss
    def after_backward(self, s):
        # gradients exist here and the optimizer has not stepped yet
        assert any(p.grad is not None for p in s.model.parameters())
        self.calls.append("backward")
    def on_step_end(self, s): self.calls.append("step_end")
    def on_eval(self, s, m): self.calls.append("eval")
    def on_train_end(self, s): self.calls.append("end")


def test_callback_order_and_curve(sst2_dir):
    task, loaded, cfg, tr, dev = setup(sst2_dir)
    rec = Recorder()
    res = train(rec.prepare(loaded.model), rec, task, loaded.tokenizer, tr, dev, cfg)
    step = ["step_start", "loss", "backward", "step_end"]
    assert rec.calls[0] == "start" and rec.calls[-1] == "end"
    assert rec.calls[1:5] == step and rec.calls.count("step_start") == 6 and rec.calls.count("eval") == 3
    assert [p["step"] for p in res.curve] == [2, 4, 6]
    secs = [p["seconds"] for p in res.curve]
    assert secs == sorted(secs) and all("accuracy" in p for p in res.curve)


class Grower(FullFineTuning):
    """Adds a parameter mid-run (as adapter growth does) and rebuilds the optimizer."""

    def on_step_end(self, s):
        if s.step == 3:
            s.model.extra = torch.nn.Parameter(torch.zeros(3))
            s.rebuild_optimizer()

    def compute_loss(self, s, loss):
        extra = getattr(s.model, "extra", None)
        return loss + (0 if extra is None else ((extra - 1) ** 2).sum())


def test_rebuild_optimizer_and_scheduler_continue(sst2_dir):
    task, loaded, cfg, tr, dev = setup(sst2_dir, warmup_ratio=0.0)
    g = Grower()
    res = train(g.prepare(loaded.model), g, task, loaded.tokenizer, tr, dev, cfg)
    st = res.state
    params = [p for grp in st.optimizer.param_groups for p in grp["params"]]
    assert any(p is st.model.extra for p in params)        # the new optimizer sees the new parameter
    assert float(st.model.extra.sum()) > 0                  # and trained it
    # the scheduler was rebuilt bound to the new optimizer and kept the global step
    assert st.scheduler.optimizer is st.optimizer
    assert math.isclose(st.optimizer.param_groups[0]["lr"], 1e-3 * lr_factor(6, 6, 0), abs_tol=1e-12)


class Exploder(FullFineTuning):
    def compute_loss(self, s, loss):
        return loss * float("nan") if s.step == 2 else loss


def test_nan_loss_stops(sst2_dir):
    task, loaded, cfg, tr, dev = setup(sst2_dir)
    e = Exploder()
    with pytest.raises(TrainingDiverged, match="step 2"):
        train(e.prepare(loaded.model), e, task, loaded.tokenizer, tr, dev, cfg)


def test_lr_schedule():
    assert lr_factor(0, 10, 2) == 0.5 and lr_factor(1, 10, 2) == 1.0
    assert lr_factor(10, 10, 2) == 0.0 and math.isclose(lr_factor(6, 10, 2), 0.5)
