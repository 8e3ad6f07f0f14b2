"""benchmarks/apt.py's accuracy-gap section on made-up runs (no training): every control gets
its paired row and its line in the controls table, with numbers computed from the runs."""
import json
import statistics

import pytest

from paths import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("apt")


def _rows(scores: dict, mem: dict) -> dict:
    return {k: [{"seed": i, "metrics": {"score": s, "train_peak_mem_mb": mem[k]}} for i, s in enumerate(v)]
            for k, v in scores.items()}


def test_gap_section_pairs_every_control_with_apt_by_seed(bench):
    scores = {"ft": [0.86, 0.85, 0.87], "lora": [0.82, 0.82, 0.83], "apt": [0.83, 0.82, 0.84],
              "apt_unpruned": [0.85, 0.85, 0.86], "apt_snapshot": [0.84, 0.82, 0.85]}
    mem = {"ft": 700.0, "lora": 420.0, "apt": 450.0, "apt_unpruned": 510.0, "apt_snapshot": 490.0}
    text = "\n".join(bench.gap_section(_rows(scores, mem)))
    lines = {l.split(" | ")[0][2:]: l for l in text.splitlines() if l.startswith("| ") and " - " in l[:30]}
    assert "| +0.67 |" in lines["apt_snapshot - apt"]         # (+1, 0, +1) points
    assert "| +2.33 |" in lines["ft - apt_snapshot"]          # (+2, +3, +2)
    assert "| +3.00 |" in lines["ft - apt"] and "| +2.33 |" in lines["apt_unpruned - apt"]
    row = next(l for l in text.splitlines() if l.startswith("| APT, teacher keeps the dropped weights"))
    assert "0.8367" in row and f"{490 / 700:.3f}" in row and row.rstrip().endswith("| 3 |")
    # without the pruning-off control there is nothing to split
    assert bench.gap_section(_rows({k: v for k, v in scores.items() if k != "apt_unpruned"}, mem)) == []


def test_speedup_pairs_times_of_the_same_round():
    """A shared machine slows whole rounds at once; pairing within the round cancels that, where
    the ratio of the two medians does not (here the pruned copy's median falls in a slow round)."""
    common = load_benchmark("common")
    dense = [1.0, 1.0, 3.0, 3.0, 3.0]            # rounds 3-5 run while another process is busy
    pruned = [0.5, 0.5, 0.5, 1.5, 1.5]           # round 3 caught a quiet moment for the copy only
    assert common.paired_speedup(dense, pruned) == 2.0
    assert statistics.median(dense) / statistics.median(pruned) == 6.0
    with pytest.raises(ValueError, match="one time per round"):
        common.paired_speedup(dense, pruned[:3])


def test_runs_from_an_earlier_results_file_keeps_the_seeds_asked_and_their_code(bench, tmp_path):
    runs = {k: [{"id": f"{k}{i}", "seed": i, "metrics": {"score": 0.8}} for i in (5, 6, 7)] for k in ("ft", "apt")}
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"runs": runs, "provenance": {"git_sha": "abc1234", "date": "2026-12-02"}}))
    path.with_suffix(".md").write_text("# x\n\nCode of the stored runs (reused): ft ['78c7815'], apt ['93d7155']\n")
    rows, code = bench.runs_from(str(path), [5, 7])
    assert [r["seed"] for r in rows["apt"]] == [5, 7] and rows["lora"] == []
    assert code.startswith("ft ['78c7815'], apt ['93d7155'] (read from") and "abc1234" in code


def test_runs_from_a_file_that_was_itself_read_from_another_names_the_latest_source_once(bench, tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"runs": {}, "provenance": {"git_sha": "def5678", "date": "2026-12-03"},
                                "runs_code": "ft ['78c7815'] (read from x.json, written at abc1234 on 2026-12-02)"}))
    _, code = bench.runs_from(str(path), [5])
    assert code == f"ft ['78c7815'] (read from {path}, written at def5678 on 2026-12-03)"
