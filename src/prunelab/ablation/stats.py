"""Seed statistics and verdicts: paired comparison of a variant cell with the baseline.

Pairs are formed by seed (same seed, same data order); seeds missing on either side are
dropped. The test is scipy's paired t-test (significant at p < 0.05, needs >= 2 pairs).
A seeded bootstrap 95% CI of the mean paired difference is reported next to it; with the
3-5 seeds an ablation usually has, the bootstrap alone is too lenient (with 3 pairs it
excludes 0 whenever all differences share a sign), so it does not decide significance.
Fewer than 2 pairs: inconclusive.

Expectations come from the plan's Expected Effect ('Performance ↓, Speed ≈'), else from
its Hypothesis ('Ranking loss is important' -> performance drops without it), else, for
REMOVE/REPLACE, from the implied claim that the full method is better (marked implied).
'No change' is an equivalence claim, tested as two one-sided t-tests (TOST): it is confirmed
when the 90% paired t interval of the difference lies within +-2% of the baseline mean, refuted
when the difference is significant and larger than that band, and inconclusive otherwise (a
small, non-significant difference from a few noisy seeds is absence of evidence, not evidence
of no change).
"""
from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass

ALPHA = 0.05
EQUIV_REL = 0.02
BOOTSTRAP = 4000
POWER = 0.8                 # for the minimum detectable effect
MIN_BOOTSTRAP_SEEDS = 3     # fewer pairs: no bootstrap interval (two numbers only give their range)

# metric key -> (dimension, sign of the raw value relative to the dimension's "up")
_METRIC_DIMS = {
    "score": ("performance", 1), "accuracy": ("performance", 1), "rel_acc": ("performance", 1),
    "perplexity": ("performance", -1),
    "speedup": ("speed", 1), "prefill_speedup": ("speed", 1), "e2e_speedup": ("speed", 1),
    "throughput_bs32": ("speed", 1), "throughput_bs128": ("speed", 1),
    "prefill_latency_s": ("speed", -1), "e2e_latency_s": ("speed", -1), "step_seconds": ("speed", -1),
    "train_seconds": ("time", 1), "tta_s": ("time", 1),
    "train_peak_mem_mb": ("memory", 1), "inf_peak_mem_mb": ("memory", 1),
    "params": ("params", 1), "params_nonemb": ("params", 1),
    "flops_per_sample": ("flops", 1), "prefill_gflops": ("flops", 1), "comm_bytes": ("comm", 1),
}
_DIM_WORDS = [
    ("performance", r"perform|accura|\bacc\b|score|quality|ppl|perplex|f1|rouge|stabil|semantic"),
    ("speed", r"speed|throughput|faster|slower|latency|efficien"),
    ("memory", r"memory|\bmem\b|footprint"),
    ("time", r"training time|train time|time|converg"),
    ("flops", r"flop|compute"),
    ("params", r"param|size"),
    ("comm", r"communicat|bytes|transfer"),
]
_UP = r"↑|increas|improv|higher|better|faster|gain|rise|\bup\b|boost|more effective|outperform"
_DOWN = r"↓|decreas|degrad|drop|lower|worse|hurt|reduc|declin|slower|\bdown\b|weaker|fail|harm|loss of"
_SAME = r"≈|~|no change|similar|same|unchanged|comparable|small change|negligible|minor|no significant|stable"
_CRASH = r"crash|collapse|diverg|instab|break|broken|nan\b|unusable"
_IMPORTANT = r"important|critical|essential|must|necessary|needed|crucial|key\b|ensures|effective|required|matters"


@dataclass
class Expectation:
    dimension: str          # performance | speed | memory | time | flops | params | comm
    direction: int          # +1 up, -1 down, 0 no change (in the dimension's own terms)
    strength: int = 1       # ↓↓ -> 2
    crash: bool = False
    implied: bool = False
    text: str = ""

    def __post_init__(self):
        if self.direction not in (-1, 0, 1):
            raise ValueError(f"direction {self.direction}")


