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
                                             "saliency only", "remove mlp", "pure saliency", "gradient saliency ranking", "no learned predictor"],
                           "random": ["random pruning", "importance=random", "random", "random tokens", "random drop"]},
        "description": "how prompt tokens are scored for dropping: a small learned MLP predicts each token's importance from hidden states; alternatives use gradient saliency directly or random scores",
        "option_descriptions": {
            "learned_mlp": ["a learned MLP predictor scores which tokens to keep"],
            "saliency_only": ["no learned predictor: rank tokens directly by their gradient-based saliency", "drop the learned pruning module and use saliency scores"],
            "random": ["drop randomly chosen tokens instead of predicted unimportant ones"],
        },
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
                    "pruning layers", "multi-layer pruning", "10 layers", "layer schedule", "multi-stage pruning",
                    "progressive pruning", "hierarchical pruning", "pruning stages"],
        "option_aliases": {"schedule_10": ["10 layers", "10-layer schedule", "layer-wise pruning"],
                           "single_layer_4": ["single-layer pruning", "only prune layer 4", "prune only L4",
                                              "single layer", "layer 4", "one layer only", "a single layer"],
                           "fixed_3": ["fixed layer set", "fixed 3 layers", "3 layers", "three fixed layers"],
                           "first_2": ["first 2 layers", "prune only in first 2 layers", "first two layers", "early layers only"],
                           "last_2": ["last 2 layers", "prune only in last 2 layers", "last two layers", "final layers only"]},
        "description": "which transformer layers drop tokens: by default a schedule of ten pruning stages spread over the layers, progressively shortening the sequence",
        "option_descriptions": {
            "schedule_10": ["prune tokens progressively at many layers (a ten-stage schedule)"],
            "single_layer_4": ["drop tokens at just one layer (layer 4) instead of many", "a single pruning stage at one layer"],
            "fixed_3": ["prune at a fixed set of three layers"],
            "first_2": ["prune only in the first two layers", "token dropping restricted to the earliest layers"],
            "last_2": ["prune only in the last two layers", "token dropping restricted to the final layers"],
        },
    },
    "keep_ratio": {
        "default": "0.7",
        "options": {"0.8": {"keep_ratio": 0.8}, "0.7": {"keep_ratio": 0.7},
                    "0.5": {"keep_ratio": 0.5}, "0.3": {"keep_ratio": 0.3}},
        "remove": None,
        "aliases": ["keep ratio", "keeping ratio", "pruning ratio", "ratio", "dynamic token length updates",
                    "compression ratio"],
        "option_aliases": {"0.8": ["ratio=0.8", "under-pruning"], "0.5": ["ratio=0.5", "over-pruning"],
                           "0.3": ["ratio=0.3", "extreme pruning"], "0.7": ["ratio=0.7"]},
        "numeric": "keep_ratio",
        "numeric_range": (0.01, 1.0),
        "description": "the fraction of prompt tokens kept after pruning (1 minus the fraction dropped); how aggressively the sequence is shortened",
    },
    "head_tail_preserve": {
        "default": "on",
        "options": {"on": {"protect": True}, "off": {"protect": False}},
        "remove": "off",
        "aliases": ["head/tail preserve", "head/tail token preserving strategy", "head/tail preservation",
                    "first 4 / last 16", "first 4 + last 16", "no head/tail", "preservation strategy",
                    "protected tokens", "leading and trailing tokens", "start and end tokens",
                    "opening and closing tokens"],
        "option_aliases": {"off": ["no head/tail", "remove head/tail preservation", "first and last tokens can be pruned", "no head/tail protection"]},
        "description": ("always keep the first few and the last tokens of the prompt (beginning and end of the sequence) regardless of their scores. "
                        "Protection of the start and end of the input (first 4 and last 16 tokens) from being pruned"),
        "option_descriptions": {
            "on": ["first and last tokens are protected from pruning"],
            "off": ["the first and last prompt tokens may be pruned like any other", "no special protection for tokens at the beginning and end"],
        },
    },
    "rope_fix": {
        "default": "on",
        "options": {"on": {"rope_fix": True}, "off": {"rope_fix": False}},
        "remove": "off",
        "aliases": ["rope fix", "rope index fix", "rope index correction", "rope-compatible shrinking strategy",
                    "rope broken", "no rope index fix"],
        "option_aliases": {"off": ["rope broken", "re-index", "no rope fix", "renumber positions", "reindexed positions", "position ids recomputed"]},
        "description": ("rotary position embedding handling: surviving tokens keep their original position ids after pruning. "
                        "The position indices (RoPE ids) given to the remaining tokens once others are dropped"),
        "option_descriptions": {
            "on": ["kept tokens retain their original rotary position ids"],
            "off": ["renumber the surviving tokens 0..n-1, losing their original rotary positions", "positions re-indexed after pruning instead of keeping the original RoPE ids"],
        },
    },
    "losses": {
        "default": "lm_mse_rank",
        "options": {"lm_mse_rank": {"lm_weight": 1.0, "mse_weight": 1.0, "rank_weight": 1.0},
                    "no_rank": {"lm_weight": 1.0, "mse_weight": 1.0, "rank_weight": 0.0},
                    "no_mse": {"lm_weight": 1.0, "mse_weight": 0.0, "rank_weight": 1.0},
                    "lm_only": {"lm_weight": 1.0, "mse_weight": 0.0, "rank_weight": 0.0},
                    "no_lm": {"lm_weight": 0.0, "mse_weight": 1.0, "rank_weight": 1.0}},
        "remove": None,
        "aliases": ["loss function", "losses", "loss", "training objective", "pruner objective", "objective"],
        "option_aliases": {"lm_mse_rank": ["LM + MSE + Ranking", "full loss"],
                           "no_rank": ["loss=LM+MSE", "no ranking loss", "keep only MSE + LM loss", "LM + MSE only"],
                           "no_mse": ["loss=LM+Ranking", "no MSE loss", "use only ranking", "LM + ranking only"],
                           "lm_only": ["loss=LM", "only LM loss", "no saliency", "language modelling loss only", "LM loss alone"],
                           "no_lm": ["remove LM loss", "supervise only importance", "saliency losses only"]},
        "description": ("the training objective of the token pruner: language-modelling loss plus MSE regression to saliency plus a pairwise ranking loss. "
                        "Which loss terms the pruner is trained with (its objective)"),
        "option_descriptions": {
            "lm_mse_rank": ["train with all three losses: LM, MSE and ranking"],
            "no_rank": ["train without the ranking loss, LM and MSE only"],
            "no_mse": ["train without the MSE saliency regression, LM and ranking only"],
            "lm_only": ["train with the language-modelling loss alone, no saliency supervision"],
            "no_lm": ["train without the language-modelling loss, only the saliency losses"],
        },
        "terms": {"lm": ("lm_weight",), "language modelling": ("lm_weight",), "language modeling": ("lm_weight",),
                  "next-token": ("lm_weight",), "cross-entropy": ("lm_weight",), "nll": ("lm_weight",),
                  "mse": ("mse_weight",), "regression": ("mse_weight",), "squared error": ("mse_weight",),
                  "ranking": ("rank_weight",), "rank": ("rank_weight",), "pairwise": ("rank_weight",),
                  "saliency": ("mse_weight", "rank_weight"), "importance": ("mse_weight", "rank_weight")},
    },
    "ranking_loss": {
        "default": "on", "options": {"on": {"rank_weight": 1.0}, "off": {"rank_weight": 0.0}}, "remove": "off",
        "aliases": ["ranking loss", "rank loss", "saliency-based supervision + ranking loss"],
        "description": "pairwise ranking loss that teaches the pruner to order tokens as their saliency does",
        "option_descriptions": {
            "off": ["no pairwise ranking loss"],
        },
    },
    "mse_loss": {
        "default": "on", "options": {"on": {"mse_weight": 1.0}, "off": {"mse_weight": 0.0}}, "remove": "off",
        "aliases": ["mse loss", "saliency regression", "regression alignment"],
        "description": "MSE regression loss between predicted keep probabilities and token saliency",
        "option_descriptions": {
            "off": ["no MSE regression to saliency"],
        },
    },
    "lm_loss": {
        "default": "on", "options": {"on": {"lm_weight": 1.0}, "off": {"lm_weight": 0.0}}, "remove": "off",
        "aliases": ["lm loss", "language modeling loss", "cross-entropy loss"],
        "description": "language-modelling (next-token cross-entropy) loss on the pruned forward pass",
        "option_descriptions": {
            "off": ["no language-modelling loss"],
        },
    },
    "saliency_supervision": {
        "default": "on",
        "options": {"on": {"mse_weight": 1.0, "rank_weight": 1.0}, "off": {"mse_weight": 0.0, "rank_weight": 0.0}},
        "remove": "off",
        "aliases": ["full supervision", "saliency supervision", "saliency-based supervision"],
        "description": "supervising the pruner with gradient saliency targets (the MSE and ranking losses together)",
        "option_descriptions": {
            "off": ["no saliency targets; train the pruner with the LM loss only"],
        },
    },
    "distillation": {
        "default": "off", "options": {"off": {"distill_weight": 0.0}, "on": {"distill_weight": 0.5}}, "remove": "off",
        "aliases": ["distillation", "kl distillation", "knowledge distillation"],
        "description": "KL divergence distillation from the unpruned model's outputs to the pruned model",
        "option_descriptions": {
            "on": ["add KL distillation to the full model's predictions"],
            "off": ["no distillation to the unpruned model"],
        },
    },
    "selection": {
        "default": "topk",
        "options": {"topk": {"selection": "topk"}, "topp": {"selection": "topp"},
                    "threshold": {"selection": "threshold"}},
        "remove": None,
        "aliases": ["token selection", "selection", "top-k vs top-p vs threshold"],
        "option_aliases": {"topk": ["top-k"], "topp": ["top-p", "nucleus", "cumulative probability"], "threshold": ["threshold-based", "threshold", "probability cutoff", "fixed cutoff"]},
        "description": "the rule that turns keep probabilities into a kept token set at inference",
        "option_descriptions": {
            "topk": ["keep exactly the k highest-scoring tokens"],
            "topp": ["keep tokens until their probability mass reaches p (nucleus style)"],
            "threshold": ["keep every token whose keep probability exceeds a fixed threshold"],
        },
    },
    "mask": {
        "default": "hard",
        "options": {"hard": {"mask": "hard"}, "soft": {"mask": "soft"}},
        "remove": "soft",
        "aliases": ["hard mask", "soft mask", "hard mask vs soft mask", "no hard mask", "soft mask only"],
        "option_aliases": {"soft": ["soft mask only", "no hard mask", "soft", "continuous mask", "relaxed mask"], "hard": ["hard mask"]},
        "description": "whether dropping decisions are hard binary (Gumbel) masks or relaxed soft weights",
        "option_descriptions": {
            "hard": ["binary keep/drop decisions"],
            "soft": ["continuous soft masks that down-weight tokens instead of dropping them"],
        },
    },
    "mask_propagation": {
        "default": "cumulative",
        "options": {"cumulative": {"propagation": "cumulative"}, "local": {"propagation": "local"}},
        "remove": "local",
        "aliases": ["multi-layer mask propagation", "mask propagation", "no mask propagation",
                    "cascade updates", "per-layer local"],
        "option_aliases": {"local": ["per-layer local", "no mask propagation", "independent per layer", "masks not carried over"]},
        "description": ("whether a token dropped at one stage stays dropped in later layers (masks multiplied across stages). "
                        "The keep/drop mask is propagated from one pruning stage to the next, accumulating over layers"),
        "option_descriptions": {
            "cumulative": ["once dropped a token stays dropped in all later layers"],
            "local": ["each layer chooses from all tokens again, masks do not carry over between stages",
                      "a token dropped at an earlier stage can come back at a later layer"],
        },
    },
    "attention_mask_update": {
        "default": "on",
        "options": {"on": {"mask_update": True}, "off": {"mask_update": False}},
        "remove": "off",
        "aliases": ["attention mask update", "token merge", "do not update attention mask",
                    "attention mask and hidden state cascade updates"],
        "description": "whether dropped tokens are removed from attention (sequence actually shortened) or only zeroed",
        "option_descriptions": {
            "off": ["dropped tokens are zeroed but other tokens can still attend to them", "keep the full sequence length, do not shrink the attention mask"],
        },
    },
    # Default on (SDTPConfig.prior_weight=4, linear; config.py says why); "off" is the removal and the
    # paper's pruner: the MLP alone, no recency-anchored labels either.
    "recency_prior": {
        "default": "on",
        "options": {"on": {"prior_weight": 4.0, "prior_curve": "linear", "target_prior": 1.0}, "off": {"prior_weight": 0.0, "target_prior": 0.0}},
        "remove": "off",
        "aliases": ["recency prior", "recency-anchored scoring", "recency-anchored residual scoring",
                    "residual scoring"],
        "option_aliases": {"on": ["recency-anchored", "residual on recency"], "off": ["mlp alone", "no recency prior"]},
        "description": "on: keep logit = recency prior + a zero-initialised MLP residual (starts as recency), trained on "
                       "recency-anchored labels; off: the MLP alone on saliency labels (the paper)",
    },
    "pipeline_pre_pruning": {
        "default": "on",
        "options": {"on": {"pipeline_prune_before_boundary": True}, "off": {"pipeline_prune_before_boundary": False}},
        "remove": "off",
        "aliases": ["multi-gpu pruning", "cross-gpu pre-pruning", "pre-pruning", "communication",
                    "pruning before the device boundary", "pre-boundary pruning"],
        "description": "in a multi-GPU pipeline, drop tokens before sending hidden states to the next device to cut communication",
        "option_descriptions": {
            "off": ["send the full masked sequence between devices, no pruning before the boundary"],
        },
    },
    "communication_layers": {
        "default": "schedule_10",
        "options": {"schedule_10": {"layers": "schedule"}, "first_2": {"layers": "first2"},
                    "last_2": {"layers": "last2"}},
        "remove": None,
        "aliases": ["communication cost", "communication load", "prune only in first 2 layers or last 2 layers"],
        "option_aliases": {"off": ["zero dropped tokens only", "full length kept"], "first_2": ["first 2 layers"], "last_2": ["last 2 layers"]},
        "description": "where pruning happens relative to the pipeline device boundaries, for the communication measurements",
        "option_descriptions": {
            "first_2": ["prune only in the first two layers (communication study)"],
            "last_2": ["prune only in the last two layers (communication study)"],
        },
    },
    "pipeline_devices": {
        "default": "4",
        "options": {"2": {"pipeline_devices": 2}, "4": {"pipeline_devices": 4}, "8": {"pipeline_devices": 8}},
        "remove": None,
        "aliases": ["number of gpus", "pipeline devices", "multi-gpu"],
        "numeric": "pipeline_devices",
        "numeric_range": (1, 64),
        "description": "number of GPUs / pipeline stages the model is split over for the communication measurement",
    },
}


