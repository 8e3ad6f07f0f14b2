"""Metrics against values worked out by hand."""
import math

import pytest

from prunelab.tasks import metrics


def test_accuracy():
    assert metrics.accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    assert metrics.accuracy([], []) == 0.0
    with pytest.raises(ValueError):
        metrics.accuracy([1], [1, 0])


def test_matthews_hand_computed():
    # tp=2 (idx 0,1), fn=1 (idx 2), fp=1 (idx 3), tn=2 (idx 4,5)
    preds = [1, 1, 0, 1, 0, 0]
    labels = [1, 1, 1, 0, 0, 0]
    tp, tn, fp, fn = 2, 2, 1, 1
    want = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert want == pytest.approx(1 / 3)
    assert metrics.matthews(preds, labels) == pytest.approx(want)


def test_binary_f1_hand_computed():
    # tp=2, fp=1, fn=1 -> precision 2/3, recall 2/3, f1 2/3
    assert metrics.binary_f1([1, 1, 0, 1, 0, 0], [1, 1, 1, 0, 0, 0]) == pytest.approx(2 / 3)
    # positive class is 1: all-zero predictions give f1 0, not the negative-class f1
    assert metrics.binary_f1([0, 0, 0], [1, 0, 0]) == 0.0


def test_correlations():
    assert metrics.pearson([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == pytest.approx(1.0)
    assert metrics.pearson([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    # x=[1,2,3,4], y=[1,3,2,4]: cov=1.0 (sum dx*dy = 4 over n-1), var_x=var_y=5/3 -> r=0.8
    assert metrics.pearson([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]) == pytest.approx(0.8)
    # monotone but not linear: spearman 1, pearson below 1
    x, y = [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 100.0]
    assert metrics.spearman(x, y) == pytest.approx(1.0)
    assert metrics.pearson(x, y) < 0.9


def test_glue_metrics_primary_scores():
    preds, labels = [1, 1, 0, 1, 0, 0], [1, 1, 1, 0, 0, 0]
    mrpc = metrics.glue_metrics("mrpc", preds, labels)
    assert mrpc["score"] == mrpc["accuracy"] == pytest.approx(4 / 6)
    assert mrpc["f1"] == pytest.approx(2 / 3)
    assert mrpc["acc_and_f1"] == pytest.approx((4 / 6 + 2 / 3) / 2)
    assert set(metrics.glue_metrics("qqp", preds, labels)) == {"accuracy", "f1", "acc_and_f1", "score"}
    cola = metrics.glue_metrics("cola", preds, labels)
    assert cola["score"] == cola["matthews"] == pytest.approx(1 / 3)
    stsb = metrics.glue_metrics("stsb", [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    assert stsb["score"] == stsb["pearson"] == pytest.approx(0.8)
    assert stsb["spearman"] == pytest.approx(0.8)
    assert metrics.glue_metrics("sst2", [1, 0], [1, 1]) == {"accuracy": 0.5, "score": 0.5}


@pytest.mark.parametrize("text, want", [
    ("The  Cat.", "cat"),
    ("an apple, a pear & the plum!", "apple pear plum"),
    ("  Theatre  ", "theatre"),         # "the" inside a word stays
    ("A", ""),
])
def test_normalize_answer(text, want):
    assert metrics.normalize_answer(text) == want


def test_exact_match_and_f1():
    assert metrics.exact_match("The  Cat.", ["cat"]) == 1.0
    assert metrics.exact_match("cats", ["cat"]) == 0.0
    assert metrics.exact_match("dog", ["cat", "a dog"]) == 1.0  # max over golds
    # pred "the big cat sat" -> [big, cat, sat]; gold "cat sat down" -> [cat, sat, down]
    # overlap 2: p=2/3, r=2/3, f1=2/3
    assert metrics.squad_f1("the big cat sat", ["cat sat down"]) == pytest.approx(2 / 3)
    assert metrics.squad_f1("the big cat sat", ["nothing here", "big cat sat"]) == 1.0
    # repeated tokens count as a bag: "cat cat" vs "cat": overlap 1, p=1/2, r=1
    assert metrics.squad_f1("cat cat", ["cat"]) == pytest.approx(2 / 3)


def test_unanswerable_gold_is_empty_string():
    assert metrics.exact_match("", []) == 1.0
    assert metrics.squad_f1("", [""]) == 1.0
    assert metrics.squad_f1("something", []) == 0.0
    assert metrics.exact_match("the", [""]) == 1.0  # normalises to empty


def test_squad_metrics_has_and_no_answer():
    preds = ["The Cat", "dog", "", "oops"]
    golds = [["cat"], ["a cat"], [], [""]]
    out = metrics.squad_metrics(preds, golds, with_no_answer=True)
    assert out["exact"] == pytest.approx(2 / 4)
    assert out["f1"] == pytest.approx(2 / 4)
    assert out["HasAns_exact"] == pytest.approx(1 / 2)
    assert out["NoAns_exact"] == pytest.approx(1 / 2)
    assert out["HasAns_total"] == 2 and out["NoAns_total"] == 2
    assert "HasAns_exact" not in metrics.squad_metrics(preds, golds)


def test_rouge_values():
    same = metrics.rouge(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert same == {"rouge1": pytest.approx(1.0), "rouge2": pytest.approx(1.0), "rougeL": pytest.approx(1.0)}
    # pred [the, cat, ran], ref [the, cat, sat]: unigram overlap 2 of 3 -> 2/3;
    # bigrams pred {the cat, cat ran}, ref {the cat, cat sat}: 1 of 2 -> 1/2; LCS 2 -> 2/3
    out = metrics.rouge(["the cat ran"], ["the cat sat"])
    assert out["rouge1"] == pytest.approx(2 / 3)
    assert out["rouge2"] == pytest.approx(1 / 2)
    assert out["rougeL"] == pytest.approx(2 / 3)
    # stemming: "cats running" matches "cat run"
    assert metrics.rouge(["cats running"], ["cat run"])["rouge1"] == pytest.approx(1.0)


def test_perplexity():
    assert metrics.perplexity(0.0, 10) == 1.0
    assert metrics.perplexity(10 * math.log(4), 10) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        metrics.perplexity(1.0, 0)
