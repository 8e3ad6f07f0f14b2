"""Efficient self-distillation (paper section 4.4, seed 003) and the teacher variants.

    L_layer   = sum over sampled layers of MSE(Tr(h_student[m(i)]), h_teacher[i])
    L_pred    = tau^2 KL(softmax(z_t / tau) || softmax(z_s / tau)),   tau = 4
    L_distill = L_pred + 0.9 L_layer          (classification)
              = 0.1 L_pred + 0.9 L_layer      (QA, generation: SQuAD, CNN/DM)
    L         = mu L_distill + (1 - mu) L_ft

The tau^2 factor is the code's (it writes 10 * 0.1 * tau^2 KL, i.e. weight 1 on tau^2 KL).

Layer mapping (recomputed every step, seed 003): one teacher layer is sampled uniformly from
each quarter of the stack (np.array_split into 4 contiguous chunks, so 6 layers give chunks of
2, 2, 1, 1; the code's L // 4 chunks would never sample layers 4-5 of a 6-layer model). It is
mapped to the same student layer if that layer survives, otherwise to the nearer-in-MSE of
the nearest surviving layers below and above (after Tr). A layer survives while it keeps at
least one head and one FFN neuron (code: ``head_layer_z & mlp_z``). Encoder-decoder models
sample each stack separately and average the two stack losses (the code's seq2seq trainer).
MSEs are averaged over real tokens only (attention mask) where the mask fits the states.

Teachers, and what happens to them under physical pruning:

* ``SharedTeacher`` (default, "self"; the paper's "the teacher shares the frozen parameters
  with the student"): frozen copies of the adapters and of the trainable task head, run over
  the student's own frozen weights by swapping them in. The frozen weights are pruned
  together with the student, so the teacher costs only its adapter/head copies in memory
  (APT's training-memory claim). It is taken when distillation starts and re-taken whenever
  the dev score improves (the code's momentum teacher). Tr maps student width to the same
  width and is pruned on both sides with the student.
* ``SnapshotTeacher`` ("self_snapshot"): the best-so-far model by dev score as a structural
  copy of the student that *shares the student's frozen tensors* copy-on-prune and holds
  frozen copies of the adapters and the trainable head. When the family physically prunes
  the student, the student gets new, smaller tensors and the teacher keeps the old ones, so
  the teacher is the student without the pruning done since its snapshot -- what the
  released code's virtual pruning amounts to -- at the price of holding the dropped weights
  (up to one dense model). Tr maps the student's width to the teacher's (its rows follow
  the teacher's hidden dims); a re-snapshot changes Tr's output rows (teaching.py rebuilds
  the optimizer then).
* "self_copy" (self-distillation without parameter sharing): the snapshot teacher owning all
  its tensors (a full frozen copy in memory from the start).
* ``FrozenTeacher`` ("ft_teacher" / "lora_teacher", Table 10): a separately fine-tuned (full
  FT / LoRA, merged) model, trained in ``build`` on the run's own data and step count with the
  one training loop (its time is reported as ``teacher_train_seconds``), or loaded from
  ``teacher_path``; never pruned, never refreshed; Tr maps to its full width.
"""
from __future__ import annotations

import copy
import random

import numpy as np
import torch
import torch.nn.functional as F

PRED_KEYS = ("logits", "start_logits", "end_logits")


# -- layer mapping -------------------------------------------------------------------------------
def quarter_layers(layers: list[int], rng: random.Random) -> list[int]:
    """One layer sampled from each of (up to) four contiguous chunks of `layers`."""
    if not layers:
        return []
    chunks = [c for c in np.array_split(np.asarray(layers), min(4, len(layers))) if len(c)]
    return [int(rng.choice(list(c))) for c in chunks]


def nearest_surviving(i: int, layers: list[int], surviving: dict) -> tuple[int | None, int | None]:
    pos = layers.index(i)
    lower = next((layers[j] for j in range(pos - 1, -1, -1) if surviving.get(layers[j], True)), None)
    upper = next((layers[j] for j in range(pos + 1, len(layers)) if surviving.get(layers[j], True)), None)
    return lower, upper


def map_layers(teacher_layers: list[int], layers: list[int], surviving: dict, mse) -> list[tuple[int, int]]:
    """[(teacher layer, student layer)]; mse(t, s) -> float picks between two neighbours."""
    pairs = []
    for t in teacher_layers:
        if surviving.get(t, True):
            pairs.append((t, t))
            continue
        lower, upper = nearest_surviving(t, layers, surviving)
        if lower is None and upper is None:
            continue
        if lower is None or upper is None:
            pairs.append((t, lower if upper is None else upper))
        else:
            pairs.append((t, lower if mse(t, lower) <= mse(t, upper) else upper))
    return pairs


