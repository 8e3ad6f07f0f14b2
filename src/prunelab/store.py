"""Results store: one SQLite row per run, keyed by the content hash of the resolved config.

Why SQLite (WAL): many worker processes write concurrently, a reader can watch a study live,
and each write is one transaction, so a run killed with SIGKILL leaves its row 'running'
(never a half-written 'done'); the next attempt replaces it.
"""
from __future__ import annotations

import json
import os
import platform
import socket
import sqlite3
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from prunelab.errors import PrunelabError

DEFAULT_PATH = "runs/prunelab.db"

# columns added after the first release: stores made before them get them by ALTER TABLE
ADDED_COLUMNS = {"progress": "TEXT", "log": "TEXT"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id        TEXT PRIMARY KEY,      -- config hash
    method    TEXT, model TEXT, task TEXT, seed INTEGER,
    status    TEXT NOT NULL,         -- running | done | failed
    error     TEXT,
    config    TEXT NOT NULL,         -- resolved RunConfig as JSON
    metrics   TEXT,                  -- JSON
    curve     TEXT,                  -- JSON list of {step, seconds, score}
    env       TEXT,                  -- JSON: versions, device, git sha, host, seed
    pid       INTEGER, host TEXT,
    started   REAL, finished REAL,
    attempts  INTEGER DEFAULT 1,
    progress  TEXT,                  -- JSON: latest {phase, step, total_steps, loss, score, elapsed, updated}
    log       TEXT                   -- path of the failure log (full traceback) when failed
);
CREATE TABLE IF NOT EXISTS study_cells (
    study TEXT, cell TEXT, seed INTEGER, run_id TEXT,
    PRIMARY KEY (study, cell, seed)
);
"""


def _wal(conn: sqlite3.Connection, wait: float = 60.0) -> None:
    """Switch to WAL, retrying while locked. SQLite answers this pragma 'database is locked'
    at once, without its busy timeout, when two processes open a new store together (two
    drivers of one study), so the timeout of connect() does not cover it."""
    deadline = time.monotonic() + wait
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class AlreadyRunning(PrunelabError):
    """Another live process on this host holds the run."""


class AlreadyDone(PrunelabError):
    """The run finished (in another process) before this one could claim it."""


class Store:
    def __init__(self, path: str | os.PathLike = DEFAULT_PATH):
        self.path = str(path)
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as c:
                c.executescript(SCHEMA)
                _add_missing_columns(c)
        except (OSError, sqlite3.DatabaseError) as e:   # a bad --store is bad input, not a bug
            raise PrunelabError(f"cannot open the results store {self.path!r}: {e}") from None

    @contextmanager
    def _connect(self):
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        conn.row_factory = sqlite3.Row
        _wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        try:
            yield conn
        finally:
            conn.close()

    # -- writes (each one transaction) --------------------------------------------------
    def start(self, run_id: str, config: dict, env: dict, *, force: bool = False) -> None:
        """Claim `run_id` for this process, atomically. Two processes that race for one run
        (a killed driver's orphan cell and its resume, or two drivers on one store) cannot both
        run it: the loser gets AlreadyRunning and should wait for the winner's row. A done run
        is claimed again only with force=True (else AlreadyDone: someone finished it meanwhile)."""
        now = time.time()
        with self._connect() as c:
            c.execute("BEGIN IMMEDIATE")
            prev = c.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
            if prev is not None and prev["status"] == "done" and not force:
                c.execute("ROLLBACK")
                raise AlreadyDone(f"run {run_id} is already done")
            if prev is not None and prev["pid"] != os.getpid():
                seen = _row(prev)         # reads a dead process's 'running' on this host as failed
                if seen["status"] == "running" and seen["host"] == socket.gethostname():
                    c.execute("ROLLBACK")
                    raise AlreadyRunning(f"run {run_id} is already running (pid {prev['pid']} on {prev['host']})")
            attempts = (prev["attempts"] + 1) if prev else 1
            c.execute(
                "INSERT OR REPLACE INTO runs (id, method, model, task, seed, status, error, config, metrics,"
                " curve, env, pid, host, started, finished, attempts)"
                " VALUES (?,?,?,?,?,'running',NULL,?,NULL,NULL,?,?,?,?,NULL,?)",
                (run_id, config.get("method"), config.get("model"), config.get("task"), config.get("seed"),
                 json.dumps(config, sort_keys=True), json.dumps(env, sort_keys=True), os.getpid(),
                 socket.gethostname(), now, attempts),
            )
            c.execute("COMMIT")

    def finish(self, run_id: str, metrics: dict, curve: list) -> None:
        with self._connect() as c:
            c.execute(
                "UPDATE runs SET status='done', error=NULL, metrics=?, curve=?, finished=? WHERE id=?",
                (json.dumps(metrics, sort_keys=True, default=_jsonable), json.dumps(curve, default=_jsonable),
                 time.time(), run_id),
            )

    def fail(self, run_id: str, error: str, curve: list | None = None, metrics: dict | None = None) -> None:
        """Mark the run failed. The error and, when called inside an `except` block, the full
        traceback go to logs/<run_id>.log beside the store; the row records that path."""
        log = write_log(self.log_path(run_id), error, traceback.format_exc() if sys.exc_info()[0] else None)
        with self._connect() as c:
            c.execute(
                "UPDATE runs SET status='failed', error=?, curve=?, metrics=?, finished=?, log=? WHERE id=?",
                (error[:4000], json.dumps(curve or [], default=_jsonable),
                 json.dumps(metrics or {}, default=_jsonable), time.time(), log, run_id),
            )

    def put(self, row: dict) -> None:
        """Write a run row as it was stored elsewhere (a study's runs.jsonl): no claim, no clock."""
        cols = ("id", "method", "model", "task", "seed", "status", "error", "config", "metrics", "curve", "env",
                "pid", "host", "started", "finished", "attempts")
        vals = [json.dumps(row.get(k), sort_keys=True, default=_jsonable)
                if k in ("config", "metrics", "curve", "env") and row.get(k) is not None else row.get(k) for k in cols]
        with self._connect() as c:
            c.execute(f"INSERT OR REPLACE INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", vals)

    def log_path(self, run_id: str) -> Path:
        return log_dir(self.path) / f"{run_id}.log"

    def set_progress(self, run_id: str, info: dict) -> None:
        """Record the latest step / loss / score on a running row (only ours, only while running),
        so `prunelab runs ls` can show how far a long run is."""
        info = dict(info, updated=time.time())
        with self._connect() as c:
            c.execute("UPDATE runs SET progress=? WHERE id=? AND status='running' AND pid=?",
                      (json.dumps(info, default=_jsonable), run_id, os.getpid()))

    def link(self, study: str, cell: str, seed: int, run_id: str) -> None:
        with self._connect() as c:
            c.execute("INSERT OR REPLACE INTO study_cells (study, cell, seed, run_id) VALUES (?,?,?,?)",
                      (study, cell, seed, run_id))

    def update_metrics(self, run_id: str, extra: dict) -> None:
        """Merge derived metrics (e.g. time-to-accuracy once a baseline exists)."""
        with self._connect() as c:
            c.execute("BEGIN IMMEDIATE")
            row = c.execute("SELECT metrics FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is not None:
                m = json.loads(row["metrics"] or "{}")
                m.update(extra)
                c.execute("UPDATE runs SET metrics=? WHERE id=?", (json.dumps(m, sort_keys=True, default=_jsonable), run_id))
            c.execute("COMMIT")

    # -- reads ------------------------------------------------------------------------------
    def get(self, run_id: str) -> dict | None:
        with self._connect() as c:
            row = c.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return _row(row) if row else None

    def find(self, run_id_prefix: str) -> dict | None:
        with self._connect() as c:
            rows = c.execute("SELECT * FROM runs WHERE id LIKE ?", (run_id_prefix + "%",)).fetchall()
        return _row(rows[0]) if len(rows) == 1 else None

    def runs(self, status: str | None = None, **where) -> list[dict]:
        q, args = "SELECT * FROM runs", []
        conds = []
        if status:
            conds.append("status=?"); args.append(status)
        for k, v in where.items():
            if k not in ("method", "model", "task", "seed"):
                raise ValueError(k)
            conds.append(f"{k}=?"); args.append(v)
        if conds:
            q += " WHERE " + " AND ".join(conds)
        q += " ORDER BY started"
        with self._connect() as c:
            return [_row(r) for r in c.execute(q, args).fetchall()]

    def study(self, study: str) -> list[dict]:
        with self._connect() as c:
            rows = c.execute(
                "SELECT s.cell AS cell, s.seed AS cell_seed, r.* FROM study_cells s LEFT JOIN runs r ON r.id = s.run_id"
                " WHERE s.study=? ORDER BY s.cell, s.seed", (study,)).fetchall()
        out = []
        for r in rows:
            d = _row(r)
            d["cell"], d["cell_seed"] = r["cell"], r["cell_seed"]
            out.append(d)
        return out


def _row(r: sqlite3.Row) -> dict:
    d = dict(r)
    for k in ("config", "metrics", "curve", "env", "progress"):
        if k in d and d[k] is not None:
            d[k] = json.loads(d[k])
    # a 'running' row whose process is gone on this host was killed: say so
    if d.get("status") == "running" and d.get("host") == socket.gethostname() and d.get("pid"):
        if not _pid_alive(d["pid"]):
            d["status"], d["error"] = "failed", "process died while running (killed?)"
    return d


def _add_missing_columns(c: sqlite3.Connection) -> None:
    have = {r["name"] for r in c.execute("PRAGMA table_info(runs)")}
    for name, decl in ADDED_COLUMNS.items():
        if name in have:
            continue
        try:
            c.execute(f"ALTER TABLE runs ADD COLUMN {name} {decl}")
        except sqlite3.OperationalError as e:    # another process added it first
            if "duplicate column" not in str(e):
                raise


def log_dir(store_path: str | os.PathLike) -> Path:
    """Failure logs live beside the store: runs/prunelab.db -> runs/logs/."""
    return Path(store_path).absolute().parent / "logs"


def write_log(path: Path, *parts: str | None) -> str | None:
    """Write a failure log; fall back to the temp dir when the store's folder is not writable.
    Returns the path written, or None if nothing could be written (never raises: a failure
    must still be recorded even when its log cannot be)."""
    import tempfile

    text = "\n\n".join(p.rstrip() for p in parts if p) + "\n"
    for target in (Path(path), Path(tempfile.gettempdir()) / "prunelab-logs" / Path(path).name):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            return str(target)
        except OSError:
            continue
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0): read its state from /proc where there is one
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def _jsonable(x):
    try:
        import numpy as np

        if isinstance(x, np.generic):
            return x.item()
    except ImportError:
        pass
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def environment(seed: int, device: str) -> dict:
    """What a reader needs to reproduce the run."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("prunelab", "torch", "transformers", "peft", "accelerate", "datasets", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "cpu_threads": _torch_threads(),
        "git_sha": git_sha(),
        "host": socket.gethostname(),
        "seed": seed,
    }


def _torch_threads():
    import torch

    return torch.get_num_threads()


def git_sha() -> str | None:
    """HEAD of the checkout prunelab runs from (+dirty), or $PRUNELAB_GIT_SHA where there is no
    .git (a copy of the tree shipped to another machine)."""
    here = Path(__file__).resolve().parent
    if os.environ.get("PRUNELAB_GIT_SHA"):
        return os.environ["PRUNELAB_GIT_SHA"]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None
