"""A learned second opinion on each resolved plan cell.

The rules in resolve.py are written from the plan items we have labelled (ablation/labelled/*.jsonl:
our own wordings and the held-out sets written by helpers who never saw the resolver). On a fresh
set they resolve about 80% of cells right, and about 3% wrong *without* a flag. A logistic
regression over MiniLM sentence vectors of the same labelled cells ("ACTION: part -> replacement"
-> answer) is no better on its own (about 76%, leave-one-set-out), but it errs differently: where it
is confident and disagrees with an unflagged rule choice, that choice is flagged for the user to
check. A first leave-one-set-out trial on the three newest sets, against the rules as they were
before each set was read, flagged 4 of their 7 silently wrong cells and 22 of 186 right ones (at
p >= 0.5); benchmarks/results/resolution.md counts, per set, the right cells it flags.

It never changes a choice, only adds a flag, so it cannot make a right answer wrong.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

LABELLED = Path(__file__).parent / "labelled"
MIN_PROB = 0.5          # a disagreement below this confidence is not worth a flag
OOS = "OUT_OF_SCOPE"

_VECTORS: dict[str, object] = {}       # cell text -> sentence vector (one embedding per process)
_MODELS: dict[tuple, object] = {}      # (method, excluded splits) -> fitted classifier or None


def cell_text(action: str, part: str, text: str | None) -> str:
    return f"{action}: {part} -> {text or 'REMOVE'}"


def label_of(x: str) -> str:
    """'sparsity.0.4' and 'sparsity=0.4' are one answer."""
    return re.sub(r"^(\w+)\.(\d+(?:\.\d+)?)$", r"\1=\2", x)


def labelled_cells(method: str, exclude: frozenset = frozenset()) -> list[tuple[str, str]]:
    """(cell text, answer) of every labelled cell of the method, leaving out the given splits."""
    out = []
    for path in sorted(LABELLED.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            it = json.loads(line)
            if it["method"] != method or it["split"] in exclude:
                continue
            reps = it.get("replacement") or []
            for k, exp in enumerate(it["expected"]):
                rep = reps[min(k, len(reps) - 1)] if reps else None
                out.append((cell_text(it["action"], it["ablated_part"], rep), label_of(exp)))
    return out


def _vectors(texts: list[str]):
    import numpy as np

    from prunelab.ablation.semantic import get_embedder

    todo = [t for t in dict.fromkeys(texts) if t not in _VECTORS]
    if todo:
        emb = get_embedder()
        if emb is None:
            return None
        for t, v in zip(todo, emb.encode(todo)):
            _VECTORS[t] = v
    return np.stack([_VECTORS[t] for t in texts])


def model(method: str, exclude: frozenset = frozenset()):
    """The fitted classifier for the method (None without an embedder or with too little data)."""
    key = (method, exclude)
    if key not in _MODELS:
        cells = labelled_cells(method, exclude)
        X = _vectors([t for t, _ in cells]) if len(cells) >= 20 else None
        if X is None or len({y for _, y in cells}) < 2:
            _MODELS[key] = None
        else:
            from sklearn.linear_model import LogisticRegression

            _MODELS[key] = LogisticRegression(max_iter=3000, C=10.0).fit(X, [y for _, y in cells])
    return _MODELS[key]


def opinion(method: str, action: str, part: str, text: str | None,
            exclude: frozenset = frozenset()) -> tuple[str, float] | None:
    """(answer, probability) the classifier gives the cell, or None when it cannot say."""
    clf = model(method, exclude)
    if clf is None:
        return None
    X = _vectors([cell_text(action, part, text)])
    p = clf.predict_proba(X)[0]
    i = int(p.argmax())
    return str(clf.classes_[i]), float(p[i])
