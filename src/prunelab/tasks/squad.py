"""SQuAD v1.1 and v2.0 extractive QA.

Example dicts: {"id", "title", "context", "question",
"answers": {"text": [...], "answer_start": [...]}, "is_impossible": bool}
(the Hugging Face `squad` shape; unanswerable questions have empty answer lists).

Encoding keeps one window per question: the context is truncated to max_length (no sliding
window), so an answer cut off by truncation gets the CLS position 0 like a null answer.
"""
from __future__ import annotations

import json

from prunelab.errors import PrunelabError
from prunelab.tasks import metrics
from prunelab.tasks.base import Task, load_hub, register_task, require_file

MAX_ANSWER_TOKENS = 30   # longest span considered at prediction time
TOP_K = 20               # best start/end candidates searched


def read_squad_json(path: str, version2: bool) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except json.JSONDecodeError as err:
        raise PrunelabError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise PrunelabError(f"{path}: expected a SQuAD JSON object with a 'data' list")
    examples = []
    for article in doc["data"]:
        title = article.get("title", "")
        for paragraph in article.get("paragraphs", []):
            try:
                context = paragraph["context"]
                qas = paragraph["qas"]
            except (KeyError, TypeError):
                raise PrunelabError(f"{path}: article {title!r} has a paragraph without "
                                    "'context' and 'qas'") from None
            for qa in qas:
                try:
                    impossible = bool(qa.get("is_impossible", False)) if version2 else False
                    answers = [] if impossible else qa["answers"]
                    example = {
                        "id": str(qa["id"]),
                        "title": title,
                        "context": context,
                        "question": qa["question"],
                        "answers": {"text": [a["text"] for a in answers],
                                    "answer_start": [int(a["answer_start"]) for a in answers]},
                        "is_impossible": impossible,
                    }
                except (KeyError, TypeError, ValueError) as err:
                    qid = qa.get("id", "?") if isinstance(qa, dict) else "?"
                    raise PrunelabError(f"{path}: question {qid!r} is malformed "
                                        f"({type(err).__name__}: {err})") from None
                if not impossible and not answers:
                    raise PrunelabError(f"{path}: question {example['id']!r} has no answers "
                                        "and is not marked is_impossible")
                examples.append(example)
    return examples


def best_span(start_logits: list[float], end_logits: list[float], offsets: list,
              context: str, allow_null: bool) -> str:
    """Highest start+end scoring context span; "" when null wins (v2) or nothing is valid."""
    in_context = [i for i, o in enumerate(offsets) if o is not None]
    if not in_context:
        return ""
    starts = sorted(in_context, key=lambda i: -start_logits[i])[:TOP_K]
    ends = sorted(in_context, key=lambda i: -end_logits[i])[:TOP_K]
    best, best_score = None, float("-inf")
    for s in starts:
        for e in ends:
            if s <= e < s + MAX_ANSWER_TOKENS:
                score = start_logits[s] + end_logits[e]
                if score > best_score:
                    best, best_score = (s, e), score
    null_score = start_logits[0] + end_logits[0]
    if best is None or (allow_null and null_score > best_score):
        return ""
    return context[offsets[best[0]][0]:offsets[best[1]][1]]


class SquadTask(Task):
    kind = "qa"
    num_labels = 0
    metric = "f1"
    higher_is_better = True

    def __init__(self, version2: bool):
        self.version2 = version2
        self.name = "squad_v2" if version2 else "squad"
        tag = "v2.0" if version2 else "v1.1"
        self.splits = {"train": f"train-{tag}.json", "dev": f"dev-{tag}.json"}
        self.hub_splits = {"train": "train", "dev": "validation"}
        self.folder_names = (self.name,) if version2 else ("squad", "squad_v1", "squad1.1")
        # v2: keep the answerable / unanswerable mix in subsets.
        self.stratify_key = "is_impossible" if version2 else None

    def _load_local(self, folder: str, split: str) -> list[dict]:
        return read_squad_json(require_file(folder, self.splits[split], self.name), self.version2)

    def _load_hub(self, split: str) -> list[dict]:
        rows = load_hub(self.name, self.name, split=self.hub_splits[split])
        examples = []
        for row in rows:
            texts = list(row["answers"]["text"])
            examples.append({
                "id": str(row["id"]), "title": row.get("title", ""),
                "context": row["context"], "question": row["question"],
                "answers": {"text": texts, "answer_start": list(row["answers"]["answer_start"])},
                "is_impossible": not texts,
            })
        return examples

    # -- features
    def _clip_questions(self, questions: list[str], tokenizer, max_question: int) -> list[str]:
        # A question longer than the window leaves no room for context and makes the
        # tokenizer refuse "only_second" truncation, so cut such questions short.
        enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
        clipped = []
        for q, offs in zip(questions, enc["offset_mapping"]):
            clipped.append(q[:offs[max_question - 1][1]] if len(offs) > max_question else q)
        return clipped

    def encode(self, examples: list[dict], tokenizer, max_length: int) -> list[dict]:
        if not examples:
            return []
        if not getattr(tokenizer, "is_fast", False):
            raise PrunelabError(f"{self.name} needs a fast tokenizer (character offsets)")
        questions = self._clip_questions([ex["question"].lstrip() for ex in examples],
                                         tokenizer, max(1, max_length // 2))
        contexts = [ex["context"] for ex in examples]
        enc = tokenizer(questions, contexts, truncation="only_second", max_length=max_length,
                        return_offsets_mapping=True)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        features = []
        for i, ex in enumerate(examples):
            seq_ids = enc.sequence_ids(i)
            offsets = [tuple(o) if seq_ids[k] == 1 else None
                       for k, o in enumerate(enc["offset_mapping"][i])]
            start = end = 0
            answers = ex["answers"]
            if answers["text"] and not ex.get("is_impossible"):
                first = answers["answer_start"][0]
                last = first + len(answers["text"][0])
                ctx = [k for k, o in enumerate(offsets) if o is not None]
                # Label only answers that lie wholly inside the window.
                if ctx and offsets[ctx[0]][0] <= first and offsets[ctx[-1]][1] >= last:
                    start = next(k for k in ctx if offsets[k][1] > first)
                    end = next(k for k in reversed(ctx) if offsets[k][0] < last)
            feat = {k: list(enc[k][i]) for k in keys}
            feat.update({"start_positions": start, "end_positions": end,
                         "_id": ex["id"], "_context": ex["context"], "_offsets": offsets,
                         "_answers": list(answers["text"])})
            features.append(feat)
        return features

    # -- evaluation
    def evaluate(self, model, features: list[dict], tokenizer, batch_size: int, device) -> dict:
        predictions, golds = [], []
        for group, batch in self._eval_batches(model, features, tokenizer, batch_size, device):
            batch.pop("start_positions", None)
            batch.pop("end_positions", None)
            out = model(**batch)
            starts = out.start_logits.float().cpu()
            ends = out.end_logits.float().cpu()
            for j, feat in enumerate(group):
                n = len(feat["input_ids"])
                predictions.append(best_span(starts[j, :n].tolist(), ends[j, :n].tolist(),
                                             feat["_offsets"], feat["_context"], self.version2))
                golds.append(feat["_answers"])
        out = metrics.squad_metrics(predictions, golds, with_no_answer=self.version2)
        out["score"] = out[self.metric]
        return out


register_task(SquadTask(version2=False))
register_task(SquadTask(version2=True))
