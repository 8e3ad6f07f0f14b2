"""CoFi's distillation: prediction KL + layer distillation (version 4), and the teacher.

Loss (no label cross-entropy while distilling, as CoFi):
    L = alpha_ce * KL(softmax(t/T) || softmax(s/T)) * T^2 + alpha_layer * L_layer
L_layer (v4): teacher layers at the end of each quarter of the depth ({2, 5, 8, 11} for 12
layers) are each matched to the student layer whose transformed output (a learned linear
`layer_transformation`, hidden -> hidden) has the smallest MSE to it, searching from the last
teacher layer backwards with the order constraint (a teacher layer only maps to a student layer
before the one the next teacher layer took) and only among surviving student layers
(attention-layer mask != 0). L_layer is the sum of the matched MSEs.

Teacher: a separately fine-tuned dense model of the same model and task. It is trained here with
the one training loop and the FT plugin, on the training subset of `teacher_seed`, with the run's
training settings except lr (`teacher_lr`, FT's) and steps (`teacher_steps`, default: the run's),
and cached on disk under $PRUNELAB_CACHE/cofi-teachers/<key> (state dict + meta), keyed by model,
task, teacher training settings, teacher seed and a fingerprint of the training features. All
seeds of a CoFi run, and both CoFi variants, share one teacher; its training time is recorded
(`teacher_seconds`) but is not part of the CoFi run's train time, as the teacher is an input of
CoFi, not part of its method.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F


# ---- layer outputs ---------------------------------------------------------------------------
class LayerOutputs:
    """Forward hooks on every layer-output module of a family; records while `active`."""

    def __init__(self, family):
        self.outputs: list = [None] * family.num_layers
        self.active = False
        self.handles = [family.layer_outputs_module(i).register_forward_hook(self._hook(i))
                        for i in range(family.num_layers)]

    def _hook(self, i):
        def hook(module, args, out):
            if self.active:
                self.outputs[i] = out[0] if isinstance(out, tuple) else out
        return hook

    def take(self) -> list:
        out, self.outputs = self.outputs, [None] * len(self.outputs)
        return out

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []


def default_teacher_layers(num_layers: int) -> list[int]:
    """The last layer of each quarter of the depth: {2, 5, 8, 11} for 12 layers, {1, 2, 4, 5} for 6."""
    return sorted({max(0, math.ceil(num_layers * k / 4) - 1) for k in range(1, 5)})


# ---- losses ----------------------------------------------------------------------------------
def prediction_loss(student_logits, teacher_logits, temperature: float) -> torch.Tensor:
    if student_logits.shape[-1] == 1:               # regression head: match the teacher's value
        return F.mse_loss(student_logits, teacher_logits)
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.softmax(teacher_logits / t, dim=-1),
                    reduction="batchmean") * t * t


def output_loss(student_out, teacher_out, temperature: float) -> torch.Tensor:
    """prediction_loss on a model output: per-token logits flattened; a QA head (no `logits`)
    distils its start and end distributions, averaged."""
    names = ["logits"] if getattr(student_out, "logits", None) is not None else ["start_logits", "end_logits"]
    losses = []
    for name in names:
        s, t = getattr(student_out, name), getattr(teacher_out, name)
        losses.append(prediction_loss(s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1]), temperature))
    return sum(losses) / len(losses)


def align_v4(losses: torch.Tensor, existing: torch.Tensor | None = None) -> list[int]:
    """losses: [teacher layers, student layers]. CoFi v4: from the last teacher layer backwards,
    the lowest-loss student layer below the previously aligned one (and alive)."""
    n_t, n_s = losses.shape
    last = n_s
    align = []
    for t in range(n_t - 1, -1, -1):
        order = losses[t].detach().argsort()
        ok = order < last
        if existing is not None:
            ok = ok & existing.to(order.device)[order]
        ok = ok & torch.isfinite(losses[t].detach())[order]      # inf: shapes differ (see layer_loss)
        cands = order[ok]
        a = int(cands[0]) if cands.numel() else min(last, n_s - 1)
        if not torch.isfinite(losses[t, a]):
            a = int(losses[t].detach().argmin())
        align.append(a)
        last = a
    return align[::-1]


def layer_loss(teacher_layers: list, student_layers: list, transform, teacher_ids: list[int],
               existing: torch.Tensor | None = None):
    """Sum of the v4-aligned MSEs between teacher layers `teacher_ids` and transformed student layers."""
    students = [transform(s) for s in student_layers]
    teachers = [teacher_layers[i] for i in teacher_ids]
    # encoder-decoder models: encoder and decoder layers have different lengths and never pair
    losses = torch.stack([torch.stack([F.mse_loss(s, t) if s.shape == t.shape else s.new_tensor(float("inf"))
                                       for s in students]) for t in teachers])
    align = align_v4(losses, existing)
    return losses[torch.arange(len(teachers)), torch.tensor(align)].sum(), align


# ---- teacher ---------------------------------------------------------------------------------
def cache_root() -> Path:
    return Path(os.environ.get("PRUNELAB_CACHE") or Path.home() / ".cache" / "prunelab")


def _fingerprint(features: list) -> str:
    h = hashlib.sha256()
    for f in features:
        h.update(json.dumps([f.get("input_ids"), f.get("labels", f.get("label"))], default=str).encode())
    return h.hexdigest()[:16]


def teacher_config(run_config, lr: float, steps: int | None, seed: int):
    """The RunConfig of the teacher: FT of the same model/task with the run's training settings."""
    tc = dataclasses.replace(run_config.train, lr=lr, max_steps=steps or run_config.train.max_steps,
                             eval_points=1)
    return dataclasses.replace(run_config, method="ft", method_args={}, train=tc, seed=seed,
                               study=None, cell=None, **({"output_dir": None} if hasattr(run_config, "output_dir") else {}),
                               **({"log_dir": None} if hasattr(run_config, "log_dir") else {}))


