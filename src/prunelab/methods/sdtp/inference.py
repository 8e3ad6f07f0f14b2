"""Pruned prefill and decoding for HF LLaMA-family models (transformers 5.x).

We run our own loop over the decoder layers so that, between layers, dropped tokens'
hidden states can be physically removed (the "physical" mode). Every layer keeps a KV
cache of only the tokens alive at that layer (DynamicCache layers may differ in length);
beside it we keep, per layer, each cached key's original position (for causal order) and
an additive bias (0 = attend, finfo.min = never: padding / fillers / masked tokens, log p
for the soft policy). Survivors keep their original positions for RoPE (gathered cos/sin)
unless ``rope_fix=False``, which re-indexes them 0..n-1 at every layer. Decode step t of
a prompt with n real tokens sits at position n + t.

The "masked" mode keeps the full length and only masks keys out of attention (with the
diagonal kept, as the DynamicViT training simulation does); it is the test reference for
the physical mode, and the only way to run the per-layer-local and no-mask-update
ablations (nothing is removed there, so they save no compute).

Batches must be left-padded (the last column is a real token for every row). Ragged keep
counts are padded with "filler" slots at the front, masked out by the bias.

``selector`` picks how tokens are scored (the learned pruner or a baseline; select.py lists
them). Every selector runs through this same loop with the same protected tokens and keep
counts, so quality differences come from the token choice alone.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

from prunelab.errors import PrunelabError
from prunelab.models.compat import cache_kw, output_cache

from .config import SDTPConfig
from .modules import PrunerStack, keep_score
from .select import ATTN_WINDOW, protected_mask, resolve_selector, select, target_counts, truncate_count

FAST_ATTN = ("sdpa", "flash_attention_2", "flash_attention_3")


def _min(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).min


def build_mask(q_order: torch.Tensor, k_order: torch.Tensor, k_bias: torch.Tensor, past: int) -> torch.Tensor:
    """(B, 1, q, k) additive mask: causal by original order, plus per-key bias, own key always open."""
    allowed = k_order[:, None, :] <= q_order[:, :, None]
    m = torch.where(allowed, k_bias[:, None, :], torch.full((), _min(k_bias.dtype), dtype=k_bias.dtype, device=k_bias.device))
    ar = torch.arange(q_order.size(1), device=q_order.device)
    m[:, ar, past + ar] = 0.0   # diagonal: a query always sees itself (no empty softmax rows)
    return m[:, None]


class Scorer:
    """Per-stage token scores: (score for ranking, keep probability in [0, 1])."""

    def __init__(self, cfg: SDTPConfig, pruners: PrunerStack | None = None,
                 saliency: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 stage_layers: list[int] | None = None, selector: str = "learned", model=None):
        self.cfg, self.pruners, self.saliency, self.generator = cfg, pruners, saliency, generator
        self.stage_index = {l: i for i, l in enumerate(stage_layers or [])}
        self.model, self._rand = model, None
        kind = {"learned": cfg.pruner, "random": "random", "oracle": "saliency"}.get(selector, selector)
        self.kind = kind
        if kind == "mlp" and pruners is None:
            raise PrunelabError("SDTP pruner 'mlp' needs trained pruners (PrunerStack)")
        if kind == "mlp" and set(self.stage_index) - set(pruners.stage_layers):
            raise PrunelabError(f"SDTP pruners were trained for layers {pruners.stage_layers}, "
                                f"config asks for {sorted(self.stage_index)}")
        if kind == "saliency" and saliency is None:
            raise PrunelabError("SDTP pruner 'saliency' needs saliency scores (see saliency.prompt_saliency)")

    def __call__(self, layer: int, h: torch.Tensor, idx: torch.Tensor, pos: torch.Tensor | None = None,
                 alive: torch.Tensor | None = None, rope_pos: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "mlp":
            p = self.pruners[layer]
            logit = keep_score(p(h.to(p.fc1.weight.dtype), alive)).float()   # alive: the recency inputs
            return logit, torch.sigmoid(logit)
        if self.kind == "saliency":
            s = self.saliency[:, self.stage_index[layer]].to(h.device).float().gather(1, idx)
            return s, s   # already max-normalised to [0, 1]
        if self.kind in ("recency", "truncate"):
            s = pos.float()
            return s, s / s.max().clamp(min=1.0)
        if self.kind == "attention":
            s = attention_scores(self.model.model.layers[layer], h, pos, alive, rope_pos, self.model)
            return s, s / s.amax(1, keepdim=True).clamp(min=1e-12)
        if getattr(self, "_rand", None) is None or self._rand.shape[0] != idx.shape[0]:
            # one draw per input column at the first stage, so that physical and masked modes
            # (and every stage) see the same random score for the same token
            self._rand = torch.rand(idx.shape, generator=self.generator).to(h.device)
        r = self._rand.gather(1, idx)
        return r, r


def attention_scores(layer, h: torch.Tensor, pos: torch.Tensor, alive: torch.Tensor, rope_pos: torch.Tensor,
                     model, window: int = ATTN_WINDOW) -> torch.Tensor:
    """(B, n) attention mass that the last `window` alive queries put on each alive key, in
    `layer`'s own attention (its q/k projections and RoPE; softmax over alive causal keys),
    summed over heads and queries (SnapKV's observation window, H2O's accumulated score)."""
    attn = layer.self_attn
    x = layer.input_layernorm(h)
    B, n, _ = x.shape
    out = torch.zeros(B, n, dtype=torch.float32, device=h.device)
    cos, sin = model.model.rotary_emb(h, rope_pos)
    k = attn.k_proj(x).view(B, n, -1, attn.head_dim).transpose(1, 2)
    for b in range(B):
        cols = alive[b].nonzero().squeeze(1)[-window:]
        q = attn.q_proj(x[b:b + 1, cols]).view(1, len(cols), -1, attn.head_dim).transpose(1, 2)
        qc, qs = cos[b:b + 1, cols], sin[b:b + 1, cols]
        q, _ = apply_rotary_pos_emb(q, q, qc, qs)
        _, kb = apply_rotary_pos_emb(k[b:b + 1], k[b:b + 1], cos[b:b + 1], sin[b:b + 1])
        kb = repeat_kv(kb, attn.num_key_value_groups)
        s = torch.matmul(q.float(), kb.float().transpose(2, 3)) * attn.scaling      # (1, H, w, n)
        ok = alive[b][None, :] & (pos[b][None, :] <= pos[b, cols][:, None])       # (w, n)
        s = s.masked_fill(~ok[None, None], float("-inf"))
        out[b] = torch.softmax(s, -1).sum((0, 1, 2))
    return out


@dataclass
class PrunedState:
    """Everything decoding needs after a (pruned) prefill."""
    cache: DynamicCache
    key_order: list            # per layer (B, L_l) original positions of cached keys
    key_bias: list             # per layer (B, L_l) additive bias
    has_bias: list             # per layer: any nonzero bias (else SDPA may skip the mask)
    next_rope: list            # per layer (B,) RoPE position of the next token
    next_order: torch.Tensor   # (B,) original position of the next token
    n_real: torch.Tensor       # (B,) prompt lengths
    stage_layers: list[int] = field(default_factory=list)
    kept_per_stage: list = field(default_factory=list)      # per stage: (B,) survivors
    kept_index: list = field(default_factory=list)          # per stage: list of (sorted) input indices per row
    layer_tokens: list = field(default_factory=list)        # per layer: computed length (padded width)
    layer_alive: list = field(default_factory=list)         # per layer: (B,) tokens alive (attendable, unmasked)
    masked: bool = False


def learned_scorer_flops(model, cfg: SDTPConfig) -> int:
    """FLOPs per scored token of one learned pruner MLP (d -> d*frac -> 2), trained or not."""
    d = model.config.hidden_size
    inner = max(1, int(d * cfg.pruner_hidden_frac))
    return 2 * (d * inner + inner * 2)


def _layers(model):
    return model.model.layers


def _is_fast(model) -> bool:
    return getattr(model.config, "_attn_implementation", "eager") in FAST_ATTN


def _check_padding(ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if attention_mask is None:
        return torch.ones_like(ids, dtype=torch.bool)
    valid = attention_mask.bool()
    if not bool(valid[:, -1].all()):
        raise PrunelabError("SDTP needs left-padded batches (the last column must be a real token in every row)")
    return valid


@torch.no_grad()
def prefill(model, cfg: SDTPConfig, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
            pruners: PrunerStack | None = None, saliency: torch.Tensor | None = None,
            generator: torch.Generator | None = None, prune: bool = True, simulate: bool = False,
            selector: str | None = None):
    """Run the prompt through the model, pruning between layers.

    Returns (logits of the last prompt token (B, V), PrunedState). `prune=False` is the
    dense model through the same loop; `simulate=True` forces the full-length masked mode.
    `selector` (default ``cfg.selector`` or 'learned') chooses the token scorer (select.py).
    """
    layers = _layers(model)
    selector = resolve_selector(cfg, selector)
    truncating = prune and selector == "truncate"
    stages = ([0] if truncating else cfg.stage_layers(len(layers))) if prune else []
    stage_set = {l: i for i, l in enumerate(stages)}
    cum = cfg.cumulative_keep(len(stages))
    scorer = Scorer(cfg, pruners, saliency, generator, stages, selector, model) if stages else None
    masked = bool(stages) and (simulate or cfg.propagation == "local" or not cfg.mask_update)
    zeroing = bool(stages) and not cfg.mask_update
    fast = _is_fast(model)

    B, N = input_ids.shape
    dev = input_ids.device
    valid = _check_padding(input_ids, attention_mask)
    n_real = valid.sum(1)
    pos = (valid.long().cumsum(1) - 1).clamp(min=0)          # original positions
    idx = torch.arange(N, device=dev).expand(B, N).clone()   # column in the input
    n_prot = protected_mask(cfg, pos, valid, n_real).sum(1)
    alive = valid.clone()
    h = model.model.embed_tokens(input_ids)
    neg = _min(h.dtype)
    logp = torch.zeros(B, N, dtype=h.dtype, device=dev)      # soft policy of survivors
    key_bias = torch.zeros(B, N, dtype=h.dtype, device=dev).masked_fill(~valid, neg)
    st = PrunedState(cache=DynamicCache(config=model.config), key_order=[], key_bias=[], has_bias=[],
                     next_rope=[], next_order=n_real.clone(), n_real=n_real, stage_layers=stages, masked=masked)

    for l, layer in enumerate(layers):
        if l in stage_set:
            s = stage_set[l]
            cand = valid if cfg.propagation == "local" else alive
            rp = pos if cfg.rope_fix else (cand.long().cumsum(1) - 1).clamp(min=0)
            score, prob = scorer(l, h, idx, pos, cand, rp)
            prot = protected_mask(cfg, pos, valid, n_real)
            if truncating:
                k = torch.tensor([truncate_count(model.config, cfg, int(n), learned_scorer_flops(model, cfg))
                                  for n in n_real], device=dev)
                sel = select(dataclasses.replace(cfg, selection="topk"), score, prob, cand, prot, k)
            else:
                sel = select(cfg, score, prob, cand, prot, target_counts(cfg, cum[s], n_real, n_prot))
            if cfg.mask == "soft":
                step = torch.log(prob.clamp(min=1e-6)).to(h.dtype).masked_fill(prot, 0.0)
                logp = step if cfg.propagation == "local" else logp + step
            st.kept_per_stage.append(sel.sum(1))
            st.kept_index.append([idx[b][sel[b]].tolist() for b in range(B)])
            if masked:
                alive = sel
                if zeroing:
                    h = h * alive[..., None].to(h.dtype)
            else:   # physical removal: fillers first, then survivors in original order
                width = int(sel.sum(1).max())
                keyv = torch.where(sel, torch.arange(sel.size(1), device=dev), -1)
                vals, order = keyv.sort(dim=1, stable=True)
                take, filler = order[:, -width:], vals[:, -width:] < 0
                h = h.gather(1, take[..., None].expand(-1, -1, h.size(-1)))
                pos, idx, logp = pos.gather(1, take), idx.gather(1, take), logp.gather(1, take)
                valid = valid.gather(1, take) & ~filler
                alive = valid.clone()
            if zeroing:   # no mask update: dropped tokens stay visible (as zeros)
                key_bias = torch.zeros_like(logp).masked_fill(~valid, neg)
            else:
                key_bias = (logp if cfg.mask == "soft" else torch.zeros_like(logp)).masked_fill(~alive, neg)
        rope_pos = pos if cfg.rope_fix or not stages else (alive.long().cumsum(1) - 1).clamp(min=0)
        has_bias = bool((key_bias != 0).any())
        mask = build_mask(pos, pos, key_bias, 0) if (has_bias or not fast) else None
        cos, sin = model.model.rotary_emb(h, rope_pos)
        h = layer(h, attention_mask=mask, position_embeddings=(cos, sin), use_cache=True,
                  **{cache_kw(type(layer).forward): st.cache})
        if zeroing and l >= stages[0]:
            h = h * alive[..., None].to(h.dtype)
        st.key_order.append(pos)
        st.key_bias.append(key_bias)
        st.has_bias.append(has_bias)
        st.next_rope.append(n_real.clone() if cfg.rope_fix or not stages else alive.sum(1))
        st.layer_tokens.append(h.size(1))
        st.layer_alive.append(alive.sum(1))
    logits = model.lm_head(model.model.norm(h[:, -1]))
    return logits, st


@torch.no_grad()
def decode(model, st: PrunedState, tokens: torch.Tensor) -> torch.Tensor:
    """Feed `tokens` (B, q) after the prompt through the per-layer caches; returns (B, q, V) logits."""
    B, q = tokens.shape
    fast = _is_fast(model)
    h = model.model.embed_tokens(tokens)
    ar = torch.arange(q, device=tokens.device)
    q_order = st.next_order[:, None] + ar
    for l, layer in enumerate(_layers(model)):
        past = st.key_order[l].size(1)
        k_order = torch.cat([st.key_order[l], q_order], 1)
        k_bias = torch.cat([st.key_bias[l], torch.zeros(B, q, dtype=st.key_bias[l].dtype, device=h.device)], 1)
        need = st.has_bias[l] or q > 1 or not fast
        mask = build_mask(q_order, k_order, k_bias, past) if need else None
        cos, sin = model.model.rotary_emb(h, st.next_rope[l][:, None] + ar)
        h = layer(h, attention_mask=mask, position_embeddings=(cos, sin), use_cache=True,
                  **{cache_kw(type(layer).forward): st.cache})
        st.key_order[l], st.key_bias[l] = k_order, k_bias
        st.next_rope[l] = st.next_rope[l] + q
    st.next_order = st.next_order + q
    return model.lm_head(model.model.norm(h))


@torch.no_grad()
def generate(model, cfg: SDTPConfig, input_ids: torch.Tensor, max_new_tokens: int,
             attention_mask: torch.Tensor | None = None, **prefill_kw) -> torch.Tensor:
    """Greedy generation after a pruned prefill; returns (B, max_new_tokens) new tokens."""
    logits, st = prefill(model, cfg, input_ids, attention_mask, **prefill_kw)
    tok = logits.argmax(-1, keepdim=True)
    out = [tok]
    for _ in range(max_new_tokens - 1):
        tok = decode(model, st, tok)[:, -1].argmax(-1, keepdim=True)
        out.append(tok)
    return torch.cat(out, 1)


@torch.no_grad()
def continuation_logits(model, cfg: SDTPConfig, ctx_ids: torch.Tensor, cont_ids: torch.Tensor,
                        attention_mask: torch.Tensor | None = None, **prefill_kw):
    """Logits predicting each continuation token (B, M, V), given a pruned prefill of the context."""
    first, st = prefill(model, cfg, ctx_ids, attention_mask, **prefill_kw)
    if cont_ids.size(1) == 1:
        return first[:, None], st
    rest = decode(model, st, cont_ids[:, :-1])
    return torch.cat([first[:, None], rest], 1), st


def continuation_nll(logits: torch.Tensor, cont_ids: torch.Tensor) -> tuple[float, int]:
    nll = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), cont_ids.reshape(-1), reduction="sum")
    return float(nll), cont_ids.numel()


# -- the dense baseline through HF's own forward (what the speedups are measured against) --
@torch.no_grad()
def dense_prefill(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
    out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=True, logits_to_keep=1)
    return out.logits[:, -1], output_cache(out)


@torch.no_grad()
def dense_generate(model, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy generation with HF's forward and DynamicCache (batch 1, no padding)."""
    logits, cache = dense_prefill(model, input_ids)
    tok = logits.argmax(-1, keepdim=True)
    out = [tok]
    for _ in range(max_new_tokens - 1):
        logits = model(input_ids=tok, use_cache=True, **{cache_kw(type(model).forward): cache}).logits
        tok = logits[:, -1].argmax(-1, keepdim=True)
        out.append(tok)
    return torch.cat(out, 1)