# -- losses --------------------------------------------------------------------------------------
def _kl(s: torch.Tensor, t: torch.Tensor, tau: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    log_p_s = F.log_softmax(s.float() / tau, dim=-1)
    p_t = F.softmax(t.float() / tau, dim=-1)
    kl = (p_t * (torch.log(p_t.clamp_min(1e-12)) - log_p_s)).sum(-1)
    if valid is not None:
        kl = kl[valid]
    return kl.mean() * tau * tau if kl.numel() else s.sum() * 0


def prediction_loss(s_out, t_out, kind: str, tau: float, batch: dict) -> torch.Tensor:
    if kind == "regression":
        return F.mse_loss(s_out.logits.float(), t_out.logits.float())
    if kind == "qa":
        return 0.5 * (_kl(s_out.start_logits, t_out.start_logits, tau) + _kl(s_out.end_logits, t_out.end_logits, tau))
    s, t = s_out.logits, t_out.logits
    valid = None
    if s.dim() == 3:  # token-level (seq2seq / lm): positions with labels
        labels = batch.get("labels")
        if labels is not None and labels.shape == s.shape[:2]:
            valid = labels != -100
            if kind == "lm":  # causal LM predicts token t+1 at position t
                valid = torch.zeros_like(valid)
                valid[:, :-1] = labels[:, 1:] != -100
    return _kl(s, t, tau, valid)


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    diff = (a.float() - b.float()) ** 2
    if mask is not None and mask.shape == diff.shape[:2]:
        m = mask.to(diff.dtype)[..., None]
        return (diff * m).sum() / (m.sum() * diff.shape[-1]).clamp_min(1)
    return diff.mean()


# -- hidden-state capture --------------------------------------------------------------------------
class LayerCapture:
    """Forward hooks on each layer's output module; stores outputs while ``store`` is set."""

    def __init__(self):
        self.store: dict | None = None
        self._handles = []

    def install(self, modules: list) -> None:
        self.remove()
        for i, m in enumerate(modules):
            self._handles.append(m.register_forward_hook(self._hook(i)))

    def _hook(self, i):
        def hook(module, args, out):
            if self.store is not None:
                self.store[i] = out[0] if isinstance(out, tuple) else out
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


# -- teachers -------------------------------------------------------------------------------------
class SharedTeacher:
    """Self-distillation teacher sharing the student's frozen weights (see module docstring)."""

    shares_weights = True

    def __init__(self, adapters, head_names: list[str]):
        self.adapters = adapters
        self.head_names = head_names
        self.head: dict[str, torch.Tensor] = {}
        self.ready = False
        self.refreshes = 0

    @torch.no_grad()
    def snapshot(self, model) -> None:
        self.adapters.snapshot()
        params = dict(model.named_parameters())
        self.head = {n: params[n].detach().clone() for n in self.head_names if n in params}
        self.ready = True
        self.refreshes += 1

    @torch.no_grad()
    def forward(self, model, batch: dict, family, capture: LayerCapture, masks: dict | None):
        was_training = model.training
        model.eval()
        self.adapters.active = "teacher"
        if masks is not None:
            family.clear_masks()
        store = {}
        capture.store = store
        try:
            out = torch.func.functional_call(model, self.head, args=(), kwargs=batch, strict=False)
        finally:
            capture.store = None
            self.adapters.active = "student"
            if masks is not None:
                family.set_masks(**masks)
            model.train(was_training)
        return out, store

    @torch.no_grad()
    def prune_hidden(self, model, keep_idx: torch.Tensor, old_d: int) -> None:
        """Slice the head copies where the student's head lost hidden dims."""
        params = dict(model.named_parameters())
        new_d = int(keep_idx.numel())
        for n, t in self.head.items():
            cur = params.get(n)
            if cur is None or cur.shape == t.shape:
                continue
            for dim in range(t.dim()):
                if t.shape[dim] == old_d and cur.shape[dim] == new_d:
                    t = t.index_select(dim, keep_idx.to(t.device))
            self.head[n] = t


class FrozenTeacher:
    """A separate frozen model (never pruned): self_copy, ft_teacher, lora_teacher."""

    shares_weights = False

    def __init__(self, module, layer_names: list[str], kind: str):
        self.module = module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.kind = kind
        self.capture = LayerCapture()
        self.capture.install([self.module.get_submodule(n) for n in layer_names])
        self.ready = True
        self.refreshes = 0

    @torch.no_grad()
    def forward(self, model, batch: dict, family, capture, masks):
        return _forward_capturing(self.module, self.capture, batch)


def _forward_capturing(module, capture, batch: dict):
    """module(**batch) with `capture` recording its layer outputs into a fresh dict."""
    store = {}
    capture.store = store
    try:
        out = module(**batch)
    finally:
        capture.store = None
    return out, store


class SnapshotTeacher:
    """The default self-distillation teacher: the best-so-far model (by dev score), sharing the
    student's frozen tensors copy-on-prune.

    ``snapshot`` makes a structural copy of the student whose frozen parameters and buffers are
    *the same tensors* as the student's (deepcopy with a memo), with frozen copies of the
    adapters (hooked onto the copy) and of the trainable head. While the student keeps a
    tensor the two share it; when the family prunes the student it replaces that tensor with a
    smaller one and the teacher keeps the old one, so the teacher is never pruned under the
    student's feet. With ``share=False`` (the "self_copy" ablation) the copy owns every tensor.
    The teacher is re-taken whenever the dev score improves (paper) -- it may then be a pruned
    model itself; Tr's output rows follow the teacher's hidden dims (``hidden_ids``).
    """

    def __init__(self, share: bool = True):
        self.shares_weights = share
        self.module = None
        self.adapters = None
        self.capture = LayerCapture()
        self.hidden_ids = None
        self.ready = False
        self.refreshes = 0

    @torch.no_grad()
    def snapshot(self, model, adapter_names: dict, layer_names: list, student_adapters,
                 hidden_ids: torch.Tensor) -> None:
        from prunelab.methods.apt.adapter import AdapterSet

        memo = {}
        if self.shares_weights:
            for p in model.parameters():
                if not p.requires_grad:
                    memo[id(p)] = p
            for b in model.buffers():
                memo[id(b)] = b
        twin = copy_without_hooks(model, memo, skip=("prunelab_apt",))
        self.close()
        twin.eval()
        for p in twin.parameters():
            p.requires_grad_(False)
        tset = AdapterSet()
        for k, ad in student_adapters.student.items():
            tset.student[k] = copy.deepcopy(ad)
        for p in tset.parameters():
            p.requires_grad_(False)
        tset.install(lambda key: twin.get_submodule(adapter_names[key]))
        self.module, self.adapters = twin, tset
        self.capture.install([twin.get_submodule(n) for n in layer_names])
        self.hidden_ids = hidden_ids.clone()
        self.ready = True
        self.refreshes += 1

    @torch.no_grad()
    def before_student_prune(self) -> None:
        """Families may rescale a norm weight in place when pruning (T5's final norm): keep the
        teacher's own copy of the shared 1-D tensors so that never reaches it."""
        if not self.shares_weights or self.module is None:
            return
        for mod in self.module.modules():
            for name, p in list(mod.named_parameters(recurse=False)):
                if p.dim() == 1:
                    setattr(mod, name, torch.nn.Parameter(p.detach().clone(), requires_grad=False))

    @torch.no_grad()
    def forward(self, model, batch: dict, family, capture, masks):
        return _forward_capturing(self.module, self.capture, batch)

    def close(self) -> None:
        self.capture.remove()
        if self.adapters is not None:
            self.adapters.remove_hooks()
        self.module, self.adapters = None, None


HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs",
              "_forward_hooks_always_called", "_backward_hooks", "_backward_pre_hooks")


