"""Progress of one run: a rich bar on a terminal, log lines everywhere else, and the latest
step / score on the run's store row so `prunelab runs ls` can show a run in flight.

The training loop calls `progress(state)` after every step (and after that step's dev eval)
and `progress.phase("train", ...)` once; run.py announces the later phases. `Progress()` does
nothing, so code that runs without anyone watching needs no `if progress` checks:

    progress = attach(progress, store, run_id)   # None or a bare callable -> a Progress
    progress.phase("measure")
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager

log = logging.getLogger("prunelab.progress")

STORE_EVERY_S = 5.0        # the store row is refreshed at most this often (one SQLite write)
LOG_EVERY_S = 60.0         # a slow run still prints a line at least this often


class Progress:
    """Watches one run. The base class only records progress on the store row, if attached."""

    def __init__(self):
        self.store = self.run_id = None
        self.phase_name = None
        self.started = time.monotonic()
        self.train_started = None
        self._stored_at = 0.0
        self._last_score = None
        self._info: dict = {}

    def attach(self, store, run_id: str) -> "Progress":
        self.store, self.run_id = store, run_id
        return self

    # -- called by the loop and run.py ------------------------------------------------------
    def __call__(self, state) -> None:
        if self.train_started is None:
            self.train_started = time.monotonic()
        # a new eval gives a new float object; identity catches an equal score from a new eval
        new_score = state.last_score is not self._last_score
        self._last_score = state.last_score
        last = state.step >= state.total_steps
        show = self.wants(state.step, state.total_steps, new_score)
        record = self.store is not None and (new_score or last or time.monotonic() - self._stored_at >= STORE_EVERY_S)
        if show or record:               # loss.item() syncs a GPU: only when something uses it
            elapsed = time.monotonic() - self.train_started
            self._info = dict(step_info(state), elapsed=elapsed, eta=eta(elapsed, state.step, state.total_steps))
            if show:
                self.on_step(self._info)
            if record:
                self._store()

    def phase(self, name: str, **details) -> None:
        self.phase_name = name
        if name == "train":
            self.train_started = time.monotonic()
        self.on_phase(name, details)
        self._store()

    # -- what subclasses show ---------------------------------------------------------------
    def wants(self, step: int, total: int, new_score: bool) -> bool:
        return False

    def on_step(self, info: dict) -> None:
        pass

    def on_phase(self, name: str, details: dict) -> None:
        pass

    def _store(self) -> None:
        if self.store is None:
            return
        self._stored_at = time.monotonic()
        try:
            self.store.set_progress(self.run_id, {"phase": self.phase_name, **self._info})
        except Exception as e:           # a busy or read-only store must not kill the run
            log.debug("could not record progress: %s", e)


class LogProgress(Progress):
    """One log line every `every` steps (default: about 20 per run), after each dev eval, at
    the last step and at least once a minute; one line per phase. For CI, nohup, pipes."""

    def __init__(self, label: str = "", every: int | None = None):
        super().__init__()
        self.label, self.every = label, every
        self._logged_at = time.monotonic()

    def wants(self, step, total, new_score):
        every = self.every or max(1, total // 20)
        return step % every == 0 or step >= total or new_score or time.monotonic() - self._logged_at >= LOG_EVERY_S

    def on_step(self, info):
        self._logged_at = time.monotonic()
        log.info("%s", step_line(info))

    def on_phase(self, name, details):
        extra = "".join(f" {k}={v}" for k, v in details.items())
        label = f" ({self.label})" if self.label and name == "train" else ""
        log.info("phase %s%s%s  [%s since start]", name, label, extra, clock(time.monotonic() - self.started))


class BarProgress(Progress):
    """A rich bar with ETA, loss and dev score; phases are printed above it."""

    def __init__(self, bar, task_id):
        super().__init__()
        self.bar, self.task_id = bar, task_id

    def wants(self, step, total, new_score):
        return True

    def on_step(self, info):
        live = f"loss {info['loss']:.4f}" if info.get("loss") is not None else ""
        if info.get("score") is not None:
            live += f"  dev {info['score']:.4f}"
        self.bar.update(self.task_id, completed=info["step"], total=info["total_steps"], live=live)

    def on_phase(self, name, details):
        self.bar.console.print(f"phase {name}  [{clock(time.monotonic() - self.started)} since start]",
                               highlight=False, markup=False)


@contextmanager
def progress_bar(label: str):
    from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[live]}")]
    with Bar(*columns, transient=False) as bar:
        yield BarProgress(bar, bar.add_task(label, total=None, live=""))


def attach(progress, store, run_id: str) -> Progress:
    """`progress` as a Progress bound to the run's store row; None becomes a silent one (the
    row is still updated) and a bare callable is wrapped."""
    if not isinstance(progress, Progress):
        progress = _Wrapped(progress)
    return progress.attach(store, run_id)


def phase(progress, name: str, **details) -> None:
    """Announce a phase on whatever `progress` is (None and bare callables included)."""
    if isinstance(progress, Progress):
        progress.phase(name, **details)


class _Wrapped(Progress):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def __call__(self, state):
        super().__call__(state)
        if self.fn is not None:
            self.fn(state)


# -- formatting ---------------------------------------------------------------------------
def step_info(state) -> dict:
    return {"step": state.step, "total_steps": state.total_steps,
            "loss": state.loss.item() if state.loss is not None else None,
            "score": state.last_score, "best_score": state.best_score}


def eta(elapsed: float, step: int, total: int) -> float | None:
    return elapsed / step * (total - step) if step else None


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def step_line(info: dict) -> str:
    step, total = info["step"], info["total_steps"]
    parts = [f"step {step}/{total} ({100 * step // max(1, total)}%)"]
    if info.get("loss") is not None:
        parts.append(f"loss {info['loss']:.4f}")
    if info.get("score") is not None:
        parts.append(f"dev {info['score']:.4f}")
    parts.append(f"elapsed {clock(info.get('elapsed'))}")
    parts.append(f"eta {clock(info.get('eta'))}")
    return "  ".join(parts)
