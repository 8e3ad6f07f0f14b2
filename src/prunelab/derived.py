"""Metrics that need a reference run, computed from the store when read.

Time-to-accuracy, speedup and relative accuracy compare a run with the full fine-tuning (FT)
run of the same model and task. They are never frozen into a row: adding or re-running the
FT baseline later updates every comparison.
"""
from __future__ import annotations

import statistics

from prunelab.store import Store
from prunelab.train.measure import time_to_accuracy

REFERENCE_METHOD = "ft"


def reference_runs(store: Store, model: str, task: str, seed: int | None = None) -> list[dict]:
    """FT runs of the same model and task: the same seed when there is one, else all seeds."""
    refs = store.runs(status="done", method=REFERENCE_METHOD, model=model, task=task)
    same_seed = [r for r in refs if r["seed"] == seed]
    return same_seed or refs


def with_derived(row: dict | None, store: Store) -> dict | None:
    if row is None or row.get("status") != "done" or not row.get("metrics"):
        return row
    m = row["metrics"]
    refs = reference_runs(store, row["model"], row["task"], row["seed"])
    if not refs:
        return row
    ref_score = statistics.mean(r["metrics"]["score"] for r in refs)
    hib = m.get("higher_is_better", True)
    derived = {
        "ft_score": ref_score,
        "tta_s": time_to_accuracy(row.get("curve") or [], ref_score, hib),
        "rel_acc": (m["score"] / ref_score) if hib else (ref_score / m["score"]),
    }
    derived["tta_cpu_s"] = time_to_accuracy(row.get("curve") or [], ref_score, hib, clock="cpu_seconds")
    for key, clock in (("tta_ratio", "seconds"), ("tta_cpu_ratio", "cpu_seconds")):
        mine = derived["tta_s" if clock == "seconds" else "tta_cpu_s"]
        ref_tta = [time_to_accuracy(r.get("curve") or [], ref_score, hib, clock=clock) for r in refs]
        ref_tta = [t for t in ref_tta if t]
        if ref_tta and mine is not None:
            derived[key] = mine / statistics.mean(ref_tta)
    for key in [k for k in m if k.startswith("throughput_")]:
        vals = [r["metrics"].get(key) for r in refs if r["metrics"].get(key)]
        if vals and m.get(key):
            derived["speedup_" + key[len("throughput_"):]] = m[key] / statistics.mean(vals)
    for key in ("train_peak_mem_mb", "inf_peak_mem_mb"):
        kind = key.replace("_mb", "_kind")       # only like with like (a store may hold both CPU kinds)
        vals = [r["metrics"].get(key) for r in refs
                if r["metrics"].get(key) and r["metrics"].get(kind) == m.get(kind)]
        if vals and m.get(key):
            derived[key.replace("_mb", "_ratio")] = m[key] / statistics.mean(vals)
    derived["speedup"] = derived.get("speedup_bs128", derived.get("speedup_bs32"))
    row = dict(row)
    row["metrics"] = {**m, **derived}
    return row


def relative_accuracy(store: Store, method: str, model: str, tasks=("glue/sst2", "glue/mnli")) -> float | None:
    """Seed 003: mean score over `tasks` of the method / the same mean of FT (tasks present for both)."""
    mine, ref = [], []
    for t in tasks:
        a = store.runs(status="done", method=method, model=model, task=t)
        b = store.runs(status="done", method=REFERENCE_METHOD, model=model, task=t)
        if a and b:
            mine.append(statistics.mean(r["metrics"]["score"] for r in a))
            ref.append(statistics.mean(r["metrics"]["score"] for r in b))
    if not ref:
        return None
    return statistics.mean(mine) / statistics.mean(ref)
