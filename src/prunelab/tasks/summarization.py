"""CNN/DailyMail abstractive summarisation (seq2seq).

Local files: cnn_dailymail/{train,validation,test}.csv or .jsonl with columns
`article`, `highlights` and optionally `id`. Example dicts: {"id", "article", "highlights"}.
"""
from __future__ import annotations

import csv
import json
import os
import sys

from prunelab.errors import PrunelabError
from prunelab.tasks import metrics
from prunelab.tasks.base import Task, load_hub, pad_id_of, register_task

PREFIX = "summarize: "
COLUMNS = ("article", "highlights")


def _check_row(row, where: str) -> None:
    if not isinstance(row, dict):
        raise PrunelabError(f"{where}: expected an object with {', '.join(COLUMNS)}")
    missing = [c for c in COLUMNS if not isinstance(row.get(c), str)]
    if missing:
        raise PrunelabError(f"{where}: missing or non-text column(s) {', '.join(missing)}")


def read_csv(path: str) -> list[dict]:
    # News articles can exceed csv's default 128 KiB field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    examples = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise PrunelabError(f"{path}:1: header lacks column(s) {', '.join(missing)} "
                                f"(found: {', '.join(header) or 'nothing'})")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row or any(v is None for v in row.values()):
                raise PrunelabError(f"{where}: expected {len(header)} comma-separated columns")
            _check_row(row, where)
            examples.append({"id": row.get("id") or str(len(examples)),
                             "article": row["article"], "highlights": row["highlights"]})
    return examples


def read_jsonl(path: str) -> list[dict]:
    examples = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise PrunelabError(f"{where}: not valid JSON ({err.msg})") from None
            _check_row(row, where)
            examples.append({"id": str(row.get("id") or len(examples)),
                             "article": row["article"], "highlights": row["highlights"]})
    return examples


class SummarizationTask(Task):
    name = "cnn_dailymail"
    kind = "seq2seq"
    num_labels = 0
    metric = "rouge1"
    higher_is_better = True
    splits = {"train": "train", "dev": "validation", "test": "test"}
    hub_splits = {"train": "train", "dev": "validation", "test": "test"}
    folder_names = ("cnn_dailymail", "cnn_dm", "cnndm")
    max_target_length = 128   # label tokens kept per summary
    max_new_tokens = 64       # generation length at evaluation; change on the instance

    def _load_local(self, folder: str, split: str) -> list[dict]:
        stem = self.splits[split]
        for ext, reader in ((".csv", read_csv), (".jsonl", read_jsonl)):
            path = os.path.join(folder, stem + ext)
            if os.path.isfile(path):
                return reader(path)
        present = ", ".join(sorted(os.listdir(folder))) or "nothing"
        raise PrunelabError(f"{self.name}: missing data file {stem}.csv or {stem}.jsonl in "
                            f"{folder!r}; the folder has: {present}")

    def _load_hub(self, split: str) -> list[dict]:
        rows = load_hub(self.name, "cnn_dailymail", "3.0.0", split=self.hub_splits[split])
        return [{"id": str(r.get("id", i)), "article": r["article"], "highlights": r["highlights"]}
                for i, r in enumerate(rows)]

    def encode(self, examples: list[dict], tokenizer, max_length: int) -> list[dict]:
        if not examples:
            return []
        enc = tokenizer([PREFIX + ex["article"] for ex in examples],
                        truncation=True, max_length=max_length)
        targets = tokenizer(text_target=[ex["highlights"] for ex in examples],
                            truncation=True, max_length=self.max_target_length)
        features = []
        for i, ex in enumerate(examples):
            # No token_type_ids: encoder-decoder models such as T5 do not accept them.
            features.append({"input_ids": list(enc["input_ids"][i]),
                             "attention_mask": list(enc["attention_mask"][i]),
                             "labels": list(targets["input_ids"][i]),
                             "_id": ex["id"], "_reference": ex["highlights"]})
        return features

    def evaluate(self, model, features: list[dict], tokenizer, batch_size: int, device) -> dict:
        predictions, references = [], []
        encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        for group, batch in self._eval_batches(model, features, tokenizer, batch_size, device):
            out = model.generate(input_ids=batch["input_ids"],
                                 attention_mask=batch["attention_mask"],
                                 max_new_tokens=self.max_new_tokens, do_sample=False,
                                 num_beams=1, pad_token_id=pad_id_of(tokenizer))
            if not encoder_decoder:
                out = out[:, batch["input_ids"].shape[1]:]  # drop the echoed prompt
            predictions.extend(tokenizer.batch_decode(out, skip_special_tokens=True))
            references.extend(f["_reference"] for f in group)
        out = metrics.rouge(predictions, references)
        out["score"] = out[self.metric]
        return out


register_task(SummarizationTask())
