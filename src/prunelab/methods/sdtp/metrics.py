"""SDTP measurements: analytic prefill FLOPs, pipeline communication bytes, interleaved timing.

FLOPs are counted from the tokens each layer actually computes (2 x multiply-adds):
projections and SwiGLU MLP per token, causal attention scores and values per
(query, key) pair, each stage's pruner MLP on the tokens it scores, and the LM head on
the last token only (dense and pruned alike). Masked modes compute every token, so they
save nothing.
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Callable


def _dims(mc) -> dict:
    hd = getattr(mc, "head_dim", None) or mc.hidden_size // mc.num_attention_heads
    return dict(d=mc.hidden_size, H=mc.num_attention_heads, KV=mc.num_key_value_heads, hd=hd,
                ffn=mc.intermediate_size, V=mc.vocab_size, L=mc.num_hidden_layers)


def layer_flops(mc, n: int) -> float:
    """FLOPs of one decoder layer on a causal prefill of n tokens."""
    m = _dims(mc)
    linear = 2 * n * (m["d"] * m["H"] * m["hd"] * 2 + 2 * m["d"] * m["KV"] * m["hd"] + 3 * m["d"] * m["ffn"])
    attn = 4 * m["H"] * m["hd"] * n * (n + 1) / 2
    return linear + attn


def prefill_flops(mc, layer_tokens: list[int], stage_layers: list[int] | None = None,
                  pruner_flops_per_token: int = 0) -> float:
    total = sum(layer_flops(mc, n) for n in layer_tokens)
    for l in stage_layers or []:
        total += pruner_flops_per_token * (layer_tokens[l - 1] if l > 0 else layer_tokens[0])
    m = _dims(mc)
    return total + 2 * m["d"] * m["V"]


def compression(n_prompt: int, layer_tokens: list[int]) -> float:
    """1/tau = N / mean over layers of the tokens each layer processes (SDTP's definition)."""
    return n_prompt / (sum(layer_tokens) / len(layer_tokens))


def kv_cache_bytes(mc, layer_tokens: list[int], dtype_bytes: int) -> int:
    m = _dims(mc)
    return int(sum(layer_tokens) * 2 * m["KV"] * m["hd"] * dtype_bytes)


def pipeline_comm(mc, layer_tokens: list[int], n_prompt: int, devices: int, dtype_bytes: int,
                  prune_before_boundary: bool = True) -> dict:
    """Bytes of hidden states crossing each boundary of a contiguous N-device layer split.

    Boundary b sits before layer b*ceil(L/D). With pre-pruning the sender drops the tokens
    pruned at (or before) that layer, so only survivors cross; without it the full-length
    (masked) sequence crosses. Also the FLOPs of each device's layers (the slowest device
    bounds a pipeline's speed).
    """
    m = _dims(mc)
    L = len(layer_tokens)
    per = math.ceil(L / devices)
    bounds = [b * per for b in range(1, devices) if b * per < L]
    pruned = [layer_tokens[b] * m["d"] * dtype_bytes for b in bounds]
    unpruned = [n_prompt * m["d"] * dtype_bytes for _ in bounds]
    dev_flops = [sum(layer_flops(mc, n) for n in layer_tokens[i:i + per]) for i in range(0, L, per)]
    dense_dev = [sum(layer_flops(mc, n_prompt) for _ in layer_tokens[i:i + per]) for i in range(0, L, per)]
    chosen = pruned if prune_before_boundary else unpruned
    return {
        "comm_boundaries": bounds,
        "comm_bytes_per_boundary": chosen,
        "comm_bytes": int(sum(chosen)),
        "comm_bytes_pruned": int(sum(pruned)),
        "comm_bytes_unpruned": int(sum(unpruned)),
        "comm_reduction": (sum(unpruned) / sum(chosen)) if chosen and sum(chosen) else 1.0,
        "pipeline_device_flops": dev_flops,
        "pipeline_bottleneck_speedup": max(dense_dev) / max(dev_flops) if dev_flops else 1.0,
    }


def interleaved_times(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time each function `repeats` times, alternating between them every repeat, so that
    load from other processes hits all of them alike; ratios of these are robust."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return times


def paired_ratio(num: list[float], den: list[float]) -> float:
    """Median of per-repeat ratios num/den (e.g. dense time / pruned time = speedup)."""
    return statistics.median(a / b for a, b in zip(num, den))


def selector_flops_per_token(mc, selector: str, pruner_kind: str, n_scored: int, pruner_flops_per_token: int,
                             window: int = 32) -> float:
    """Scoring FLOPs of one stage that scores `n_scored` tokens, divided by n_scored.

    learned MLP: the pruner; attention: k projection of every token, q projection of the
    `window` last queries and their scores against every key; recency/random/truncate: 0;
    oracle (gradient saliency) needs a full forward+backward and is not a speed option (0 here).
    """
    if selector == "learned" and pruner_kind == "mlp":
        return float(pruner_flops_per_token)
    if selector == "attention":
        m = _dims(mc)
        k_proj = 2 * m["d"] * m["KV"] * m["hd"] * n_scored
        q_proj = 2 * m["d"] * m["H"] * m["hd"] * min(window, n_scored)
        scores = 2 * m["H"] * m["hd"] * min(window, n_scored) * n_scored
        return (k_proj + q_proj + scores) / max(1, n_scored)
    return 0.0


def selector_prefill_flops(mc, layer_tokens: list[int], stage_layers: list[int], selector: str, pruner_kind: str,
                           pruner_flops_per_token: int) -> float:
    """prefill_flops with each stage's scoring cost for `selector` (see selector_flops_per_token)."""
    total = sum(layer_flops(mc, n) for n in layer_tokens) + 2 * _dims(mc)["d"] * _dims(mc)["V"]
    for l in stage_layers:
        n = layer_tokens[l - 1] if l > 0 else layer_tokens[0]
        if l == 0 and selector == "truncate":
            continue
        total += n * selector_flops_per_token(mc, selector, pruner_kind, n, pruner_flops_per_token)
    return total


def mean_ci(xs, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean (half-width 0 for one sample)."""
    xs = [float(x) for x in xs]
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, m, m
    sd = statistics.stdev(xs)
    from scipy import stats as _st   # noqa: PLC0415
    half = float(_st.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return m, m - half, m + half


def bootstrap_ci(stat: Callable[[list[int]], float], n: int, reps: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """(stat on all items, low, high): percentile bootstrap over items (resampled indices)."""
    import random

    rng = random.Random(seed)
    full = stat(list(range(n)))
    if n < 2:
        return full, full, full
    vals = sorted(stat([rng.randrange(n) for _ in range(n)]) for _ in range(reps))
    lo = vals[int((1 - level) / 2 * reps)]
    hi = vals[min(reps - 1, int((1 + level) / 2 * reps))]
    return full, lo, hi
