"""Executors with the simulated runner: fresh process per cell, skip done, retry failed,
resume after the driver is killed with SIGKILL (Ray: test_ablation_ray.py)."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from prunelab.ablation.executors import run_matrix
from prunelab.ablation.fake import register_fake_methods
from prunelab.ablation.matrix import build_matrix
from prunelab.ablation.plan import Ablation, Plan
from prunelab.ablation.presets import base_config
from prunelab.ablation.resolve import resolve_plan
from prunelab.store import Store

RUNNER = "prunelab.ablation.fake:fake_runner"
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(autouse=True)
def fakes(monkeypatch, tmp_path):
    register_fake_methods()
    monkeypatch.setenv("PRUNELAB_FAKE_LOG", str(tmp_path / "calls.log"))
    for k in ("PRUNELAB_FAKE_SLEEP", "PRUNELAB_FAKE_FAIL", "PRUNELAB_FAKE_FAIL_ONCE", "PRUNELAB_FAKE_CRASH"):
        monkeypatch.delenv(k, raising=False)


def small_matrix(seeds=2, study="s"):
    plan = Plan("p", "fake_apt", [
        Ablation(name="No KD", ablated_part="self-distillation", action="REMOVE"),
        Ablation(name="Ratio", ablated_part="pruning ratio", action="ADD", replacement=["0.3"]),
    ])
    return build_matrix(resolve_plan(plan), base_config("tiny", "fake_apt"), seeds, study=study)


def calls(tmp_path) -> list[str]:
    f = tmp_path / "calls.log"
    return f.read_text().split("\n")[:-1] if f.exists() else []


def test_local_runs_each_cell_once_and_skips_done(tmp_path):
    store = str(tmp_path / "runs.db")
    m = small_matrix()
    s = run_matrix(m, store, workers=2, runner=RUNNER, progress=False, poll_s=0.05)
    assert (s.done, s.failed, s.skipped) == (6, 0, 0) and s.ok
    rows = Store(store).study("s")
    assert len(rows) == 6 and all(r["status"] == "done" for r in rows)
    assert len({r["pid"] for r in rows}) == 6 and os.getpid() not in {r["pid"] for r in rows}  # fresh processes
    assert len(calls(tmp_path)) == 6
    s2 = run_matrix(m, store, workers=2, runner=RUNNER, progress=False, poll_s=0.05)
    assert (s2.done, s2.skipped) == (0, 6)
    assert len(calls(tmp_path)) == 6


def test_failed_cells_are_retried(tmp_path, monkeypatch):
    store = str(tmp_path / "runs.db")
    monkeypatch.setenv("PRUNELAB_FAKE_FAIL_ONCE", str(tmp_path))
    m = small_matrix(seeds=1)
    s = run_matrix(m, store, workers=2, runner=RUNNER, progress=False, poll_s=0.05)
    assert s.failed == 3 and not s.ok
    assert all("simulated first-attempt failure" in err and "log:" in err for _, _, err in s.failures)
    s2 = run_matrix(m, store, workers=2, runner=RUNNER, progress=False, retry_failed=False, poll_s=0.05)
    assert (s2.done, s2.failed) == (0, 3)
    s3 = run_matrix(m, store, workers=2, runner=RUNNER, progress=False, poll_s=0.05)
    assert (s3.done, s3.failed) == (3, 0)
    assert all(r["attempts"] == 2 for r in Store(store).runs())


def test_rerun_runs_chosen_done_cells_again(tmp_path):
    from prunelab.ablation.cli import rerun_ids
    from prunelab.errors import PrunelabError

    store = str(tmp_path / "runs.db")
    m = small_matrix()
    run_matrix(m, store, workers=2, runner=RUNNER, progress=False, poll_s=0.05)
    assert len(calls(tmp_path)) == 6
    first = {r["id"]: r["started"] for r in Store(store).runs()}
    ids = rerun_ids(m, ["ratio/sparsity=0.3:1", "no-kd/none"])
    assert len(ids) == 3
    s = run_matrix(m, store, workers=2, runner=RUNNER, progress=False, poll_s=0.05, rerun=ids)
    assert (s.done, s.skipped, s.failed) == (3, 3, 0)
    again = [line.split()[0] for line in calls(tmp_path)[6:]]
    assert sorted(again) == sorted(ids)                     # exactly those ran again
    rows = {r["id"]: r for r in Store(store).runs()}
    assert all(rows[i]["started"] > first[i] and rows[i]["status"] == "done" for i in ids)
    with pytest.raises(PrunelabError, match="unknown cell to re-run 'ratio'.*valid: "):
        rerun_ids(m, ["ratio"])
    with pytest.raises(PrunelabError, match="no seed 7"):
        rerun_ids(m, ["ratio/sparsity=0.3:7"])


def test_a_crashing_cell_does_not_stop_the_others(tmp_path, monkeypatch):
    store = str(tmp_path / "runs.db")
    monkeypatch.setenv("PRUNELAB_FAKE_CRASH", "ratio/")
    m = small_matrix(seeds=1)
    s = run_matrix(m, store, workers=1, runner=RUNNER, progress=False, poll_s=0.05)
    assert (s.done, s.failed) == (2, 1)
    (cell, run_id, err), = s.failures
    assert cell == "ratio/sparsity=0.3" and "exited with code 3" in err
    assert Store(store).get(run_id)["status"] == "failed"


def test_progress_lines(tmp_path, capsys):
    store = str(tmp_path / "runs.db")
    run_matrix(small_matrix(seeds=1), store, workers=1, runner=RUNNER, progress=True, poll_s=0.05)
    err = capsys.readouterr().err
    assert err.count(" start  ") == 3 and err.count(" done   ") == 3 and "[3/3]" in err


DRIVER = textwrap.dedent("""
    import sys
    from prunelab.ablation.fake import register_fake_methods
    register_fake_methods()
    sys.path.insert(0, {tests!r})
    from test_ablation_exec import small_matrix
    from prunelab.ablation.executors import run_matrix
    run_matrix(small_matrix(seeds=2, study="killed"), {store!r}, workers=1, runner={runner!r}, progress=False,
               poll_s=0.05)
