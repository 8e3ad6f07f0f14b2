"""The demo's reload check, run as a fresh process: plain transformers + torch, no prunelab.

    python demo_reload.py PRUNED_DIR DENSE_DIR SST2_DEV_TSV [--max-length 64] [--rounds 7]

Loads the exported (pruned) checkpoint with
``AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)``, scores it on
the SST-2 dev file, counts its parameters, and times it against the dense checkpoint (batch 32,
sequence 128, random tokens as in APT's efficiency test), interleaved so both see the same
machine load. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import time


def read_sst2(path: str) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            texts.append(row["sentence"])
            labels.append(int(row["label"]))
    return texts, labels


def accuracy(model, tok, texts, labels, max_length: int, batch_size: int = 64) -> float:
    import torch

    right = 0
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
            pred = model(**enc).logits.argmax(-1)
            right += int((pred == torch.tensor(labels[i:i + batch_size])).sum())
    return right / len(texts)


def interleaved_seconds(models: dict, batch: dict, rounds: int) -> dict:
    import torch

    times = {k: [] for k in models}
    with torch.inference_mode():
        for m in models.values():      # warm-up
            m(**batch)
        for _ in range(rounds):
            for name, m in models.items():
                t = time.perf_counter()
                m(**batch)
                times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("pruned")
    p.add_argument("dense")
    p.add_argument("dev_tsv")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    args = p.parse_args(argv)

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    pruned = AutoModelForSequenceClassification.from_pretrained(args.pruned, trust_remote_code=True).eval()
    dense = AutoModelForSequenceClassification.from_pretrained(args.dense, trust_remote_code=True).eval()
    tok = AutoTokenizer.from_pretrained(args.pruned)
    texts, labels = read_sst2(args.dev_tsv)
    acc = accuracy(pruned, tok, texts, labels, args.max_length)
    g = torch.Generator().manual_seed(0)
    vocab = min(pruned.config.vocab_size, dense.config.vocab_size)
    batch = {"input_ids": torch.randint(1000, vocab, (args.batch_size, args.seq_len), generator=g),
             "attention_mask": torch.ones(args.batch_size, args.seq_len, dtype=torch.long)}
    secs = interleaved_seconds({"dense": dense, "pruned": pruned}, batch, args.rounds)
    print(json.dumps({
        "class": type(pruned).__name__,
        "dev_accuracy": acc, "dev_examples": len(texts),
        "params": sum(p.numel() for p in pruned.parameters()),
        "dense_params": sum(p.numel() for p in dense.parameters()),
        "seconds_dense": secs["dense"], "seconds_pruned": secs["pruned"],
        "speedup": secs["dense"] / secs["pruned"],
        "batch_size": args.batch_size, "seq_len": args.seq_len, "rounds": args.rounds,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
