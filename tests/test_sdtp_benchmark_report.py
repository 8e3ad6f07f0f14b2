"""benchmarks/sdtp.py's report on made-up numbers (no model): a row for every selector, and
notes that follow the numbers instead of a fixed story."""
import math

import pytest

from paths import load_benchmark
from prunelab.methods.sdtp.config import SELECTORS


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("sdtp")


def _quality(bench, nll_extra: dict, windows=8, M=32, final=None):
    """lm_quality-shaped results: dense nll 100 per window, option nll = 100 + extra[i]."""
    dense = [100.0] * windows
    by = {}
    for s, extra in nll_extra.items():
        nll = [100.0 + e for e in extra]
        rise = math.exp(sum(extra) / (M * windows)) - 1
        by[s] = {"ppl": 1.0, "ppl_rise": rise, "ppl_rise_ci": [rise, rise], "kl": 0.1, "kl_ci": [0.0, 0.2],
                 "top1": 0.9, "top1_ci": [0.8, 1.0], "flops_ratio": 1.5,
                 "final_tokens": (final or {}).get(s, 350.0 if s != "truncate" else 500.0),
                 "per_window": {"nll": nll}}
    q = {"windows": windows, "ctx_len": 1024, "cont_len": M, "ppl_dense": 10.0, "by_selector": by,
         "dense_nll_per_window": dense}
    q["paired_vs_learned"] = bench.paired_vs(q, "learned", 0)
    return q


def _meta(prior=1.0):
    return {"command": "x", "date": "d", "machine": "m", "git": {"sha": "abc", "dirty": False}, "seed": 0,
            "torch": "t", "transformers": "tf", "omp_wait_policy": "PASSIVE", "total_wall_s": 60.0,
            "load_average_end": (1.0, 1.0, 1.0), "model": "smollm2-135m", "preset": "paper",
            "stage_layers": [3, 6], "config": {"keep_ratio": 0.9, "keep_ratio_mode": "per_stage", "protect_first": 4,
                                                "protect_last": 0, "protect_last_frac": 0.1, "count_protected": False,
                                                "prior_weight": prior}}


def _report(bench, q, prior=1.0):
    return bench.report(_meta(prior), {"options": list(bench.TABLE_ORDER), "parts": ["quality"], "quality": q})


def test_every_selector_has_a_row_at_the_same_counts(bench):
    assert set(bench.TABLE_ORDER) == set(SELECTORS)
    q = _quality(bench, {s: [4.0] * 8 for s in bench.TABLE_ORDER})
    md = _report(bench, q)
    table = md.split("## All options", 1)[1].split("\n\n", 2)[1]
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and not ln.startswith("| option")]
    assert len(rows) == 1 + len(SELECTORS)                             # dense + every selector
    for s in SELECTORS:
        assert sum(bench.LABEL[s] in r for r in rows) == 1, s
    assert "350.0 for every selector but truncate" in md
    assert "recency prior x1" in md
    assert "MLP alone as in the paper" in _report(bench, q, prior=0.0)
    uneven = _quality(bench, {s: [4.0] * 8 for s in bench.TABLE_ORDER}, final={"random": 340.0})
    assert "NOT the same counts" in _report(bench, uneven)


def test_notes_follow_the_numbers(bench):
    # recency clearly better than learned; the others tie with learned
    worse = {s: [4.0 + (i % 2) for i in range(8)] for s in bench.TABLE_ORDER}
    worse["recency"] = [0.5 + 0.1 * (i % 3) for i in range(8)]
    md = _report(bench, _quality(bench, worse))
    assert "The learned pruner loses to recency" in md
    assert "the choice of tokens changes the rise" in md and "recency" in md.split("changes the rise", 1)[1]
    assert "Perplexity rise, lowest first: recency" in md
    # flip: recency clearly worse
    better = dict(worse, recency=[9.0 + 0.1 * (i % 3) for i in range(8)])
    md2 = _report(bench, _quality(bench, better))
    assert "The learned pruner beats recency" in md2
    # all identical: nothing resolved, and no sentence claims where the rise comes from
    same = _report(bench, _quality(bench, {s: [4.0] * 8 for s in bench.TABLE_ORDER}))
    assert "is not resolved from recency" in same and "cannot separate which tokens are kept" in same
    # truncate alone differing does not count as a token-choice difference at equal counts
    trunc = {s: [4.0 + (i % 2) for i in range(8)] for s in bench.TABLE_ORDER}
    trunc["truncate"] = [0.5 + 0.1 * (i % 3) for i in range(8)]
    md3 = _report(bench, _quality(bench, trunc))
    assert "cannot separate which tokens are kept" in md3
    assert "At the same prefill FLOPs, truncation's rise is below the learned pruner's" in md3
    for text in (md, md2, same, md3):
        assert "removing the context costs" not in text and "mostly" not in text


def test_workers_split_parts_longest_first_and_children_get_their_own_flags(bench):
    """--workers: every part runs in exactly one child; the child's command line keeps the
    user's flags but not the ones the parent sets per child (--workers, --parts, --out)."""
    import argparse

    args = argparse.Namespace(windows=64, ctx=1024, cont=64, depths="0.1,0.5,0.9", retrieval_per=2,
                              retrieval_kinds="passkey,kv", retrieval_lens="1024,2048,4096", leval_tasks="tpo,quality",
                              leval_docs=5, leval_per_doc=2, leval_len=4096, speed_lens="1024,2048", speed_repeats=3)
    parts = ["quality", "retrieval", "leval", "speed"]
    groups = bench.part_groups(parts, args, 6, 2)
    assert sorted(p for g in groups for p in g) == sorted(parts) and len(groups) == 2
    costliest = max(parts, key=lambda p: bench.part_cost(p, args, 6))
    assert groups[0][0] == costliest
    assert bench.part_groups(["quality"], args, 6, 4) == [["quality"]]
    # the speed part never shares the machine: the parent runs it after the children
    split, after = bench.split_parts(parts, args, 6, 2)
    assert after == ["speed"] and sorted(p for g in split for p in g) == ["leval", "quality", "retrieval"]
    assert bench.split_parts(parts, args, 6, 1) == ([], parts)
    assert bench.split_parts(["quality", "speed"], args, 6, 2) == ([], ["quality", "speed"])
    argv = ["--windows", "8", "--workers", "2", "--parts=quality,speed", "--out", "x/y", "--quick"]
    assert bench.child_argv(argv) == ["--windows", "8", "--quick"]
