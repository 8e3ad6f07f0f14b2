"""Regression tests for the failures listed in issue 9 (each failed on the code before the fix)."""
from types import SimpleNamespace as NS

import pytest
import torch

from prunelab import run as run_module
from prunelab.cli import main
from prunelab.config import RunConfig, TrainConfig
from prunelab.errors import PrunelabError
from prunelab.export import load_pruned, save_pruned
from prunelab.models import get_family, load_model
from prunelab.models.testing import example_batch, outputs
from prunelab.run import run
from prunelab.store import Store
from prunelab.train import measure

FAST_MEASURE = {"batch_sizes": [2], "seq_len": 8, "repeats": 1, "warmup": 0, "min_seconds": 0}


def tiny(data_dir, model="tiny-bert", **kw):
    return RunConfig(model=model, task="glue/sst2", method="ft", data_dir=data_dir,
                     train=TrainConfig(batch_size=8, max_steps=2, eval_points=1, train_limit=16, eval_limit=8),
                     measure=FAST_MEASURE, **kw)


# -- T5 classification: measurement fed a one-token decoder input -----------------------------
def test_dummy_inputs_run_a_t5_classifier():
    model = load_model("tiny-t5", NS(kind="classification", num_labels=2)).model
    x = measure.dummy_inputs(model, 3, 12, "cpu")
    assert "decoder_input_ids" not in x        # the head shifts input_ids itself
    assert measure.flops_per_sample(model, x) > 0
    seq2seq = load_model("tiny-t5", NS(kind="seq2seq")).model
    assert measure.dummy_inputs(seq2seq, 2, 8, "cpu")["decoder_input_ids"].shape == (2, 1)


def test_t5_classification_run_finishes_and_keeps_the_model(sst2_dir, tmp_path):
    row = run(tiny(sst2_dir, "tiny-t5", output_dir=str(tmp_path / "out")), tmp_path / "r.db")
    assert row["status"] == "done", row.get("error")
    assert row["metrics"]["flops_per_sample"] > 0 and row["metrics"]["throughput_real"] > 0
    assert (tmp_path / "out" / "config.json").is_file()


# -- LLaMA export with hidden % heads != 0 (SmolLM2 at 30%: 536 hidden, 9 heads) -------------
def test_llama_export_with_hidden_not_a_multiple_of_heads(tmp_path):
    lm = load_model("tiny-llama", NS(kind="lm"))
    get_family(lm.model).prune_hidden(range(50))           # 50 hidden, 4 heads
    x = example_batch(lm.model)
    result = save_pruned(lm.model, tmp_path)
    assert result.format == "prunelab"
    torch.testing.assert_close(outputs(load_pruned(tmp_path), x), outputs(lm.model, x), atol=1e-6, rtol=0)


# -- never lose a trained model -----------------------------------------------------------------
def test_model_is_exported_before_inference_is_measured(sst2_dir, tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("measurement broke")

    monkeypatch.setattr(run_module, "measure_inference", broken)
    store = Store(tmp_path / "r.db")
    with pytest.raises(RuntimeError, match="measurement broke"):
        run(tiny(sst2_dir, output_dir=str(tmp_path / "out")), store)
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert [r["status"] for r in store.runs()] == ["failed"]     # a genuine failure is recorded


def test_cached_run_given_a_new_output_dir_gets_the_model(sst2_dir, tmp_path):
    store = Store(tmp_path / "r.db")
    first = run(tiny(sst2_dir, output_dir=str(tmp_path / "a")), store)
    again = run(tiny(sst2_dir, output_dir=str(tmp_path / "b")), store)
    assert again["attempts"] == first["attempts"] == 1            # not re-trained
    assert (tmp_path / "b" / "model.safetensors").read_bytes() == (tmp_path / "a" / "model.safetensors").read_bytes()


def test_cached_run_without_an_export_fails_loudly_with_the_fix(sst2_dir, tmp_path, capsys):
    db = str(tmp_path / "r.db")
    run(tiny(sst2_dir), db)                                         # done, nothing exported
    argv = ["train", "--model", "tiny-bert", "--task", "glue/sst2", "--data-dir", sst2_dir, "--store", db,
            "--max-steps", "2", "--train-limit", "16", "--eval-limit", "8", "--batch-size", "8",
            "--set", "train.eval_points=1", "--set", "measure.batch_sizes=[2]", "--set", "measure.seq_len=8",
            "--set", "measure.repeats=1", "--set", "measure.warmup=0", "--set", "measure.min_seconds=0",
            "--output-dir", str(tmp_path / "new")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cached" in err and "--force" in err and str(tmp_path / "new") in err
    assert not (tmp_path / "new" / "config.json").exists()
    assert main(argv + ["--force"]) == 0                            # the fix it names works
    assert (tmp_path / "new" / "config.json").is_file()


# -- bad input writes nothing; it is detected before the row is claimed ------------------------
@pytest.mark.parametrize("change, words", [
    (dict(model="tiny-bret"), "tiny-bert"),
    (dict(task="glue/sst3"), "glue/sst2"),
    (dict(method="lorra"), "lora"),
    (dict(method_args={"r": 0}), "method_args.r"),
    (dict(data_dir="/nonexistent/dir"), "/nonexistent/dir"),
    (dict(data_dir=None), "PRUNELAB_DATA"),                        # $PRUNELAB_DATA points nowhere
])
def test_bad_input_writes_no_row(change, words, sst2_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNELAB_DATA", str(tmp_path / "missing"))
    config = tiny(sst2_dir)
    for k, v in change.items():
        setattr(config, k, v)
    if "method_args" in change:
        config.method = "lora"
    store = Store(tmp_path / "r.db")
    with pytest.raises(PrunelabError, match=words):
        run(config, store)
    assert store.runs() == []


def test_method_that_declares_its_task_kinds_refuses_others_before_the_row(sst2_dir, tmp_path, monkeypatch):
    import dataclasses

    from prunelab.methods import registry

    ft = registry.get_method("ft")
    monkeypatch.setitem(registry._METHODS, "cls_only", dataclasses.replace(ft, name="cls_only", task_kinds=("qa",)))
    store = Store(tmp_path / "r.db")
    with pytest.raises(PrunelabError, match="does not support classification"):
        run(RunConfig(model="tiny-bert", task="glue/sst2", method="cls_only", data_dir=sst2_dir), store)
    assert store.runs() == []


# -- CoFi bugs the battery found ------------------------------------------------------------------
def test_cofi_distils_qa_heads_and_pairs_only_same_shaped_layers():
    from prunelab.methods.cofi import distill as D

    g = torch.Generator().manual_seed(0)
    qa = NS(logits=None, start_logits=torch.randn(2, 7, generator=g), end_logits=torch.randn(2, 7, generator=g))
    assert float(D.output_loss(qa, qa, 2.0)) == pytest.approx(0.0, abs=1e-6)
    # T5: two encoder layers (length 9) then two decoder layers (length 4)
    enc, dec = [torch.randn(2, 9, 6, generator=g) for _ in range(2)], [torch.randn(2, 4, 6, generator=g) for _ in range(2)]
    loss, align = D.layer_loss(enc + dec, enc + dec, torch.nn.Identity(), [0, 1, 2, 3])
    assert torch.isfinite(loss) and float(loss) == pytest.approx(0.0, abs=1e-6)
    assert align == [0, 1, 2, 3]
