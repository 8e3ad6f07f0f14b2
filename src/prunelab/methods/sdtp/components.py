"""SDTP's ablatable components (seed 004, E2/E3) as plain dicts.

component -> {default, options: {option: {config_field: value}}, remove, aliases,
option_aliases, numeric, numeric_range, description}. An option is only a set of
SDTPConfig overrides applied on top of the baseline preset (seed 004's baseline is the
`seed` preset); the keys match prunelab.methods.registry.Component, so
``Component(name=k, **v)`` builds one. Some seed rows can be reached two ways (e.g. the
combined `losses` component and the single-loss components): both give the same config.
"""
from __future__ import annotations

import dataclasses

from .config import SDTPConfig

COMPONENTS: dict[str, dict] = {
    "pruner": {
        "default": "learned_mlp",
        "options": {"learned_mlp": {"pruner": "mlp"},
                    "saliency_only": {"pruner": "saliency"},
                    "random": {"pruner": "random"}},
        "remove": "saliency_only",
        "aliases": ["learnable pruner", "learnable token pruning module", "pruner", "token pruning module",
                    "remove pruner", "pruning capability"],
        "option_aliases": {"learned_mlp": ["mlp", "learned", "learnable pruner"],
                           "saliency_only": ["saliency-only baseline", "saliency baseline", "model=saliency-only",
                                             "saliency only", "remove mlp", "pure saliency"],
                           "random": ["random pruning", "importance=random", "random"]},
        "description": "how tokens are scored: learned MLP, gradient saliency of the prompt (no MLP), or random",
    },
    "pruning_layers": {
        "default": "schedule_10",
        "options": {"schedule_10": {"layers": "schedule", "num_stages": 10},
                    "single_layer_4": {"layers": "single"},
                    "fixed_3": {"layers": "fixed3"},
                    "first_2": {"layers": "first2"},
                    "last_2": {"layers": "last2"}},
        "remove": "single_layer_4",
        "aliases": ["layer-wise pruning", "layer-wise dynamic pruning scheme", "multi-layer pruning schedule",
                    "pruning layers", "multi-layer pruning", "10 layers", "layer schedule"],
        "option_aliases": {"schedule_10": ["10 layers", "10-layer schedule", "layer-wise pruning"],
                           "single_layer_4": ["single-layer pruning", "only prune layer 4", "prune only L4",
                                              "single layer", "layer 4"],
                           "fixed_3": ["fixed layer set", "fixed 3 layers", "3 layers"],
                           "first_2": ["first 2 layers", "prune only in first 2 layers"],
                           "last_2": ["last 2 layers", "prune only in last 2 layers"]},
        "description": "which layers' inputs are pruned (see SDTPConfig docstring); explicit lists via layers='3,6,9'",
    },
    "keep_ratio": {
        "default": "0.7",
        "options": {"0.8": {"keep_ratio": 0.8}, "0.7": {"keep_ratio": 0.7},
                    "0.5": {"keep_ratio": 0.5}, "0.3": {"keep_ratio": 0.3}},
        "remove": None,
        "aliases": ["keep ratio", "keeping ratio", "pruning ratio", "ratio", "dynamic token length updates"],
        "option_aliases": {"0.8": ["ratio=0.8", "under-pruning"], "0.5": ["ratio=0.5", "over-pruning"],
                           "0.3": ["ratio=0.3", "extreme pruning"], "0.7": ["ratio=0.7"]},
        "numeric": "keep_ratio",
        "numeric_range": (0.01, 1.0),
        "description": "fraction kept; meaning set by keep_ratio_mode (seed: overall after the last stage)",
    },
    "head_tail_preserve": {
        "default": "on",
        "options": {"on": {"protect": True}, "off": {"protect": False}},
        "remove": "off",
        "aliases": ["head/tail preserve", "head/tail token preserving strategy", "head/tail preservation",
                    "first 4 / last 16", "first 4 + last 16", "no head/tail", "preservation strategy"],
        "option_aliases": {"off": ["no head/tail", "remove head/tail preservation"]},
        "description": "always keep the first/last tokens (the last prompt token is kept regardless)",
    },
    "rope_fix": {
        "default": "on",
        "options": {"on": {"rope_fix": True}, "off": {"rope_fix": False}},
        "remove": "off",
        "aliases": ["rope fix", "rope index fix", "rope index correction", "rope-compatible shrinking strategy",
                    "rope broken", "no rope index fix"],
        "option_aliases": {"off": ["rope broken", "re-index", "no rope fix"]},
        "description": "survivors keep original RoPE positions (on) or are re-indexed 0..n-1 (off)",
    },
    "losses": {
        "default": "lm_mse_rank",
        "options": {"lm_mse_rank": {"lm_weight": 1.0, "mse_weight": 1.0, "rank_weight": 1.0},
                    "no_rank": {"lm_weight": 1.0, "mse_weight": 1.0, "rank_weight": 0.0},
                    "no_mse": {"lm_weight": 1.0, "mse_weight": 0.0, "rank_weight": 1.0},
                    "lm_only": {"lm_weight": 1.0, "mse_weight": 0.0, "rank_weight": 0.0},
                    "no_lm": {"lm_weight": 0.0, "mse_weight": 1.0, "rank_weight": 1.0}},
        "remove": None,
        "aliases": ["loss function", "losses", "loss"],
        "option_aliases": {"lm_mse_rank": ["LM + MSE + Ranking", "full loss"],
                           "no_rank": ["loss=LM+MSE", "no ranking loss", "keep only MSE + LM loss"],
                           "no_mse": ["loss=LM+Ranking", "no MSE loss", "use only ranking"],
                           "lm_only": ["loss=LM", "only LM loss", "no saliency"],
                           "no_lm": ["remove LM loss", "supervise only importance"]},
        "description": "training losses (the keep-ratio constraint stays on in every option)",
    },
    "ranking_loss": {
        "default": "on", "options": {"on": {"rank_weight": 1.0}, "off": {"rank_weight": 0.0}}, "remove": "off",
        "aliases": ["ranking loss", "rank loss", "saliency-based supervision + ranking loss"],
        "description": "pairwise logistic ranking loss",
    },
    "mse_loss": {
        "default": "on", "options": {"on": {"mse_weight": 1.0}, "off": {"mse_weight": 0.0}}, "remove": "off",
        "aliases": ["mse loss", "saliency regression", "regression alignment"],
        "description": "MSE between keep probability and saliency",
    },
    "lm_loss": {
        "default": "on", "options": {"on": {"lm_weight": 1.0}, "off": {"lm_weight": 0.0}}, "remove": "off",
        "aliases": ["lm loss", "language modeling loss", "cross-entropy loss"],
        "description": "LM cross-entropy of the pruned forward",
    },
    "saliency_supervision": {
        "default": "on",
        "options": {"on": {"mse_weight": 1.0, "rank_weight": 1.0}, "off": {"mse_weight": 0.0, "rank_weight": 0.0}},
        "remove": "off",
        "aliases": ["full supervision", "saliency supervision", "saliency-based supervision"],
        "description": "off = LM loss (+ ratio constraint) only",
    },
    "distillation": {
        "default": "off", "options": {"off": {"distill_weight": 0.0}, "on": {"distill_weight": 0.5}}, "remove": "off",
        "aliases": ["distillation", "kl distillation", "knowledge distillation"],
        "description": "KL to the unpruned model on the continuation (optional in the paper)",
    },
    "selection": {
        "default": "topk",
        "options": {"topk": {"selection": "topk"}, "topp": {"selection": "topp"},
                    "threshold": {"selection": "threshold"}},
        "remove": None,
        "aliases": ["token selection", "selection", "top-k vs top-p vs threshold"],
        "option_aliases": {"topk": ["top-k"], "topp": ["top-p"], "threshold": ["threshold-based", "threshold"]},
        "description": "inference rule: exact top-k counts, keep-probability mass top-p, or probability threshold",
    },
    "mask": {
        "default": "hard",
        "options": {"hard": {"mask": "hard"}, "soft": {"mask": "soft"}},
        "remove": "soft",
        "aliases": ["hard mask", "soft mask", "hard mask vs soft mask", "no hard mask", "soft mask only"],
        "option_aliases": {"soft": ["soft mask only", "no hard mask", "soft"], "hard": ["hard mask"]},
        "description": "hard Gumbel decisions vs a relaxed policy (soft also weights survivors' attention at inference)",
    },
    "mask_propagation": {
        "default": "cumulative",
        "options": {"cumulative": {"propagation": "cumulative"}, "local": {"propagation": "local"}},
        "remove": "local",
        "aliases": ["multi-layer mask propagation", "mask propagation", "no mask propagation",
                    "cascade updates", "per-layer local"],
        "option_aliases": {"local": ["per-layer local", "no mask propagation"]},
        "description": "stage masks multiply (cumulative) or each stage picks from all tokens (local, full length)",
    },
    "attention_mask_update": {
        "default": "on",
        "options": {"on": {"mask_update": True}, "off": {"mask_update": False}},
        "remove": "off",
        "aliases": ["attention mask update", "token merge", "do not update attention mask",
                    "attention mask and hidden state cascade updates"],
        "description": "off: dropped tokens are zeroed but stay attendable (full length)",
    },
    "pipeline_pre_pruning": {
        "default": "on",
        "options": {"on": {"pipeline_prune_before_boundary": True}, "off": {"pipeline_prune_before_boundary": False}},
        "remove": "off",
        "aliases": ["multi-gpu pruning", "cross-gpu pre-pruning", "pre-pruning", "communication"],
        "description": "comm_bytes counts survivors (on) or the full masked sequence (off) at each device boundary",
    },
    "communication_layers": {
        "default": "schedule_10",
        "options": {"schedule_10": {"layers": "schedule"}, "first_2": {"layers": "first2"},
                    "last_2": {"layers": "last2"}},
        "remove": None,
        "aliases": ["communication cost", "communication load", "prune only in first 2 layers or last 2 layers"],
        "option_aliases": {"first_2": ["first 2 layers"], "last_2": ["last 2 layers"]},
        "description": "where pruning happens, for the communication rows",
    },
    "pipeline_devices": {
        "default": "4",
        "options": {"2": {"pipeline_devices": 2}, "4": {"pipeline_devices": 4}, "8": {"pipeline_devices": 8}},
        "remove": None,
        "aliases": ["number of gpus", "pipeline devices", "multi-gpu"],
        "numeric": "pipeline_devices",
        "numeric_range": (1, 64),
        "description": "simulated pipeline split for the communication bytes",
    },
}


