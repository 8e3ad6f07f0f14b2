"""Task base class, the task registry, data-dir resolution, subsetting, collate and bucketing.

A Task knows how to load raw examples, turn them into unpadded features, pad features into
model inputs, batch them (with length bucketing) and score a model on them. Subclasses live
in glue.py, squad.py, summarization.py and lm.py; they register themselves on import.
"""
from __future__ import annotations

import copy
import math
import os
import random
import re
from collections import defaultdict
from typing import Iterator

from prunelab.errors import PrunelabError, unknown

DATA_ENV = "PRUNELAB_DATA"

_REGISTRY: dict[str, "Task"] = {}
_ALIASES: dict[str, str] = {}


# ----------------------------------------------------------------------------- registry

def register_task(task: "Task", aliases: tuple[str, ...] = ()) -> "Task":
    """Add a task instance under task.name (and optional short aliases)."""
    if not getattr(task, "name", None):
        raise ValueError("a task needs a name before it can be registered")
    _REGISTRY[task.name] = task
    for alias in aliases:
        _ALIASES[alias] = task.name
    return task


def list_tasks() -> list[str]:
    # in-memory user data (`data:<hash>`, tasks/custom.py) is looked up by name, not listed
    return sorted(n for n in _REGISTRY if not n.startswith("data:"))


def get_task(name: str) -> "Task":
    """Look a task up by name or alias; returns a fresh copy so callers may change settings.
    `file:PATH[?text=..&label=..]` builds a task from the user's own data file (tasks/custom.py)."""
    if str(name).startswith("file:"):
        from prunelab.tasks.custom import file_task

        return file_task(str(name))
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise unknown("task", name, list(_REGISTRY) + list(_ALIASES) + ["file:PATH"])
    return copy.copy(_REGISTRY[key])


# ----------------------------------------------------------------------------- data dirs

def resolve_data_dir(data_dir: str | None) -> str | None:
    """The explicit dir, else $PRUNELAB_DATA, else None (meaning: use the HF hub)."""
    if data_dir is not None:
        path, origin = str(data_dir), "--data-dir"
    elif os.environ.get(DATA_ENV):
        path, origin = os.environ[DATA_ENV], DATA_ENV
    else:
        return None
    if not os.path.isdir(path):
        raise PrunelabError(f"data directory {path!r} (from {origin}) does not exist")
    return path


def _squash(name: str) -> str:
    # "SST-2", "sst_2" and "sst2" all name the same folder.
    return re.sub(r"[^a-z0-9]", "", name.lower())


def find_subdir(root: str, candidates: tuple[str, ...], task_name: str) -> str:
    """The folder under root whose name matches one of candidates, ignoring case and -/_."""
    wanted = {_squash(c) for c in candidates}
    entries = sorted(e for e in os.listdir(root) if os.path.isdir(os.path.join(root, e)))
    for entry in entries:
        if _squash(entry) in wanted:
            return os.path.join(root, entry)
    found = ", ".join(entries) or "no folders"
    raise PrunelabError(
        f"no data for {task_name} in {root!r}: expected a folder named {candidates[0]!r}; "
        f"found {found} (unset {DATA_ENV} and omit --data-dir to use the Hugging Face hub)")


def require_file(folder: str, filename: str, task_name: str) -> str:
    path = os.path.join(folder, filename)
    if not os.path.isfile(path):
        present = ", ".join(sorted(os.listdir(folder))) or "nothing"
        raise PrunelabError(f"{task_name}: missing data file {path!r}; the folder has: {present}")
    return path


