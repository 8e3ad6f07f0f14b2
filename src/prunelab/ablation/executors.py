"""Run a matrix: each run in its own fresh process (local) or Ray task (max_calls=1).

Resume contract, keyed by the config hash in the store:
  done                          -> skipped (re-run only with force=True, or when its run id is
                                   in `rerun`: the new result replaces the old one)
  failed, or running with a dead pid on this host -> run again (retry_failed=True)
  running with a live pid on this host (e.g. left by a driver that was killed: its cell
  processes keep going)        -> waited for, not duplicated
A cell claims its row atomically (Store.start) when it starts; one that finds the row held by
another live process exits with EXIT_ELSEWHERE and the driver waits for the holder instead,
so an orphan that had not started yet when its driver died is not run twice either.
  running on another host      -> reported, not waited for
Each run writes its own row (start -> finish/fail) from its own process, so killing the
driver (even with SIGKILL) loses no finished run: the next `ablate` picks up where it was.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import prunelab
from prunelab.ablation.matrix import Matrix, Run
from prunelab.ablation.worker import ELSEWHERE, EXIT_ELSEWHERE, execute_cell, runner_spec
from prunelab.errors import PrunelabError
from prunelab.store import Store

EXECUTORS = ("local", "ray")


@dataclass
class Summary:
    study: str
    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    elsewhere: int = 0
    seconds: float = 0.0
    failures: list = field(default_factory=list)     # (cells, run_id, error)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.elsewhere == 0


# ----------------------------------------------------------------------------- driver

def run_matrix(matrix: Matrix, store: Store | str, *, executor: str = "local", workers: int = 1,
               runner: Callable | str | None = None, retry_failed: bool = True, force: bool = False,
               progress: bool = True, cpus_per_cell: float = 1, gpus_per_cell: float | None = None,
               ray_address: str | None = None, poll_s: float = 0.5, rerun: set | frozenset = frozenset()) -> Summary:
    if executor not in EXECUTORS:
        from prunelab.errors import unknown

        raise unknown("executor", executor, EXECUTORS)
    if not isinstance(workers, int) or workers < 1:
        raise PrunelabError(f"workers must be >= 1, got {workers!r}")
    store = store if isinstance(store, Store) else Store(store)
    for cell, seed, run_id in matrix.links():
        store.link(matrix.study, cell, seed, run_id)

    summary = Summary(matrix.study, total=len(matrix.runs))
    todo: list[Run] = []
    waiting: list[Run] = []
    forced: set[str] = set()
    for run in matrix.runs:
        row = store.get(run.run_id)
        status = row["status"] if row else None
        if status == "done" and (force or run.run_id in rerun):
            forced.add(run.run_id)
            todo.append(run)
        elif status == "done":
            summary.skipped += 1
        elif status == "running" and row.get("host") == socket.gethostname():
            waiting.append(run)
        elif status == "running":
            summary.elsewhere += 1
            summary.failures.append((run.label, run.run_id, f"running on host {row.get('host')}"))
        elif status == "failed" and not retry_failed:
            summary.failed += 1
            summary.failures.append((run.label, run.run_id, row.get("error") or "failed"))
        else:
            todo.append(run)

    rep = Reporter(len(matrix.runs), enabled=progress)
    rep.begin(summary.skipped + summary.failed + summary.elsewhere)
    if summary.skipped:
        rep.line(f"skip {summary.skipped} run(s) already done in {store.path}")
    t0 = time.time()
    path = os.path.abspath(store.path)     # cells may run in another working directory (Ray)
    try:
        if todo:
            if executor == "local":
                _local(todo, path, runner, workers, rep, summary, poll_s, waiting, forced)
            else:
                _ray(todo, path, runner, workers, rep, summary, cpus_per_cell, gpus_per_cell, ray_address, waiting,
                     forced)
        if waiting:
            _wait_for(waiting, store, rep, summary, poll_s)
    finally:
        rep.end()
    summary.seconds = time.time() - t0
    return summary


def _record(result: dict, run: Run, rep: "Reporter", summary: Summary) -> None:
    if result.get("status") == "done":
        summary.done += 1
        rep.finished(run, result)
    else:
        summary.failed += 1
        err = (result.get("error") or "failed").strip()
        summary.failures.append((run.label, run.run_id, err))
        rep.failed(run, err)


def _local(todo: list[Run], store_path: str, runner, workers: int, rep, summary, poll_s: float,
           waiting: list[Run], forced: set[str]) -> None:
    spec = runner_spec(runner)
    env = dict(os.environ)
    root = str(Path(prunelab.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    pending = deque(todo)
    active: dict = {}   # Popen -> (run, log file)
    try:
        while pending or active:
            while pending and len(active) < workers:
                run = pending.popleft()
                active[_spawn(run, store_path, spec, env, run.run_id in forced)] = run
                rep.started(run)
            time.sleep(poll_s)
            for p in [p for p in active if p.poll() is not None]:
                run = active.pop(p)
                if p.returncode == EXIT_ELSEWHERE:    # another process claimed it first: wait for that one
                    waiting.append(run)
                    continue
                row = Store(store_path).get(run.run_id)
                log = _log_path(store_path, run)
                crashed = p.returncode not in (0, 1)     # 1: the worker's own "run failed"
                if row is None or row["status"] not in ("done", "failed") or (crashed and row["status"] != "done"):
                    how = f"killed by signal {-p.returncode}" if p.returncode < 0 else f"exited with code {p.returncode}"
                    error = f"cell process {how} (log: {log})"
                    _mark_failed(store_path, run, error)
                    result = {"status": "failed", "error": error}
                else:
                    error = row.get("error") or ""
                    if row["status"] == "failed":
                        error = f"{error.strip()} (log: {log})"
                    result = {"status": row["status"], "error": error, "metrics": row.get("metrics") or {},
                              "seconds": (row.get("finished") or time.time()) - (row.get("started") or time.time())}
                _record(result, run, rep, summary)
    except BaseException:
        for p in active:
            p.terminate()
        for p, run in active.items():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
            _mark_failed(store_path, run, "cancelled: the driver was interrupted")
        raise


def _log_path(store_path: str, run: Run) -> Path:
    return Path(store_path).resolve().parent / "logs" / (run.config.study or "runs") / f"{run.run_id}.log"


def _spawn(run: Run, store_path: str, spec: str, env: dict, force: bool) -> subprocess.Popen:
    log = _log_path(store_path, run)
    log.parent.mkdir(parents=True, exist_ok=True)
    cfg_file = log.with_suffix(".json")
    cfg_file.write_text(json.dumps(run.config.to_dict(), default=str), encoding="utf-8")
    with open(log, "ab") as out:
        # own session: Ctrl-C reaches the driver only (it stops the cells), and a killed driver's
        # cells finish and write their rows
        cmd = [sys.executable, "-m", "prunelab.ablation.worker", str(cfg_file), store_path, "--runner", spec]
        return subprocess.Popen(cmd + (["--force"] if force else []), stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def _mark_failed(store_path: str, run: Run, error: str) -> None:
    store = Store(store_path)
    row = store.get(run.run_id)
    if row is not None and row["status"] != "done":
        store.fail(run.run_id, error)


RAY_RETRIES = 3     # attempts after a cell's Ray worker dies (killed, OOM, node lost) before it counts as failed


def _ray_env() -> dict:
    """What a cell's Ray worker needs from the driver's environment, as the local executor passes
    its whole environment: prunelab importable from this checkout (a path that does not exist on
    a remote node is ignored there), the driver's PYTHONPATH (a runner module on it), and the
    PRUNELAB_* settings (data folder, cache, ...)."""
    root = str(Path(prunelab.__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if k.startswith("PRUNELAB_")}
    # ${PYTHONPATH}: Ray expands it to the node's own, which is kept (after ours)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                  if p and p != root] + ["${PYTHONPATH}"])
    return env


def _ray(todo: list[Run], store_path: str, runner, workers: int, rep, summary, cpus: float, gpus: float | None,
         address: str | None, waiting: list[Run], forced: set[str]) -> None:
    try:
        import ray
    except ImportError:
        raise PrunelabError("the ray executor needs Ray: pip install 'prunelab[ray]' (or pip install ray)") from None
    started_here = False
    if not ray.is_initialized():
        # RAY_ADDRESS (or `address`) names a running cluster; else a fresh local instance, never
        # whichever cluster happens to be running on this machine (address=None would attach to it)
        address = address or os.environ.get("RAY_ADDRESS") or "local"
        try:
            ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise PrunelabError(f"cannot start or reach Ray at {address!r}: {e}") from None
        started_here = True
    try:
        _ray_loop(ray, todo, store_path, runner, workers, rep, summary, cpus, gpus, waiting, forced)
    finally:
        if started_here:
            ray.shutdown()


def _ray_loop(ray, todo: list[Run], store_path: str, runner, workers: int, rep, summary, cpus: float,
              gpus: float | None, waiting: list[Run], forced: set[str]) -> None:
    if gpus is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    # max_calls=1: each cell gets a fresh worker process that exits after it, as the local
    # executor's subprocess does (memory of its own; GPU memory is returned, ray#29606).
    # max_retries: a worker that dies mid-cell (SIGKILL, OOM) is retried in a new worker; its
    # row reads 'running' with a dead pid, which the retry's Store.start claims. Exceptions are
    # not retried: execute_cell turns them into a 'failed' row (re-run by the next `ablate`).
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_calls=1, max_retries=RAY_RETRIES,
                        retry_exceptions=False)(execute_cell).options(runtime_env={"env_vars": _ray_env()})
    spec = runner_spec(runner)
    pending = deque(todo)
    inflight: dict = {}
    try:
        while pending or inflight:
            while pending and len(inflight) < workers:
                run = pending.popleft()
                inflight[remote.remote(spec, run.config.to_dict(), store_path, run.run_id in forced)] = run
                rep.started(run)
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                run = inflight.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - worker died more than RAY_RETRIES times, ...
                    first = (str(e).strip().splitlines() or [""])[0]
                    result = {"status": "failed", "error": f"ray task failed: {type(e).__name__}: {first}"}
                    _mark_failed(store_path, run, result["error"])
                if result.get("status") == ELSEWHERE:
                    waiting.append(run)
                    continue
                _record(result, run, rep, summary)
    except BaseException:
        for ref in inflight:
            ray.cancel(ref, force=True)
        for run in inflight.values():
            _mark_failed(store_path, run, "cancelled: the driver was interrupted")
        raise


def _wait_for(runs: list[Run], store: Store, rep, summary, poll_s: float) -> None:
    """Runs another process (a killed driver's orphan cell) is still executing: wait, don't duplicate."""
    for run in runs:
        rep.line(f"wait  {run.label} ({run.run_id[:8]}): already running in another process")
    left = list(runs)
    while left:
        for run in list(left):
            row = store.get(run.run_id)
            if row is None or row["status"] != "running":
                left.remove(run)
                _record({"status": row["status"] if row else "failed", "error": (row or {}).get("error"),
                         "metrics": (row or {}).get("metrics") or {}, "seconds": 0.0}, run, rep, summary)
        if left:
            time.sleep(poll_s)


# ----------------------------------------------------------------------------- progress

class Reporter:
    """One line per cell state change, and an overall rich progress bar with ETA (stderr)."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.enabled = total, enabled
        self.count = 0
        self.progress = None
        self.task = None

    def begin(self, already: int) -> None:
        self.count = already
        if not self.enabled:
            return
        try:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)
        except ImportError:  # pragma: no cover - rich is a dependency
            return
        self.progress = Progress(TextColumn("ablation"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=False)
        self.progress.start()
        self.task = self.progress.add_task("cells", total=self.total, completed=already)

    def end(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.console.print(text, highlight=False, markup=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def _tag(self) -> str:
        w = len(str(self.total))
        return f"[{self.count:>{w}}/{self.total}]"

    def started(self, run: Run) -> None:
        self.line(f"{self._tag()} start  {run.label} seed={run.config.seed} ({run.run_id[:8]})")

    def finished(self, run: Run, result: dict) -> None:
        self.count += 1
        m = result.get("metrics") or {}
        score = m.get("score", m.get("ppl"))
        extra = f" score={score:.4g}" if isinstance(score, (int, float)) else ""
        self.line(f"{self._tag()} done   {run.label} seed={run.config.seed} ({run.run_id[:8]}) "
                  f"{result.get('seconds', 0):.1f}s{extra}")
        self._advance()

    def failed(self, run: Run, error: str) -> None:
        self.count += 1
        first = error.strip().splitlines()[0] if error.strip() else "failed"
        self.line(f"{self._tag()} FAILED {run.label} seed={run.config.seed} ({run.run_id[:8]}): {first}")
        self._advance()

    def _advance(self) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=self.count)
