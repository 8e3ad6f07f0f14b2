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
