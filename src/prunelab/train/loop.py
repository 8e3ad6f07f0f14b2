"""The one training loop. Methods change its behaviour only through callbacks.

Devices come from accelerate (CPU by default, CUDA unchanged). Training time is
counted per step, so dev evaluations never inflate time-to-accuracy. A NaN/inf loss stops
the run and raises TrainingDiverged, which the runner records as a failed run.

Several processes (`accelerate launch --multi_gpu --num_processes N`; on a machine without
CUDA they run on the CPU with gloo): every rank draws the same batch and trains on its 1/N
share, and the gradients are averaged in one all-reduce (average_gradients), so the ranks stay
identical. `accelerate launch --cpu --num_processes N` starts only one process (accelerate
fans out on CPU only through mpirun).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from prunelab.train.callbacks import CallbackList, MethodPlugin, TrainState
from prunelab.train.measure import Timer


class TrainingDiverged(RuntimeError):
    pass


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up then linear decay to zero (the HF default schedule)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


@dataclass
class TrainResult:
    state: TrainState
    curve: list = field(default_factory=list)      # [{step, seconds, score, ...metrics}]


def count_steps(n_batches: int, epochs: float, max_steps: int | None) -> int:
    return max_steps if max_steps else max(1, math.ceil(n_batches * epochs))


def eval_steps(total: int, points: int) -> set[int]:
    return {max(1, round(total * k / points)) for k in range(1, points + 1)}


class Loop:
    """One training session, a step at a time: state, optimizer and scheduler of `model` under
    `plugin`. train() drives it over the data; a benchmark can drive several interleaved (one
    process, the same load on each) by calling step() on each in turn."""

    def __init__(self, model, plugin: MethodPlugin, task, tokenizer, config, family=None, accelerator=None,
                 callbacks=(), total_steps: int | None = None, n_train: int | None = None):
        from accelerate import Accelerator

        tc = self.tc = config.train
        self.task, self.tokenizer, self.config = task, tokenizer, config
        self.accelerator = accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        self.device = accelerator.device
        if total_steps is None:
            total_steps = count_steps(math.ceil(n_train / tc.batch_size), tc.epochs, tc.max_steps)
        self.total = total_steps
        self.warmup = int(tc.warmup_ratio * total_steps)
        # several processes: no DDP wrapper, the loop averages the gradients (see average_gradients)
        model = accelerator.prepare_model(model) if accelerator.num_processes == 1 else model.to(self.device)
        self.state = TrainState(model=model, config=config, task=task, family=family, total_steps=total_steps)
        self.plugin = plugin
        self.cbs = CallbackList([plugin, *callbacks])
        self.state._rebuild = self.rebuild
        self.rebuild()
        self.timer = Timer()

    def rebuild(self):
        # a fresh optimizer and a scheduler bound to it, continuing from the current step
        state, tc, acc = self.state, self.tc, self.accelerator
        groups = self.plugin.param_groups(acc.unwrap_model(state.model), tc.lr, tc.weight_decay)
        opt = torch.optim.AdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay)
        state.optimizer = acc.prepare_optimizer(opt)
        base, total, warmup = state.step, self.total, self.warmup
        state.scheduler = torch.optim.lr_scheduler.LambdaLR(state.optimizer, lambda i: lr_factor(base + i, total, warmup))

    def start(self):
        self.cbs.on_train_start(self.state)

    def step(self, batch_features: list) -> float:
        """One optimizer step on `batch_features` (this rank's share); returns its wall seconds."""
        state, acc, cbs, tc = self.state, self.accelerator, self.cbs, self.tc
        batch = {k: v.to(self.device) for k, v in self.task.collate(batch_features, self.tokenizer).items()}
        state.batch = batch
        before = self.timer.seconds
        with self.timer:
            state.model.train()
            cbs.on_step_start(state)
            outputs = state.model(**batch)
            state.outputs = outputs
            loss = cbs.compute_loss(state, outputs.loss)
            # several processes: all stop together (one stopping alone would hang the others)
            if not torch.isfinite(loss if acc.num_processes == 1 else acc.reduce(loss.detach(), reduction="sum")):
                raise TrainingDiverged(f"loss is {loss.item()} at step {state.step}")
            state.loss = loss
            acc.backward(loss)
            if acc.num_processes > 1:
                average_gradients(state.optimizer, acc)
            cbs.after_backward(state)
            if tc.grad_clip:
                acc.clip_grad_norm_([p for g in state.optimizer.param_groups for p in g["params"]], tc.grad_clip)
            state.optimizer.step()
            state.scheduler.step()
            state.optimizer.zero_grad(set_to_none=True)
            state.step += 1
            cbs.on_step_end(state)
        state.train_seconds, state.train_cpu_seconds = self.timer.seconds, self.timer.cpu_seconds
        return self.timer.seconds - before

    def evaluate(self, dev_features: list) -> dict:
        """Score dev, update best/last score, tell the plugin (on_eval); returns the curve point."""
        state, tc = self.state, self.tc
        metrics = self.task.evaluate(self.accelerator.unwrap_model(state.model), dev_features, self.tokenizer,
                                     tc.eval_batch_size, self.device)
        s = state.last_score = metrics["score"]
        if state.best_score is None or (s > state.best_score if self.task.higher_is_better else s < state.best_score):
            state.best_score = s
        point = {"step": state.step, "seconds": round(self.timer.seconds, 4),
                 "cpu_seconds": round(self.timer.cpu_seconds, 4), **metrics, **{k: v for k, v in state.log.items()}}
        self.cbs.on_eval(state, metrics)
        return point

    def end(self):
        self.cbs.on_train_end(self.state)
        self.state.model = self.accelerator.unwrap_model(self.state.model)


def train(model, plugin: MethodPlugin, task, tokenizer, train_features: list, dev_features: list,
          config, family=None, accelerator=None, callbacks=(), progress=None) -> TrainResult:
    """Train `model` (already prepared by the plugin) and return the curve.

    `callbacks` are extra observers (progress, logging) called after the plugin."""
    tc = config.train
    loop = Loop(model, plugin, task, tokenizer, config, family, accelerator, callbacks, n_train=len(train_features))
    state, accelerator = loop.state, loop.accelerator
    evals = eval_steps(loop.total, tc.eval_points)
    curve: list[dict] = []
    seen = 0
    loop.start()
    watching = progress is not None and accelerator.is_main_process   # one rank reports
    if watching and hasattr(progress, "phase"):
        progress.phase("train", steps=loop.total)
    done = False
    while not done:
        for batch_features in task.batches(train_features, tc.batch_size, shuffle=True,
                                           seed=config.seed * 1000 + state.epoch, bucket=tc.bucket):
            # several processes: every rank draws the same batch and trains on its share of it
            with accelerator.split_between_processes(batch_features, apply_padding=True) as mine:
                batch_features = mine
            seen += len(batch_features)
            loop.step(batch_features)
            if state.step in evals:
                curve.append(loop.evaluate(dev_features))
            if watching:                 # after the eval, so its line carries this step's dev score
                progress(state)
            if state.step >= loop.total:
                done = True
                break
        state.epoch += 1
    loop.end()
    if os.environ.get("PRUNELAB_RANK_STATE_DIR"):
        write_rank_state(os.environ["PRUNELAB_RANK_STATE_DIR"], accelerator, state.model, seen)
    return TrainResult(state=state, curve=curve)


def average_gradients(optimizer, accelerator) -> None:
    """Mean of every trainable gradient over the processes (a rank without one adds zero; one
    that no rank has stays None), in one all-reduce. Not DDP: APT uses parameters outside the
    forward pass (distillation's Tr), some only on some steps, and reshapes them when it prunes,
    which DDP's fixed gradient buckets reject."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if not params:
        return
    flat = torch.cat([torch.tensor([float(p.grad is not None) for p in params], device=params[0].device)]
                     + [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params])
    flat = accelerator.reduce(flat, reduction="sum")
    has, grads = flat[:len(params)], flat[len(params):].split([p.numel() for p in params])
    for p, n, g in zip(params, has.tolist(), grads):
        p.grad = (g / accelerator.num_processes).view_as(p).to(p.dtype) if n > 0 else None


def write_rank_state(directory: str, accelerator, model, examples_seen: int) -> None:
    """Test hook: each process writes a hash of its trained model's state_dict to
    `directory/rank<i>.json`, so a multi-process run can check that all ranks agree."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    info = {"rank": accelerator.process_index, "world": accelerator.num_processes, "pid": os.getpid(),
            "sha256": h.hexdigest(),
            "params": sum(p.numel() for p in model.parameters()), "examples_seen": examples_seen}
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"rank{accelerator.process_index}.json"), "w") as f:
        json.dump(info, f)
