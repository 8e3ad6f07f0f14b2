"""Keyword names that changed between transformers 5.x releases.

Within 5.x the KV cache argument of attention modules and decoder layers was renamed from
`past_key_values` to `cache`. A layer still accepts the old name (with a FutureWarning), but an
attention module we override receives whichever name the calling layer uses: an override that
reads only the old one sees None and silently computes as if there were no cache.
"""
from __future__ import annotations

import inspect
from functools import lru_cache


@lru_cache(maxsize=None)
def cache_kw(fn) -> str:
    """The keyword under which `fn` (a forward method) takes the KV cache in this transformers."""
    return "cache" if "cache" in inspect.signature(fn).parameters else "past_key_values"


def pick_cache(cache, past_key_values):
    """The cache an override was given, under either name."""
    return cache if cache is not None else past_key_values


def record_headless(cache, hidden_states, layer_idx: int) -> None:
    """Cache entry of an attention layer with every head pruned: one zero per token (shape
    (B, 1, T, 1)). It is never read, but the cache's length is read off layer 0, and an empty
    (zero-element) entry counts as length 0, which would restart positions at 0 while decoding."""
    z = hidden_states.new_zeros(hidden_states.shape[0], 1, hidden_states.shape[1], 1)
    cache.update(z, z, layer_idx)


def output_cache(out):
    """The KV cache a model output returned: `out.cache` in this transformers, `out.past_key_values`
    in earlier 5.x releases (and, with a warning, until 5.40)."""
    return out["cache"] if "cache" in out else out["past_key_values"]
