"""FamilyAdapter: the one API pruning methods use to reach heads, FFN neurons and hidden dims.

One adapter class per architecture family (bert.py, t5.py, llama.py), picked by
`model.config.model_type` through a registry. Methods never hard-code module names.

Adapters are stateless views over the model: masks live as tagged hooks on the model itself,
so any adapter instance (or a deep copy of the model) sees and clears the same masks.

Units of pruning:
- head: one prunable attention unit. For multi-head attention that is one head; for grouped
  query attention (LLaMA GQA) it is one kv head together with its `group_size` q heads, because
  every q head of a group reads the same k/v rows. `prune_heads(b, keep)` takes unit indices;
  `head_groups(b)` lists each unit's q heads.
- neuron: one FFN intermediate channel (for gated FFNs, the same row of every up projection).
- hidden: one dim of the residual stream, shared by every layer.

Zero width is allowed: a block with all heads pruned skips attention (its output projection
contributes its bias only); an FFN with 0 neurons contributes its down-projection bias only.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

from prunelab.errors import PrunelabError, unknown
from prunelab.models import masks as M
from prunelab.models import ops


@dataclass
class AttentionBlock:
    """One multi-head attention module. `layer` indexes adapter.layers."""
    layer: int
    kind: str  # "self" | "cross"
    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear
    num_heads: int  # q heads
    num_kv_heads: int  # = num_heads without GQA
    head_dim: int
    group_size: int = 1  # q heads per kv head
    module: nn.Module | None = field(default=None, repr=False)  # the attention module itself

    @property
    def num_units(self) -> int:
        """Prunable units (heads, or kv groups under GQA); head masks may have this length."""
        return self.num_kv_heads


@dataclass
class FFNBlock:
    layer: int
    up: list  # [up] or [gate, up]: every projection producing the intermediate neurons
    down: nn.Linear
    size: int  # current number of neurons
    module: nn.Module | None = field(default=None, repr=False)


_FAMILIES: dict[str, type] = {}


def register_family(model_types, cls) -> None:
    """Make `cls` the adapter for every config.model_type in model_types."""
    for t in [model_types] if isinstance(model_types, str) else model_types:
        _FAMILIES[t] = cls


def family_class(model_type: str) -> type:
    """The adapter class registered for a config.model_type."""
    if model_type not in _FAMILIES:
        raise unknown("model family (config.model_type)", model_type, _FAMILIES)
    return _FAMILIES[model_type]


def get_family(model) -> "FamilyAdapter":
    """A (stateless) adapter for the model, chosen by model.config.model_type."""
    return family_class(getattr(getattr(model, "config", None), "model_type", None))(model)


def _entries(masks, n: int):
    """Masks given as {block: mask}, a sequence with one entry per block, or a 2-D tensor."""
    if masks is None:
        return []
    items = masks.items() if isinstance(masks, dict) else enumerate(masks)
    out = []
    for b, m in items:
        if m is None:
            continue
        if not 0 <= int(b) < n:
            raise PrunelabError(f"mask for block {b}, but there are {n} blocks")
        out.append((int(b), m if isinstance(m, torch.Tensor) else torch.as_tensor(m, dtype=torch.float32)))
    return out


def _keep(keep, n: int, what: str) -> list[int]:
    keep = sorted({int(i) for i in keep})
    if keep and not (0 <= keep[0] and keep[-1] < n):
        raise PrunelabError(f"{what} indices must be in [0, {n}); got {keep}")
    return keep


class FamilyAdapter:
    name = "base"
    layout = None  # the standalone hf_<family> module describing where everything is
    default_lora = ("q", "v", "up")

    def __init__(self, model):
        self.model = model

    # ---- structure -------------------------------------------------------------------------
    @property
    def layers(self) -> list:
        return self.layout.layers(self.model)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        return self.embedding_modules()[0].weight.shape[1]

    def attention_blocks(self) -> list[AttentionBlock]:
        out = []
        for a in self.layout.attentions(self.model):
            hd = a["head_dim"]
            nq, nkv = a["q"].out_features // hd, a["k"].out_features // hd
            group = a.get("group_size") or (nq // nkv if nkv else 1)
            out.append(AttentionBlock(layer=a["layer"], kind=a["kind"], q=a["q"], k=a["k"], v=a["v"], o=a["o"],
                                      num_heads=nq, num_kv_heads=nkv, head_dim=hd, group_size=group,
                                      module=a["module"]))
        return out

    def ffn_blocks(self) -> list[FFNBlock]:
        return [FFNBlock(layer=f["layer"], up=list(f["up"]), down=f["down"], size=f["down"].in_features,
                         module=f["module"]) for f in self.layout.ffns(self.model)]

    def head_groups(self, block_index: int) -> list[list[int]]:
        """q-head indices of each prunable head unit of a block ([[0], [1], ...] without GQA)."""
        b = self.attention_blocks()[block_index]
        return [[u * b.group_size + j for j in range(b.group_size)] for u in range(b.num_units)]

    def layer_outputs_module(self, i: int) -> nn.Module:
        """Module whose output (a tensor) is layer i's hidden state, for distillation hooks."""
        return self.layout.layer_output(self.model, i)

    def embedding_modules(self) -> list[nn.Module]:
        return [m for kind, m in self.layout.hidden_sites(self.model) if kind == "emb"]

    def _output_embedding(self):
        get = getattr(self.model, "get_output_embeddings", None)
        try:
            return get() if get else None
        except (AttributeError, NotImplementedError):
            return None

    def _names(self) -> dict[int, str]:
        return {id(m): n for n, m in self.model.named_modules()}

    def _roles(self) -> list[tuple[str, nn.Linear]]:
        out = []
        for b in self.attention_blocks():
            out += [("q", b.q), ("k", b.k), ("v", b.v), ("o", b.o)]
        for f in self.ffn_blocks():
            out += [("up", f.up[0])] + [("up_extra", m) for m in f.up[1:]] + [("down", f.down)]
        return out

    def backbone_linears(self) -> dict[str, nn.Linear]:
        """Every prunable linear of the backbone (attention q/k/v/o, FFN up/gate/down) by name."""
        names = self._names()
        return {names[id(m)]: m for _, m in self._roles()}

    def lora_targets(self, which=None) -> list[str]:
        """Qualified module names for peft/APT target_modules. Roles: q, k, v, o, up (the FFN
        projection that carries the activation: BERT intermediate.dense, T5 wi / wi_0, LLaMA
        gate_proj), up_all (every FFN input projection), down. Default: family.default_lora."""
        which = tuple(self.default_lora if which is None else ([which] if isinstance(which, str) else which))
        valid = ("q", "k", "v", "o", "up", "up_all", "down")
        for w in which:
            if w not in valid:
                raise unknown("LoRA target role", w, valid)
        names = self._names()
        want = set(which) | ({"up", "up_extra"} if "up_all" in which else set())
        return [names[id(m)] for role, m in self._roles() if role in want]

    # ---- masks -----------------------------------------------------------------------------
    def set_masks(self, head_mask=None, neuron_mask=None, hidden_mask=None) -> None:
        """Replace all masks. head_mask / neuron_mask: {block index: 1-D mask} (or one entry per
        block); head masks have one value per q head or per unit (GQA group). hidden_mask: one
        1-D mask of length hidden_size shared by all layers. Values may be soft (in [0, 1]) and
        may require grad; the hooks read the given tensors, so in-place updates take effect."""
        self.clear_masks()
        blocks = self.attention_blocks()
        for b, m in _entries(head_mask, len(blocks)):
            blk = blocks[b]
            if m.numel() not in (blk.num_heads, blk.num_units):
                raise PrunelabError(f"head mask for block {b} has {m.numel()} values; "
                                    f"expected {blk.num_heads} (heads) or {blk.num_units} (units)")
            M.add_pre_hook(blk.o, M.head_hook(m.flatten(), blk.head_dim, blk.group_size))
        ffn = self.ffn_blocks()
        for b, m in _entries(neuron_mask, len(ffn)):
            if m.numel() != ffn[b].size:
                raise PrunelabError(f"neuron mask for FFN block {b} has {m.numel()} values; expected {ffn[b].size}")
            M.add_pre_hook(ffn[b].down, M.input_hook(m.flatten()))
        if hidden_mask is not None:
            m = hidden_mask if isinstance(hidden_mask, torch.Tensor) else torch.as_tensor(hidden_mask, dtype=torch.float32)
            if m.numel() != self.hidden_size:
                raise PrunelabError(f"hidden mask has {m.numel()} values; expected {self.hidden_size}")
            m = m.flatten()
            for kind, mod in self.layout.hidden_sites(self.model):
                if kind == "norm":
                    M.add_hook(mod, M.norm_hook(m))
            for mod in self.layout.hidden_mask_outputs(self.model):
                M.add_hook(mod, M.output_hook(m))

    def clear_masks(self) -> None:
        M.clear_hooks(self.model)

    def masks_active(self) -> bool:
        return M.has_hooks(self.model)

    def _no_masks(self) -> None:
        if self.masks_active():
            raise PrunelabError("masks are set: call clear_masks() before physical pruning "
                                "(mask shapes would no longer match)")

    # ---- physical pruning ------------------------------------------------------------------
    def prune_heads(self, block_index: int, keep) -> None:
        """Keep only head units `keep` (see head_groups) of attention block `block_index`."""
        self._no_masks()
        blk = self.attention_blocks()[block_index]
        keep = _keep(keep, blk.num_units, "head unit")
        q_heads = [u * blk.group_size + j for u in keep for j in range(blk.group_size)]
        memo = {}
        ops.slice_linear(blk.q, out_keep=ops.head_dims(q_heads, blk.head_dim), memo=memo)
        ops.slice_linear(blk.k, out_keep=ops.head_dims(keep, blk.head_dim), memo=memo)
        ops.slice_linear(blk.v, out_keep=ops.head_dims(keep, blk.head_dim), memo=memo)
        ops.slice_linear(blk.o, in_keep=ops.head_dims(q_heads, blk.head_dim), memo=memo)
        self._after_heads(blk, keep, len(q_heads))

    def _after_heads(self, blk: AttentionBlock, keep: list[int], num_q_heads: int) -> None:
        self.layout.set_heads(blk.module, num_q_heads, len(keep))

    def prune_neurons(self, block_index: int, keep) -> None:
        self._no_masks()
        f = self.ffn_blocks()[block_index]
        keep = _keep(keep, f.size, "neuron")
        memo = {}
        for m in f.up:
            ops.slice_linear(m, out_keep=keep, memo=memo)
        ops.slice_linear(f.down, in_keep=keep, memo=memo)
        self._after_neurons(f, len(keep))

    def _after_neurons(self, f: FFNBlock, size: int) -> None:
        pass

    def prune_hidden(self, keep, also=()) -> None:
        """Keep hidden dims `keep` everywhere: embeddings, norms, every linear's input/output,
        task heads. `also`: extra (kind, module) pairs to slice too, kind in emb / norm / in /
        out / inout (e.g. a distillation projection attached to the model)."""
        self._no_masks()
        old = self.hidden_size
        keep = _keep(keep, old, "hidden")
        sites = list(self.layout.hidden_sites(self.model)) + list(also)
        self._check_covered(sites, old)
        memo = {}
        for kind, m in sites:
            ops.slice_hidden_site(kind, m, keep, memo)
        self._after_hidden(old, len(keep))

    def _after_hidden(self, old: int, new: int) -> None:
        pass

    def _check_covered(self, sites, hidden: int) -> None:
        # A linear that touches the hidden size but is not a known site would break after slicing.
        covered = {id(m) for _, m in sites} | {id(m) for _, m in self._roles()}
        names = self._names()
        stray = [names.get(id(m), "?") for m in self.model.modules()
                 if isinstance(m, nn.Linear) and id(m) not in covered and hidden in (m.in_features, m.out_features)]
        if stray:
            raise PrunelabError(f"prune_hidden: {', '.join(stray)} use the hidden size but the {self.name} "
                                "adapter does not know them; pass them as also=[(kind, module)]")

    def prune_masked(self, head_mask=None, neuron_mask=None, hidden_mask=None) -> None:
        """Physically remove every unit whose mask is 0 (binary masks expected; kept values are
        not folded into weights). A GQA unit is kept if any of its q heads is > 0."""
        blocks, ffn = self.attention_blocks(), self.ffn_blocks()
        head_plan = []
        for b, m in _entries(head_mask, len(blocks)):
            m = m.detach().flatten()
            if m.numel() != blocks[b].num_units:
                m = m.reshape(blocks[b].num_units, -1).amax(dim=1)
            head_plan.append((b, torch.nonzero(m > 0).flatten().tolist()))
        neuron_plan = [(b, torch.nonzero(m.detach().flatten() > 0).flatten().tolist())
                       for b, m in _entries(neuron_mask, len(ffn))]
        for b, keep in head_plan:
            self.prune_heads(b, keep)
        for b, keep in neuron_plan:
            self.prune_neurons(b, keep)
        if hidden_mask is not None:
            m = torch.as_tensor(hidden_mask).detach().flatten()
            self.prune_hidden(torch.nonzero(m > 0).flatten().tolist())

    # ---- sizes -----------------------------------------------------------------------------
    def _embedding_param_ids(self) -> set[int]:
        mods = self.embedding_modules() + [m for m in [self._output_embedding()] if m is not None]
        return {id(p) for m in mods for p in m.parameters()}

    def param_count(self, non_embedding: bool = True) -> int:
        """Parameters of the model; non_embedding drops input embeddings and the output
        vocabulary projection (lm_head), tied or not."""
        skip = self._embedding_param_ids() if non_embedding else set()
        return sum(p.numel() for p in self.model.parameters() if id(p) not in skip)

    def block_param_costs(self) -> dict:
        """Non-embedding parameters removed by pruning one unit, from current shapes:
        {"head": [per unit, per attention block], "neuron": [per neuron, per FFN block],
        "hidden": per hidden dim}. Includes biases and norm weights."""
        heads = []
        for b in self.attention_blocks():
            def rows(lin):
                return b.head_dim * lin.in_features + (b.head_dim if lin.bias is not None else 0)
            heads.append(b.group_size * (rows(b.q) + b.head_dim * b.o.out_features) + rows(b.k) + rows(b.v))
        neurons = [sum(m.in_features + (1 if m.bias is not None else 0) for m in f.up) + f.down.out_features
                   for f in self.ffn_blocks()]
        skip, cost = self._embedding_param_ids(), {}
        for kind, m in self.layout.hidden_sites(self.model):
            for pid, c in ops.hidden_site_cost(kind, m).items():
                if pid not in skip:
                    cost[pid] = c
        return {"head": heads, "neuron": neurons, "hidden": sum(cost.values())}

    def widths(self) -> dict:
        """Current per-block widths (used by export and reports)."""
        blocks = self.attention_blocks()
        return {
            "family": self.name,
            "hidden": self.hidden_size,
            "head_dim": blocks[0].head_dim if blocks else 0,
            "layers": self.num_layers,
            "kinds": [b.kind for b in blocks],
            "heads": [b.num_heads for b in blocks],
            "kv_heads": [b.num_kv_heads for b in blocks],
            "ffn": [f.size for f in self.ffn_blocks()],
        }

    # ---- export ----------------------------------------------------------------------------
    # What a stock config needs besides equal per-layer widths (read by layout=uniform pruning):
    # "heads_x_head_dim": hidden == heads x head_dim (BERT derives head_dim from them);
    # "multiple_of_heads": hidden % heads == 0 (LlamaConfig validates it even with head_dim set);
    # None: hidden is free.
    stock_hidden_rule: str | None = None
    # True: every layer must keep the same head indices, not only the same count (T5's
    # stacks share one relative-position bias table whose columns are the kept heads).
    stock_aligned_heads: bool = False

    def stock_overrides(self, widths: dict) -> tuple[dict | None, str]:
        """Config fields that make a stock HF config describe this model, or (None, why not)."""
        raise NotImplementedError

    def stock_state_patch(self):
        """Context manager adjusting weights while a stock-format checkpoint is written."""
        return contextlib.nullcontext()

    def custom_config_fields(self, widths: dict) -> dict:
        """Config fields (besides prunelab_widths) for the per-layer-widths config."""
        return {key: widths["hidden"] for key in self.layout.HIDDEN_KEYS}


def uniform(values) -> int | None:
    """The common value of a list, or None if the values differ (or the list is empty)."""
    values = list(values)
    return values[0] if values and all(v == values[0] for v in values) else None