def get_teacher(ctx, lr: float, steps: int | None, seed: int, use_cache: bool = True):
    """(teacher model in eval mode on ctx.device, its family adapter, info dict)."""
    from prunelab.methods.ft import FullFineTuning
    from prunelab.models.load import load_model
    from prunelab.train.loop import set_seed, train

    cfg = teacher_config(ctx.config, lr, steps, seed)
    task, tc = ctx.task, cfg.train
    if seed == ctx.config.seed:
        features = ctx.train_features
    else:
        examples = task.load("train", cfg.data_dir, limit=tc.train_limit, seed=seed)
        features = task.encode(examples, ctx.tokenizer, tc.max_length)
    key_blob = json.dumps({"model": cfg.model, "task": cfg.task, "train": dataclasses.asdict(tc), "seed": seed,
                           "data": _fingerprint(features)}, sort_keys=True, default=str)
    key = hashlib.sha256(key_blob.encode()).hexdigest()[:16]
    folder = cache_root() / "cofi-teachers" / key
    set_seed(seed)
    loaded = load_model(cfg.model, task)
    model = loaded.model.to(ctx.device)
    info = {"teacher_key": key}
    if use_cache and (folder / "teacher.pt").exists() and (folder / "meta.json").exists():
        model.load_state_dict(torch.load(folder / "teacher.pt", map_location=ctx.device))
        meta = json.loads((folder / "meta.json").read_text())
        info.update(meta, teacher_cached=True)
    else:
        plugin = FullFineTuning()
        model = plugin.prepare(model)
        t0 = time.perf_counter()
        result = train(model, plugin, task, ctx.tokenizer, features, ctx.dev_features, cfg, family=loaded.family)
        model = result.state.model
        meta = {"teacher_score": result.curve[-1]["score"] if result.curve else None,
                "teacher_seconds": result.state.train_seconds, "teacher_wall_seconds": time.perf_counter() - t0,
                "teacher_steps": result.state.step, "teacher_lr": lr, "teacher_seed": seed,
                "teacher_config": key_blob}
        info.update(meta, teacher_cached=False)
        if use_cache:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder.parent))
            try:
                torch.save(model.state_dict(), tmp / "teacher.pt")
                (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
                os.rename(tmp, folder)
            except OSError:                    # another run cached the same teacher first
                shutil.rmtree(tmp, ignore_errors=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    info.pop("teacher_config", None)
    return model, loaded.family, info
