"""SDTP configuration: one dataclass, validated on construction.

Definitions that the rest of the package relies on:

Stage layers
    A *stage* is a 0-indexed decoder layer whose **input** is pruned: the pruner scores the
    hidden states entering that layer, and that layer and every later one run on the
    survivors. ``layers`` picks them:
      "schedule"  ``num_stages`` stages from 1-indexed layer 4 with a step of 3 on a 32-layer
                  model (0-indexed 3, 6, ..., 30), spread over the same span when the model
                  has another depth (30 layers: 3, 6, 9, 11, 14, 17, 20, 22, 25, 28)
      "single"    only the first schedule layer ("prune only layer 4")
      "fixed3"    3 stages spread over the schedule's span (32 layers: 3, 17, 30)
      "first2" / "last2"  the first / last two schedule layers (communication ablation)
      "3,6,9" or (3, 6, 9)  explicit 0-indexed layers, each in [1, num_layers - 1]

Keep ratio
    ``cum_s`` is the fraction of the prompt that survives stage s (s = 1..S):
      keep_ratio_mode="per_stage": cum_s = keep_ratio ** s        (paper: 0.9 per stage,
                                    so 0.9**10 = 0.349 of the prompt survives stage 10)
      keep_ratio_mode="overall":   cum_s = keep_ratio ** (s / S)   (seed 004: 0.7 of the
                                    prompt survives the last stage, whatever S is)
    The number of tokens alive after stage s, for a prompt of n real tokens of which P are
    protected, is exactly
      count_protected=True:  max(P, ceil(cum_s * n))        (protected tokens use budget)
      count_protected=False: P + ceil(cum_s * (n - P))       (protected tokens are extra)
    with top-k selection. top-p / threshold selection choose their own counts (the ratio
    still drives training). The last prompt token is always protected: it produces the
    first output token.

Protected tokens (``protect=True``): the first ``protect_first`` tokens and the last
``max(protect_last, ceil(protect_last_frac * n))`` tokens of the prompt.

Recency prior (``prior_weight``, default 4.0, ``prior_curve``, default linear; NOT in the paper)
    The paper's pruner is the MLP alone: keep logit = MLP(hidden state). Here the learned
    selector's keep logit is by default ``prior_weight * recency_prior + MLP``, with the MLP's
    last layer zero-initialised, so an untrained pruner ranks exactly like the recency
    baseline (first tokens + the most recent ones) and training learns a correction of it.
    Why it is the default: measured with benchmarks/sdtp_train_check.py on SmolLM2-135M
    (`seed` preset, 1024-token context, 64-token continuation), the learned pruner with the
    prior raised perplexity by +2.7% against +3.3% for recency at the same keep counts (64
    WikiText-2 test windows; +1.98% vs +2.78% on the first 10), while the MLP alone
    (prior_weight=0) lost to recency (10 windows).
    The paper-faithful setting stays reachable by name: the method preset ``paper-faithful``
    (the ``paper`` schedule with prior_weight=0 and target_prior=0; with budgets
    ``paper-faithful-cpu`` etc.), the ablation option ``recency_prior=off`` (its REMOVE),
    or ``prior_weight=0`` explicitly.

    Shape and weight (``prior_curve`` linear, ``prior_weight`` 4; before: log, 1). The log prior
    -log(1 + a) (a = alive tokens after the token) is nearly flat among old tokens: the step
    between two neighbours 500 tokens back is 1/500 of a logit, so any residual reorders the
    old part of the prompt almost freely, and the keep/drop cut (in the middle of the prompt
    at most stages) sits where the prior says least. The linear prior -8 a / n has the same
    step everywhere. Measured on the `paper` preset, pruners trained at 1k/2k/4k (`cpu`
    budget), passkey prompts of 2k and 4k tokens (20 prompts, benchmarks/sdtp.py --options
    learned --parts retrieval --retrieval-kinds passkey --retrieval-lens 2048,4096
    --train-extra-lens 2112,4160 --prior-curve S --prior-weight W) and KL to dense on 16
    WikiText-2 windows (benchmarks/sdtp_train_check.py --windows 16 --prior-curve S
    --prior-weight W), exact match / answer log-likelihood / KL:
        log x1 (before)   0.70 / -5.80 / 0.069
        linear x0.5       0.70 / -3.86 / 0.066
        linear x1         0.80 / -2.23 / 0.064
        linear x2         0.80 / -1.25 / 0.063
        linear x4         0.85 / -1.29 / 0.063
        linear x8         0.80 / -1.41 / 0.060
    (recency 0.60 / -8.74 / 0.080, last-query attention 0.85 / -2.48). The weight was chosen
    on these same prompts and windows, so they are not a held-out check of it: the 64-window
    train check and the 1k passkey prompts are the nearer-to-independent ones. A stronger prior
    needs a larger residual to lift a token, so it needs more optimizer steps: on the tiny
    planted-signal test (tests/test_sdtp_train.py PRIORS) linear x4 keeps 0.27 of the planted
    answers after 80 steps (recency's share) and 0.875 after 300, where log x1 keeps >= 0.9
    after 80. Pruners and configs saved before the field load as log.

    ``target_prior`` (default 1, not in the paper): the ranking labels are rank(saliency)/ctx +
    target_prior x position/ctx, so an old token is a "keep" label only where its saliency rank
    outweighs its age. ``target_top`` (default 0.02): the 2% most salient tokens of a training
    context are "keep" labels whatever their age (a fact the continuation recalls from far back).
    Measured with benchmarks/sdtp_train_check.py (64 WikiText-2 test windows of 1024 + 64 tokens,
    1500 cached steps on 32 mix sequences of one length, prior_weight 1): `paper` preset,
    perplexity rise / KL to dense: labels from saliency alone (target_prior 0) +10.6% / 0.093,
    target_prior 1 +8.7% / 0.064, target_prior 2 +7.8% / 0.059, recency +7.9% / 0.061.
    Why 1 and 0.02 and not 2 (the default before): with training at 1k, 2k and 4k (the `cpu`
    budget's train_extra_lens), on passkey prompts of 2k and 4k tokens (benchmarks/sdtp.py
    --parts retrieval, 20 prompts, `paper` preset) exact match was 0.35 with target_prior 2,
    0.50 with 2 and target_top 0.02, 0.70 with 1 and 0.02, 0.80 with 0.5 and 0.02 (recency 0.60,
    last-query attention 0.85), while on 16 WikiText-2 windows the KL to dense went 0.060, 0.061,
    0.069, 0.079 (recency 0.080): 1 and 0.02 is the setting that beats recency on both. The
    labels' position term is what buries an old needle: the MLP learns it as a steep extra
    recency slope, and at 2 no content signal could climb over it.

Budget fields (train_*, eval_*, gen_*, latency_*) size a run; presets.py has tiny/cpu.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import ClassVar

from prunelab.errors import PrunelabError, unknown

PRUNERS = ("mlp", "saliency", "random")
# which tokens a stage keeps: the learned pruner or a baseline at the same keep counts (select.py)
SELECTORS = ("learned", "random", "recency", "attention", "oracle", "truncate")
LAYER_SCHEDULES = ("schedule", "single", "fixed3", "first2", "last2")
KEEP_MODES = ("per_stage", "overall")
SELECTIONS = ("topk", "topp", "threshold")
MASKS = ("hard", "soft")
PROPAGATIONS = ("cumulative", "local")
DTYPES = ("float32", "bfloat16", "float64")
TARGETS = ("topk", "max")
SALIENCIES = ("attn", "grad", "grad_attn")
TRAIN_SELECTS = ("topk", "gumbel")
TRAIN_MODES = ("policy", "cached")
TRAIN_DATA = ("mix", "wikitext")
PRIOR_CURVES = ("log", "linear")   # modules.recency_prior

# Fields that change the trained pruner weights; everything else is inference/eval only,
# so e.g. the RoPE or selection ablations reuse the baseline's trained pruners.
TRAINING_FIELDS = (
    "pruner", "layers", "num_stages", "keep_ratio", "keep_ratio_mode", "count_protected",
    "protect", "protect_first", "protect_last", "protect_last_frac",
    "lm_weight", "mse_weight", "rank_weight", "ratio_weight", "distill_weight", "rank_pairs",
    "mask", "propagation", "gumbel_tau", "pruner_hidden_frac",
    "train_steps", "train_batch_size", "train_seq_len", "train_cont_len", "lr", "dtype",
    "target", "saliency", "pos_features", "prior_weight", "prior_curve", "target_prior", "target_top", "train_select", "train_mode", "train_data", "train_sequences",
    "train_extra_lens",
)


def _choice(kind: str, value, choices) -> None:
    if value not in choices:
        raise unknown(kind, value, choices)


def _fraction(name: str, value, lo_open: bool = True) -> None:
    ok = (0.0 < value <= 1.0) if lo_open else (0.0 <= value <= 1.0)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not ok:
        rng = "(0, 1]" if lo_open else "[0, 1]"
        raise PrunelabError(f"SDTP {name} must be in {rng}, got {value!r}")


def _positive_int(name: str, value, allow_zero: bool = False) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if allow_zero else 1):
        raise PrunelabError(f"SDTP {name} must be an integer >= {0 if allow_zero else 1}, got {value!r}")


def _int_tuple(name: str, value) -> tuple[int, ...]:
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",") if p]
    else:
        parts = list(value)
    try:
        return tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise PrunelabError(f"SDTP {name} must be integers like '512,1024', got {value!r}") from None


@dataclass
class SDTPConfig:
    # -- method ---------------------------------------------------------------------------
    pruner: str = "mlp"                 # mlp (learned) | saliency (gradient x input, no MLP) | random
    selector: str = "learned"           # learned (the pruner above) | a baseline: recency, truncate, attention,
                                        # random, oracle (per-prompt saliency); same protected tokens and counts
    layers: str | tuple = "schedule"    # see module docstring
    num_stages: int = 10                # stages of the "schedule" (before scaling to depth)
    keep_ratio: float = 0.7
    keep_ratio_mode: str = "overall"    # overall | per_stage (see module docstring)
    count_protected: bool = True        # protected tokens count toward the keep budget
    protect: bool = True                # head/tail preservation on/off
    protect_first: int = 4
    protect_last: int = 16
    protect_last_frac: float = 0.0
    rope_fix: bool = True               # False: survivors re-indexed 0..n-1 at each layer
    lm_weight: float = 1.0
    mse_weight: float = 1.0
    rank_weight: float = 1.0
    ratio_weight: float = 2.0           # DynamicViT's keep-ratio constraint
    distill_weight: float = 0.0         # KL(dense || pruned) on the continuation
    rank_pairs: int = 512               # sampled pairs per sequence and stage
    selection: str = "topk"             # topk | topp | threshold (inference)
    top_p: float = 0.9                  # topp: keep the fewest tokens holding this share of keep-probability mass
    threshold: float = 0.5              # threshold: keep tokens whose keep probability >= this
    mask: str = "hard"                  # hard (straight-through Gumbel) | soft (relaxed policy)
    propagation: str = "cumulative"     # cumulative | local (each stage chooses from all tokens)
    mask_update: bool = True            # False: dropped tokens are zeroed but stay attendable
    gumbel_tau: float = 1.0
    pruner_hidden_frac: float = 0.25    # MLP width as a fraction of the model width
    # -- training (issue 11) ----------------------------------------------------------------
    target: str = "topk"                # topk: BCE of the keep logit vs "in the top-k by saliency" at the stage's
                                        #   keep count (targets consistent with the ratio); max: MSE of the keep
                                        #   probability vs max-normalised saliency (paper Eq. 4). mse_weight weighs it.
    saliency: str = "attn"              # attn: attention x value-norm the continuation puts on each token;
                                        #   grad: gradient x input of the continuation loss (paper Eq. 3); grad_attn
    pos_features: bool = True           # pruners also read the token's distance from the prompt end
    prior_weight: float = 4.0           # > 0 (default 4, not in the paper; see module docstring): keep logit =
                                        #   prior_weight * recency prior (of prior_curve)
                                        #   + the MLP, whose last layer starts at zero, so an untrained pruner
                                        #   ranks exactly like recency; 0: the MLP alone (the paper)
    prior_curve: str = "linear"         # linear: -8 a / alive count | log: -log(1 + a), a = alive tokens after the
                                        #   token (modules.recency_prior); the shape of the prior's steps among old tokens
    target_prior: float = 1.0           # > 0 (default 1; module docstring): the target/rank losses use rank(saliency)/ctx + target_prior *
                                        #   position/ctx instead of the saliency (recency-anchored labels: an old
                                        #   token is a "keep" label only if its saliency rank beats its age)
    target_top: float = 0.02            # with target_prior > 0, the labels rank this fraction of the most salient
                                        #   context tokens above all others whatever their age (train.anchored_targets;
                                        #   module docstring); no effect when target_prior is 0
    train_select: str = "topk"          # topk: training decisions = top-k at the inference counts of
                                        #   Gumbel-perturbed scores; gumbel: per-token Gumbel-softmax (paper).
                                        #   Both straight-through with soft cumulative masks.
    train_mode: str = "policy"          # policy: masked forward of the backbone every step (LM/distill usable);
                                        #   cached: fit the pruners on cached dense stage inputs (fast; no LM term)
    train_data: str = "mix"             # mix: WikiText-2 valid + L-Eval documents + key-value prompts | wikitext
    train_sequences: int = 0            # distinct training sequences (0: train_steps x train_batch_size)
    train_extra_lens: str | tuple = ()  # more training lengths (context + continuation) beside train_seq_len,
                                        #   each with as many sequences; steps take the lengths in turn. A pruner
                                        #   trained at 1k only did not carry to 4k prompts (issue 11)
    pipeline_devices: int = 4           # simulated pipeline split for communication bytes
    pipeline_prune_before_boundary: bool = True
    # -- budget ---------------------------------------------------------------------------
    train_steps: int = 150
    train_batch_size: int = 1
    train_seq_len: int = 256            # context + continuation
    train_cont_len: int = 32            # unpruned continuation whose LM loss trains the pruners
    lr: float = 1e-3
    eval_samples: int = 16
    eval_ctx_len: int = 1024
    eval_cont_len: int = 64
    gen_samples: int = 4
    gen_ctx_len: int = 512
    gen_tokens: int = 32
    latency_lens: str | tuple = (512, 1024, 2048)
    latency_repeats: int = 3
    dtype: str = "float32"

    PRESETS: ClassVar[dict] = {}        # filled by presets.py (registry reads config_cls.PRESETS)
    # the paper's pruner training (reference/SDTP.md section 5), for reports that set a budget beside it
    PAPER_BUDGET: ClassVar[str] = "2 epochs over databricks-dolly-15k with the backbone frozen"

    def __post_init__(self):
        _choice("SDTP pruner", self.pruner, PRUNERS)
        _choice("SDTP selector", self.selector, SELECTORS)
        if isinstance(self.layers, str) and self.layers in LAYER_SCHEDULES:
            pass
        elif isinstance(self.layers, (str, list, tuple)):
            if isinstance(self.layers, str) and not any(c.isdigit() for c in self.layers):
                raise unknown("SDTP layers", self.layers, list(LAYER_SCHEDULES) + ["'3,6,9' (explicit)"])
            self.layers = tuple(sorted(set(_int_tuple("layers", self.layers))))
            if not self.layers or min(self.layers) < 1:
                raise PrunelabError(f"SDTP layers must be 0-indexed layers >= 1, got {self.layers!r}")
        else:
            raise unknown("SDTP layers", self.layers, LAYER_SCHEDULES)
        _positive_int("num_stages", self.num_stages)
        _fraction("keep_ratio", self.keep_ratio)
        _choice("SDTP keep_ratio_mode", self.keep_ratio_mode, KEEP_MODES)
        for name in ("count_protected", "protect", "rope_fix", "mask_update", "pipeline_prune_before_boundary"):
            if not isinstance(getattr(self, name), bool):
                raise PrunelabError(f"SDTP {name} must be true/false, got {getattr(self, name)!r}")
        _positive_int("protect_first", self.protect_first, allow_zero=True)
        _positive_int("protect_last", self.protect_last, allow_zero=True)
        _fraction("protect_last_frac", self.protect_last_frac, lo_open=False)
        for name in ("lm_weight", "mse_weight", "rank_weight", "ratio_weight", "distill_weight"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise PrunelabError(f"SDTP {name} must be a number >= 0, got {v!r}")
        _positive_int("rank_pairs", self.rank_pairs)
        _choice("SDTP selection", self.selection, SELECTIONS)
        _fraction("top_p", self.top_p)
        _fraction("threshold", self.threshold, lo_open=False)
        _choice("SDTP mask", self.mask, MASKS)
        _choice("SDTP propagation", self.propagation, PROPAGATIONS)
        if not self.gumbel_tau > 0:
            raise PrunelabError(f"SDTP gumbel_tau must be > 0, got {self.gumbel_tau!r}")
        _fraction("pruner_hidden_frac", self.pruner_hidden_frac)
        _positive_int("pipeline_devices", self.pipeline_devices)
        for name in ("train_steps", "train_batch_size", "train_seq_len", "train_cont_len",
                     "eval_samples", "eval_ctx_len", "eval_cont_len", "gen_samples",
                     "gen_ctx_len", "gen_tokens", "latency_repeats"):
            _positive_int(name, getattr(self, name))
        if self.train_cont_len >= self.train_seq_len:
            raise PrunelabError(f"SDTP train_cont_len ({self.train_cont_len}) must be < train_seq_len ({self.train_seq_len})")
        if not self.lr > 0:
            raise PrunelabError(f"SDTP lr must be > 0, got {self.lr!r}")
        self.latency_lens = _int_tuple("latency_lens", self.latency_lens)
        if any(n < 2 for n in self.latency_lens):
            raise PrunelabError(f"SDTP latency_lens must be >= 2, got {self.latency_lens!r}")
        _choice("SDTP dtype", self.dtype, DTYPES)
        _choice("SDTP target", self.target, TARGETS)
        _choice("SDTP saliency", self.saliency, SALIENCIES)
        _choice("SDTP train_select", self.train_select, TRAIN_SELECTS)
        _choice("SDTP train_mode", self.train_mode, TRAIN_MODES)
        _choice("SDTP train_data", self.train_data, TRAIN_DATA)
        _choice("SDTP prior_curve", self.prior_curve, PRIOR_CURVES)
        if not isinstance(self.pos_features, bool):
            raise PrunelabError(f"SDTP pos_features must be true/false, got {self.pos_features!r}")
        _positive_int("train_sequences", self.train_sequences, allow_zero=True)
        _fraction("target_top", self.target_top, lo_open=False)
        self.train_extra_lens = _int_tuple("train_extra_lens", self.train_extra_lens)
        if any(n <= self.train_cont_len for n in self.train_extra_lens):
            raise PrunelabError(f"SDTP train_extra_lens must each be > train_cont_len ({self.train_cont_len}), "
                                f"got {self.train_extra_lens!r}")
        for name in ("prior_weight", "target_prior"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise PrunelabError(f"SDTP {name} must be a number >= 0, got {v!r}")

    # -- derived ----------------------------------------------------------------------------
    def stage_layers(self, num_layers: int) -> list[int]:
        """0-indexed layers whose input is pruned, for a model with `num_layers` layers."""
        if isinstance(self.layers, tuple):
            bad = [l for l in self.layers if l >= num_layers]
            if bad:
                raise PrunelabError(f"SDTP layers {bad} out of range for a {num_layers}-layer model (valid 1..{num_layers - 1})")
            return list(self.layers)
        if num_layers < 2:
            raise PrunelabError("SDTP needs a model with at least 2 layers")
        if self.layers == "single":
            return _spread(num_layers, 1)
        if self.layers == "fixed3":
            return _spread(num_layers, 3)
        full = _spread(num_layers, self.num_stages)
        if self.layers == "first2":
            return full[:2]
        if self.layers == "last2":
            return full[-2:]
        return full

    def cumulative_keep(self, num_stages: int) -> list[float]:
        """cum_s for s = 1..S: the fraction of the prompt alive after stage s."""
        if self.keep_ratio_mode == "per_stage":
            return [self.keep_ratio ** s for s in range(1, num_stages + 1)]
        return [self.keep_ratio ** (s / num_stages) for s in range(1, num_stages + 1)]

    def training_key(self) -> dict:
        d = {k: getattr(self, k) for k in TRAINING_FIELDS}
        d["layers"] = list(d["layers"]) if isinstance(d["layers"], tuple) else d["layers"]
        if not d["target_top"]:
            del d["target_top"]         # off: the key of before the field existed
        curve = d.pop("prior_curve")
        if curve != "log" and d["prior_weight"]:
            # log was the only curve before the field existed, and with no prior there is none.
            # "prior_shape" is the field's name until 2026-12: the key (and cached pruners) of before
            d["prior_shape"] = curve
        if d["train_extra_lens"]:
            d["train_extra_lens"] = list(d["train_extra_lens"])
        else:
            del d["train_extra_lens"]   # one training length: the key (and cached pruners) of before
        return d

    def budget_text(self) -> str:
        """The pruner-training budget in words (threats-to-validity paragraphs)."""
        n = self.train_sequences or self.train_steps * self.train_batch_size
        lens = " / ".join(f"{x:,}" for x in self.train_lengths())
        how = ("pruners fitted to the saliency of cached dense stage inputs, no LM term" if self.train_mode == "cached"
               else "masked forward passes of the frozen backbone")
        return (f"{self.train_steps} pruner-training steps of batch {self.train_batch_size} over {n} sequences of "
                f"{lens} tokens ({how})")

    def train_lengths(self) -> tuple[int, ...]:
        """Training sequence lengths (context + continuation): train_seq_len, then train_extra_lens."""
        return (self.train_seq_len,) + tuple(n for n in self.train_extra_lens if n != self.train_seq_len)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    def hash(self, extra: dict | None = None) -> str:
        """Hash of the training-relevant fields (plus `extra`, e.g. model name and seed)."""
        blob = json.dumps({"cfg": self.training_key(), "extra": extra or {}}, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _spread(num_layers: int, stages: int) -> list[int]:
    """`stages` layers from the paper's start (1-indexed 4 of 32) to the second-to-last layer.

    For 32 layers and 10 stages this is exactly 3, 6, ..., 30 (start 4, step 3). Other
    depths keep the same relative span; duplicates (tiny models) are merged.
    """
    start = max(1, int(3 * num_layers / 32 + 0.5))
    last = max(start, num_layers - 2)
    if stages == 1:
        return [start]
    pos = {int(start + i * (last - start) / (stages - 1) + 0.5) for i in range(stages)}
    return sorted(p for p in pos if 1 <= p < num_layers)


def ceil_count(x: float) -> int:
    """ceil() that ignores float noise (0.7 * 10 = 7.000000000000001 must give 7)."""
    return int(math.ceil(x - 1e-9))
