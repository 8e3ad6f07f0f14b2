"""What a report needs besides the runs: the plan, its cells and metrics, saved per study.

Kept in its own table (`ablation_studies`) of the same SQLite file as the runs, so
`prunelab report STUDY` works from the store alone, on any machine that has the file.
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
