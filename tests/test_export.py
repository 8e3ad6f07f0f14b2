"""save_pruned -> reload gives identical outputs; stock config when widths allow it."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace as NS

import pytest
import torch
import transformers

from prunelab.errors import PrunelabError
from prunelab.export import load_pruned, save_pruned
from prunelab.models import get_family, load_model
from prunelab.models.testing import example_batch, outputs, random_masks

torch.set_num_threads(1)  # tiny models: avoid OpenMP stalls on shared cores
transformers.utils.logging.disable_progress_bar()

CASES = {
    "bert-cls": ("tiny-bert", NS(kind="classification", num_labels=3), "AutoModelForSequenceClassification"),
    "roberta-qa": ("tiny-roberta", NS(kind="qa", num_labels=2), "AutoModelForQuestionAnswering"),
    "t5-seq2seq": ("tiny-t5", NS(kind="seq2seq"), "AutoModelForSeq2SeqLM"),
    "t5gated-cls": ("tiny-t5-gated", NS(kind="classification", num_labels=2), "AutoModelForSequenceClassification"),
    "llama-lm": ("tiny-llama", NS(kind="lm"), "AutoModelForCausalLM"),
    "llama-cls": ("tiny-llama", NS(kind="regression"), "AutoModelForSequenceClassification"),
}


def _pruned(case, seed=0):
    name, task, auto = CASES[case]
    lm = load_model(name, task)
    fam = get_family(lm.model)
    fam.prune_masked(**random_masks(fam, seed=seed))
    return lm, auto


def _uniform(case):
    """Same widths in every layer, hidden = heads x head_dim: representable by a stock config."""
    name, task, auto = CASES[case]
    lm = load_model(name, task)
    fam = get_family(lm.model)
    for b, blk in enumerate(fam.attention_blocks()):
        # T5 self-attentions of a stack must keep the same heads (they share one position bias)
        keep = [1] if fam.name == "llama" else ([0, 2, 3] if blk.kind == "self" else [1, 2, 3])
        fam.prune_heads(b, keep)
    for f in range(len(fam.ffn_blocks())):
        fam.prune_neurons(f, range(0, 100 if fam.name != "t5" else 50))
    fam.prune_hidden(range(48 if fam.name != "t5" else 24))
    return lm, auto


@pytest.mark.parametrize("case", CASES)
def test_prunelab_format_round_trip(case, tmp_path):
    lm, auto = _pruned(case)
    x = example_batch(lm.model)
    expected = outputs(lm.model, x)
    result = save_pruned(lm.model, tmp_path, lm.tokenizer)
    assert result.format == "prunelab" and result.reason
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"].startswith("prunelab-") and auto in config["auto_map"]
    assert (tmp_path / "model.safetensors").exists()
    assert list(tmp_path.glob("modeling_prunelab_*.py"))
    torch.testing.assert_close(outputs(load_pruned(tmp_path), x), expected, atol=1e-6, rtol=0)
    # registered in-process: plain Auto classes need no trust_remote_code
    again = getattr(transformers, auto).from_pretrained(tmp_path).eval()
    torch.testing.assert_close(outputs(again, x), expected, atol=1e-6, rtol=0)
    # load_model on the export keeps the saved head and finds the family
    loaded = load_model(str(tmp_path))
    assert loaded.family.widths() == get_family(lm.model).widths() and loaded.tokenizer is not None


@pytest.mark.parametrize("case", ["bert-cls", "t5-seq2seq", "llama-lm", "t5gated-cls"])
def test_uniform_pruning_writes_stock_config(case, tmp_path):
    lm, auto = _uniform(case)
    x = example_batch(lm.model)
    expected = outputs(lm.model, x)
    result = save_pruned(lm.model, tmp_path)
    assert result.format == "stock", result.reason
    config = json.loads((tmp_path / "config.json").read_text())
    assert "auto_map" not in config and "prunelab_widths" not in config
    assert not list(tmp_path.glob("modeling_prunelab_*.py"))
    stock = getattr(transformers, auto).from_pretrained(tmp_path).eval()
    assert type(stock).__module__.startswith("transformers.models.")
    torch.testing.assert_close(outputs(stock, x), expected, atol=1e-6, rtol=0)


def test_force_prunelab_format_and_refusals(tmp_path):
    lm, _ = _uniform("bert-cls")
    assert save_pruned(lm.model, tmp_path / "a", format="prunelab").format == "prunelab"
    lm, _ = _pruned("bert-cls")
    with pytest.raises(PrunelabError, match="stock"):
        save_pruned(lm.model, tmp_path / "b", format="stock")
    fam = get_family(lm.model)
    fam.set_masks(**random_masks(fam))
    with pytest.raises(PrunelabError, match="masks"):
        save_pruned(lm.model, tmp_path / "c")


def test_bert_hidden_not_multiple_of_heads_needs_prunelab_format(tmp_path):
    lm = load_model("tiny-bert", NS(kind="classification", num_labels=2))
    get_family(lm.model).prune_hidden(range(50))  # uniform, but 50 != 4 heads x 16
    result = save_pruned(lm.model, tmp_path)
    assert result.format == "prunelab" and "hidden" in result.reason


def test_reloaded_export_can_be_pruned_and_exported_again(tmp_path):
    lm, _ = _pruned("t5-seq2seq")
    save_pruned(lm.model, tmp_path / "one")
    model = load_pruned(tmp_path / "one")
    fam = get_family(model)
    fam.prune_heads(3, [0])
    fam.prune_hidden(range(10))
    x = example_batch(model)
    expected = outputs(model, x)
    save_pruned(model, tmp_path / "two")
    torch.testing.assert_close(outputs(load_pruned(tmp_path / "two"), x), expected, atol=1e-6, rtol=0)


_CHILD = r"""
import json, sys, torch, transformers
torch.set_num_threads(1)
for item in json.loads(sys.argv[1]):
    ref = torch.load(item["ref"])
    auto = getattr(transformers, item["auto"])
    model = auto.from_pretrained(item["dir"], trust_remote_code=item["remote"]).eval()
    with torch.no_grad():
        out = model(**ref["x"])
    y = out.logits if hasattr(out, "logits") and out.logits is not None else torch.cat([out.start_logits, out.end_logits], -1)
    print(item["case"], type(model).__name__, float((y - ref["y"]).abs().max()))
assert "prunelab" not in sys.modules
"""


def test_exports_load_in_clean_python_without_prunelab(tmp_path):
    """One child process (no prunelab importable): trust_remote_code for prunelab-format dirs,
    stock transformers for stock dirs."""
    items = []
    for case, make in [("bert-cls", _pruned), ("roberta-qa", _pruned), ("t5-seq2seq", _pruned),
                       ("llama-cls", _pruned), ("llama-lm", _uniform)]:
        lm, auto = make(case)
        out = tmp_path / case
        result = save_pruned(lm.model, out)
        x = example_batch(lm.model)
        torch.save({"x": x, "y": outputs(lm.model, x)}, out / "ref.pt")
        items.append({"case": case, "dir": str(out), "ref": str(out / "ref.pt"), "auto": auto,
                      "remote": result.format == "prunelab"})
    assert [i["remote"] for i in items] == [True, True, True, True, False]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "hf_modules"))
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(items)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == len(items)
    for line in lines:
        case, cls, diff = line.split()
        assert float(diff) < 1e-6, line
        assert cls.startswith("Prunelab") == (case != "llama-lm"), line
