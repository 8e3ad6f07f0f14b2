"""The APT adapter: LoRA with a dynamic rank on frozen linears, kept in sync with pruning.

    H_apt(X) = m_o * (W + s B A) X * m_i          (paper Eq. 2)

W stays the model's own frozen ``nn.Linear``; A (r x d_in) and B (d_out x r) live in an
``APTAdapter`` and are added by a forward hook on that linear. The structured masks m_i
(hidden dims) and m_o (heads / FFN neurons) are the family adapter's activation masks
(prunelab.models), so the model graph is never edited here and the family's physical
pruning (which slices W in place) works on an unmodified module. When the family removes
rows or columns of W, ``AdapterSet`` removes the matching rows of B / columns of A.

Why hooks instead of replacing the linear: the family adapter owns the model graph and its
pruning; a wrapper module would hide W from it. A hook adds s B A x to the output, which is
the same arithmetic as peft's LoRA layer.

Scaling: s = alpha / r_initial and stays fixed when the rank grows (the paper keeps s = 2),
so a new rank component with B = 0 leaves the output unchanged.

Initialisation: A ~ kaiming-uniform(a=sqrt(5)) and B = 0 at creation (LoRA / the released
code); rank growth appends Gaussian rows to A (paper: N(0, sigma^2); sigma = 1/sqrt(3 d_in),
the standard deviation of the initial kaiming-uniform rows, the paper gives no value) and
zero columns to B (the code uses kaiming-uniform rows; we follow the paper).
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


class APTAdapter(nn.Module):
    """Low-rank delta s * B A for one linear of shape (d_out, d_in)."""

    def __init__(self, in_features: int, out_features: int, rank: int, scaling: float,
                 dtype=torch.float32, device=None):
        super().__init__()
        self.scaling = float(scaling)
        self.A = nn.Parameter(torch.empty(rank, in_features, dtype=dtype, device=device))
        self.B = nn.Parameter(torch.zeros(out_features, rank, dtype=dtype, device=device))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    @property
    def rank(self) -> int:
        return self.A.shape[0]

    @property
    def in_features(self) -> int:
        return self.A.shape[1]

    @property
    def out_features(self) -> int:
        return self.B.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x.to(self.A.dtype), self.A), self.B) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        return (self.B @ self.A) * self.scaling

    def num_params(self) -> int:
        return self.A.numel() + self.B.numel()

    # -- shape changes (parameters are replaced: the optimizer must be rebuilt) ---------------
    @torch.no_grad()
    def grow(self, new_rank: int, generator: torch.Generator | None = None) -> None:
        """Append rank components: Gaussian rows of A, zero columns of B (output unchanged)."""
        extra = int(new_rank) - self.rank
        if extra <= 0:
            return
        std = 1.0 / math.sqrt(3 * max(1, self.in_features))
        rows = torch.randn(extra, self.in_features, generator=generator, dtype=torch.float32)
        rows = (rows * std).to(self.A.device, self.A.dtype)
        cols = torch.zeros(self.out_features, extra, dtype=self.B.dtype, device=self.B.device)
        self.A = nn.Parameter(torch.cat([self.A.data, rows], 0), requires_grad=self.A.requires_grad)
        self.B = nn.Parameter(torch.cat([self.B.data, cols], 1), requires_grad=self.B.requires_grad)

    @torch.no_grad()
    def prune_in(self, keep: torch.Tensor) -> None:
        keep = keep.to(self.A.device)
        self.A = nn.Parameter(self.A.data.index_select(1, keep).clone(), requires_grad=self.A.requires_grad)

    @torch.no_grad()
    def prune_out(self, keep: torch.Tensor) -> None:
        keep = keep.to(self.B.device)
        self.B = nn.Parameter(self.B.data.index_select(0, keep).clone(), requires_grad=self.B.requires_grad)


class LayerTransform(nn.Module):
    """Tr of the layer-distillation loss: x -> x W0^T + s (x A^T) B^T with W0 = I frozen.

    The released code uses a LoRA linear on an identity base; it starts as the identity and
    adds few tunable parameters. Input columns follow the student's hidden pruning; output rows
    follow the teacher's (the same dims for the parameter-sharing teacher, none for a separate
    full-width teacher).
    """

    def __init__(self, dim: int, rank: int, scaling: float, device=None):
        super().__init__()
        self.register_buffer("base", torch.eye(dim, device=device))
        self.lora = APTAdapter(dim, dim, rank, scaling, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.base.to(x.dtype)) + self.lora(x).to(x.dtype)

    @torch.no_grad()
    def prune_in(self, keep: torch.Tensor) -> None:
        self.base = self.base.index_select(1, keep.to(self.base.device)).clone()
        self.lora.prune_in(keep)

    @torch.no_grad()
    def prune_out(self, keep: torch.Tensor) -> None:
        self.base = self.base.index_select(0, keep.to(self.base.device)).clone()
        self.lora.prune_out(keep)


def head_rows(heads, head_dim: int, device=None) -> torch.Tensor:
    """Feature indices of whole heads in a (num_heads * head_dim) projection."""
    heads = torch.as_tensor(sorted(int(h) for h in heads), dtype=torch.long)
    rows = (heads[:, None] * head_dim + torch.arange(head_dim)[None, :]).flatten()
    return rows.to(device) if device is not None else rows


# roles: which side of the linear a kind of pruning touches
IN_HIDDEN = ("q", "k", "v", "up")     # these read the hidden dim
OUT_HIDDEN = ("o", "down")            # these write it


class AdapterSet(nn.Module):
    """The student's adapters (trainable) and, for self-distillation, the teacher's copies.

    Keys are ``attn{b}_{role}`` (role q/k/v/o) and ``ffn{b}_{role}`` (role up/down); a key
    names one linear of the family's attention_blocks()[b] / ffn_blocks()[b].
    """

    def __init__(self):
        super().__init__()
        self.student = nn.ModuleDict()
        self.teacher = nn.ModuleDict()
        self.active = "student"          # "student" | "teacher" | "none"
        self._handles: list = []

    # -- construction ------------------------------------------------------------------------
    @staticmethod
    def key(kind: str, block: int, role: str) -> str:
        return f"{kind}{block}_{role}"

    @staticmethod
    def parse(key: str) -> tuple[str, int, str]:
        head, role = key.rsplit("_", 1)
        kind = "attn" if head.startswith("attn") else "ffn"
        return kind, int(head[len(kind):]), role

    def add(self, key: str, linear: nn.Linear, rank: int, scaling: float) -> APTAdapter:
        ad = APTAdapter(linear.in_features, linear.out_features, rank, scaling,
                        dtype=torch.float32, device=linear.weight.device)
        self.student[key] = ad
        return ad

    # -- hooks ---------------------------------------------------------------------------------
    def install(self, resolve) -> None:
        """(Re)attach one forward hook per adapted linear; ``resolve(key)`` gives the linear."""
        self.remove_hooks()
        for key in self.student.keys():
            self._handles.append(resolve(key).register_forward_hook(self._hook(key)))

    def _hook(self, key: str):
        def hook(module, args, output):
            table = self.student if self.active == "student" else self.teacher if self.active == "teacher" else None
            if table is None or key not in table:
                return output
            return output + table[key](args[0]).to(output.dtype)
        return hook

    def remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    # -- teacher copy --------------------------------------------------------------------------
    @torch.no_grad()
    def snapshot(self) -> None:
        """teacher <- a frozen copy of the student's adapters (ranks included)."""
        self.teacher = nn.ModuleDict({k: copy.deepcopy(v) for k, v in self.student.items()})
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def _tables(self):
        return [t for t in (self.student, self.teacher) if len(t)]

    # -- pruning sync --------------------------------------------------------------------------
    def prune_heads(self, block: int, q_rows: torch.Tensor, kv_rows: torch.Tensor) -> None:
        for table in self._tables():
            for role, rows, side in (("q", q_rows, "out"), ("k", kv_rows, "out"), ("v", kv_rows, "out"),
                                     ("o", q_rows, "in")):
                ad = table[self.key("attn", block, role)] if self.key("attn", block, role) in table else None
                if ad is not None:
                    (ad.prune_out if side == "out" else ad.prune_in)(rows)

    def prune_neurons(self, block: int, keep: torch.Tensor) -> None:
        for table in self._tables():
            for role in ("up", "down"):
                k = self.key("ffn", block, role)
                if k in table:
                    (table[k].prune_out if role == "up" else table[k].prune_in)(keep)

    def prune_hidden(self, keep: torch.Tensor) -> None:
        for table in self._tables():
            for k, ad in table.items():
                role = self.parse(k)[2]
                (ad.prune_in if role in IN_HIDDEN else ad.prune_out)(keep)

    # -- bookkeeping ---------------------------------------------------------------------------
    def ranks(self) -> dict[str, int]:
        return {k: ad.rank for k, ad in self.student.items()}

    def num_params(self) -> int:
        return sum(ad.num_params() for ad in self.student.values())

    @torch.no_grad()
    def merge_into(self, resolve) -> None:
        """W <- W + s B A for every student adapter (then the adapters can be dropped)."""
        for key, ad in self.student.items():
            lin = resolve(key)
            lin.weight.data += ad.delta_weight().to(lin.weight.dtype)
