"""Metrics that need a reference run, computed from the store when read.

Time-to-accuracy, speedup and relative accuracy compare a run with the full fine-tuning (FT)
run of the same model and task. They are never frozen into a row: adding or re-running the
FT baseline later updates every comparison.
"""
from __future__ import annotations

import math
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
    # "speedup": from CPU-time throughput when the run and at least one FT reference have it (one-thread
    # CPU runs, averaged over the references that have it; other processes' load does not stretch it),
    # else from wall-clock throughput
    derived["speedup"] = next((derived[k] for k in ("speedup_cpu_bs128", "speedup_cpu_bs32", "speedup_bs128",
                                                    "speedup_bs32") if derived.get(k) is not None), None)
    row = dict(row)
    row["metrics"] = {**m, **derived}
    return row


# -- time-to-accuracy over seeds -------------------------------------------------------------
def tta_aggregate(values) -> dict:
    """Aggregate per-seed TTA values where None means "not reached within the budget".

    Every seed counts: ``reached`` of ``n`` seeds reached the target; ``mean``/``std`` are given
    only when every seed reached it (a mean over the survivors alone would flatter a method
    that often fails); ``median`` treats a seed that never reached the target as infinitely
    slow, so it exists while more than half reached it. ``label`` is what a table shows.
    """
    vals = list(values)
    n = len(vals)
    done = sorted(float(v) for v in vals if v is not None)
    k = len(done)
    out = {"reached": k, "n": n, "mean": None, "std": None, "median": None}
    if n and k == n:
        out["mean"] = statistics.mean(done)
        out["std"] = statistics.stdev(done) if n > 1 else 0.0
    if n:
        ranked = done + [math.inf] * (n - k)
        med = statistics.median(ranked)
        out["median"] = None if math.isinf(med) else med
    if not n:
        out["label"] = "-"
    elif k == n:
        out["label"] = f"{out['mean']:.0f} ± {out['std']:.0f} ({k}/{n} reached)"
    elif k == 0:
        out["label"] = f"not reached within budget (0/{n})"
    else:
        out["label"] = (f"{k}/{n} reached; {n - k} not reached within budget"
                        + (f"; median {out['median']:.0f}" if out["median"] is not None else ""))
    return out


def tta_ratio(mine, reference) -> float | None:
    """Ratio of mean TTAs, only when every seed of both sides reached the target (else None)."""
    a, b = tta_aggregate(mine), tta_aggregate(reference)
    if a["mean"] is None or b["mean"] is None or not b["mean"]:
        return None
    return a["mean"] / b["mean"]


# -- relative accuracy (seed 003) -------------------------------------------------------------
def relative_accuracy_of(scores: dict, reference: dict) -> dict:
    """Seed 003's relative accuracy from plain numbers.

    scores / reference: {task: [dev score per seed]} for the method and for FT. The value is
    mean over tasks of the method's (seed-mean) score divided by the same mean for FT, over the
    tasks of ``scores``. Every task needs both sides: if one is missing the value is None and
    the task is listed in ``missing`` (dropping it silently would change what is averaged).
    Returns {"value", "tasks", "missing", "per_task"} (per_task: method / FT per task).
    """
    tasks = sorted(scores)
    missing = [t for t in tasks if not [v for v in scores.get(t) or [] if v is not None]
               or not [v for v in reference.get(t) or [] if v is not None]]
    out = {"value": None, "tasks": tasks, "missing": missing, "per_task": {}}
    if not tasks or missing:
        return out
    mine = {t: statistics.mean(v for v in scores[t] if v is not None) for t in tasks}
    ref = {t: statistics.mean(v for v in reference[t] if v is not None) for t in tasks}
    out["per_task"] = {t: (mine[t] / ref[t] if ref[t] else None) for t in tasks}
    denom = statistics.mean(ref.values())
    out["value"] = statistics.mean(mine.values()) / denom if denom else None
    return out


def relative_accuracy_of_rows(rows, store: Store) -> dict:
    """Relative accuracy of a group of finished runs (e.g. one study cell, all its tasks and
    seeds) against the FT runs of the same model and tasks in ``store``.

    rows: run rows (dicts with "task", "model", "status", "metrics"). Lower-is-better tasks
    (perplexity) have no seed-003 relative accuracy: value None, listed in ``lower_is_better``.
    """
    rows = [r for r in rows if r and r.get("status") == "done" and (r.get("metrics") or {}).get("score") is not None]
    scores, reference, lower = {}, {}, []
    for r in rows:
        scores.setdefault(r["task"], []).append(r["metrics"]["score"])
        if not r["metrics"].get("higher_is_better", True) and r["task"] not in lower:
            lower.append(r["task"])
    for task in scores:
        models = {r["model"] for r in rows if r["task"] == task}
        reference[task] = [x["metrics"]["score"] for m in models for x in reference_runs(store, m, task)
                           if (x.get("metrics") or {}).get("score") is not None]
    out = relative_accuracy_of(scores, reference)
    out["lower_is_better"] = lower
    if lower:
        out["value"] = None
    return out


def relative_accuracy(store: Store, method: str, model: str, tasks=("glue/sst2", "glue/mnli")) -> float | None:
    """Seed 003: mean score over `tasks` of the method / the same mean of FT; None unless every
    task has runs of both."""
    rows = [r for t in tasks for r in store.runs(status="done", method=method, model=model, task=t)]
    present = {r["task"] for r in rows}
    if present != set(tasks):
        return None
    return relative_accuracy_of_rows(rows, store)["value"]