def load_hub(task_name: str, *args, split: str):
    """datasets.load_dataset(*args, split=split), imported lazily; failures become one line."""
    try:
        import datasets  # noqa: PLC0415 - heavy and only needed without local data
    except Exception as err:  # ImportError or a broken install
        raise PrunelabError(
            f"{task_name}: no local data and the 'datasets' package cannot be imported ({err}); "
            f"set {DATA_ENV} or pass --data-dir") from None
    try:
        return datasets.load_dataset(*args, split=split)
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0]
        raise PrunelabError(
            f"{task_name}: could not load {args!r} split {split!r} from the Hugging Face hub "
            f"({type(err).__name__}: {first}); set {DATA_ENV} or pass --data-dir") from None


# ----------------------------------------------------------------------------- subsets

def subset(examples: list[dict], limit: int | None, seed: int, stratify_key: str | None = None) -> list[dict]:
    """A seeded subset of `limit` examples in their original order.

    With stratify_key, each label gets a share proportional to its frequency (largest
    remainder rounding), so small subsets keep the label balance of the full split.
    """
    if limit is None:
        return examples
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise PrunelabError(f"limit must be a positive whole number, got {limit!r}")
    if limit >= len(examples):
        return examples
    rng = random.Random(seed)
    if stratify_key is None:
        chosen = rng.sample(range(len(examples)), limit)
    else:
        groups: dict = defaultdict(list)
        for i, ex in enumerate(examples):
            groups[ex[stratify_key]].append(i)
        labels = sorted(groups, key=repr)
        exact = {lab: limit * len(groups[lab]) / len(examples) for lab in labels}
        quota = {lab: int(math.floor(exact[lab])) for lab in labels}
        left = limit - sum(quota.values())
        # Hand the rounding leftovers to the labels with the largest fractional parts.
        for lab in sorted(labels, key=lambda lab: (-(exact[lab] - quota[lab]), repr(lab)))[:left]:
            quota[lab] += 1
        chosen = []
        for lab in labels:
            chosen.extend(rng.sample(groups[lab], quota[lab]))
    return [examples[i] for i in sorted(chosen)]


# ----------------------------------------------------------------------------- batching

def feature_length(feature: dict) -> int:
    return len(feature["input_ids"])


def make_batches(features: list[dict], batch_size: int, shuffle: bool, seed: int,
                 bucket: bool = True, chunk_batches: int = 50) -> Iterator[list[dict]]:
    """Batches of features.

    Training (shuffle=True, bucket=True): shuffle, sort by length inside chunks of
    chunk_batches*batch_size, cut into batches, then shuffle the batch order. Batches hold
    similar lengths (little padding) yet each epoch still sees a different mix.
    Evaluation (shuffle=False, bucket=True): globally sorted by length.
    Same features + seed -> same batches; pass seed + epoch for a new order per epoch.
    """
    if batch_size <= 0:
        raise PrunelabError(f"batch_size must be positive, got {batch_size}")
    order = list(range(len(features)))
    if shuffle:
        rng = random.Random(seed)
        rng.shuffle(order)
        if bucket:
            chunk = chunk_batches * batch_size
            batches = []
            for start in range(0, len(order), chunk):
                part = sorted(order[start:start + chunk], key=lambda i: feature_length(features[i]))
                batches.extend(part[j:j + batch_size] for j in range(0, len(part), batch_size))
            rng.shuffle(batches)
        else:
            batches = [order[j:j + batch_size] for j in range(0, len(order), batch_size)]
    else:
        if bucket:
            order.sort(key=lambda i: feature_length(features[i]))
        batches = [order[j:j + batch_size] for j in range(0, len(order), batch_size)]
    for batch in batches:
        yield [features[i] for i in batch]


def pad_id_of(tokenizer) -> int:
    # Decoder-only tokenizers (Llama, GPT-2) often have no pad token; any id works under mask.
    for attr in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0


