"""Without a terminal (CI, nohup, a pipe) `prunelab train` logs progress lines while it runs,
and the running row in the store carries the latest step and score."""
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from prunelab.cli import main
from prunelab.store import Store

SRC = str(Path(__file__).resolve().parents[1] / "src")


def cli_env():
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    env.pop("PRUNELAB_DEBUG", None)
    return env


def tiny_train(sst2_dir, store, *extra, steps=12):
    return ["train", "--method", "ft", "--model", "tiny-bert", "--task", "glue/sst2", "--data-dir", sst2_dir,
            "--train-limit", "48", "--eval-limit", "12", "--batch-size", "8", "--max-steps", str(steps),
            "--eval-points", "2", "--store", str(store), "--set", "measure.throughput=false", *extra]


def test_progress_lines_arrive_while_the_run_is_still_going(sst2_dir, tmp_path):
    store = tmp_path / "r.db"
    proc = subprocess.Popen([sys.executable, "-m", "prunelab.cli", *tiny_train(sst2_dir, store, "--log-every", "3")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env())
    lines, alive_at_first_step = [], None
    for line in proc.stderr:
        lines.append(line)
        if alive_at_first_step is None and " step " in line:
            alive_at_first_step = proc.poll() is None
    out = proc.stdout.read()
    assert proc.wait(timeout=120) == 0, "".join(lines)
    assert alive_at_first_step, "the first step line only came when the process had ended"
    text = "".join(lines)
    assert "phase train" in text and "steps=12" in text
    steps = [ln for ln in lines if " step " in ln]
    assert [ln.split(" step ")[1].split("/")[0] for ln in steps] == ["3", "6", "9", "12"]
    assert "loss " in steps[0] and "eta " in steps[0] and "elapsed " in steps[0]
    assert "dev " in steps[1]                 # step 6 is an eval point: its line has the dev score
    assert "done" in out and "ft" in out      # the final table still goes to stdout
    row = Store(store).runs()[0]
    assert row["progress"]["step"] == 12 and row["progress"]["total_steps"] == 12
    assert row["progress"]["score"] is not None


def test_runs_ls_shows_step_and_score_of_running_rows(tmp_path, capsys):
    store = Store(tmp_path / "r.db")
    store.start("abc123", {"method": "ft", "model": "tiny-bert", "task": "glue/sst2", "seed": 0}, {})
    store.set_progress("abc123", {"phase": "train", "step": 30, "total_steps": 120, "loss": 0.5, "score": 0.75,
                                  "elapsed": 60.0, "eta": 180.0})
    assert main(["runs", "ls", "--store", str(store.path)]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("abc123") and "phase" in ln)
    assert "step 30/120" in line and "dev 0.7500" in line and "eta 0:03:00" in line and "phase train" in line


def test_progress_is_only_written_to_our_running_row(tmp_path):
    store = Store(tmp_path / "r.db")
    store.start("r1", {"method": "ft"}, {})
    store.finish("r1", {"score": 1.0}, [])
    store.set_progress("r1", {"step": 5})
    assert store.get("r1")["progress"] is None


OLD_SCHEMA = """CREATE TABLE runs (id TEXT PRIMARY KEY, method TEXT, model TEXT, task TEXT, seed INTEGER,
    status TEXT NOT NULL, error TEXT, config TEXT NOT NULL, metrics TEXT, curve TEXT, env TEXT,
    pid INTEGER, host TEXT, started REAL, finished REAL, attempts INTEGER DEFAULT 1)"""


def test_a_store_made_before_the_new_columns_gets_them(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as c:
        c.execute(OLD_SCHEMA)
        c.execute("INSERT INTO runs (id, method, status, config) VALUES ('old', 'ft', 'done', '{}')")
    store = Store(path)
    assert store.get("old")["status"] == "done" and store.get("old")["progress"] is None
    Store(path)                               # opening it again is fine
    store.start("new", {"method": "ft"}, {})
    store.set_progress("new", {"step": 1})
    assert store.get("new")["progress"]["step"] == 1


def test_the_api_run_py_uses_none_and_bare_callables_included(tmp_path):
    from types import SimpleNamespace

    from prunelab.progress import Progress, attach, phase

    phase(None, "measure")                    # no-op defaults: nothing to check for
    phase(print, "measure")
    store = Store(tmp_path / "r.db")
    store.start("r1", {"method": "ft"}, {})
    seen = []
    progress = attach(seen.append, store, "r1")
    assert isinstance(progress, Progress)
    progress.phase("train", steps=4)
    state = SimpleNamespace(step=1, total_steps=4, loss=None, last_score=0.5, best_score=0.5)
    progress(state)
    assert seen == [state]
    phase(progress, "measure")
    assert store.get("r1")["progress"] == {**store.get("r1")["progress"], "phase": "measure", "step": 1, "score": 0.5}
    assert attach(None, store, "r1").store is store