def parse_expectations(expected: str | None, hypothesis: str | None = None,
                       implied_action: str | None = None) -> list[Expectation]:
    out: list[Expectation] = []
    for part in re.split(r"[,;，；]|\band\b", expected or ""):
        e = _parse_part(part)
        if e is not None:
            out.append(e)
    if not out and hypothesis:
        h = hypothesis.lower()
        for part in re.split(r"[,;，；]", h):
            e = _parse_part(part, default_dim=None)
            if e is not None:
                out.append(e)
        if not out and re.search(_IMPORTANT, h):
            out.append(Expectation("performance", -1, text=hypothesis))
    if not out and implied_action in ("REMOVE", "REPLACE"):
        out.append(Expectation("performance", -1, implied=True, text="the full method performs better"))
    return out


def _parse_part(part: str, default_dim: str | None = "performance") -> Expectation | None:
    text = part.strip()
    low = text.lower()
    if not low:
        return None
    if re.search(_CRASH, low):
        return Expectation("performance", -1, 2, crash=True, text=text)
    dim = next((d for d, pat in _DIM_WORDS if re.search(pat, low)), default_dim)
    if dim is None:
        return None
    ups, downs = len(re.findall("↑", low)), len(re.findall("↓", low))
    if ups or downs:
        direction = 1 if ups > downs else -1
        strength = max(ups, downs)
    elif re.search(_SAME, low):
        direction, strength = 0, 1
    elif re.search(_DOWN, low):
        direction, strength = -1, 2 if re.search(r"significant|sharp|large|severe|much", low) else 1
    elif re.search(_UP, low):
        direction, strength = 1, 1
    else:
        return None
    if re.search(_SAME, low) and not (ups or downs) and direction != 0:
        direction = 0
    return Expectation(dim, direction, strength, text=text)


def expected_sign(exps: list[Expectation], metric_key: str, higher_is_better: bool = True) -> Expectation | None:
    """The expectation that speaks about this metric, with its direction in raw metric terms."""
    dim, sign = _METRIC_DIMS.get(metric_key, (None, 1))
    if metric_key == "score" and not higher_is_better:
        sign = -1
    for e in exps:
        if e.dimension == dim:
            return Expectation(e.dimension, e.direction * sign, e.strength, e.crash, e.implied, e.text)
    return None


# ----------------------------------------------------------------------------- comparison

@dataclass
class Comparison:
    n: int                       # paired seeds
    mean_diff: float | None
    rel_diff: float | None
    p_value: float | None
    ci: tuple | None             # 95% CI of the mean paired difference
    test: str                    # t-test | none
    significant: bool
    mde: float | None = None     # minimum detectable |difference| (paired t, alpha 0.05, power 0.8)
    null: str = ""               # for a non-significant result: 'underpowered' or 'no_effect'
    tost: tuple | None = None    # 90% paired t interval: equivalence (TOST at alpha 0.05) when inside the band
    sd: float | None = None      # std of the paired differences (seeds needed for an effect: seeds_needed)


def paired(baseline: dict[int, float], variant: dict[int, float], seed: int = 0) -> Comparison:
    seeds = sorted(set(baseline) & set(variant))
    diffs = [variant[s] - baseline[s] for s in seeds]
    n = len(diffs)
    if n == 0:
        return Comparison(0, None, None, None, None, "none", False)
    mean = statistics.fmean(diffs)
    base_mean = statistics.fmean(baseline[s] for s in seeds)
    rel = mean / abs(base_mean) if base_mean else None
    if n < 2:
        return Comparison(n, mean, rel, None, None, "none", False)
    p = _ttest(diffs)
    mde = min_detectable_effect(diffs)
    null = ""
    if not (p is not None and p < ALPHA) and mde is not None:
        # a null result says something only when a small effect would have been seen
        null = "underpowered" if not base_mean or mde > EQUIV_REL * abs(base_mean) else "no_effect"
    # below 3 seeds a bootstrap 'interval' is only the range of the pairs: none is reported
    ci = bootstrap_ci(diffs, seed=seed) if n >= MIN_BOOTSTRAP_SEEDS else None
    sd = statistics.stdev(diffs)
    return Comparison(n, mean, rel, p, ci, "t-test", p is not None and p < ALPHA, mde, null,
                      t_interval(mean, sd, n, 1 - 2 * ALPHA), sd)


