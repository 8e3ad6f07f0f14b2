"""WikiText-2 causal language modelling, scored by perplexity.

Local files: wikitext-2/wiki.{train,valid,test}.tokens (logical splits train/dev/test); a folder
without the train file trains on valid and uses test as dev.
Example dicts: {"text": one line of the file, newline included}, like the HF rows.
"""
from __future__ import annotations

import os
import random

from prunelab.errors import PrunelabError
from prunelab.tasks import metrics
from prunelab.tasks.base import Task, load_hub, register_task


class LanguageModelTask(Task):
    name = "wikitext2"
    kind = "lm"
    num_labels = 0
    metric = "perplexity"
    higher_is_better = False
    splits = {"train": "wiki.train.tokens", "dev": "wiki.valid.tokens", "test": "wiki.test.tokens"}
    hub_splits = {"train": "train", "dev": "validation", "test": "test"}
    folder_names = ("wikitext-2", "wikitext2", "wikitext-2-v1", "wikitext-2-raw")

    # Without wiki.train.tokens (the shared data here has valid and test only) the validation
    # text trains and the test text is the dev set, so a run still never scores text it saw.
    FALLBACK = {"train": "dev", "dev": "test"}

    def _load_local(self, folder: str, split: str) -> list[dict]:
        asked = split
        if not os.path.isfile(os.path.join(folder, self.splits["train"])) and split in self.FALLBACK:
            split = self.FALLBACK[split]
        path = os.path.join(folder, self.splits[split])
        if not os.path.isfile(path):
            others = [f"{s} ({f})" for s, f in self.splits.items()
                      if os.path.isfile(os.path.join(folder, f))]
            have = f"; splits present: {', '.join(others)}" if others else "; no splits present"
            instead = f" (used for {asked!r} since there is no {self.splits['train']})" if split != asked else ""
            raise PrunelabError(f"{self.name}: missing data file {path!r}{instead}{have}")
        with open(path, encoding="utf-8") as f:
            return [{"text": line} for line in f]

    def _load_hub(self, split: str) -> list[dict]:
        rows = load_hub(self.name, "wikitext", "wikitext-2-raw-v1", split=self.hub_splits[split])
        return [{"text": r["text"]} for r in rows]

    def _subset(self, examples: list[dict], limit: int | None, seed: int) -> list[dict]:
        # Random lines would break the running text, so take a seeded contiguous window.
        if limit is None:
            return examples
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise PrunelabError(f"limit must be a positive whole number, got {limit!r}")
        if limit >= len(examples):
            return examples
        start = random.Random(seed).randrange(len(examples) - limit + 1)
        return examples[start:start + limit]

    def encode(self, examples: list[dict], tokenizer, max_length: int) -> list[dict]:
        """Tokenise the running text and cut it into blocks of max_length tokens.

        The last, shorter block is kept (if it has 2+ tokens) so every token is scored.
        Lines are tokenised one by one (cheap, no over-length warnings) and concatenated.
        """
        if max_length < 2:
            raise PrunelabError(f"{self.name}: max_length must be at least 2, got {max_length}")
        texts = [ex["text"] for ex in examples if ex["text"].strip()]
        ids: list[int] = []
        if texts:
            for line_ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]:
                ids.extend(line_ids)
        features = []
        for start in range(0, len(ids), max_length):
            block = ids[start:start + max_length]
            if len(block) < 2:
                break
            # labels == input_ids: HF causal LMs shift them internally.
            features.append({"input_ids": block, "attention_mask": [1] * len(block),
                             "labels": list(block)})
        return features

    def evaluate(self, model, features: list[dict], tokenizer, batch_size: int, device) -> dict:
        import torch  # noqa: PLC0415

        total_nll, n_tokens = 0.0, 0
        for _, batch in self._eval_batches(model, features, tokenizer, batch_size, device):
            labels = batch.pop("labels")
            logits = model(**batch).logits.float()
            # Token t predicts token t+1; pads carry -100 and are skipped.
            shifted = labels[:, 1:]
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), shifted.reshape(-1),
                ignore_index=-100, reduction="sum")
            total_nll += float(nll)
            n_tokens += int((shifted != -100).sum())
        ppl = metrics.perplexity(total_nll, n_tokens)
        return {"perplexity": ppl, "loss": total_nll / n_tokens, "tokens": float(n_tokens),
                "score": ppl}


register_task(LanguageModelTask())
