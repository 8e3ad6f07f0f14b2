"""A rich progress bar with ETA and the live loss / dev score, fed by the loop's progress hook."""
from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def progress_bar(label: str):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[live]}")]
    with Progress(*columns, transient=False) as bar:
        tid = bar.add_task(label, total=None, live="")

        def update(state):
            live = f"loss {state.loss.item():.4f}" if state.loss is not None else ""
            if state.last_score is not None:
                live += f"  dev {state.last_score:.4f}"
            bar.update(tid, completed=state.step, total=state.total_steps, live=live)

        yield update