def copy_without_hooks(model, memo: dict, skip=()):
    """deepcopy(model, memo) without its hooks and without the child modules named in `skip`.

    The student's hook dicts are set aside during the copy and put back as the very same
    objects, so its hooks (adapters, salience, capture, masks) keep their order and handles;
    nothing is removed and re-installed (re-installing changed the order of hooks sharing a
    module, e.g. a mask hook and an adapter hook on LLaMA / T5 projections)."""
    stash, children = {}, {}
    for name in skip:
        if name in model._modules:
            children[name] = model._modules[name]
            model._modules[name] = None
    for m in model.modules():
        stash[m] = {a: m.__dict__[a] for a in HOOK_DICTS if a in m.__dict__}
        for a in stash[m]:
            m.__dict__[a] = type(stash[m][a])()
    try:
        twin = copy.deepcopy(model, memo)
    finally:
        for m, dicts in stash.items():
            m.__dict__.update(dicts)
        for name, child in children.items():
            model._modules[name] = child
    for name in children:
        twin._modules.pop(name, None)
    return twin


def train_teacher(kind: str, loaded, ctx, lr: float | None):
    """Fine-tune a separate teacher (full FT or LoRA, merged) with the one training loop."""
    import dataclasses
    import time

    from prunelab.methods.ft import FullFineTuning
    from prunelab.methods.lora import LoRAConfig, LoRAPlugin
    from prunelab.train.loop import set_seed, train

    cfg = ctx.config
    lr = lr or (5e-5 if kind == "ft_teacher" else 2e-4)
    tcfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=lr, eval_points=1))
    twin = copy.deepcopy(loaded.model).to(ctx.device)
    plugin = FullFineTuning() if kind == "ft_teacher" else LoRAPlugin(loaded, LoRAConfig(), ctx.task)
    set_seed(cfg.seed + 1)
    t0 = time.perf_counter()
    model = plugin.prepare(twin)
    res = train(model, plugin, ctx.task, ctx.tokenizer, ctx.train_features, ctx.dev_features, tcfg)
    teacher = plugin.finalize(res.state.model)
    info = {"teacher_train_seconds": time.perf_counter() - t0, "teacher_score": res.state.last_score}
    return teacher, info
