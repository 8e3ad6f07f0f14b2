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


def train(model, plugin: MethodPlugin, task, tokenizer, train_features: list, dev_features: list,
          config, family=None, accelerator=None, callbacks=(), progress=None) -> TrainResult:
    """Train `model` (already prepared by the plugin) and return the curve.

    `callbacks` are extra observers (progress, logging) called after the plugin."""
    from accelerate import Accelerator

    tc = config.train
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    device = accelerator.device
    n_batches = math.ceil(len(train_features) / tc.batch_size)
    total = count_steps(n_batches, tc.epochs, tc.max_steps)
    warmup = int(tc.warmup_ratio * total)
    evals = eval_steps(total, tc.eval_points)

    # several processes: no DDP wrapper, the loop averages the gradients (see average_gradients)
    model = accelerator.prepare_model(model) if accelerator.num_processes == 1 else model.to(device)
    state = TrainState(model=model, config=config, task=task, family=family, total_steps=total)
    cbs = CallbackList([plugin, *callbacks])

    def rebuild():
        # a fresh optimizer and a scheduler bound to it, continuing from the current step
        groups = plugin.param_groups(accelerator.unwrap_model(state.model), tc.lr, tc.weight_decay)
        opt = torch.optim.AdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay)
        state.optimizer = accelerator.prepare_optimizer(opt)
        base = state.step
        state.scheduler = torch.optim.lr_scheduler.LambdaLR(
            state.optimizer, lambda i: lr_factor(base + i, total, warmup))

    state._rebuild = rebuild
    rebuild()
    curve: list[dict] = []
    timer = Timer()
    seen = 0
    cbs.on_train_start(state)
    watching = progress is not None and accelerator.is_main_process   # one rank reports
    if watching and hasattr(progress, "phase"):
        progress.phase("train", steps=total)
    done = False
    while not done:
        for batch_features in task.batches(train_features, tc.batch_size, shuffle=True,
                                           seed=config.seed * 1000 + state.epoch, bucket=tc.bucket):
            # several processes: every rank draws the same batch and trains on its share of it
            with accelerator.split_between_processes(batch_features, apply_padding=True) as mine:
                batch_features = mine
            seen += len(batch_features)
            batch = {k: v.to(device) for k, v in task.collate(batch_features, tokenizer).items()}
            state.batch = batch
            with timer:
                state.model.train()
                cbs.on_step_start(state)
                outputs = state.model(**batch)
                state.outputs = outputs
                loss = cbs.compute_loss(state, outputs.loss)
                # several processes: all stop together (one stopping alone would hang the others)
                if not torch.isfinite(loss if accelerator.num_processes == 1
                                      else accelerator.reduce(loss.detach(), reduction="sum")):
                    raise TrainingDiverged(f"loss is {loss.item()} at step {state.step}")
                state.loss = loss
                accelerator.backward(loss)
                if accelerator.num_processes > 1:
                    average_gradients(state.optimizer, accelerator)
                cbs.after_backward(state)
                if tc.grad_clip:
                    accelerator.clip_grad_norm_(
                        [p for g in state.optimizer.param_groups for p in g["params"]], tc.grad_clip)
                state.optimizer.step()
                state.scheduler.step()
                state.optimizer.zero_grad(set_to_none=True)
                state.step += 1
                cbs.on_step_end(state)
            state.train_seconds, state.train_cpu_seconds = timer.seconds, timer.cpu_seconds
            if state.step in evals:
                metrics = task.evaluate(accelerator.unwrap_model(state.model), dev_features, tokenizer,
                                        tc.eval_batch_size, device)
                s = state.last_score = metrics["score"]
                if state.best_score is None or (s > state.best_score if task.higher_is_better else s < state.best_score):
                    state.best_score = s
                curve.append({"step": state.step, "seconds": round(timer.seconds, 4),
                              "cpu_seconds": round(timer.cpu_seconds, 4), **metrics,
                              **{k: v for k, v in state.log.items()}})
                cbs.on_eval(state, metrics)
            if watching:                 # after the eval, so its line carries this step's dev score
                progress(state)
            if state.step >= total:
                done = True
                break
        state.epoch += 1
    cbs.on_train_end(state)
    state.model = accelerator.unwrap_model(state.model)
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
