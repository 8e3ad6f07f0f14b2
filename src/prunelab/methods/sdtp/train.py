"""Training the pruners: frozen backbone, per-stage decisions at the inference keep counts.

Each training sequence is a context (pruned) followed by a continuation of
``cfg.train_cont_len`` tokens (never pruned, like decode tokens). Per stage s the pruner
scores the context tokens entering its layer.

Decisions (train_select):
  topk    the hard decision keeps exactly the tokens inference would keep: protected
          tokens plus the top (k_s - protected) alive tokens by the Gumbel-perturbed keep
          score (noise scale gumbel_tau), so training never collapses below the keep ratio.
          Its surrogate is sigmoid((perturbed score - threshold) / gumbel_tau), the
          threshold half-way between the last kept and the first dropped score.
  gumbel  the paper's per-token hard Gumbel-softmax sample.
Cumulative masks are straight-through on the *product*: D_s = H_s + P_s - stopgrad(P_s)
with H_s the product of hard decisions and P_s the product of the surrogates, so the LM
and ratio terms reach every stage's pruner even where an earlier stage dropped the token
(issue 11 cause 2). The key policy D_s weights attention in layer l_s and later.

Supervision (target): "topk" is a BCE of the keep logit against "this alive token is among
the k_s - protected alive tokens with the highest saliency" (targets consistent with the
keep ratio, issue 11 cause 1); "max" is the paper's MSE against max-normalised saliency.
Loss = lm_weight*CE(continuation) + mse_weight*target + rank_weight*rank
+ ratio_weight*ratio + distill_weight*KL(dense || pruned); target/rank/ratio averaged over
stages. The ratio term compares the mean cumulative keep *probability* (not the hard
decision) with the goal, so that thresholding the probability at 0.5 keeps about the
ratio too.

train_mode="cached" skips the backbone per step: the stage inputs of the dense model are
collected once with the targets (collect_features) and the pruners are fitted on them with
the same cumulative top-k simulation (no LM/distill term; much faster on a CPU).
"""
from __future__ import annotations

import math
import time
from typing import Callable

import torch
import torch.nn.functional as F

from prunelab.errors import PrunelabError

from .config import SDTPConfig
from .losses import distill_loss, lm_loss, mse_loss, rank_loss, ratio_loss
from .masked import policy_forward
from .modules import PrunerStack, keep_score
from .saliency import attention_targets, make_targets
from .select import protected_mask, target_counts


