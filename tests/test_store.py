import os
import signal
import subprocess
import sys
import textwrap

import pytest

from prunelab.store import AlreadyDone, AlreadyRunning, Store, environment


def test_start_finish_fail(tmp_path):
    s = Store(tmp_path / "r.db")
    s.start("a", {"method": "ft", "model": "m", "task": "t", "seed": 0}, {"x": 1})
    assert s.get("a")["status"] == "running"
    s.finish("a", {"score": 0.5}, [{"step": 1, "seconds": 0.1, "score": 0.5}])
    row = s.get("a")
    assert row["status"] == "done" and row["metrics"]["score"] == 0.5 and row["curve"][0]["step"] == 1
    with pytest.raises(AlreadyDone):
        s.start("a", {"method": "ft"}, {})      # a done run is not claimed again by accident
    s.start("a", {"method": "ft"}, {}, force=True)   # a forced re-run replaces the row
    assert s.get("a")["status"] == "running" and s.get("a")["attempts"] == 2
    s.fail("a", "boom")
    assert s.get("a")["status"] == "failed" and s.get("a")["error"] == "boom"
    s.update_metrics("a", {"tta_s": 3.0})
    assert s.get("a")["metrics"]["tta_s"] == 3.0


def test_sigkill_leaves_running_row_read_as_failed(tmp_path):
    db = tmp_path / "r.db"
    code = textwrap.dedent(f"""
        import time
        from prunelab.store import Store
        s = Store({str(db)!r})
        s.start("k", {{"method": "ft"}}, {{}})
        print("started", flush=True)
        time.sleep(60)
        s.finish("k", {{"score": 1}}, [])
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert p.stdout.readline().strip() == "started"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    row = Store(db).get("k")
    assert row["status"] == "failed" and "died" in row["error"]
    assert row["metrics"] is None


def test_study_links(tmp_path):
    s = Store(tmp_path / "r.db")
    s.start("a", {"method": "ft", "seed": 0}, {})
    s.link("st", "baseline", 0, "a")
    s.link("st", "baseline", 1, "b")            # not run yet
    rows = s.study("st")
    assert [r["cell_seed"] for r in rows] == [0, 1] and rows[1]["status"] is None


def test_environment_records_versions_and_seed():
    env = environment(7, "cpu")
    assert env["seed"] == 7 and env["device"] == "cpu" and env["versions"]["torch"]
    assert "git_sha" in env


HOLDER = textwrap.dedent("""
    import sys, time
    from prunelab.store import Store
    Store(sys.argv[1]).start("h", {"method": "ft"}, {})
    print("claimed", flush=True)
    time.sleep(60)
""")


def test_a_live_holder_cannot_be_claimed_twice_but_a_dead_one_can(tmp_path):
    db = str(tmp_path / "r.db")
    p = subprocess.Popen([sys.executable, "-c", HOLDER, db], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert p.stdout.readline().strip() == "claimed"
        with pytest.raises(AlreadyRunning, match=f"pid {p.pid}"):
            Store(db).start("h", {"method": "ft"}, {})
        assert Store(db).get("h")["pid"] == p.pid           # the holder's row is untouched
    finally:
        p.kill()
        p.wait()
    Store(db).start("h", {"method": "ft"}, {})              # its process is gone: the run is free
    row = Store(db).get("h")
    assert row["pid"] == os.getpid() and row["attempts"] == 2


def test_wal_switch_waits_out_a_lock_instead_of_failing():
    # SQLite answers the journal-mode pragma 'database is locked' at once (no busy timeout)
    # while another process is creating the same store; opening must wait, not fail
    import sqlite3
    from prunelab import store

    class Conn:
        calls = 0

        def execute(self, sql):
            Conn.calls += 1
            if Conn.calls < 3:
                raise sqlite3.OperationalError("database is locked")

    store._wal(Conn())
    assert Conn.calls == 3

    class Broken:
        def execute(self, sql):
            raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError):   # other errors still surface at once
        store._wal(Broken())


def _open_after(barrier, path, out):
    barrier.wait()
    try:
        Store(path)
        out.put("ok")
    except Exception as e:     # noqa: BLE001 - the test reports whatever went wrong
        out.put(str(e))


def test_many_processes_open_one_new_store_together(tmp_path):
    # the race behind a red CI: two study drivers creating one store in the same instant
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    for round_ in range(10):
        barrier, out = ctx.Barrier(5), ctx.Queue()
        procs = [ctx.Process(target=_open_after, args=(barrier, str(tmp_path / f"r{round_}.db"), out))
                 for _ in range(5)]
        for p in procs:
            p.start()
        got = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(60)
        assert got == ["ok"] * 5, got
