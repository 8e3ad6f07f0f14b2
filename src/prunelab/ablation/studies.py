"""What a report needs besides the runs: the plan, its cells and metrics, saved per study.

Kept in its own table (`ablation_studies`) of the same SQLite file as the runs, so
`prunelab report STUDY` works from the store alone, on any machine that has the file.
A study also travels as text: export_runs writes its meta and every run row (config, metrics,
curve, env with the SHA) to runs.jsonl beside the report, and import_runs loads that file into
a store, so a committed report can be rendered again by newer report code without the runs.
"""
from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from contextlib import closing

from prunelab.ablation.matrix import Matrix
from prunelab.errors import PrunelabError

SCHEMA = """
CREATE TABLE IF NOT EXISTS ablation_studies (
    study   TEXT PRIMARY KEY,
    meta    TEXT NOT NULL,     -- JSON: plan, method, seeds, cells, metrics per ablation, preset, base config
    updated REAL
);
"""


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    return conn


def study_meta(matrix: Matrix, preset: str | None = None) -> dict:
    res = matrix.resolution
    metrics = {}
    if res is not None:
        for item in res.items:
            metrics[item.ablation.name] = [m.to_dict() for m in item.metrics]
    base = next((r.config for r in matrix.runs if (("baseline", matrix.seeds[0]) in r.links)), None)
    return {
        "study": matrix.study,
        "method": matrix.method,
        "seeds": matrix.seeds,
        "preset": preset,
        "plan": res.plan.to_dict() if res is not None else None,
        "cells": [dataclasses.asdict(c) for c in matrix.cells],
        "metrics": metrics,
        "unresolved": [dataclasses.asdict(u) for u in res.unresolved] if res is not None else [],
        "notes": matrix.notes,
        "base": base.to_dict() if base is not None else None,
        "links": [list(x) for x in matrix.links()],
    }


def save_study(store_path: str, meta: dict) -> None:
    with closing(_connect(store_path)) as c:
        c.execute("INSERT OR REPLACE INTO ablation_studies (study, meta, updated) VALUES (?,?,?)",
                  (meta["study"], json.dumps(meta, default=str), time.time()))


def load_study(store_path: str, study: str) -> dict:
    with closing(_connect(store_path)) as c:
        row = c.execute("SELECT meta FROM ablation_studies WHERE study=?", (study,)).fetchone()
        if row is None:
            names = [r[0] for r in c.execute("SELECT study FROM ablation_studies ORDER BY updated DESC")]
    if row is None:
        from prunelab.errors import unknown

        if not names:
            raise PrunelabError(f"no ablation study in {store_path!r} yet (run `prunelab ablate PLAN` first)")
        raise unknown("study", study, names)
    return json.loads(row[0])


def list_studies(store_path: str) -> list[str]:
    with closing(_connect(store_path)) as c:
        return [r[0] for r in c.execute("SELECT study FROM ablation_studies ORDER BY updated DESC")]


def export_runs(store_path: str, study: str, path) -> None:
    """runs.jsonl: line 1 {"study": meta}, then one {"cell", "seed", "run"} per linked cell seed."""
    from prunelab.store import Store

    meta = load_study(store_path, study)
    lines = [json.dumps({"study": meta}, default=str, sort_keys=True)]
    for r in Store(store_path).study(study):
        run = {k: v for k, v in r.items() if k not in ("cell", "cell_seed", "progress", "log")}
        lines.append(json.dumps({"cell": r["cell"], "seed": r["cell_seed"],
                                 "run": run if run.get("id") else None}, default=str, sort_keys=True))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def import_runs(path, store_path: str) -> str:
    """Load a runs.jsonl written by export_runs into the store at store_path; returns the study name."""
    from prunelab.store import Store

    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows or "study" not in rows[0]:
        raise PrunelabError(f"{path}: not a study export (its first line must hold the study meta)")
    meta = rows[0]["study"]
    store = Store(store_path)
    save_study(store.path, meta)
    for r in rows[1:]:
        if r.get("run"):
            store.put(r["run"])
            store.link(meta["study"], r["cell"], r["seed"], r["run"]["id"])
    return meta["study"]
