"""Derived comparisons (issue 10): TTA over seeds counts every seed; relative accuracy (seed 003)."""
import pytest

from prunelab.derived import relative_accuracy, relative_accuracy_of, relative_accuracy_of_rows, tta_aggregate, tta_ratio
from prunelab.store import Store


def test_tta_counts_seeds_that_never_reached_the_target():
    a = tta_aggregate([10.0, None, 30.0])
    assert a["reached"] == 2 and a["n"] == 3
    assert a["mean"] is None                                   # never a mean over the survivors
    assert a["median"] == 30.0                                 # the unreached seed ranks as slowest
    assert "2/3 reached" in a["label"] and "not reached within budget" in a["label"]
    assert tta_aggregate([None, None, 5.0])["median"] is None
    full = tta_aggregate([10.0, 20.0])
    assert full["mean"] == 15.0 and full["reached"] == 2 and "2/2" in full["label"]
    assert tta_ratio([10.0, None], [5.0, 5.0]) is None
    assert tta_ratio([10.0, 20.0], [5.0, 5.0]) == 3.0


def test_relative_accuracy_is_the_ratio_of_task_means():
    got = relative_accuracy_of({"glue/sst2": [0.90, 0.92], "glue/mnli": [0.80]},
                               {"glue/sst2": [0.95], "glue/mnli": [0.85, 0.87]})
    assert got["value"] == pytest.approx(((0.91 + 0.80) / 2) / ((0.95 + 0.86) / 2))
    assert got["per_task"]["glue/sst2"] == pytest.approx(0.91 / 0.95) and got["missing"] == []
    miss = relative_accuracy_of({"glue/sst2": [0.9], "glue/mnli": [0.8]}, {"glue/sst2": [0.95]})
    assert miss["value"] is None and miss["missing"] == ["glue/mnli"]


def test_relative_accuracy_of_rows_uses_the_stores_ft_runs(tmp_path):
    store = Store(str(tmp_path / "r.db"))
    for i, (method, task, score) in enumerate([("ft", "glue/sst2", 0.9), ("ft", "glue/mnli", 0.8),
                                               ("apt", "glue/sst2", 0.87), ("apt", "glue/mnli", 0.76)]):
        cfg = {"method": method, "model": "m", "task": task, "seed": 0, "train": {}}
        store.start(f"r{i}", cfg, {})
        store.finish(f"r{i}", {"score": score, "higher_is_better": True}, [])
    rows = store.runs(status="done", method="apt")
    got = relative_accuracy_of_rows(rows, store)
    assert got["value"] == pytest.approx((0.87 + 0.76) / (0.9 + 0.8)) and got["tasks"] == ["glue/mnli", "glue/sst2"]
    assert relative_accuracy(store, "apt", "m") == pytest.approx(got["value"])
    assert relative_accuracy(store, "apt", "m", tasks=("glue/sst2", "glue/qnli")) is None


def test_speedup_uses_cpu_time_throughput_when_every_side_has_it(tmp_path):
    """A one-thread CPU run that waited for the core has a deflated wall throughput; its
    CPU-time throughput is not. speedup prefers the CPU-time ratio, else the wall one."""
    from prunelab.derived import with_derived

    store = Store(str(tmp_path / "r.db"))
    rows = [("ft", {"throughput_bs32": 25.0, "throughput_cpu_bs32": 25.0}),
            ("apt", {"throughput_bs32": 20.0, "throughput_cpu_bs32": 50.0}),   # waited half the time
            ("lora", {"throughput_bs32": 30.0})]                              # no CPU-time figure
    for i, (method, thr) in enumerate(rows):
        store.start(f"r{i}", {"method": method, "model": "m", "task": "t", "seed": 0, "train": {}}, {})
        store.finish(f"r{i}", {"score": 0.9, "higher_is_better": True, **thr}, [])
    apt = with_derived(store.get("r1"), store)["metrics"]
    assert apt["speedup_bs32"] == pytest.approx(0.8) and apt["speedup_cpu_bs32"] == pytest.approx(2.0)
    assert apt["speedup"] == pytest.approx(2.0)
    lora = with_derived(store.get("r2"), store)["metrics"]
    assert "speedup_cpu_bs32" not in lora and lora["speedup"] == pytest.approx(1.2)
