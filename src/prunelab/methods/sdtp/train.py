"""Training the pruners: frozen backbone, Gumbel hard decisions, attention-policy simulation.

Each training sequence is a context (pruned) followed by a continuation of
``cfg.train_cont_len`` tokens (never pruned, like decode tokens). Per stage s the pruner
scores the context tokens entering its layer; a hard Gumbel-softmax sample with a
straight-through gradient gives D_s in {0,1} (soft relaxation with mask="soft"),
protected tokens are forced to 1, and with cumulative propagation D_s *= D_{s-1}. The key
policy D_s weights attention in layer l_s and later (masked.policy_layer). Loss =
lm_weight*CE(continuation) + mse_weight*MSE(keep prob, saliency) + rank_weight*rank
+ ratio_weight*ratio + distill_weight*KL(dense || pruned), MSE/rank/ratio averaged over stages.
"""
from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F

from .config import SDTPConfig
from .losses import distill_loss, lm_loss, mse_loss, rank_loss, ratio_loss
from .masked import policy_forward
from .modules import PrunerStack, keep_score
from .saliency import saliency_targets
from .select import protected_mask, target_counts


def compute_targets(model, data: torch.Tensor, stage_layers: list[int], ctx_len: int,
                    batch_size: int = 1, log: Callable[[str], None] | None = None) -> torch.Tensor:
    """(M, S, ctx_len) saliency targets for M fixed-length training sequences."""
    out = []
    t0 = time.perf_counter()
    for i in range(0, data.size(0), batch_size):
        out.append(saliency_targets(model, data[i:i + batch_size], stage_layers, ctx_len)[..., :ctx_len])
        if log and (i // batch_size) % 25 == 0:
            log(f"saliency {i + batch_size}/{data.size(0)} ({time.perf_counter() - t0:.0f}s)")
    return torch.cat(out, 0)


def stage_target_fractions(cfg: SDTPConfig, num_stages: int, ctx_len: int) -> list[float]:
    """Fraction of context tokens the ratio loss asks each stage to keep (same counts as inference)."""
    n = torch.tensor([ctx_len])
    pos = torch.arange(ctx_len)[None]
    p = protected_mask(cfg, pos, torch.ones_like(pos, dtype=torch.bool), n).sum(1)
    return [int(target_counts(cfg, c, n, p)[0]) / ctx_len for c in cfg.cumulative_keep(num_stages)]


def train_pruners(model, cfg: SDTPConfig, data: torch.Tensor, targets: torch.Tensor, seed: int = 0,
                  log: Callable[[str], None] | None = None) -> tuple[PrunerStack, list[dict]]:
    """Train one pruner per stage on `data` (M, T) with saliency `targets` (M, S, ctx)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    model.requires_grad_(False)
    layers = cfg.stage_layers(len(model.model.layers))
    stack = PrunerStack(model.config.hidden_size, layers, cfg.pruner_hidden_frac)
    stack.to(device=data.device, dtype=torch.float32).train()
    opt = torch.optim.Adam(stack.parameters(), lr=cfg.lr)
    M, T = data.shape
    ctx = T - cfg.train_cont_len
    pos = torch.arange(ctx, device=data.device)[None]
    protected = protected_mask(cfg, pos, torch.ones_like(pos, dtype=torch.bool), torch.tensor([ctx], device=data.device))
    goal = stage_target_fractions(cfg, len(layers), ctx)
    need_lm = cfg.lm_weight > 0 or cfg.distill_weight > 0
    history = []
    t0 = time.perf_counter()
    for step in range(cfg.train_steps):
        rows = [(step * cfg.train_batch_size + i) % M for i in range(cfg.train_batch_size)]
        ids, sal = data[rows], targets[rows].to(data.device)
        B = ids.size(0)
        rec: list[tuple[torch.Tensor, torch.Tensor]] = []

        def on_stage(s: int, l: int, h: torch.Tensor) -> torch.Tensor:
            x = h[:, :ctx] if need_lm else h[:, :ctx].detach()
            logits = stack[l](x.float())
            d = F.gumbel_softmax(logits, tau=cfg.gumbel_tau, hard=cfg.mask == "hard")[..., 0]
            d = torch.where(protected.expand(B, -1), torch.ones_like(d), d)
            if cfg.propagation == "cumulative" and rec:
                d = d * rec[-1][1]
            rec.append((logits, d))
            pol = torch.cat([d, d.new_ones(B, T - ctx)], 1)
            return pol if need_lm else pol.detach()   # no LM loss: no graph through the backbone

        if need_lm:
            out = policy_forward(model, ids, layers, on_stage, logits_from=ctx - 1)[:, :-1]
        else:
            policy_forward(model, ids, layers, on_stage, stop_after_last_stage=True)
        parts = {}
        if cfg.lm_weight > 0:
            parts["lm"] = lm_loss(out, ids[:, ctx:])
        if cfg.distill_weight > 0:
            with torch.no_grad():
                dense = policy_forward(model, ids, layers, None, logits_from=ctx - 1)[:, :-1]
            parts["distill"] = distill_loss(out, dense)
        if cfg.mse_weight > 0:
            parts["mse"] = torch.stack([mse_loss(F.softmax(lg, -1)[..., 0], sal[:, s])
                                        for s, (lg, _) in enumerate(rec)]).mean()
        if cfg.rank_weight > 0:
            parts["rank"] = torch.stack([rank_loss(keep_score(lg), sal[:, s], cfg.rank_pairs, gen)
                                         for s, (lg, _) in enumerate(rec)]).mean()
        if cfg.ratio_weight > 0:
            parts["ratio"] = ratio_loss([d for _, d in rec], goal)
        weights = {"lm": cfg.lm_weight, "distill": cfg.distill_weight, "mse": cfg.mse_weight,
                   "rank": cfg.rank_weight, "ratio": cfg.ratio_weight}
        loss = sum(weights[k] * v for k, v in parts.items())
        opt.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
            opt.step()
        row = {"step": step + 1, "loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()},
               "kept_frac": [round(float(d.detach().mean()), 3) for _, d in rec], "seconds": time.perf_counter() - t0}
        history.append(row)
        if log and (step % 25 == 0 or step == cfg.train_steps - 1):
            log(f"train step {step + 1}/{cfg.train_steps} loss {row['loss']:.4f} "
                + " ".join(f"{k} {row[k]:.4f}" for k in parts) + f" ({row['seconds']:.0f}s)")
    stack.eval()
    return stack, history
