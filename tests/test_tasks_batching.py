"""Length bucketing, subsetting and collate on synthetic features (no data, no tokenizer)."""
import random
import types

import pytest

from prunelab.tasks import get_task
from prunelab.tasks.base import collate_features, length_stats, make_batches, subset

PAD = types.SimpleNamespace(pad_token_id=5, pad_token_type_id=0)


def feats(n, seed=0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.randint(2, 60)
        out.append({"input_ids": [7] * k, "attention_mask": [1] * k, "labels": i % 3, "_i": i})
    return out


def ids(batches):
    return [[f["_i"] for f in b] for b in batches]


def test_training_batches_cover_everything_once_and_are_seeded():
    fs = feats(1000)
    a = ids(make_batches(fs, 16, shuffle=True, seed=0, chunk_batches=5))
    assert sorted(i for b in a for i in b) == list(range(1000))
    # chunks of 5*16=80 split into full batches; only the last chunk (40) leaves a short one
    assert sorted(len(b) for b in a) == [8] + [16] * 62
    assert a == ids(make_batches(fs, 16, shuffle=True, seed=0, chunk_batches=5))
    assert a != ids(make_batches(fs, 16, shuffle=True, seed=1, chunk_batches=5))


def test_bucketed_batches_have_similar_lengths():
    fs = feats(2000)

    def spread(batches):
        return sum(max(len(f["input_ids"]) for f in b) - min(len(f["input_ids"]) for f in b)
                   for b in batches)

    bucketed = list(make_batches(fs, 32, shuffle=True, seed=0))
    plain = list(make_batches(fs, 32, shuffle=True, seed=0, bucket=False))
    assert spread(bucketed) < 0.3 * spread(plain)
    # batch order is shuffled: lengths do not simply rise from batch to batch within a chunk
    firsts = [len(b[0]["input_ids"]) for b in bucketed]
    drops = sum(a > b for a, b in zip(firsts, firsts[1:]))
    assert drops > len(firsts) // 4


def test_eval_batches_sorted_or_in_order():
    fs = feats(100)
    flat = [f for b in make_batches(fs, 7, shuffle=False, seed=0) for f in b]
    lengths = [len(f["input_ids"]) for f in flat]
    assert lengths == sorted(lengths) and len(flat) == 100
    plain = ids(make_batches(fs, 7, shuffle=False, seed=0, bucket=False))
    assert [i for b in plain for i in b] == list(range(100))
    assert [len(b) for b in plain] == [7] * 14 + [2]


def test_task_batches_uses_the_same_engine():
    fs = feats(300)
    task = get_task("sst2")
    assert ids(task.batches(fs, 8, True, 4)) == ids(make_batches(fs, 8, True, 4))


def test_collate_pads_and_drops_private_keys():
    fs = [{"input_ids": [1, 2, 3], "attention_mask": [1, 1, 1], "labels": [1, 2, 3], "_x": "keep"},
          {"input_ids": [4], "attention_mask": [1], "labels": [4], "_x": "out"}]
    batch = collate_features(fs, PAD)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 5, 5]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[1, 2, 3], [4, -100, -100]]


def test_collate_without_pad_token_uses_eos():
    tok = types.SimpleNamespace(pad_token_id=None, eos_token_id=2)
    batch = collate_features([{"input_ids": [9, 9]}, {"input_ids": [9]}], tok)
    assert batch["input_ids"].tolist() == [[9, 9], [9, 2]]


def test_plain_subset_is_seeded_and_ordered():
    xs = [{"v": i} for i in range(50)]
    a = subset(xs, 10, seed=0)
    assert [x["v"] for x in a] == sorted(x["v"] for x in a)
    assert a == subset(xs, 10, seed=0) and a != subset(xs, 10, seed=9)
    assert subset(xs, 500, seed=0) == xs


def test_stratified_subset_rounding():
    # 70 of label "a", 20 of "b", 10 of "c"; 15 picks -> exact shares 10.5, 3, 1.5
    xs = [{"label": "a"}] * 70 + [{"label": "b"}] * 20 + [{"label": "c"}] * 10
    xs = [dict(x, i=i) for i, x in enumerate(xs)]
    got = [x["label"] for x in subset(xs, 15, seed=0, stratify_key="label")]
    counts = {k: got.count(k) for k in "abc"}
    assert counts["b"] == 3 and sum(counts.values()) == 15
    assert counts in ({"a": 11, "b": 3, "c": 1}, {"a": 10, "b": 3, "c": 2})


def test_length_stats():
    fs = [{"input_ids": [0] * n} for n in range(1, 101)]
    stats = length_stats(fs)
    assert stats == {"count": 100, "mean": 50.5, "p50": 50.0, "p95": 95.0, "max": 100, "min": 1}
    assert length_stats([])["count"] == 0


def test_batch_size_must_be_positive():
    from prunelab.errors import PrunelabError
    with pytest.raises(PrunelabError):
        list(make_batches(feats(3), 0, shuffle=False, seed=0))
