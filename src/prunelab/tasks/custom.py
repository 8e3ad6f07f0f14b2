"""Your own data as a task: text classification (or regression) from a local file or from
examples already in memory.

    get_task("file:reviews.jsonl")                            # columns text, label
    get_task("file:reviews.csv?text=review&label=stars")      # other column names
    get_task("file:data/?text=premise&text_pair=hypothesis")  # data/train.* + data/dev.*

A file is split into train and dev once, by a fixed seed (10% dev unless `dev=0.2`), so every
run seed sees the same dev set. A folder holds `train.<ext>` and `dev.<ext>` (or
`validation.<ext>`), with ext jsonl, json, csv or tsv. Labels may be integers 0..n-1, strings
(mapped to ids in sorted order, kept in `label_names`) or real numbers (regression).

In memory (what `prunelab.prune` does with a `datasets.Dataset` or a list of dicts):
`data_task(train_rows, dev_rows, text=..., label=..., metric=callable)` registers a task named
`data:<content hash>` for this process.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import random
from typing import Callable, Sequence
from urllib.parse import parse_qsl

from prunelab.errors import PrunelabError
from prunelab.tasks import metrics
from prunelab.tasks.base import Task, register_task

EXTENSIONS = ("jsonl", "json", "csv", "tsv")
SPEC_KEYS = ("text", "text_pair", "label", "dev")


def read_rows(path: str) -> list[dict]:
    """Rows of a jsonl / json (a list of objects) / csv / tsv file, as dicts."""
    ext = path.rsplit(".", 1)[-1].lower()
    if ext not in EXTENSIONS:
        raise PrunelabError(f"{path}: unknown data file type {ext!r}; valid: {', '.join(EXTENSIONS)}")
    if not os.path.isfile(path):
        raise PrunelabError(f"data file {path!r} does not exist")
    with open(path, encoding="utf-8", newline="") as f:
        if ext == "jsonl":
            rows = []
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise PrunelabError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        elif ext == "json":
            try:
                rows = json.load(f)
            except json.JSONDecodeError as e:
                raise PrunelabError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        else:
            rows = list(csv.DictReader(f, delimiter="\t" if ext == "tsv" else ","))
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise PrunelabError(f"{path}: expected one object per row")
    if not rows:
        raise PrunelabError(f"{path}: no rows")
    return rows


def _find_split_file(folder: str, names: Sequence[str]) -> str | None:
    for name in names:
        for ext in EXTENSIONS:
            path = os.path.join(folder, f"{name}.{ext}")
            if os.path.isfile(path):
                return path
    return None


def _label_kind(values: list) -> tuple[str, list[str] | None]:
    """("classification", names or None) or ("regression", None) from the raw label values."""
    def as_number(v):
        if isinstance(v, bool):
            return None
        if isinstance(v, (int, float)):
            return v
        try:
            return float(str(v).strip())
        except ValueError:
            return None

    numbers = [as_number(v) for v in values]
    if all(n is not None for n in numbers):
        if all(float(n).is_integer() and n >= 0 for n in numbers):
            return "classification", None
        return "regression", None
    return "classification", sorted({str(v) for v in values})


class CustomTask(Task):
    """Text (+ optional text pair) -> label, from rows the user supplies."""

    folder_names = ()
    splits = {"train": "", "dev": ""}

    def __init__(self, name: str, train_rows: list[dict], dev_rows: list[dict], *, text: str = "text",
                 text_pair: str | None = None, label: str = "label",
                 metric: Callable[[list, list], float] | None = None, where: str = "data"):
        self.name = name
        self.text, self.text_pair, self.label = text, text_pair, label
        self.metric_fn = metric
        for split, rows in (("train", train_rows), ("dev", dev_rows)):
            if not rows:
                raise PrunelabError(f"{where}: the {split} split is empty")
            missing = [c for c in (text, text_pair, label) if c is not None and c not in rows[0]]
            if missing:
                raise PrunelabError(f"{where}: {split} rows lack column(s) {', '.join(map(repr, missing))}; "
                                    f"columns: {', '.join(map(str, rows[0]))} (choose with text=, text_pair=, label=)")
        kind, names = _label_kind([r[label] for r in train_rows + dev_rows])
        self.kind, self.label_names = kind, names
        if kind == "regression":
            self.num_labels, default_metric = 1, "pearson"
        elif names is not None:
            self.num_labels, default_metric = len(names), "accuracy"
        else:
            self.num_labels = int(max(float(r[label]) for r in train_rows + dev_rows)) + 1
            default_metric = "accuracy"
        self.metric = getattr(metric, "__name__", "metric") if metric is not None else default_metric
        self.higher_is_better = True
        self.stratify_key = "label" if kind == "classification" else None
        self._rows = {"train": [self._example(r, i, "train", where) for i, r in enumerate(train_rows)],
                      "dev": [self._example(r, i, "dev", where) for i, r in enumerate(dev_rows)]}

    def _example(self, row: dict, i: int, split: str, where: str) -> dict:
        raw = row[self.label]
        if self.kind == "regression":
            label = float(raw)
        elif self.label_names is not None:
            label = self.label_names.index(str(raw))
        else:
            label = int(float(raw))
        text = row[self.text]
        if not isinstance(text, str):
            raise PrunelabError(f"{where}: {split} row {i + 1}: column {self.text!r} is not text ({text!r})")
        return {"idx": i, "text_a": text, "text_b": row[self.text_pair] if self.text_pair else None,
                "label": label, "split": split}

    def load(self, split: str, data_dir: str | None = None, limit: int | None = None, seed: int = 0) -> list[dict]:
        if split not in self._rows:
            raise PrunelabError(f"{self.name}: unknown split {split!r}; valid: train, dev")
        return self._subset(self._rows[split], limit, seed)

    def encode(self, examples: list[dict], tokenizer, max_length: int) -> list[dict]:
        from prunelab.tasks.glue import encode_text_pairs

        return encode_text_pairs(examples, tokenizer, max_length, pair=self.text_pair is not None,
                                 regression=self.kind == "regression")

    def evaluate(self, model, features: list[dict], tokenizer, batch_size: int, device) -> dict:
        from prunelab.tasks.glue import predict_labels

        preds, labels = predict_labels(self, model, features, tokenizer, batch_size, device)
        if self.metric_fn is not None:
            score = float(self.metric_fn(preds, labels))
            return {self.metric: score, "score": score}
        if self.kind == "regression":
            out = {"pearson": metrics.pearson(preds, labels), "spearman": metrics.spearman(preds, labels)}
            return {**out, "score": out["pearson"]}
        acc = metrics.accuracy(preds, labels)
        return {"accuracy": acc, "score": acc}


def parse_spec(spec: str) -> tuple[str, dict]:
    """'file:PATH?text=a&label=b' -> (PATH, {"text": "a", "label": "b"}), keys checked."""
    body = spec[len("file:"):]
    path, _, query = body.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
    bad = [k for k in options if k not in SPEC_KEYS]
    if bad:
        raise PrunelabError(f"task {spec!r}: unknown option(s) {', '.join(map(repr, bad))}; valid: {', '.join(SPEC_KEYS)}")
    if not path:
        raise PrunelabError(f"task {spec!r} names no file; e.g. file:data.jsonl")
    return os.path.expanduser(path), options


def file_task(spec: str) -> CustomTask:
    """The task a `file:` spec names (see the module docstring); read once per file version."""
    path, _ = parse_spec(spec)
    stamp = os.stat(path).st_mtime_ns if os.path.exists(path) else None
    key = (spec, stamp)
    if key not in _FILE_TASKS:
        _FILE_TASKS[key] = _read_file_task(spec)
    return copy.copy(_FILE_TASKS[key])


_FILE_TASKS: dict = {}


def _read_file_task(spec: str) -> CustomTask:
    path, opts = parse_spec(spec)
    try:
        dev_fraction = float(opts.get("dev", 0.1))
    except ValueError:
        raise PrunelabError(f"task {spec!r}: dev must be a fraction, got {opts['dev']!r}") from None
    if not 0 < dev_fraction < 1:
        raise PrunelabError(f"task {spec!r}: dev must be in (0, 1), got {dev_fraction}")
    if os.path.isdir(path):
        train = _find_split_file(path, ("train",))
        dev = _find_split_file(path, ("dev", "validation", "valid", "val"))
        if train is None or dev is None:
            raise PrunelabError(f"{path}: a data folder needs train.<ext> and dev.<ext> (ext: {', '.join(EXTENSIONS)}); "
                                f"found {', '.join(sorted(os.listdir(path))) or 'nothing'}")
        train_rows, dev_rows = read_rows(train), read_rows(dev)
    else:
        train_rows, dev_rows = holdout(read_rows(path), dev_fraction, where=path)
    return CustomTask(spec, train_rows, dev_rows, text=opts.get("text", "text"),
                      text_pair=opts.get("text_pair") or None, label=opts.get("label", "label"), where=path)


def holdout(rows: list[dict], fraction: float, where: str = "data") -> tuple[list[dict], list[dict]]:
    """(train, dev): `fraction` of the rows held out by a fixed seed, so the dev set does not
    move with the run seed."""
    if len(rows) < 2:
        raise PrunelabError(f"{where}: needs at least 2 rows to hold out a dev split")
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    dev_idx = set(order[:max(1, round(fraction * len(rows)))])
    return ([r for i, r in enumerate(rows) if i not in dev_idx], [r for i, r in enumerate(rows) if i in dev_idx])


def file_spec(path: str, text: str = "text", text_pair: str | None = None, label: str = "label") -> str:
    """The task name for a file and its columns (what `--task file:...` and the CLI's column flags build)."""
    query = [f"text={text}"] if text != "text" else []
    if text_pair:
        query.append(f"text_pair={text_pair}")
    if label != "label":
        query.append(f"label={label}")
    return f"file:{path}" + ("?" + "&".join(query) if query else "")


def data_task(train_rows: list[dict], dev_rows: list[dict], *, text: str = "text", text_pair: str | None = None,
              label: str = "label", metric: Callable | None = None) -> CustomTask:
    """Register in-memory rows as a task for this process; its name hashes the content, so the
    same data gives the same run config (and the store's cache applies)."""
    blob = json.dumps([train_rows, dev_rows, text, text_pair, label, getattr(metric, "__qualname__", None)],
                      sort_keys=True, default=str)
    name = "data:" + hashlib.sha256(blob.encode()).hexdigest()[:12]
    task = CustomTask(name, train_rows, dev_rows, text=text, text_pair=text_pair, label=label, metric=metric,
                      where="data")
    return register_task(task)