def collate_features(features: list[dict], tokenizer) -> dict:
    """Pad to the longest feature in the batch. Keys starting with "_" are evaluation-only."""
    import torch  # noqa: PLC0415 - keep `import prunelab.tasks` light

    if not features:
        raise ValueError("cannot collate an empty batch")
    pad_values = {"input_ids": pad_id_of(tokenizer), "attention_mask": 0,
                  "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0) or 0,
                  "labels": -100}
    batch = {}
    for key in features[0]:
        if key.startswith("_"):
            continue
        values = [f[key] for f in features]
        if isinstance(values[0], (list, tuple)):
            width = max(len(v) for v in values)
            pad = pad_values.get(key, 0)
            batch[key] = torch.tensor([list(v) + [pad] * (width - len(v)) for v in values],
                                      dtype=torch.long)
        elif isinstance(values[0], float):
            batch[key] = torch.tensor(values, dtype=torch.float)
        else:
            batch[key] = torch.tensor(values, dtype=torch.long)
    return batch


def length_stats(features: list[dict]) -> dict:
    lengths = sorted(feature_length(f) for f in features)
    if not lengths:
        return {"count": 0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0, "min": 0}

    def pct(q: float) -> float:
        # nearest-rank percentile; plenty for benchmark shapes
        return float(lengths[min(len(lengths) - 1, max(0, math.ceil(q * len(lengths)) - 1))])

    return {"count": len(lengths), "mean": sum(lengths) / len(lengths), "p50": pct(0.50),
            "p95": pct(0.95), "max": lengths[-1], "min": lengths[0]}


# ----------------------------------------------------------------------------- Task

class Task:
    """One dataset + metric. Subclasses fill the class attributes and the _load_* hooks."""

    name: str = ""
    kind: str = ""             # classification | regression | qa | seq2seq | lm
    num_labels: int = 0        # 1 for regression, 0 where not applicable
    metric: str = ""           # primary metric key, also returned as "score"
    higher_is_better: bool = True
    splits: dict = {}          # logical split -> file name (or HF split)
    hub_splits: dict = {}      # logical split -> HF split name
    folder_names: tuple = ()   # accepted folder names under the data dir
    stratify_key: str | None = None

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    # -- loading
    def load(self, split: str, data_dir: str | None = None, limit: int | None = None,
             seed: int = 0) -> list[dict]:
        if split not in self.splits:
            raise unknown(f"split for {self.name}", split, self.splits)
        root = resolve_data_dir(data_dir)
        if root is None:
            examples = self._load_hub(split)
        else:
            folder = find_subdir(root, self.folder_names, self.name)
            examples = self._load_local(folder, split)
        return self._subset(examples, limit, seed)

    def _subset(self, examples: list[dict], limit: int | None, seed: int) -> list[dict]:
        return subset(examples, limit, seed, self.stratify_key)

    def _load_local(self, folder: str, split: str) -> list[dict]:
        raise NotImplementedError

    def _load_hub(self, split: str) -> list[dict]:
        raise NotImplementedError

    # -- features
    def encode(self, examples: list[dict], tokenizer, max_length: int) -> list[dict]:
        raise NotImplementedError

    def collate(self, features: list[dict], tokenizer) -> dict:
        return collate_features(features, tokenizer)

    def batches(self, features: list[dict], batch_size: int, shuffle: bool, seed: int,
                bucket: bool = True) -> Iterator[list[dict]]:
        return make_batches(features, batch_size, shuffle, seed, bucket)

    def real_lengths(self, features: list[dict]) -> dict:
        return length_stats(features)

    # -- evaluation
    def evaluate(self, model, features: list[dict], tokenizer, batch_size: int, device) -> dict:
        raise NotImplementedError

    def _eval_batches(self, model, features, tokenizer, batch_size, device):
        """Yield (features, model inputs on device) in eval mode; restores train mode after."""
        import torch  # noqa: PLC0415

        if not features:
            raise PrunelabError(f"{self.name}: nothing to evaluate (no features)")
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for group in self.batches(features, batch_size, shuffle=False, seed=0, bucket=True):
                    batch = {k: v.to(device) for k, v in self.collate(group, tokenizer).items()}
                    yield group, batch
        finally:
            model.train(was_training)
