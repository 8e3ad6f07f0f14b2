"""Token streams for SDTP: WikiText-2 (train pruners on valid, evaluate on test) or synthetic."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from prunelab.errors import PrunelabError

_MEMO: dict[tuple, torch.Tensor] = {}


def encode(tokenizer, text: str, vocab_size: int) -> list[int]:
    if tokenizer is None:   # tiny random models: characters modulo the vocabulary
        return [ord(c) % vocab_size for c in text]
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def token_stream(tokenizer, split: str, data_dir: str | None, vocab_size: int) -> torch.Tensor:
    """1-D LongTensor of the whole split. data_dir None -> $PRUNELAB_DATA; 'synthetic' -> random text."""
    if data_dir == "synthetic":
        return _synthetic(split, vocab_size)
    root = data_dir or os.environ.get("PRUNELAB_DATA")
    if not root:
        raise PrunelabError("SDTP needs WikiText-2: set PRUNELAB_DATA or pass data_dir (or data_dir='synthetic')")
    path = Path(root) / "wikitext-2" / f"wiki.{split}.tokens"
    if not path.exists():
        raise PrunelabError(f"SDTP data file not found: {path}")
    key = (id(tokenizer), str(path), vocab_size)
    if key not in _MEMO:
        _MEMO[key] = torch.tensor(encode(tokenizer, path.read_text(encoding="utf-8"), vocab_size), dtype=torch.long)
    return _MEMO[key]


def _synthetic(split: str, vocab_size: int, n: int = 60000) -> torch.Tensor:
    """Random tokens with copied spans, so that some context tokens matter more than others."""
    g = torch.Generator().manual_seed(0 if split == "valid" else 1)
    x = torch.randint(4, vocab_size, (n,), generator=g)
    for start in range(64, n - 16, 97):
        src = int(torch.randint(0, start - 16, (1,), generator=g))
        x[start:start + 8] = x[src:src + 8]
    return x


def chunks(stream: torch.Tensor, count: int, length: int, seed: int | None = None) -> torch.Tensor:
    """(count, length) windows: random offsets when seeded (training), evenly spaced otherwise."""
    if stream.numel() < length + 1:
        raise PrunelabError(f"SDTP data has {stream.numel()} tokens, fewer than one window of {length}")
    span = stream.numel() - length
    if seed is None:
        starts = [int(i * span / max(1, count)) for i in range(count)]
    else:
        g = torch.Generator().manual_seed(seed)
        starts = torch.randint(0, span, (count,), generator=g).tolist()
    return torch.stack([stream[s:s + length] for s in starts])