def t_interval(mean: float, sd: float, n: int, level: float) -> tuple[float, float]:
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def seeds_needed(cmp: Comparison, effect: float | None = None, cap: int = 100) -> int | None:
    """Paired seeds a two-sided t-test at ALPHA needs to detect `effect` (default: the observed
    mean difference) with POWER, at the observed spread; None when there is nothing to go on."""
    effect = abs(effect if effect is not None else (cmp.mean_diff or 0.0))
    if not effect or cmp.sd is None:
        return None
    if cmp.sd == 0:
        return 2
    from scipy import stats

    for n in range(2, cap + 1):
        if (stats.t.ppf(1 - ALPHA / 2, n - 1) + stats.t.ppf(POWER, n - 1)) * cmp.sd / math.sqrt(n) <= effect:
            return n
    return None


def min_detectable_effect(diffs: list[float], power: float = POWER) -> float | None:
    """Smallest |mean paired difference| a two-sided paired t-test at ALPHA detects with the given
    power for these seeds: (t_{1-a/2} + t_{power}) * sd(diffs) / sqrt(n), df = n - 1."""
    n = len(diffs)
    if n < 2:
        return None
    from scipy import stats

    sd = statistics.stdev(diffs)
    df = n - 1
    return float((stats.t.ppf(1 - ALPHA / 2, df) + stats.t.ppf(power, df)) * sd / math.sqrt(n))


def null_text(cmp: Comparison, fmt=lambda x: f"{x:.3g}") -> str:
    """'underpowered (MDE 0.031)' / 'no effect larger than 0.004' for a non-significant result, else ''."""
    if not cmp.null or cmp.mde is None:
        return ""
    if cmp.null == "underpowered":
        return f"underpowered (MDE {fmt(cmp.mde)})"
    return f"no effect larger than {fmt(cmp.mde)}"


def _ttest(diffs: list[float]) -> float | None:
    if all(d == diffs[0] for d in diffs):
        return 1.0 if diffs[0] == 0 else 0.0
    from scipy import stats

    p = float(stats.ttest_1samp(diffs, 0.0).pvalue)   # == ttest_rel(variant, baseline)
    return None if math.isnan(p) else p


def bootstrap_ci(values: list[float], level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    import numpy as np

    rng = np.random.default_rng(seed)
    arr = np.asarray(values, dtype=float)
    means = rng.choice(arr, size=(BOOTSTRAP, len(arr)), replace=True).mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


COLLAPSE_REL = 0.5    # a metric this much worse than the baseline counts as a collapse


def verdict(exp: Expectation | None, cmp: Comparison, baseline_mean: float | None, variant_failed: bool = False) -> str:
    """confirmed | refuted | inconclusive | '' (no expectation)."""
    if exp is None:
        return ""
    if variant_failed:
        return "confirmed" if exp.crash else "inconclusive"
    if cmp.n < 2 or cmp.mean_diff is None:
        return "inconclusive"
    if exp.crash:
        # "the model crashes / collapses": a categorical claim. Runs that finish with the metric
        # within COLLAPSE_REL of the baseline (in the bad direction) refute it; a significant
        # change beyond that is a collapse even without an exception.
        worse = cmp.mean_diff * (1 if exp.direction > 0 else -1)
        scale = abs(baseline_mean) if baseline_mean else 0.0
        if scale and worse > COLLAPSE_REL * scale:
            return "confirmed" if cmp.significant else "inconclusive"
        return "refuted"
    margin = EQUIV_REL * abs(baseline_mean) if baseline_mean else 0.0
    if exp.direction == 0:
        if cmp.tost is not None and -margin <= cmp.tost[0] and cmp.tost[1] <= margin:
            return "confirmed"
        if cmp.significant and abs(cmp.mean_diff) > margin:
            return "refuted"
        return "inconclusive"
    if not cmp.significant:
        return "inconclusive"
    return "confirmed" if (cmp.mean_diff > 0) == (exp.direction > 0) else "refuted"


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    if len(values) == 1:
        return values[0], None
    return statistics.fmean(values), statistics.stdev(values)