""")


def test_resume_after_the_driver_is_killed(tmp_path, monkeypatch):
    store = str(tmp_path / "runs.db")
    monkeypatch.setenv("PRUNELAB_FAKE_SLEEP", "0.7")
    env = dict(os.environ, PYTHONPATH=SRC)
    code = DRIVER.format(tests=str(Path(__file__).parent), store=store, runner=RUNNER)
    driver = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if Path(store).exists() and any(r["status"] == "done" for r in Store(store).runs()):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the first cell never finished")
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
    finished = {r["id"] for r in Store(store).runs() if r["status"] == "done"}
    assert finished and len(finished) < 6
    monkeypatch.setenv("PRUNELAB_FAKE_SLEEP", "0")
    s = run_matrix(small_matrix(seeds=2, study="killed"), store, workers=2, runner=RUNNER, progress=False,
                   poll_s=0.05)
    assert s.failed == 0 and s.done + s.skipped == 6 and s.skipped >= len(finished)
    ids = [line.split()[0] for line in calls(tmp_path)]
    for run_id in finished:
        assert ids.count(run_id) == 1          # a finished cell never runs again
    assert len(set(ids)) == 6 and len(ids) == 6  # the orphaned in-flight cell was waited for, not duplicated
    assert all(r["status"] == "done" for r in Store(store).study("killed"))


def test_two_drivers_on_one_store_run_each_cell_once(tmp_path, monkeypatch):
    # both drivers see all six cells as to-do; the cells' atomic claim decides who runs each,
    # and the loser's driver waits for the holder's row instead of running it again
    store = str(tmp_path / "runs.db")
    monkeypatch.setenv("PRUNELAB_FAKE_SLEEP", "0.3")
    env = dict(os.environ, PYTHONPATH=SRC)
    code = DRIVER.format(tests=str(Path(__file__).parent), store=store, runner=RUNNER)
    drivers = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(2)]
    for d in drivers:
        assert d.wait(180) == 0
    ids = [line.split()[0] for line in calls(tmp_path)]
    assert len(ids) == 6 and len(set(ids)) == 6
    assert all(r["status"] == "done" for r in Store(store).study("killed"))


def test_unknown_executor_and_bad_workers(tmp_path):
    from prunelab.errors import PrunelabError

    with pytest.raises(PrunelabError, match="unknown executor"):
        run_matrix(small_matrix(), str(tmp_path / "r.db"), executor="slurm")
    with pytest.raises(PrunelabError, match="workers"):
        run_matrix(small_matrix(), str(tmp_path / "r.db"), workers=0)


class _FakeRay:
    """Stands in for the `ray` module: records how the executor starts and stops it."""

    def __init__(self):
        self.calls = []
        self.up = False

    def is_initialized(self):
        return self.up

    def init(self, **kw):
        self.calls.append(("init", kw))
        self.up = True

    def shutdown(self):
        self.calls.append(("shutdown", {}))
        self.up = False

    def remote(self, **kw):
        self.calls.append(("remote", kw))
        return lambda fn: type("F", (), {"options": lambda _self, **o: self.calls.append(("options", o))})()


@pytest.mark.parametrize("env_address, expected", [(None, "local"), ("127.0.0.1:6379", "127.0.0.1:6379")])
def test_ray_address_is_ray_address_else_a_fresh_local_instance(monkeypatch, env_address, expected):
    # the real Ray runs in test_ablation_ray.py; this pins the choice of cluster without one
    from prunelab.ablation import executors

    fake = _FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    if env_address:
        monkeypatch.setenv("RAY_ADDRESS", env_address)
    else:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("PRUNELAB_DATA", "/data")
    executors._ray([], "runs.db", RUNNER, 1, None, None, 1, 0, None, [], set())
    kinds = [k for k, _ in fake.calls]
    assert kinds == ["init", "remote", "options", "shutdown"]      # we started it, so we stop it
    assert fake.calls[0][1]["address"] == expected                 # never address=None: that attaches to any
    assert fake.calls[1][1]["max_calls"] == 1 and fake.calls[1][1]["max_retries"] >= 1
    env = fake.calls[2][1]["runtime_env"]["env_vars"]
    assert env["PRUNELAB_DATA"] == "/data" and env["PYTHONPATH"].split(os.pathsep)[0] == SRC
    assert env["PYTHONPATH"].endswith("${PYTHONPATH}")            # the node's own path is kept
    fake.calls.clear()
    fake.up = True
    executors._ray([], "runs.db", RUNNER, 1, None, None, 1, 0, None, [], set())   # already up: left as found
    assert [k for k, _ in fake.calls] == ["remote", "options"] and fake.up
