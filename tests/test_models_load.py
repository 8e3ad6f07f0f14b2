"""load_model: tiny models per task kind, packaged MiniLM / SmolLM2, local dirs, errors."""
import os
from types import SimpleNamespace as NS

import pytest
import torch
import transformers

from prunelab.errors import PrunelabError
from prunelab.models import LoadedModel, list_models, load_model
from prunelab.models.load import cache_root
from prunelab.models.testing import example_batch, outputs

torch.set_num_threads(1)  # tiny models: avoid OpenMP stalls on shared cores
transformers.utils.logging.disable_progress_bar()

KINDS = {
    "classification": (NS(kind="classification", num_labels=3), "ForSequenceClassification"),
    "regression": (NS(kind="regression", num_labels=1), "ForSequenceClassification"),
    "qa": (NS(kind="qa", num_labels=2), "ForQuestionAnswering"),
    "seq2seq": (NS(kind="seq2seq"), "ForConditionalGeneration"),
    "lm": (NS(kind="lm"), "ForCausalLM"),
}
SUPPORTED = {
    "tiny-bert": ["classification", "regression", "qa", None],
    "tiny-roberta": ["classification", "qa", None],
    "tiny-t5": ["classification", "regression", "qa", "seq2seq", None],
    "tiny-t5-gated": ["seq2seq"],
    "tiny-llama": ["classification", "regression", "qa", "lm", None],
}


@pytest.mark.parametrize("name,kind", [(n, k) for n, ks in SUPPORTED.items() for k in ks])
def test_tiny_models_per_task_kind(name, kind):
    task, suffix = KINDS[kind] if kind else (None, "Model")
    lm = load_model(name, task)
    assert isinstance(lm, LoadedModel) and lm.name == name and lm.source == name
    assert type(lm.model).__name__.endswith(suffix)
    assert not lm.model.training and next(lm.model.parameters()).dtype == torch.float32
    assert lm.tokenizer.vocab_size == 30522
    y = outputs(lm.model, example_batch(lm.model))
    if kind == "classification":
        assert y.shape[-1] == 3
    if kind == "regression":
        assert y.shape[-1] == 1 and lm.model.config.problem_type == "regression"


def test_tiny_models_are_deterministic_and_dtype():
    a = load_model("tiny-llama", KINDS["lm"][0])
    b = load_model("tiny-llama", KINDS["lm"][0], dtype=torch.float64)
    assert next(b.model.parameters()).dtype == torch.float64
    for (n, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters()):
        torch.testing.assert_close(p.double(), q, atol=0, rtol=0, msg=n)
    c = load_model("tiny-llama", KINDS["lm"][0], seed=1)
    assert not torch.equal(a.model.lm_head.weight, c.model.lm_head.weight)


def test_tiny_special_tokens():
    t5 = load_model("tiny-t5", KINDS["seq2seq"][0]).model.config
    assert (t5.pad_token_id, t5.decoder_start_token_id, t5.eos_token_id) == (0, 0, 102)
    llama = load_model("tiny-llama").model.config
    assert (llama.bos_token_id, llama.eos_token_id, llama.num_key_value_heads) == (101, 102, 2)


def test_config_overrides():
    lm = load_model("tiny-bert", config_overrides={"attn_implementation": "eager", "num_hidden_layers": 3})
    assert lm.model.config._attn_implementation == "eager" and lm.family.num_layers == 3


def test_task_without_head_is_one_line_error():
    with pytest.raises(PrunelabError, match="seq2seq") as e:
        load_model("tiny-bert", KINDS["seq2seq"][0])
    assert "\n" not in str(e.value)
    with pytest.raises(PrunelabError, match="task kind"):
        load_model("tiny-bert", NS(kind="translation"))


def test_unknown_alias_suggests_close_match():
    with pytest.raises(PrunelabError) as e:
        load_model("minilm-l5")
    msg = str(e.value)
    assert "'minilm-l6'" in msg and "did you mean" in msg and "\n" not in msg
    with pytest.raises(PrunelabError, match="unknown model"):
        load_model("/no/such/dir")
    assert "smollm2-135m" in list_models()


def test_minilm_l6_real_weights():
    lm = load_model("minilm-l6", KINDS["classification"][0])
    fam = lm.family
    assert fam.name == "bert" and fam.num_layers == 6 and fam.hidden_size == 384
    assert fam.attention_blocks()[0].num_heads == 12 and fam.ffn_blocks()[0].size == 1536
    enc = lm.tokenizer(["a fine movie", "bad"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert lm.model(**enc).logits.shape == (2, 3)
    # the classifier head is new but seeded: the same on every load
    again = load_model("minilm-l6", KINDS["classification"][0])
    assert torch.equal(lm.model.classifier.weight, again.model.classifier.weight)


def test_local_dir_round_trip(tmp_path):
    lm = load_model("tiny-roberta", KINDS["classification"][0])
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    again = load_model(str(tmp_path))  # task None: the saved head is kept
    assert type(again.model).__name__ == "RobertaForSequenceClassification"
    assert again.source == str(tmp_path) and again.family.name == "bert"
    x = example_batch(lm.model)
    torch.testing.assert_close(outputs(again.model, x), outputs(lm.model, x))
    base = load_model(str(tmp_path), KINDS["qa"][0])
    assert type(base.model).__name__ == "RobertaForQuestionAnswering"


@pytest.mark.slow
def test_smollm2_from_gguf_cache():
    """First use dequantises the GGUF (~5-20 s) into the shared cache; later loads take < 2 s."""
    lm = load_model("smollm2-135m", KINDS["lm"][0])
    assert (cache_root() / "smollm2-135m" / "config.json").exists()
    assert not list(cache_root().glob(".smollm2-135m.*"))  # no half-written temp dirs left
    fam = lm.family
    assert fam.name == "llama" and fam.num_layers == 30 and fam.hidden_size == 576
    b = fam.attention_blocks()[0]
    assert (b.num_heads, b.num_kv_heads, b.head_dim) == (9, 3, 64)
    ids = lm.tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = lm.model.generate(**ids, max_new_tokens=2, do_sample=False)
    assert "Paris" in lm.tokenizer.decode(out[0, ids["input_ids"].shape[1]:])
