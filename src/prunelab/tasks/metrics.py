"""Metrics. Every score is a fraction in [0, 1] (accuracy, F1, EM, ROUGE), except
correlations in [-1, 1] and perplexity (>= 1, lower is better).
"""
from __future__ import annotations

import collections
import math
import re
import string
from typing import Sequence


# ----------------------------------------------------------------------------- classification

def accuracy(preds: Sequence, labels: Sequence) -> float:
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    if not labels:
        return 0.0
    return sum(int(p == y) for p, y in zip(preds, labels)) / len(labels)


def matthews(preds: Sequence[int], labels: Sequence[int]) -> float:
    from sklearn.metrics import matthews_corrcoef  # noqa: PLC0415
    return float(matthews_corrcoef(list(labels), list(preds)))


def binary_f1(preds: Sequence[int], labels: Sequence[int]) -> float:
    """F1 of the positive class (label 1), as GLUE reports for MRPC and QQP."""
    from sklearn.metrics import f1_score  # noqa: PLC0415
    return float(f1_score(list(labels), list(preds), pos_label=1, zero_division=0))


def pearson(preds: Sequence[float], labels: Sequence[float]) -> float:
    from scipy.stats import pearsonr  # noqa: PLC0415
    return float(pearsonr(list(preds), list(labels))[0])


def spearman(preds: Sequence[float], labels: Sequence[float]) -> float:
    from scipy.stats import spearmanr  # noqa: PLC0415
    return float(spearmanr(list(preds), list(labels))[0])


def glue_metrics(task: str, preds: Sequence, labels: Sequence) -> dict[str, float]:
    """All GLUE metrics for one task (short name: sst2, mnli, ..., stsb) plus "score"."""
    if task == "stsb":
        out = {"pearson": pearson(preds, labels), "spearman": spearman(preds, labels)}
        out["score"] = out["pearson"]
    elif task == "cola":
        out = {"matthews": matthews(preds, labels), "accuracy": accuracy(preds, labels)}
        out["score"] = out["matthews"]
    elif task in ("mrpc", "qqp"):
        acc, f1 = accuracy(preds, labels), binary_f1(preds, labels)
        out = {"accuracy": acc, "f1": f1, "acc_and_f1": (acc + f1) / 2}
        out["score"] = acc
    else:
        out = {"accuracy": accuracy(preds, labels)}
        out["score"] = out["accuracy"]
    return out


# ----------------------------------------------------------------------------- SQuAD

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation, drop the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 if the prediction equals any gold answer after normalisation.

    An unanswerable question has the single gold answer "".
    """
    golds = list(golds) or [""]
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in golds))


def _token_f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        # Both empty (correct "no answer") scores 1, one empty scores 0.
        return float(pred_tokens == gold_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_f1(prediction: str, golds: Sequence[str]) -> float:
    """Token-bag F1, the best over the gold answers."""
    golds = list(golds) or [""]
    return max(_token_f1(prediction, g) for g in golds)


def squad_metrics(predictions: Sequence[str], golds: Sequence[Sequence[str]],
                  with_no_answer: bool = False) -> dict[str, float]:
    """Mean EM and F1. golds[i] is the list of gold texts; [] or [""] = unanswerable.

    with_no_answer adds HasAns_/NoAns_ splits (SQuAD v2 style) where each part is non-empty.
    """
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} questions")
    ems = [exact_match(p, g) for p, g in zip(predictions, golds)]
    f1s = [squad_f1(p, g) for p, g in zip(predictions, golds)]
    n = max(len(ems), 1)
    out = {"exact": sum(ems) / n, "f1": sum(f1s) / n}
    if with_no_answer:
        has = [i for i, g in enumerate(golds) if any(normalize_answer(x) for x in g)]
        has_set = set(has)
        no = [i for i in range(len(golds)) if i not in has_set]
        for prefix, idx in (("HasAns", has), ("NoAns", no)):
            if idx:
                out[f"{prefix}_exact"] = sum(ems[i] for i in idx) / len(idx)
                out[f"{prefix}_f1"] = sum(f1s[i] for i in idx) / len(idx)
                out[f"{prefix}_total"] = float(len(idx))
    return out


# ----------------------------------------------------------------------------- ROUGE, perplexity

def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure (rouge-score, Porter stemmer)."""
    from rouge_score import rouge_scorer  # noqa: PLC0415

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} summaries for {len(references)} references")
    kinds = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(kinds), use_stemmer=True)
    totals = dict.fromkeys(kinds, 0.0)
    for pred, ref in zip(predictions, references):
        scores = scorer.score(ref, pred)  # (target, prediction)
        for k in kinds:
            totals[k] += scores[k].fmeasure
    n = max(len(predictions), 1)
    return {k: v / n for k, v in totals.items()}


def perplexity(total_nll: float, n_tokens: int) -> float:
    """exp(mean negative log-likelihood per token)."""
    if n_tokens <= 0:
        raise ValueError("perplexity needs at least one token")
    return math.exp(total_nll / n_tokens)
