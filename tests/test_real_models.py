"""Real weights end to end (slow, run in CI): train and prune -> export -> reload in a fresh
interpreter that cannot import prunelab -> use the model with plain transformers.

- APT at 30% on SmolLM2-135M (wikitext2): reload with AutoModelForCausalLM and generate.
- APT and Mask Tuning on MiniLM-L6 (SST-2): reload through transformers.pipeline; the reloaded
  logits match the in-memory model's (captured as run() hands it to save_pruned).

Kept short: a few steps on small subsets, no throughput timing, no FLOP count.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import prunelab.export
from prunelab.config import RunConfig, TrainConfig
from prunelab.run import run

pytestmark = pytest.mark.slow
DATA = os.environ.get("PRUNELAB_DATA")
NO_TIMING = {"throughput": False, "flops": False}
SENTENCES = ["a gripping , beautifully acted film .", "dull , predictable and far too long .",
             "it is neither good nor bad ."]
PROMPT = "The history of the city begins"

# the fresh interpreter: prunelab cannot be imported at all, and must not have been
PRELUDE = """
import json, sys
class NoPrunelab:
    def find_spec(self, name, path=None, target=None):
        if name == "prunelab" or name.startswith("prunelab."):
            raise ImportError("the export must load without prunelab")
sys.meta_path.insert(0, NoPrunelab())
import torch
torch.set_num_threads(1)
path = sys.argv[1]
"""
CLASSIFY = PRELUDE + """
import transformers
clf = transformers.pipeline("text-classification", model=path, trust_remote_code=True, device="cpu")
texts = json.loads(sys.argv[2])
labels = [r["label"] for r in clf(texts)]
raw = [{d["label"]: d["score"] for d in r} for r in clf(texts, top_k=None, function_to_apply="none")]
assert "prunelab" not in sys.modules
print(json.dumps({"labels": labels, "raw": raw, "class": type(clf.model).__name__,
                  "id2label": clf.model.config.id2label}))
"""
GENERATE = PRELUDE + """
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True).eval()
tok = AutoTokenizer.from_pretrained(path)
enc = tok(sys.argv[2], return_tensors="pt")
with torch.no_grad():
    logits = model(**enc).logits[0, -1]
    out = model.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=tok.eos_token_id)
assert "prunelab" not in sys.modules
print(json.dumps({"logits": logits.tolist(), "new_tokens": out[0, enc["input_ids"].shape[1]:].tolist(),
                  "text": tok.decode(out[0]), "class": type(model).__name__}))
"""


def fresh_python(code: str, tmp_path: Path, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_MODULES_CACHE=str(tmp_path / "hf_modules"))      # remote code lands here
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def needs(task_dir: str):
    if not DATA or not Path(DATA, task_dir).is_dir():
        pytest.skip(f"real data not found: set PRUNELAB_DATA to the shared data folder (with {task_dir}/)")


@pytest.fixture
def captured(monkeypatch):
    """What run() exports: the in-memory model's outputs, taken just before save_pruned writes it."""
    seen = {}
    save = prunelab.export.save_pruned

    @torch.no_grad()
    def capture(model, out_dir, tokenizer=None, **kw):
        model.eval()
        if "CausalLM" in type(model).__name__:
            seen["logits"] = model(**tokenizer(PROMPT, return_tensors="pt")).logits[0, -1]
        else:
            seen["logits"] = torch.stack([model(**tokenizer(s, return_tensors="pt")).logits[0] for s in SENTENCES])
        seen["id2label"] = dict(model.config.id2label)
        seen["export"] = save(model, out_dir, tokenizer, **kw)
        return seen["export"]

    monkeypatch.setattr(prunelab.export, "save_pruned", capture)
    return seen


def wikitext2_dir(tmp_path) -> str:
    """The shared WikiText-2 has no train split (see SOURCES.md): train on its validation split,
    evaluate on its test split."""
    needs("wikitext-2")
    d = tmp_path / "data" / "wikitext-2"
    d.mkdir(parents=True)
    (d / "wiki.train.tokens").symlink_to(Path(DATA, "wikitext-2", "wiki.valid.tokens"))
    (d / "wiki.valid.tokens").symlink_to(Path(DATA, "wikitext-2", "wiki.test.tokens"))
    return str(d.parent)


def test_apt_smollm2_wikitext2_exports_and_generates(tmp_path, captured):
    out = tmp_path / "smollm2-apt30"
    cfg = RunConfig(model="smollm2-135m", task="wikitext2", method="apt",
                    method_args={"preset": "tiny", "sparsity": 0.3}, data_dir=wikitext2_dir(tmp_path),
                    output_dir=str(out),
                    train=TrainConfig(batch_size=2, max_steps=6, train_limit=24, eval_limit=4, eval_points=1,
                                      max_length=64, lr=1e-4),
                    measure=NO_TIMING)
    row = run(cfg, tmp_path / "r.db")
    assert row["status"] == "done", row.get("error")
    m = row["metrics"]
    assert abs(m["apt_sparsity"] - 0.3) <= 0.02 and m["params"] < m["dense_params"]
    got = fresh_python(GENERATE, tmp_path, str(out), PROMPT)
    assert got["class"].endswith("ForCausalLM") and len(got["new_tokens"]) == 4
    assert torch.allclose(torch.tensor(got["logits"]), captured["logits"], atol=1e-3, rtol=1e-4)
    assert got["text"].startswith(PROMPT)


@pytest.mark.parametrize("method,args", [
    ("apt", {"preset": "tiny"}),
    ("masktune", {"num_samples": 32, "sample_batch_size": 16}),
])
def test_minilm_sst2_exports_and_classifies_without_prunelab(tmp_path, captured, method, args):
    needs("sst2")
    out = tmp_path / f"minilm-{method}"
    cfg = RunConfig(model="minilm-l6", task="glue/sst2", method=method, method_args=args, data_dir=DATA,
                    output_dir=str(out),
                    train=TrainConfig(batch_size=16, max_steps=10, train_limit=160, eval_limit=32, eval_points=1,
                                      max_length=64, lr=1e-4),
                    measure=NO_TIMING)
    row = run(cfg, tmp_path / "r.db")
    assert row["status"] == "done", row.get("error")
    m = row["metrics"]
    assert m["params"] < m["dense_params"]          # it was pruned physically
    got = fresh_python(CLASSIFY, tmp_path, str(out), json.dumps(SENTENCES))
    names = [captured["id2label"][i] for i in range(2)]
    assert got["class"].endswith("ForSequenceClassification")
    assert len(got["labels"]) == len(SENTENCES) and set(got["labels"]) <= set(names)
    reloaded = torch.tensor([[r[n] for n in names] for r in got["raw"]])
    assert torch.allclose(reloaded, captured["logits"], atol=1e-4, rtol=1e-4)
    # the pipeline's labels are the in-memory model's argmax
    assert got["labels"] == [names[i] for i in captured["logits"].argmax(-1).tolist()]
