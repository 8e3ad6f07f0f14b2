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


# -- training mixtures (issue 11): more and more varied data than WikiText-2 valid alone ------
LEVAL_FILES = ("coursera", "financial_qa", "legal_contract_qa", "multidoc_qa", "natural_question",
               "quality", "sci_fi", "scientific_qa", "topic_retrieval_longchat", "tpo")
TRAIN_MIXES = {
    "wikitext": {"wikitext": 1.0},
    # WikiText-2 valid, L-Eval long documents, generated key-value retrieval prompts
    "mix": {"wikitext": 0.5, "leval": 0.25, "kv": 0.25},
}


def leval_stream(tokenizer, data_dir: str | None, vocab_size: int, max_chars_per_file: int = 200_000) -> torch.Tensor:
    """The L-Eval long documents (data_dir/leval/*.jsonl, `input` fields) as one token stream."""
    import json

    root = Path(data_dir or os.environ.get("PRUNELAB_DATA", "")) / "leval"
    key = (id(tokenizer), str(root), vocab_size, max_chars_per_file)
    if key in _MEMO:
        return _MEMO[key]
    ids: list[int] = []
    for name in LEVAL_FILES:
        path = root / f"{name}.jsonl"
        if not path.exists():
            continue
        text, used = [], 0
        for line in path.read_text(encoding="utf-8").splitlines():
            doc = json.loads(line)["input"]
            text.append(doc[:max_chars_per_file - used])
            used += len(text[-1])
            if used >= max_chars_per_file:
                break
        ids += encode(tokenizer, "\n\n".join(text) + "\n\n", vocab_size)
    if not ids:
        raise PrunelabError(f"SDTP training mix needs L-Eval documents in {root}")
    _MEMO[key] = torch.tensor(ids, dtype=torch.long)
    return _MEMO[key]


_NAMES = ("Alice", "Boris", "Chen", "Dana", "Emeka", "Farah", "Gustav", "Hana", "Ivan", "Jun", "Kofi", "Lena",
          "Mateo", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen", "Yara")


def kv_sequences(tokenizer, vocab_size: int, count: int, ctx_len: int, cont_len: int, filler: torch.Tensor,
                 seed: int = 0, facts: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Key-value retrieval prompts: `facts` sentences "The code of NAME is NNNNN." hidden at
    random places in filler text (the first 85% of the context), and a continuation that
    recalls them in another order ("The code of NAME is NNNNN. ..."), so the answer can only
    come from those context tokens. Returns ((count, ctx_len + cont_len) ids, (count, ctx_len)
    bool marking the inserted fact tokens)."""
    g = torch.Generator().manual_seed(seed)
    rows, marks = [], []
    for _ in range(count):
        names = [_NAMES[i] for i in torch.randperm(len(_NAMES), generator=g)[:facts].tolist()]
        codes = [str(int(torch.randint(10000, 100000, (1,), generator=g))) for _ in names]
        fact_ids = [encode(tokenizer, f" The code of {n} is {c}.", vocab_size) for n, c in zip(names, codes)]
        while len(fact_ids) > 1 and sum(len(f) for f in fact_ids) > ctx_len // 2:   # short contexts
            fact_ids.pop()
        n_fact = sum(len(f) for f in fact_ids)
        if n_fact > ctx_len // 2:
            raise PrunelabError(f"SDTP key-value prompts need contexts longer than {2 * n_fact} tokens, got {ctx_len}")
        base = chunks(filler, 1, ctx_len - n_fact, seed=int(torch.randint(0, 2**31 - 1, (1,), generator=g)))[0].tolist()
        slots = sorted(torch.randint(min(8, len(base) // 4), max(9, int(0.85 * len(base))), (len(fact_ids),),
                                     generator=g).tolist())
        ctx, mark, last = [], [], 0
        for s, f in zip(slots, fact_ids):
            ctx += base[last:s] + f
            mark += [False] * (s - last) + [True] * len(f)
            last = s
        ctx += base[last:]
        mark += [False] * (len(base) - last)
        cont: list[int] = []
        order = torch.randperm(len(fact_ids), generator=g).tolist()
        while len(cont) < cont_len:
            for i in order:
                cont += encode(tokenizer, f" The code of {names[i]} is {codes[i]}.", vocab_size)
        rows.append(torch.tensor(ctx + cont[:cont_len]))
        marks.append(torch.tensor(mark))
    return torch.stack(rows), torch.stack(marks)


def training_sequences(tokenizer, vocab_size: int, data_dir: str | None, mix: str, count: int, length: int,
                       cont_len: int, seed: int = 0) -> torch.Tensor:
    """(count, length) training sequences (context + continuation) drawn from a TRAIN_MIXES mixture.

    data_dir="synthetic" replaces WikiText-2 and L-Eval by random token streams (tests).
    """
    if mix not in TRAIN_MIXES:
        from prunelab.errors import unknown

        raise unknown("SDTP train_data", mix, TRAIN_MIXES)
    wiki = token_stream(tokenizer, "valid", data_dir, vocab_size)
    parts, left = [], count
    items = list(TRAIN_MIXES[mix].items())
    for i, (src, share) in enumerate(items):
        n = left if i == len(items) - 1 else min(left, round(share * count))
        left -= n
        if n == 0:
            continue
        if src == "wikitext" or (src == "kv" and length - cont_len < 128):   # too short for the facts
            parts.append(chunks(wiki, n, length, seed=seed + 3 * i))
        elif src == "leval":
            stream = _synthetic("leval", vocab_size) if data_dir == "synthetic" else leval_stream(tokenizer, data_dir, vocab_size)
            parts.append(chunks(stream, n, length, seed=seed + 1))
        else:
            parts.append(kv_sequences(tokenizer, vocab_size, n, length - cont_len, cont_len, wiki, seed=seed + 2)[0])
    data = torch.cat(parts, 0)
    return data[torch.randperm(count, generator=torch.Generator().manual_seed(seed))]
