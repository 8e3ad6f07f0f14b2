"""Mask hooks: heads, FFN neurons and hidden dims, applied to activations without editing model code.

- head mask: pre-hook on the attention output projection, scales each head's slice of its input.
- neuron mask: pre-hook on the FFN down projection, scales its input.
- hidden mask: every norm is recomputed over the dims whose mask is > 0 (so masked == pruned
  holds exactly for LayerNorm and RMSNorm) and its output is multiplied by the mask; the family
  also multiplies the outputs of the modules that write the residual stream (embeddings, layers,
  hidden->hidden head layers). With a soft mask the kept dims are those with mask > 0 and the
  values scale activations only (CoFi's convention); a dim at exactly 0 is treated as pruned.

Every hook function carries `_prunelab = True` so clear_hooks() can find them on any copy of the
model (copy.deepcopy keeps the functions and so the masks they close over).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks")
_SIDE_DICTS = ("_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs")


def _tag(fn):
    fn._prunelab = True
    return fn


def _vec(mask, x):
    return mask.to(device=x.device, dtype=x.dtype)


def head_hook(mask: torch.Tensor, head_dim: int, group_size: int):
    """Pre-hook for the attention output projection. mask: one value per q head or per kv group."""
    def hook(module, args):
        x = args[0]
        n = x.shape[-1] // head_dim
        m = _vec(mask, x)
        if m.numel() != n:  # one value per kv group: spread over the group's q heads
            m = m.repeat_interleave(group_size)
        y = (x.reshape(*x.shape[:-1], n, head_dim) * m[:, None]).reshape(x.shape)
        return (y, *args[1:])
    return _tag(hook)


def input_hook(mask: torch.Tensor):
    """Pre-hook scaling a module's input features (FFN down projection: neuron mask)."""
    def hook(module, args):
        return (args[0] * _vec(mask, args[0]), *args[1:])
    return _tag(hook)


def output_hook(mask: torch.Tensor):
    """Forward hook scaling a module's output (a tensor, or the first item of a tuple)."""
    def hook(module, args, output):
        if isinstance(output, tuple):
            return (output[0] * _vec(mask, output[0]), *output[1:])
        return output * _vec(mask, output)
    return _tag(hook)


def masked_norm(module: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Norm of x computed over the dims with mask > 0 only, zero elsewhere, times the mask."""
    keep = torch.nonzero(mask > 0).flatten().to(x.device)
    xs = x.index_select(-1, keep)
    if isinstance(module, nn.LayerNorm):
        w = None if module.weight is None else module.weight.index_select(0, keep)
        b = None if module.bias is None else module.bias.index_select(0, keep)
        y = F.layer_norm(xs, (keep.numel(),), w, b, module.eps)
    else:
        # RMSNorm-style modules: run the module's own forward with its parameters sliced, so
        # the arithmetic (dtype casts, eps placement) is exactly that of the pruned module.
        params = {n: p.index_select(0, keep) for n, p in module.named_parameters(recurse=False)}
        module._prunelab_busy = True
        try:
            y = torch.func.functional_call(module, params, (xs,))
        finally:
            module._prunelab_busy = False
    out = y.new_zeros(*y.shape[:-1], mask.numel()).index_copy(y.dim() - 1, keep, y)
    return out * _vec(mask, out)


def norm_hook(mask: torch.Tensor):
    def hook(module, args, output):
        if getattr(module, "_prunelab_busy", False):
            return None  # the inner call made by masked_norm itself
        return masked_norm(module, args[0], mask)
    return _tag(hook)


def add_pre_hook(module: nn.Module, fn) -> None:
    module.register_forward_pre_hook(fn)


def add_hook(module: nn.Module, fn) -> None:
    module.register_forward_hook(fn)


def clear_hooks(model: nn.Module) -> None:
    for m in model.modules():
        for name in _HOOK_DICTS:
            hooks = getattr(m, name)
            for key in [k for k, fn in hooks.items() if getattr(fn, "_prunelab", False)]:
                del hooks[key]
                for side in _SIDE_DICTS:
                    d = getattr(m, side, None)
                    if d is not None:
                        d.pop(key, None)


def has_hooks(model: nn.Module) -> bool:
    return any(getattr(fn, "_prunelab", False)
               for m in model.modules() for name in _HOOK_DICTS for fn in getattr(m, name).values())