# The learned pruner's baselines (select.py), as options of one component. Each option also
# sets `pruner` so that run_sdtp trains MLP pruners only for the learned option and computes
# prompt saliency for the oracle. Registered only once SDTPConfig has a `selector` field
# (default "learned"); until then select them with prefill(..., selector=...) or
# benchmarks/sdtp.py --options. Random token choice is the `pruner` component's `random` option, not
# an option here: two options with one behaviour made plan items about "random tokens" ambiguous or
# silently resolved to whichever ranked first.
SELECTOR_COMPONENT = {
    "default": "learned",
    "options": {"learned": {"selector": "learned", "pruner": "mlp"},
                "recency": {"selector": "recency", "pruner": "random"},
                "truncate": {"selector": "truncate", "pruner": "random"},
                "attention": {"selector": "attention", "pruner": "random"},
                "oracle": {"selector": "oracle", "pruner": "saliency"}},
    "remove": "recency",
    "aliases": ["selector", "token selector", "baselines", "pruner baselines", "token choice"],
    "option_aliases": {"recency": ["streamingllm", "sinks + recent", "attention sinks", "first 4 + most recent"],
                       "truncate": ["truncation", "truncate to the last tokens", "cut off the start of the prompt"],
                       "attention": ["snapkv", "h2o", "attention scores", "last-query attention"],
                       "oracle": ["saliency oracle", "per-prompt saliency"]},
    "description": "which tokens the pruning stages keep: the learned MLPs or a baseline at the same keep "
                   "counts (truncate: same prefill FLOPs), same protected tokens",
    "option_descriptions": {
        "learned": ["the learned MLP pruners choose the kept tokens"],
        "recency": ["keep the first few tokens and the most recent ones, drop the oldest middle of the prompt",
                    "keep only the latest tokens at each pruning stage (plus the attention sinks)"],
        "truncate": ["cut the prompt: run the dense model on only its last tokens, as many as give the same "
                     "prefill FLOPs", "shorten the input by dropping its beginning before the first layer"],
        "attention": ["keep the tokens the last queries attend to most (attention scores, SnapKV / H2O style)"],
        "oracle": ["an upper bound: rank tokens by their true per-prompt gradient saliency on the continuation"],
    },
}
if "selector" in {f.name for f in dataclasses.fields(SDTPConfig)}:
    COMPONENTS["selector"] = SELECTOR_COMPONENT
