"""layout=uniform (issue 13): equal widths in every layer, so the export is a stock checkpoint
that loads with plain transformers (no prunelab, no trust_remote_code) and gives the same logits."""
import json
import os
import subprocess
import sys

import pytest
import torch

from prunelab.errors import PrunelabError
from prunelab.export import save_pruned
from prunelab.methods.apt.pruner import measured_size
from prunelab.methods.apt.testing import make_plugin, train_plugin
from prunelab.models.testing import example_batch, outputs

WIDE_BERT = dict(hidden_size=256, num_attention_heads=16, intermediate_size=512, num_hidden_layers=4)

_CHILD = r"""
import json, sys, torch, transformers
torch.set_num_threads(1)
for item in json.loads(sys.argv[1]):
    ref = torch.load(item["ref"])
    arch = json.load(open(item["dir"] + "/config.json"))["architectures"][0]
    model = getattr(transformers, arch).from_pretrained(item["dir"]).eval()
    with torch.no_grad():
        out = model(**ref["x"])
    print(item["case"], type(model).__name__, float((out.logits - ref["y"]).abs().max()))
assert "prunelab" not in sys.modules
"""


def load_in_clean_python(items, tmp_path):
    """Reload every export in one child without prunelab on the path and without remote code."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "hf_modules"))
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(items)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == len(items)
    for line in lines:
        case, cls, diff = line.split()
        assert not cls.startswith("Prunelab") and float(diff) < 1e-5, line


def export_item(case, model, tokenizer, tmp_path):
    model.eval()
    out = tmp_path / case
    result = save_pruned(model, out, tokenizer)
    meta = json.loads((out / "prunelab_export.json").read_text())
    assert result.format == "stock" and meta["format"] == "stock", meta["reason"]
    x = example_batch(model)
    torch.save({"x": x, "y": outputs(model, x)}, out / "ref.pt")
    return {"case": case, "dir": str(out), "ref": str(out / "ref.pt")}


def uniform_widths(widths):
    for key in ("heads", "ffn"):
        assert len(set(widths[key])) == 1, widths
    return widths


CASES = [("tiny-bert", "classification", WIDE_BERT), ("tiny-roberta", "classification", WIDE_BERT),
         ("tiny-t5", "seq2seq", None), ("tiny-llama", "lm", None)]


def test_apt_uniform_exports_stock_checkpoints_for_every_family(tmp_path):
    items = []
    for name, kind, overrides in CASES:
        plugin, model, task, ctx = make_plugin(name, kind=kind, steps=24, config_overrides=overrides,
                                               preset="tiny", layout="uniform")
        train_plugin(plugin, model, task, ctx)
        sparsity = 1 - measured_size(plugin.family) / plugin.dense_measured
        final = plugin.finalize(model)
        widths = uniform_widths(plugin.family.widths())
        assert widths["heads"][0] < (16 if overrides else 4) or widths["ffn"][0] < (512 if overrides else 128)
        tol = 0.02 if overrides else 0.035     # tiny-t5: one hidden dim of d_model 32 is 3% of the size
        assert abs(sparsity - 0.6) <= tol, (name, sparsity, widths)
        items.append(export_item(name, final, plugin.loaded.tokenizer, tmp_path))
    load_in_clean_python(items, tmp_path)


def test_layout_is_validated_and_an_ablation_option():
    from prunelab.methods.apt import APTConfig
    from prunelab.methods.registry import get_method

    with pytest.raises(PrunelabError, match="free.*uniform"):
        APTConfig(layout="stock")
    for method in ("apt", "masktune", "lora_prune", "prune_distill", "lora_prune_distill"):
        comp = get_method(method).components["layout"]
        assert set(comp.options) == {"free", "uniform"} and comp.description


def _sst2_run(method, args, sst2_dir, tmp_path, steps=12):
    from prunelab.config import MeasureConfig, RunConfig, TrainConfig
    from prunelab.run import run

    cfg = RunConfig(model="tiny-bert", task="glue/sst2", method=method, method_args=args, data_dir=sst2_dir,
                    output_dir=str(tmp_path / method),
                    train=TrainConfig(lr=1e-3, batch_size=8, max_steps=steps, eval_points=2, max_length=32),
                    measure=MeasureConfig(throughput=False))
    return run(cfg, store=str(tmp_path / "runs.db"))


def test_masktune_uniform_search_keeps_equal_counts_within_budget(sst2_dir, tmp_path):
    from prunelab.methods.masktune import MaskTuneConfig
    from prunelab.methods.masktune.method import prune_model
    from prunelab.models import load_model
    from prunelab.tasks import get_task

    task = get_task("glue/sst2")
    lm = load_model("tiny-bert", task)
    feats = task.encode(task.load("train", sst2_dir), lm.tokenizer, 32)
    rep = prune_model(lm.model, lm.family, task, lm.tokenizer, feats,
                      MaskTuneConfig(num_samples=32, sample_batch_size=16, sparsity=0.4, constraint="params",
                                     layout="uniform"), 0, "cpu")
    uniform_widths(rep["widths"])
    assert abs(rep["constraint_error"]) <= 0.02 and rep["neurons_kept"] < rep["neurons_total"]
    load_in_clean_python([export_item("masktune", lm.model, lm.tokenizer, tmp_path)], tmp_path)


@pytest.mark.parametrize("method,args", [
    ("lora_prune", {"num_samples": 32, "sample_batch_size": 16, "sparsity": 0.4, "layout": "uniform"}),
    ("prune_distill", {"sparsity": 0.5, "layout": "uniform", "distill": False}),
])
def test_masktune_and_cofi_uniform_runs_export_stock(method, args, sst2_dir, tmp_path):
    row = _sst2_run(method, args, sst2_dir, tmp_path)
    assert row["status"] == "done", row.get("error")
    m = row["metrics"]
    uniform_widths(m["widths"])
    meta = json.loads((tmp_path / method / "prunelab_export.json").read_text())
    assert meta["format"] == "stock", meta["reason"]
    load_in_clean_python([reference(method, tmp_path / method)], tmp_path)


def reference(case, out):
    """Logits of the exported model as prunelab reloads it (same weights as in memory at the end of the run)."""
    from prunelab.export import load_pruned

    model = load_pruned(out)
    x = example_batch(model)
    torch.save({"x": x, "y": outputs(model, x)}, out / "ref.pt")
    return {"case": case, "dir": str(out), "ref": str(out / "ref.pt")}
