"""One cell in a fresh process: `python -m prunelab.ablation.worker CONFIG.json STORE [--runner M:F]`.

A fresh interpreter per cell isolates memory (peak memory is the cell's own) and keeps a
crash, OOM kill or leaked GPU memory from touching other cells. The store row, written by
the runner from this process, is the result; the exit code is 0 when it reads 'done'.
Imports stay light here: only the runner pulls in torch.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from typing import Callable

from prunelab.config import RunConfig
from prunelab.errors import PrunelabError
from prunelab.store import AlreadyRunning, Store

DEFAULT_RUNNER = "prunelab.run:run"
ELSEWHERE = "elsewhere"    # status when another live process holds the run: wait for it
EXIT_ELSEWHERE = 4


def load_runner(runner: Callable | str | None) -> Callable:
    if runner is None:
        runner = DEFAULT_RUNNER
    if callable(runner):
        return runner
    mod, _, fn = str(runner).partition(":")
    try:
        return getattr(importlib.import_module(mod), fn or "run")
    except (ImportError, AttributeError) as e:
        raise PrunelabError(f"cannot load runner {runner!r}: {e}") from None


def runner_spec(runner: Callable | str | None) -> str:
    """'module:function' for a runner, so another process can import it."""
    if runner is None:
        return DEFAULT_RUNNER
    if isinstance(runner, str):
        return runner
    mod, name = getattr(runner, "__module__", None), getattr(runner, "__qualname__", "")
    if not mod or mod == "__main__" or "<" in name or "." in name:
        raise PrunelabError(f"runner {runner!r} is not importable from another process; pass 'module:function'")
    return f"{mod}:{name}"


def execute_cell(runner: Callable | str | None, config: dict, store_path: str, force: bool = False) -> dict:
    """Run one config in this process; leaves the row done or failed, unless another live process
    holds it (status 'elsewhere': that process writes the row). Returns a summary."""
    t0 = time.time()
    cfg = RunConfig.from_dict(config)
    run_id = cfg.hash()
    out = {"id": run_id, "status": "failed", "error": None, "metrics": {}}
    try:
        fn = load_runner(runner)
        row = (fn(cfg, store_path, force=True) if force else fn(cfg, store_path)) or {}
        out.update(id=row.get("id") or run_id, status=row.get("status", "failed"), error=row.get("error"),
                   metrics=row.get("metrics") or {})
    except AlreadyRunning as e:
        out.update(status=ELSEWHERE, error=str(e))
    except PrunelabError as e:
        out["error"] = str(e)
    except BaseException as e:  # noqa: BLE001 - a cell's crash must not take the driver down
        out["error"] = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"
    finally:
        try:
            if out["status"] != ELSEWHERE:     # else not ours: the holder writes the row
                _settle(Store(store_path), out, cfg)
        except Exception as e:  # noqa: BLE001
            out["error"] = (out["error"] or "") + f" (and the store could not be updated: {e})"
    out["seconds"] = time.time() - t0
    return out


def _settle(store: Store, out: dict, cfg: RunConfig) -> None:
    """Leave the row done or failed, whatever the runner did."""
    row = store.get(out["id"])
    if row is not None and row["status"] == "done":
        return
    if row is not None and row["status"] == "running" and row["pid"] != os.getpid():
        return                                 # a live process elsewhere holds it: not ours to fail
    if row is None:
        store.start(out["id"], cfg.to_dict(), {"seed": cfg.seed})
    if out["status"] == "done":
        out["status"] = "failed"
        out["error"] = out["error"] or "the runner returned 'done' but the store row is not"
    store.fail(out["id"], out["error"] or "run did not finish")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prunelab.ablation.worker")
    ap.add_argument("config", help="RunConfig as a JSON file")
    ap.add_argument("store", help="results store (SQLite file)")
    ap.add_argument("--runner", default=DEFAULT_RUNNER, help="module:function with run()'s signature")
    ap.add_argument("--force", action="store_true", help="run even when the store has it done (replaces it)")
    args = ap.parse_args(argv)
    with open(args.config, encoding="utf-8") as f:
        config = json.load(f)
    result = execute_cell(args.runner, config, args.store, force=args.force)
    if result.get("error"):
        print(f"prunelab worker: {result['error']}", file=sys.stderr)
    if result["status"] == ELSEWHERE:
        return EXIT_ELSEWHERE
    return 0 if result["status"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
