"""GLUE tasks from the official TSV files (or the HF hub).

Example dicts: {"idx": int, "text_a": str, "text_b": str | None, "label": int | float,
"split": str}.

Label ids follow the Hugging Face `glue` dataset, so a model fine-tuned on either source
means the same thing by each id:
  MNLI        entailment=0, neutral=1, contradiction=2
  QNLI, RTE   entailment=0, not_entailment=1
  SST-2       negative=0, positive=1          (file column "label")
  CoLA        unacceptable=0, acceptable=1    (column 2 of the header-less file)
  MRPC        not paraphrase=0, paraphrase=1  (column "Quality")
  QQP         not duplicate=0, duplicate=1    (column "is_duplicate")
  STS-B       float similarity 0..5           (column "score"), regression
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field

from prunelab.errors import PrunelabError
from prunelab.tasks import metrics
from prunelab.tasks.base import Task, load_hub, register_task, require_file

NLI3 = {"entailment": 0, "neutral": 1, "contradiction": 2}
NLI2 = {"entailment": 0, "not_entailment": 1}


@dataclass(frozen=True)
class GlueSpec:
    short: str
    folders: tuple
    text_a: str                 # header column (or index for CoLA) of the first text
    text_b: str | None
    label: str
    label_map: dict | None      # None: integer labels 0..num_labels-1, or float for STS-B
    num_labels: int
    metric: str
    hub_a: str
    hub_b: str | None
    splits: dict = field(default_factory=lambda: {
        "train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"})
    hub_splits: dict = field(default_factory=lambda: {
        "train": "train", "dev": "validation", "test": "test"})


SPECS = {
    "sst2": GlueSpec("sst2", ("SST-2", "sst2"), "sentence", None, "label", None, 2,
                     "accuracy", "sentence", None),
    "mnli": GlueSpec("mnli", ("MNLI", "mnli", "multinli"), "sentence1", "sentence2",
                     "gold_label", NLI3, 3, "accuracy", "premise", "hypothesis",
                     splits={"train": "train.tsv", "dev": "dev_matched.tsv",
                             "dev_mismatched": "dev_mismatched.tsv",
                             "test": "test_matched.tsv",
                             "test_mismatched": "test_mismatched.tsv"},
                     hub_splits={"train": "train", "dev": "validation_matched",
                                 "dev_mismatched": "validation_mismatched",
                                 "test": "test_matched",
                                 "test_mismatched": "test_mismatched"}),
    "qnli": GlueSpec("qnli", ("QNLI", "qnli"), "question", "sentence", "label", NLI2, 2,
                     "accuracy", "question", "sentence"),
    "qqp": GlueSpec("qqp", ("QQP", "qqp"), "question1", "question2", "is_duplicate", None, 2,
                    "accuracy", "question1", "question2"),
    "rte": GlueSpec("rte", ("RTE", "rte"), "sentence1", "sentence2", "label", NLI2, 2,
                    "accuracy", "sentence1", "sentence2"),
    "mrpc": GlueSpec("mrpc", ("MRPC", "mrpc"), "#1 String", "#2 String", "Quality", None, 2,
                     "accuracy", "sentence1", "sentence2"),
    # CoLA's files have no header: source, label, original label, sentence.
    "cola": GlueSpec("cola", ("CoLA", "cola"), "3", None, "1", None, 2, "matthews",
                     "sentence", None),
    "stsb": GlueSpec("stsb", ("STS-B", "stsb", "sts"), "sentence1", "sentence2", "score",
                     None, 1, "pearson", "sentence1", "sentence2"),
}

COLA_COLUMNS = 4


class GlueTask(Task):
    def __init__(self, spec: GlueSpec):
        self.spec = spec
        self.name = f"glue/{spec.short}"
        self.kind = "regression" if spec.num_labels == 1 else "classification"
        self.num_labels = spec.num_labels
        self.metric = spec.metric
        self.higher_is_better = True
        self.splits = dict(spec.splits)
        self.hub_splits = dict(spec.hub_splits)
        self.folder_names = spec.folders
        self.stratify_key = "label" if self.kind == "classification" else None

    # -- loading
    def _parse_label(self, value: str, where: str):
        spec = self.spec
        if spec.label_map is not None:
            if value not in spec.label_map:
                raise PrunelabError(f"{where}: label {value!r} is not one of "
                                    f"{', '.join(spec.label_map)}")
            return spec.label_map[value]
        if self.kind == "regression":
            try:
                return float(value)
            except ValueError:
                raise PrunelabError(f"{where}: score {value!r} is not a number") from None
        try:
            label = int(value)
        except ValueError:
            raise PrunelabError(f"{where}: label {value!r} is not a number") from None
        if not 0 <= label < self.num_labels:
            raise PrunelabError(f"{where}: label {label} is outside 0..{self.num_labels - 1}")
        return label

    def _load_local(self, folder: str, split: str) -> list[dict]:
        path = require_file(folder, self.splits[split], self.name)
        spec = self.spec
        examples = []
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            if spec.short == "cola":
                width, a_col, b_col, label_col = COLA_COLUMNS, int(spec.text_a), None, int(spec.label)
            else:
                header = next(reader, None)
                if header is None:
                    raise PrunelabError(f"{path}: file is empty")
                missing = [c for c in (spec.text_a, spec.text_b, spec.label)
                           if c is not None and c not in header]
                if missing:
                    hint = " (GLUE test files carry no labels)" if spec.label in missing else ""
                    raise PrunelabError(f"{path}:1: header lacks column(s) "
                                        f"{', '.join(repr(m) for m in missing)}{hint}")
                width = len(header)
                a_col = header.index(spec.text_a)
                b_col = header.index(spec.text_b) if spec.text_b else None
                label_col = header.index(spec.label)
            for row in reader:
                if not row:
                    continue  # blank line, e.g. at the end of the file
                where = f"{path}:{reader.line_num}"
                if len(row) != width:
                    hint = (" (this looks like an unlabelled GLUE test file)"
                            if spec.short == "cola" and row[0] == "index" else "")
                    raise PrunelabError(f"{where}: expected {width} tab-separated columns, "
                                        f"found {len(row)}{hint}")
                examples.append({
                    "idx": len(examples),
                    "text_a": row[a_col],
                    "text_b": row[b_col] if b_col is not None else None,
                    "label": self._parse_label(row[label_col], where),
                    "split": split,
                })
        return examples

    def _load_hub(self, split: str) -> list[dict]:
        spec = self.spec
        rows = load_hub(self.name, "glue", spec.short, split=self.hub_splits[split])
        examples = []
        for row in rows:
            label = row["label"]
            if self.kind == "classification" and label < 0:
                raise PrunelabError(f"{self.name}: the hub's {split!r} split has no labels")
            examples.append({
                "idx": len(examples),
                "text_a": row[spec.hub_a],
                "text_b": row[spec.hub_b] if spec.hub_b else None,
                "label": float(label) if self.kind == "regression" else int(label),
                "split": split,
            })
        return examples

    # -- features
    def encode(self, examples: list[dict], tokenizer, max_length: int) -> list[dict]:
        return encode_text_pairs(examples, tokenizer, max_length, pair=self.spec.text_b is not None,
                                 regression=self.kind == "regression")

    # -- evaluation
    def evaluate(self, model, features: list[dict], tokenizer, batch_size: int, device) -> dict:
        preds, labels = predict_labels(self, model, features, tokenizer, batch_size, device)
        out = metrics.glue_metrics(self.spec.short, preds, labels)
        if features and all(f.get("_split", "").endswith("_mismatched") for f in features):
            # MNLI mismatched: same numbers, reported under the conventional key too.
            out["accuracy_mm"] = out["accuracy"]
        return out


def encode_text_pairs(examples: list[dict], tokenizer, max_length: int, *, pair: bool, regression: bool) -> list[dict]:
    """Tokenize {text_a, text_b, label} examples into unpadded features (shared with custom tasks)."""
    if not examples:
        return []
    text_a = [ex["text_a"] for ex in examples]
    text_b = [ex["text_b"] for ex in examples] if pair else None
    enc = tokenizer(text_a, text_b, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    features = []
    for i, ex in enumerate(examples):
        feat = {k: list(enc[k][i]) for k in keys}
        feat["labels"] = float(ex["label"]) if regression else int(ex["label"])
        feat["_idx"] = ex.get("idx", i)
        feat["_split"] = ex.get("split", "")
        features.append(feat)
    return features


def predict_labels(task: Task, model, features: list[dict], tokenizer, batch_size: int, device) -> tuple[list, list]:
    """(predictions, gold labels) of a sequence classifier or regressor over the features."""
    preds, labels = [], []
    for _group, batch in task._eval_batches(model, features, tokenizer, batch_size, device):
        gold = batch.pop("labels")
        logits = model(**batch).logits
        if task.kind == "regression":
            preds.extend(logits.squeeze(-1).float().cpu().tolist())
        else:
            preds.extend(logits.argmax(-1).cpu().tolist())
        labels.extend(gold.cpu().tolist())
    return preds, labels


for _short, _spec in SPECS.items():
    register_task(GlueTask(_spec), aliases=(_short,))
