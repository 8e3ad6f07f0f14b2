"""`prunelab ablate --seeds auto` (issue 12, "Studies that can tell") with the simulated runner:
a large effect stops at 3 seeds, a noisy small one adds seeds up to the cap, a killed driver
resumes without re-running finished cells, bad arguments exit 2 before a study is written; and
no bootstrap interval is reported below 3 seeds in any report file."""
import csv
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prunelab.ablation import adaptive, cli
from prunelab.ablation.fake import fake_runner, register_fake_methods
from prunelab.ablation.studies import list_studies, load_study
from prunelab.errors import PrunelabError
from prunelab.store import Store

RUNNER = "prunelab.ablation.fake:fake_runner"
SRC = str(Path(__file__).resolve().parents[1] / "src")
PLAN = ("name: seeds\nmethod: fake_apt\nablations:\n"
        "  - {name: No KD, ablated_part: self-distillation, action: REMOVE, metrics: [accuracy]}\n"
        "  - {name: Random salience, ablated_part: salience, action: REPLACE, replacement: [random scoring],\n"
        "     metrics: [accuracy]}\n")
KD, RANDOM = "no-kd/none", "random-salience/random"


@pytest.fixture(autouse=True)
def fakes(monkeypatch, tmp_path):
    register_fake_methods()
    monkeypatch.setenv("PRUNELAB_FAKE_LOG", str(tmp_path / "calls.log"))
    for k in ("PRUNELAB_FAKE_SLEEP", "PRUNELAB_FAKE_FAIL", "PRUNELAB_FAKE_FAIL_ONCE", "PRUNELAB_FAKE_CRASH",
              "PRUNELAB_FAKE_SHIFT", "PRUNELAB_FAKE_NOISE"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture
def plan(tmp_path):
    p = tmp_path / "plan.yaml"
    p.write_text(PLAN)
    return str(p)


def calls(tmp_path) -> list[tuple[str, str, int]]:
    f = tmp_path / "calls.log"
    rows = [line.split() for line in f.read_text().splitlines()] if f.exists() else []
    return [(r[0], r[1], int(r[2])) for r in rows]


def run_auto(plan, store, **kw):
    out = io.StringIO()
    code = cli.ablate(plan, preset="tiny", seeds="auto", store=store, study="s", runner=RUNNER, workers=2,
                      progress=False, reference=False, out=out, **kw)
    return code, out.getvalue()


# ----------------------------------------------------------------------------- the rule

def test_a_large_effect_stops_at_three_seeds(plan, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNELAB_FAKE_SHIFT", f"{KD}=-0.10,{RANDOM}=-0.08")
    store = str(tmp_path / "runs.db")
    code, log = run_auto(plan, store)
    assert code == 0
    meta = load_study(store, "s")
    ad = meta["adaptive"]
    assert meta["seeds"] == [0, 1, 2] and ad["n"] == 3 and ad["stop"] == "decided"
    assert [c["status"] for c in ad["checks"]] == ["decided", "decided"]
    assert all(c["hi"] < 0 for c in ad["checks"])
    assert sorted(seed for _, _, seed in calls(tmp_path)) == [0, 0, 0, 1, 1, 1, 2, 2, 2]   # no 4th seed
    assert "n = 3 per cell; stopped because every comparison's interval excludes 0 (all decided)" in log
    # the report says the seeds were chosen adaptively, the rule, n per cell and why it stopped
    paths = cli.report("s", store, str(tmp_path / "rep"))
    md = Path([p for p in paths if p.endswith("report.md")][0]).read_text()
    assert "## Seeds (chosen adaptively)" in md and "--seeds auto --ci-width 2% --max-seeds 8" in md
    assert "Rule: start with 3 seeds per cell" in md
    assert "Stopped at n = 3 seeds per cell because every comparison's interval excludes 0 (all decided)." in md
    assert "| baseline | 3 |" in md and f"| {KD} | 3 |" in md and f"| {RANDOM} | 3 |" in md
    section = Path([p for p in paths if p.endswith("section.md")][0]).read_text()
    assert "The number of seeds was chosen adaptively" in section and "stopped at n = 3 seeds per cell because " \
        "every interval excluded 0" in section
    assert "optional stopping" in section
    assert "chosen adaptively, stopped: decided" in Path([p for p in paths if p.endswith("section.tex")][0]).read_text()


def test_a_noisy_small_effect_adds_seeds_up_to_the_cap(plan, tmp_path, monkeypatch):
    # No KD: a large effect, decided at once; random salience: -0.005 under noise spanning 0.2
    monkeypatch.setenv("PRUNELAB_FAKE_SHIFT", f"{KD}=-0.10,{RANDOM}=-0.005")
    monkeypatch.setenv("PRUNELAB_FAKE_NOISE", f"{RANDOM}=0.2")
    store = str(tmp_path / "runs.db")
    code, log = run_auto(plan, store, max_seeds=5)
    assert code == 0
    meta = load_study(store, "s")
    ad = meta["adaptive"]
    assert meta["seeds"] == [0, 1, 2, 3, 4] and ad["n"] == 5 and ad["stop"] == "cap"
    status = {c["cell"]: c["status"] for c in ad["checks"]}
    assert status == {KD: "decided", RANDOM: "open"}
    assert [r["n"] for r in ad["rounds"]] == [3, 4, 5] and all(r["open"] == 1 for r in ad["rounds"])
    # seeds added are the next integers, to every cell, each run once
    ran = calls(tmp_path)
    assert sorted(s for _, _, s in ran) == sorted(list(range(5)) * 3) and len({r for r, _, _ in ran}) == 15
    assert log.count("adding seed") == 2 and "adding seed 3" in log and "adding seed 4" in log
    assert "(cap reached)" in log
    paths = cli.report("s", store, str(tmp_path / "rep"))
    md = Path([p for p in paths if p.endswith("report.md")][0]).read_text()
    assert "Stopped at n = 5 seeds per cell because the seed cap was reached" in md
    assert "| baseline | 5 |" in md and f"| {RANDOM} | 5 |" in md


def test_a_null_effect_stops_when_the_interval_is_narrow(plan, tmp_path, monkeypatch):
    # random salience at the baseline's level: its interval keeps 0 and narrows below 2% of 0.9
    monkeypatch.setenv("PRUNELAB_FAKE_SHIFT", f"{KD}=-0.10,{RANDOM}=0")
    store = str(tmp_path / "runs.db")
    code, log = run_auto(plan, store, max_seeds=6)
    assert code == 0
    ad = load_study(store, "s")["adaptive"]
    assert ad["stop"] == "width" and ad["n"] < 6
    rnd = next(c for c in ad["checks"] if c["cell"] == RANDOM)
    assert rnd["status"] == "narrow" and rnd["lo"] <= 0 <= rnd["hi"] and rnd["width"] < 0.02 * 0.9 + 0.001
    assert rnd["limit"] == pytest.approx(0.02 * 0.9, rel=0.02)
    # an absolute width too wide to ever matter: stops at 3 by width
    code, _ = run_auto(plan, str(tmp_path / "wide.db"), ci_width="0.5")
    assert load_study(str(tmp_path / "wide.db"), "s")["adaptive"]["stop"] == "width"
    assert load_study(str(tmp_path / "wide.db"), "s")["seeds"] == [0, 1, 2]


def test_rule_pieces():
    assert adaptive.t_interval([0.1]) is None
    lo, hi = adaptive.t_interval([-0.01, -0.012, -0.011])
    assert lo < -0.011 < hi < 0
    # the t interval excludes 0 exactly when the paired t-test is significant
    from prunelab.ablation.stats import paired

    for diffs in ([0.01, 0.02, -0.001], [0.01, 0.012, 0.011], [0.03, -0.01, 0.02, 0.025]):
        c = paired({i: 0.0 for i in range(len(diffs))}, dict(enumerate(diffs)))
        lo, hi = adaptive.t_interval(diffs)
        assert (lo > 0 or hi < 0) == c.significant
    assert adaptive.stop_reason([{"status": "decided"}], 3, 8) == "decided"
    assert adaptive.stop_reason([{"status": "decided"}, {"status": "narrow"}], 3, 8) == "width"
    assert adaptive.stop_reason([{"status": "decided"}, {"status": "open"}], 7, 8) is None
    assert adaptive.stop_reason([{"status": "open"}], 8, 8) == "cap"
    assert adaptive.stop_reason([{"status": "no data"}], 3, 8) == "no data"
    assert adaptive.parse_width("2%").limit(0.9) == pytest.approx(0.018)
    assert adaptive.parse_width("0.5").limit(None, scale=1 / 60) == pytest.approx(30.0)   # min shown, s stored


# ----------------------------------------------------------------------------- resume

DRIVER = """
import sys
from prunelab.ablation.fake import register_fake_methods
from prunelab.ablation import cli
register_fake_methods()
sys.exit(cli.ablate({plan!r}, preset="tiny", seeds="auto", max_seeds=5, store={store!r}, study="s",
                    runner={runner!r}, workers=1, progress=False, reference=False))
"""


def test_resume_after_a_killed_driver_does_not_rerun_finished_cells(plan, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNELAB_FAKE_SHIFT", f"{KD}=-0.10,{RANDOM}=-0.005")
    monkeypatch.setenv("PRUNELAB_FAKE_NOISE", f"{RANDOM}=0.2")
    store = str(tmp_path / "runs.db")
    env = dict(os.environ, PYTHONPATH=SRC, PRUNELAB_FAKE_SLEEP="0.4")
    driver = subprocess.Popen([sys.executable, "-c", DRIVER.format(plan=plan, store=store, runner=RUNNER)], env=env)
    try:
        deadline = time.time() + 150
        while time.time() < deadline:       # kill it in the second round: a seed-3 run has finished
            if Path(store).exists() and any(r["status"] == "done" and r["cell_seed"] == 3
                                            for r in Store(store).study("s")):
                break
            if driver.poll() is not None:
                pytest.fail(f"the driver ended (code {driver.returncode}) before it was killed")
            time.sleep(0.05)
        else:
            pytest.fail("no seed-3 run finished")
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
    before = {r["id"] for r in Store(store).runs() if r["status"] == "done"}
    assert 9 < len(before) < 15
    assert load_study(store, "s")["adaptive"]["stop"] is None          # the study knows it is unfinished
    code, log = run_auto(plan, store, max_seeds=5)
    assert code == 0
    ids = [r for r, _, _ in calls(tmp_path)]
    assert all(ids.count(r) == 1 for r in before)                       # a finished cell never runs again
    assert len(ids) == len(set(ids)) == 15                              # nor does the orphan in flight
    done, skipped = map(int, re.search(r"(\d+) run\(s\) done, (\d+) already done", log).groups())
    assert done + skipped == 15 and skipped in (len(before), len(before) + 1)   # + the orphan, if it finished
    ad = load_study(store, "s")["adaptive"]
    assert ad["stop"] == "cap" and ad["n"] == 5 and [r["n"] for r in ad["rounds"]] == [3, 4, 5]
    # the rule is recomputed from the stored results: a second resume runs nothing and agrees
    code, log = run_auto(plan, store, max_seeds=5)
    assert code == 0 and len(calls(tmp_path)) == 15 and "0 run(s) done, 15 already done" in log
    assert load_study(store, "s")["adaptive"]["checks"] == ad["checks"]


def test_failed_runs_stop_the_rounds_until_retried(plan, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNELAB_FAKE_SHIFT", f"{KD}=-0.10,{RANDOM}=-0.08")
    monkeypatch.setenv("PRUNELAB_FAKE_FAIL", RANDOM)
    store = str(tmp_path / "runs.db")
    code, log = run_auto(plan, store)
    assert code == 1 and "re-run the same command" in log
    assert load_study(store, "s")["adaptive"]["stop"] is None and load_study(store, "s")["seeds"] == [0, 1, 2]
    monkeypatch.delenv("PRUNELAB_FAKE_FAIL")
    code, log = run_auto(plan, store)
    assert code == 0 and load_study(store, "s")["adaptive"]["stop"] == "decided"
    assert "3 run(s) done, 6 already done" in log
    done_twice = [r for r, c, _ in calls(tmp_path) if c != RANDOM]
    assert len(done_twice) == len(set(done_twice)) == 6


# ----------------------------------------------------------------------------- arguments

@pytest.mark.parametrize("flags, words", [
    (["--seeds", "sometimes"], ["--seeds", "whole number >= 1", "'auto'", "'sometimes'"]),
    (["--seeds", "0"], ["--seeds", "whole number >= 1", "'auto'"]),
    (["--seeds", "2.5"], ["--seeds", "'auto'"]),
    (["--seeds", "auto", "--ci-width", "0"], ["--ci-width", "positive number", "percentage", "'0'"]),
    (["--seeds", "auto", "--ci-width=-1%"], ["--ci-width", "positive number", "percentage"]),
    (["--seeds", "auto", "--ci-width", "wide"], ["--ci-width", "'wide'"]),
    (["--seeds", "auto", "--max-seeds", "2"], ["--max-seeds", "whole number >= 3", "'2'"]),
    (["--seeds", "auto", "--max-seeds", "many"], ["--max-seeds", "whole number >= 3"]),
    (["--seeds", "3", "--ci-width", "2%"], ["--ci-width", "only apply with --seeds auto"]),
    (["--max-seeds", "5"], ["--max-seeds", "only apply with --seeds auto"]),
])
def test_bad_seed_arguments_exit_2_before_a_study_is_written(plan, tmp_path, capsys, monkeypatch, flags, words):
    from prunelab.cli import main

    def must_not_run(*a, **k):
        raise AssertionError("runs started")

    monkeypatch.setattr(cli, "run_matrix", must_not_run)
    store = tmp_path / "runs.db"
    assert main(["ablate", plan, "--store", str(store), "--study", "s"] + flags) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("prunelab: error: ")
    for w in words:
        assert w in err, (w, err)
    assert not store.exists() or not list_studies(str(store))


def test_plain_integer_seeds_unchanged(plan, tmp_path, monkeypatch):
    from prunelab.cli import main

    seen = {}
    monkeypatch.setattr(cli, "ablate", lambda *a, **k: seen.update(k) or 0)
    assert main(["ablate", plan, "--seeds", "2"]) == 0
    assert adaptive.parse_seed_options(seen["seeds"], seen["ci_width"], seen["max_seeds"]).fixed == 2
    monkeypatch.undo()
    register_fake_methods()
    monkeypatch.setenv("PRUNELAB_FAKE_LOG", str(tmp_path / "calls.log"))
    out = io.StringIO()
    code = cli.ablate(plan, preset="tiny", seeds=2, store=str(tmp_path / "r.db"), study="s", runner=RUNNER,
                      workers=2, progress=False, reference=False, out=out)
    assert code == 0 and "3 cells x 2 seeds = 6 (6 distinct runs)" in out.getvalue()
    meta = load_study(str(tmp_path / "r.db"), "s")
    assert meta["seeds"] == [0, 1] and "adaptive" not in meta
    with pytest.raises(PrunelabError, match="--seeds must be a whole number >= 1 or 'auto'"):
        adaptive.parse_seed_options(True)


# ----------------------------------------------------------------------------- no interval below 3 seeds

CI_TEXT = re.compile(r"\[[+-][0-9.]+[^\]]*, [+-][0-9.]+[^\]]*\]")


def _fake_study(tmp_path, name: str, seeds: int, fail=()) -> Store:
    """A `seeds`-seed fake_apt study of PLAN in its own store; the (cell, seed) links in `fail`
    are stored as failed runs."""
    from prunelab.ablation.matrix import build_matrix
    from prunelab.ablation.parse import load_plan
    from prunelab.ablation.presets import base_config
    from prunelab.ablation.resolve import resolve_plan
    from prunelab.ablation.studies import save_study, study_meta

    p = tmp_path / "plan.yaml"
    p.write_text(PLAN)
    m = build_matrix(resolve_plan(load_plan(p)), base_config("tiny", "fake_apt"), seeds, study=name)
    store = Store(tmp_path / f"{name}.db")
    save_study(store.path, study_meta(m, "tiny"))
    for run in m.runs:
        for c, s in run.links:
            store.link(m.study, c, s, run.run_id)
        if run.links[0] in fail:
            store.start(run.run_id, run.config.to_dict(), {})
            store.fail(run.run_id, "simulated")
        else:
            fake_runner(run.config, store)
    return store


def _two_and_three_pair_study(tmp_path):
    """A 3-seed study where No KD has 3 paired seeds and random salience only 2 (one failed)."""
    return _fake_study(tmp_path, "ci", 3, fail=[(RANDOM, 2)])


def test_no_bootstrap_interval_below_three_paired_seeds_in_any_report_file(tmp_path):
    from prunelab.ablation.report import write_report

    store = _two_and_three_pair_study(tmp_path)
    out = tmp_path / "rep"
    write_report("ci", store, out)
    md = (out / "report.md").read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines()
            if line.startswith("| ") and "| accuracy |" in line}
    kd_row = next(v for k, v in rows.items() if k.startswith("none"))
    rnd_row = next(v for k, v in rows.items() if k.startswith("random"))
    assert CI_TEXT.search(kd_row) and "| 3 |" in kd_row           # 3 pairs: an interval
    assert not CI_TEXT.search(rnd_row) and "-- (< 3 seeds)" in rnd_row and "| 2 |" in rnd_row
    res = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    by_cell = {r["cell"]: r for r in res}
    assert by_cell[KD]["ci_lo"] and by_cell[KD]["ci_hi"]
    assert by_cell[RANDOM]["n"] == "2" and by_cell[RANDOM]["ci_lo"] == "" and by_cell[RANDOM]["ci_hi"] == ""
    section = (out / "section.md").read_text()
    prose = section.split("```latex")[0]
    kd_par, rnd_par = prose.split("#### 6.1")[1].split("#### 6.2")
    assert "95% CI [" in kd_par and "95% CI" not in rnd_par and ", 2 paired seeds" in rnd_par
    assert "where at least 3 paired seeds exist" in prose
    for tex in ("section.tex", "report.tex"):
        text = (out / tex).read_text()
        for line in text.splitlines():
            if line.startswith("Random salience"):
                assert not CI_TEXT.search(line) and " & -- & " in line, line
    kd_tex = next(line for line in (out / "section.tex").read_text().splitlines() if line.startswith("No KD"))
    assert CI_TEXT.search(kd_tex)
    html = (out / "report.html").read_text()
    assert html.count("-- (&lt; 3 seeds)") + html.count("-- (< 3 seeds)") == 1


def test_two_seed_study_reports_no_interval_anywhere(tmp_path):
    from prunelab.ablation.report import write_report

    store = _fake_study(tmp_path, "two", 2)
    out = tmp_path / "rep"
    write_report("two", store, out)
    for name in ("report.md", "section.md", "section.tex", "report.tex", "report.html"):
        text = (out / name).read_text()
        assert not CI_TEXT.search(text), name
        assert "95% CI [" not in text, name
    assert "no confidence intervals (a bootstrap interval needs at least 3 paired seeds" in \
        (out / "section.md").read_text()
    assert all(r["ci_lo"] == "" for r in csv.DictReader(io.StringIO((out / "results.csv").read_text())))