def compute_targets(model, data: torch.Tensor, stage_layers: list[int], ctx_len: int,
                    batch_size: int = 1, log: Callable[[str], None] | None = None, kind: str = "grad") -> torch.Tensor:
    """(M, S, ctx_len) saliency targets of `kind` (saliency.make_targets) for M training sequences."""
    out = []
    t0 = time.perf_counter()
    for i in range(0, data.size(0), batch_size):
        out.append(make_targets(model, data[i:i + batch_size], stage_layers, ctx_len, kind)[..., :ctx_len].float())
        if log and (i // batch_size) % 25 == 0:
            log(f"saliency {i + batch_size}/{data.size(0)} ({time.perf_counter() - t0:.0f}s)")
    return torch.cat(out, 0)


def collect_features(model, data: torch.Tensor, stage_layers: list[int], ctx_len: int, kind: str = "attn",
                     log: Callable[[str], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (M, S, ctx) and the dense stage inputs (M, S, ctx, d) in float16, one forward
    per sequence (plus one backward for gradient kinds)."""
    tg, hs = [], []
    t0 = time.perf_counter()
    for i in range(data.size(0)):
        ids = data[i:i + 1]
        sal, hidden = attention_targets(model, ids, stage_layers, ctx_len, return_hidden=True)
        if kind != "attn":
            sal = make_targets(model, ids, stage_layers, ctx_len, kind)
        tg.append(sal[0, :, :ctx_len].float())
        hs.append(torch.stack([h[0, :ctx_len] for h in hidden]).to(torch.float16))
        if log and i % 10 == 0:
            log(f"features {i + 1}/{data.size(0)} ({time.perf_counter() - t0:.0f}s)")
    return torch.stack(tg), torch.stack(hs)


def stage_goal_counts(cfg: SDTPConfig, num_stages: int, ctx_len: int) -> list[int]:
    """Context tokens alive after each stage (the inference counts, protected included)."""
    n = torch.tensor([ctx_len])
    pos = torch.arange(ctx_len)[None]
    p = protected_mask(cfg, pos, torch.ones_like(pos, dtype=torch.bool), n).sum(1)
    return [int(target_counts(cfg, c, n, p)[0]) for c in cfg.cumulative_keep(num_stages)]


def stage_target_fractions(cfg: SDTPConfig, num_stages: int, ctx_len: int) -> list[float]:
    """Fraction of context tokens the ratio loss asks each stage to keep (same counts as inference)."""
    return [c / ctx_len for c in stage_goal_counts(cfg, num_stages, ctx_len)]


def topk_among(key: torch.Tensor, cand: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(B, n) bool: the k[b] candidates with the highest key in each row."""
    key = key.masked_fill(~cand, float("-inf"))
    order = key.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.size(1), device=key.device).expand_as(order))
    return (rank < k[:, None]) & cand


def _threshold(key: torch.Tensor, chosen: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """(B, 1) half-way between the lowest chosen and the highest unchosen candidate key."""
    lo = key.masked_fill(~chosen, float("inf")).amin(1, keepdim=True)
    hi = key.masked_fill(~(cand & ~chosen), float("-inf")).amax(1, keepdim=True)
    lo = torch.where(torch.isfinite(lo), lo, hi)
    hi = torch.where(torch.isfinite(hi), hi, lo)
    t = (lo + hi) / 2
    return torch.where(torch.isfinite(t), t, torch.zeros_like(t))


class StageDecider:
    """Shared per-stage logic of both training modes (policy and cached)."""

    def __init__(self, cfg: SDTPConfig, protected: torch.Tensor, goal_counts: list[int], gen: torch.Generator):
        self.cfg, self.protected, self.goal, self.gen = cfg, protected, goal_counts, gen

    def gumbel(self, shape, device) -> torch.Tensor:
        u = torch.rand(shape, generator=self.gen).clamp(1e-9, 1 - 1e-9).to(device)
        return -torch.log(-torch.log(u))

    def __call__(self, s: int, logits: torch.Tensor, prev_hard: torch.Tensor | None, prev_soft: torch.Tensor | None,
                 noise: bool = True):
        """-> (hard (B, n) float 0/1, soft surrogate, candidates, k_free) for stage s."""
        cfg = self.cfg
        B, n = logits.shape[:2]
        prot = self.protected.expand(B, -1)
        local = cfg.propagation == "local" or prev_hard is None
        alive = torch.ones(B, n, dtype=torch.bool, device=logits.device) if local else prev_hard > 0.5
        cand = alive & ~prot
        k_free = (self.goal[s] - prot.sum(1)).clamp(min=0)
        score = keep_score(logits).float()
        if cfg.train_select == "topk":
            key = score + cfg.gumbel_tau * self.gumbel((B, n), logits.device) if noise else score
            chosen = topk_among(key.detach(), cand, k_free)
            soft = torch.sigmoid((key - _threshold(key.detach(), chosen, cand)) / cfg.gumbel_tau)
            hard = chosen.float()
        else:
            y = F.gumbel_softmax(logits.float(), tau=cfg.gumbel_tau, hard=False)[..., 0] if noise else \
                F.softmax(logits.float(), -1)[..., 0]
            soft = y * cand.float()
            hard = (y > 0.5).float() * cand.float()
        hard = torch.where(prot, torch.ones_like(hard), hard)
        soft = torch.where(prot, torch.ones_like(soft), soft)
        if not local:
            soft = soft * prev_soft
        return hard, soft, cand, k_free


def target_loss(cfg: SDTPConfig, logits: torch.Tensor, sal: torch.Tensor, cand: torch.Tensor,
                k_free: torch.Tensor) -> torch.Tensor:
    if cfg.target == "max":
        return mse_loss(F.softmax(logits, -1)[..., 0], sal)
    label = topk_among(sal, cand, k_free).float()
    score = keep_score(logits).float()
    per = F.binary_cross_entropy_with_logits(score, label, reduction="none")
    return (per * cand).sum() / cand.sum().clamp(min=1)


def cand_rank_loss(cfg: SDTPConfig, logits: torch.Tensor, sal: torch.Tensor, cand: torch.Tensor,
                   gen: torch.Generator) -> torch.Tensor:
    """Pairwise ranking loss over the stage's candidates (the whole context with target="max")."""
    score = keep_score(logits)
    if cfg.target == "max":
        return rank_loss(score, sal, cfg.rank_pairs, gen)
    terms = []
    for b in range(score.size(0)):
        c = cand[b].nonzero().flatten()
        if c.numel() >= 2:
            terms.append(rank_loss(score[b:b + 1, c], sal[b:b + 1, c], cfg.rank_pairs, gen))
    return torch.stack(terms).mean() if terms else score.sum() * 0.0


def anchored_targets(sal: torch.Tensor, target_prior: float, top: float = 0.0) -> torch.Tensor:
    """(..., ctx) rank(saliency)/ctx + target_prior * position/ctx (SDTPConfig.target_prior):
    labels that prefer recent tokens unless an older token's saliency rank outweighs its age.
    With `top` > 0 (SDTPConfig.target_top) the ceil(top * ctx) most salient tokens rank above
    all others whatever their age: what the continuation reads most (a fact it recalls) is a
    "keep" label even far back, where the position term alone would never let it win."""
    n = sal.size(-1)
    order = sal.argsort(dim=-1, stable=True)
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(n, device=sal.device).expand_as(order))
    pos = torch.arange(n, device=sal.device, dtype=torch.float32)
    key = rank.float() / n + target_prior * pos / n
    if top > 0:
        key = key + (rank >= n - math.ceil(top * n)).float() * (target_prior + 1.0)
    return key


def _prob_cum(logits: torch.Tensor, prot: torch.Tensor, prev_hard: torch.Tensor | None) -> torch.Tensor:
    p = torch.where(prot, torch.ones_like(logits[..., 0]), torch.sigmoid(keep_score(logits).float()))
    return p if prev_hard is None else p * prev_hard


def _per_length(x) -> list:
    """One entry per training length: a list as given, a single tensor as a list of one."""
    return list(x) if isinstance(x, (list, tuple)) else [x]


def check_trainable(cfg: SDTPConfig) -> None:
    """Refuse a training setup with nothing to learn the ranking from. Checked when training
    starts (train_pruners, and run.get_pruners before it collects features), not in SDTPConfig:
    the setting is valid for the method (policy mode trains it), so a study holding it as one
    cell runs the others and reports this cell as failed with this line."""
    if cfg.train_mode == "cached" and not (cfg.mse_weight or cfg.rank_weight):
        raise PrunelabError("SDTP train_mode='cached' has no LM or distillation loss (the backbone does not run "
                            "while training), so mse_weight=0 and rank_weight=0 leave nothing to learn the "
                            "ranking from; use train_mode='policy' to train on the LM loss alone")


def train_pruners(model, cfg: SDTPConfig, data, targets, seed: int = 0,
                  log: Callable[[str], None] | None = None, features=None,
                  ) -> tuple[PrunerStack, list[dict]]:
    """Train one pruner per stage on `data` (M, T) with saliency `targets` (M, S, ctx).

    train_mode="cached" needs `features` (M, S, ctx, d) from collect_features.
    Several training lengths (cfg.train_extra_lens): `data`, `targets` and `features` are lists
    with one entry per length; steps take the lengths in turn, each batch from one length
    (protected tokens and keep counts are those of that length, as at inference).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    model.requires_grad_(False)
    layers = cfg.stage_layers(len(model.model.layers))
    stack = PrunerStack(model.config.hidden_size, layers, cfg.pruner_hidden_frac, cfg.pos_features, cfg.prior_weight,
                        cfg.prior_curve)
    if cfg.prior_weight:
        stack.reset_residual()   # recency-anchored: starts as the recency ranking, learns a correction
    groups, group_targets = _per_length(data), _per_length(targets)
    group_features = _per_length(features) if features is not None else [None] * len(groups)
    device = groups[0].device
    stack.to(device=device, dtype=torch.float32).train()
    opt = torch.optim.Adam(stack.parameters(), lr=cfg.lr)
    cached = cfg.train_mode == "cached"
    check_trainable(cfg)
    if cached and any(f is None for f in group_features):
        raise ValueError("train_mode='cached' needs features from collect_features")
    shapes = []
    for g in groups:
        ctx_g = g.size(1) - cfg.train_cont_len
        pos_g = torch.arange(ctx_g, device=device)[None]
        prot_g = protected_mask(cfg, pos_g, torch.ones_like(pos_g, dtype=torch.bool), torch.tensor([ctx_g], device=device))
        counts = stage_goal_counts(cfg, len(layers), ctx_g)
        shapes.append((ctx_g, prot_g, [c / ctx_g for c in counts], StageDecider(cfg, prot_g, counts, gen)))
    need_lm = not cached and (cfg.lm_weight > 0 or cfg.distill_weight > 0)
    history = []
    t0 = time.perf_counter()
    for step in range(cfg.train_steps):
        gi, turn = step % len(groups), step // len(groups)
        ids_all, ctx, protected, goal, decide = groups[gi], *shapes[gi]
        M, T = ids_all.shape
        rows = [(turn * cfg.train_batch_size + i) % M for i in range(cfg.train_batch_size)]
        ids, sal = ids_all[rows], group_targets[gi][rows].to(device).float()
        if cfg.target_prior:
            sal = anchored_targets(sal, cfg.target_prior, cfg.target_top)
        B = ids.size(0)
        rec: list[dict] = []

        def stage(s: int, l: int, x: torch.Tensor) -> torch.Tensor:
            prev = rec[-1] if rec and cfg.propagation == "cumulative" else None
            alive = prev["hard"] > 0.5 if prev is not None else None
            logits = stack[l](x.float(), alive)
            hard, soft, cand, k_free = decide(s, logits, prev["hard"] if prev else None,
                                              prev["soft"] if prev else None)
            if prev is not None:
                hard = hard * prev["hard"]
            d = soft if cfg.mask == "soft" else hard + soft - soft.detach()
            rec.append({"logits": logits, "hard": hard.detach(), "soft": soft, "d": d, "cand": cand,
                        "k_free": k_free, "prob": _prob_cum(logits, protected.expand(B, -1), alive.float() if alive is not None else None)})
            return d

        if cached:
            feats = group_features[gi][rows].to(device)
            for s, l in enumerate(layers):
                stage(s, l, feats[:, s])
        else:
            def on_stage(s: int, l: int, h: torch.Tensor) -> torch.Tensor:
                x = h[:, :ctx] if need_lm else h[:, :ctx].detach()
                d = stage(s, l, x)
                pol = torch.cat([d, d.new_ones(B, T - ctx)], 1)
                return pol if need_lm else pol.detach()   # no LM loss: no graph through the backbone

            if need_lm:
                out = policy_forward(model, ids, layers, on_stage, logits_from=ctx - 1)[:, :-1]
            else:
                policy_forward(model, ids, layers, on_stage, stop_after_last_stage=True)
        parts = {}
        if need_lm and cfg.lm_weight > 0:
            parts["lm"] = lm_loss(out, ids[:, ctx:])
        if need_lm and cfg.distill_weight > 0:
            with torch.no_grad():
                dense = policy_forward(model, ids, layers, None, logits_from=ctx - 1)[:, :-1]
            parts["distill"] = distill_loss(out, dense)
        tname = "mse" if cfg.target == "max" else "topk"
        if cfg.mse_weight > 0:
            parts[tname] = torch.stack([target_loss(cfg, r["logits"], sal[:, s], r["cand"], r["k_free"])
                                        for s, r in enumerate(rec)]).mean()
        if cfg.rank_weight > 0:
            parts["rank"] = torch.stack([cand_rank_loss(cfg, r["logits"], sal[:, s], r["cand"], gen)
                                         for s, r in enumerate(rec)]).mean()
        if cfg.ratio_weight > 0:
            parts["ratio"] = ratio_loss([r["prob"] for r in rec], goal)
        weights = {"lm": cfg.lm_weight, "distill": cfg.distill_weight, tname: cfg.mse_weight,
                   "rank": cfg.rank_weight, "ratio": cfg.ratio_weight}
        loss = sum(weights[k] * v for k, v in parts.items())
        opt.zero_grad(set_to_none=True)
        if isinstance(loss, torch.Tensor) and loss.requires_grad:
            loss.backward()
            opt.step()
        row = {"step": step + 1, "loss": float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss), **{k: float(v.detach()) for k, v in parts.items()},
               "kept_frac": [round(float(r["hard"].mean()), 3) for r in rec],
               "prob_frac": [round(float(r["prob"].detach().mean()), 3) for r in rec],
               "seconds": time.perf_counter() - t0}
        history.append(row)
        if log and (step % 25 == 0 or step == cfg.train_steps - 1):
            log(f"train step {step + 1}/{cfg.train_steps} loss {row['loss']:.4f} "
                + " ".join(f"{k} {row[k]:.4f}" for k in parts) + f" ({row['seconds']:.0f}s)")
    stack.eval()
    return stack, history
