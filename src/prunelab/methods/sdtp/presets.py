"""Named SDTP settings: method presets (seed, paper) and run budgets (tiny, cpu)."""
from __future__ import annotations

from prunelab.errors import unknown

from .config import SDTPConfig

METHOD_PRESETS = {
    # Seed 004's baseline: 10 pruning layers, 0.7 of the prompt survives the last one,
    # first 4 + last 16 tokens always kept (inside the budget).
    "seed": dict(layers="schedule", num_stages=10, keep_ratio=0.7, keep_ratio_mode="overall",
                 count_protected=True, protect=True, protect_first=4, protect_last=16, protect_last_frac=0.0),
    # The paper: 10 stages from layer 4 with a step of 3 (scaled to depth), keep 0.9 of the
    # current tokens per stage (0.9**10 = 0.349 of the prompt after stage 10), first 4 + the
    # most recent 10% always kept, counted outside the budget (this bookkeeping reproduces
    # the paper's reported FLOPs best; SDTP.md section 4).
    "paper": dict(layers="schedule", num_stages=10, keep_ratio=0.9, keep_ratio_mode="per_stage",
                  count_protected=False, protect=True, protect_first=4, protect_last=0, protect_last_frac=0.1),
}
# `seed` and `paper` fix the schedule, keep counts and protected tokens; the learned pruner
# gets SDTPConfig's default recency prior (prior_weight=4 on a linear curve, not in the paper; config.py says
# why). `paper-faithful` is the paper as published: its schedule and the MLP alone.
METHOD_PRESETS["paper-faithful"] = dict(METHOD_PRESETS["paper"], prior_weight=0.0, target_prior=0.0)

BUDGETS = {
    # seconds on a random tiny LLaMA (tests, smoke runs)
    "tiny": dict(train_steps=4, train_batch_size=1, train_seq_len=48, train_cont_len=8, rank_pairs=64,
                 eval_samples=2, eval_ctx_len=64, eval_cont_len=8, gen_samples=1, gen_ctx_len=32,
                 gen_tokens=4, latency_lens=(64,), latency_repeats=1),
    # minutes on SmolLM2-135M with one CPU thread: training at the evaluation lengths (1024-,
    # 2048- and 4096-token contexts + a 64-token continuation), 32 sequences of the training mix
    # each, pruners fitted on the cached dense stage inputs (one forward per sequence: ~20 min,
    # cached on disk; 1500 steps ~4 min). Trained at 1k only, the pruner lost to recency on 2k/4k
    # passkey prompts (exact match 0.20 vs 0.60, benchmarks/results/sdtp-passkey-2k-4k at a8a9008)
    "cpu": dict(train_steps=1500, train_batch_size=1, train_seq_len=1088, train_cont_len=64, rank_pairs=512,
                train_mode="cached", train_sequences=32, train_extra_lens=(2112, 4160),
                eval_samples=16, eval_ctx_len=1024, eval_cont_len=64, gen_samples=4, gen_ctx_len=512,
                gen_tokens=32, latency_lens=(512, 1024, 2048), latency_repeats=3),
    # what `prunelab ablate --preset cpu` runs (issue 12: a calibrated study budget): the `cpu`
    # budget's training at the 1k evaluation length only, half the sequences and a third of the
    # steps, and perplexity on 16 of the train check's 64 WikiText-2 test windows (the same
    # windows: chunks() spaces them evenly), so benchmarks/study.py can set the study's baseline
    # against the long-run pruner (benchmarks/results/sdtp-train-check.json) on equal windows.
    # Cached training has no LM term: a study's loss rows compare the saliency losses only.
    "study": dict(train_steps=500, train_batch_size=1, train_seq_len=1088, train_cont_len=64, rank_pairs=512,
                  train_mode="cached", train_sequences=16,
                  eval_samples=16, eval_ctx_len=1024, eval_cont_len=64, gen_samples=1, gen_ctx_len=256,
                  gen_tokens=8, latency_lens=(1024,), latency_repeats=3),
}

# What the registry's make_config(preset=...) sees: method presets (cpu budget) and combos.
SDTPConfig.PRESETS = {
    **{name: dict(p) for name, p in METHOD_PRESETS.items()},
    **{f"{name}-{b}": {**p, **BUDGETS[b]} for name, p in METHOD_PRESETS.items() for b in BUDGETS},
    "tiny": {**METHOD_PRESETS["seed"], **BUDGETS["tiny"]},
    "cpu": {**METHOD_PRESETS["seed"], **BUDGETS["study"]},
}


def budget_overrides(budget: str) -> dict:
    if budget not in BUDGETS:
        raise unknown("SDTP budget", budget, BUDGETS)
    return dict(BUDGETS[budget])


def make_config(preset: str = "seed", budget: str | None = None, **overrides) -> SDTPConfig:
    """SDTPConfig from a method preset, an optional budget, then explicit field overrides."""
    if preset not in METHOD_PRESETS:
        raise unknown("SDTP preset", preset, METHOD_PRESETS)
    args = dict(METHOD_PRESETS[preset])
    if budget is not None:
        args.update(budget_overrides(budget))
    args.update(overrides)
    return SDTPConfig(**args)