# The learned pruner's baselines (select.py), as options of one component. Each option also
# sets `pruner` so that run_sdtp trains MLP pruners only for the learned option and computes
# prompt saliency for the oracle. Registered only once SDTPConfig has a `selector` field
# (default "learned"); until then select them with prefill(..., selector=...) or
# benchmarks/sdtp.py --options.
SELECTOR_COMPONENT = {
    "default": "learned",
    "options": {"learned": {"selector": "learned", "pruner": "mlp"},
                "random": {"selector": "random", "pruner": "random"},
                "recency": {"selector": "recency", "pruner": "random"},
                "truncate": {"selector": "truncate", "pruner": "random"},
                "attention": {"selector": "attention", "pruner": "random"},
                "oracle": {"selector": "oracle", "pruner": "saliency"}},
    "remove": "recency",
    "aliases": ["selector", "token selector", "baselines", "pruner baselines", "token choice"],
    "option_aliases": {"recency": ["streamingllm", "sinks + recent", "attention sinks", "first 4 + most recent"],
                       "truncate": ["truncation", "keep last tokens"],
                       "attention": ["snapkv", "h2o", "attention scores", "last-query attention"],
                       "oracle": ["saliency oracle", "per-prompt saliency"],
                       "random": ["random tokens"]},
    "description": "which tokens the pruning stages keep: the learned MLPs or a baseline at the same keep "
                   "counts (truncate: same prefill FLOPs), same protected tokens",
}
if "selector" in {f.name for f in dataclasses.fields(SDTPConfig)}:
    COMPONENTS["selector"] = SELECTOR_COMPONENT
