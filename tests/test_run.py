"""One run, one record: the CLI path, every protocol metric, determinism, resume, bad input."""
import json

import pytest

from prunelab.cli import main
from prunelab.config import RunConfig, TrainConfig
from prunelab.run import run
from prunelab.store import Store

METRIC_KEYS = ["score", "train_seconds", "step_seconds", "train_peak_mem_mb", "train_peak_mem_kind",
               "throughput_bs32", "throughput_bs128", "throughput_real", "inf_peak_mem_mb", "params",
               "params_nonemb", "flops_per_sample", "dev_accuracy"]


def tiny(sst2_dir, method="ft", seed=0, **kw):
    return RunConfig(model="tiny-bert", task="glue/sst2", method=method, seed=seed, data_dir=sst2_dir,
                     train=TrainConfig(batch_size=8, max_steps=6, eval_points=2, lr=1e-3, **kw),
                     measure={"batch_sizes": [4, 8], "seq_len": 16, "repeats": 1, "warmup": 0, "min_seconds": 0})


def test_cli_train_json_prints_every_metric(sst2_dir, tmp_path, capsys):
    code = main(["train", "--method", "ft", "--model", "tiny-bert", "--task", "glue/sst2", "--train-limit", "64",
                 "--data-dir", sst2_dir, "--store", str(tmp_path / "r.db"), "--max-steps", "4", "--json",
                 "--set", "measure.batch_sizes=[4,8]", "--set", "measure.seq_len=16"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["status"] == "done"
    for k in ["score", "train_seconds", "train_peak_mem_mb", "throughput_bs4", "throughput_bs8", "throughput_real",
              "inf_peak_mem_mb", "params", "params_nonemb", "flops_per_sample"]:
        assert out["metrics"][k] is not None, k
    # an FT run is its own reference
    assert out["metrics"]["rel_acc"] == 1.0 and out["metrics"]["speedup_bs4"] == 1.0
    assert out["env"]["seed"] == 0 and out["env"]["versions"]["torch"] and "git_sha" in out["env"]
    assert out["config"]["train"]["train_limit"] == 64 and out["curve"][-1]["step"] == 4


def test_same_seed_same_metrics(sst2_dir, tmp_path):
    a = run(tiny(sst2_dir, seed=3), tmp_path / "a.db")
    b = run(tiny(sst2_dir, seed=3), tmp_path / "b.db")
    c = run(tiny(sst2_dir, seed=4), tmp_path / "c.db")
    assert [p["score"] for p in a["curve"]] == [p["score"] for p in b["curve"]]
    assert a["metrics"]["score"] == b["metrics"]["score"]
    assert a["metrics"]["final_loss"] == b["metrics"]["final_loss"]
    assert a["metrics"]["final_loss"] != c["metrics"]["final_loss"]


def test_done_run_is_not_repeated(sst2_dir, tmp_path):
    store = Store(tmp_path / "r.db")
    first = run(tiny(sst2_dir), store)
    again = run(tiny(sst2_dir), store)
    assert again["id"] == first["id"] and again["attempts"] == 1 and again["finished"] == first["finished"]


def test_lora_merges_and_tta_appears_when_baseline_does(sst2_dir, tmp_path):
    store = Store(tmp_path / "r.db")
    lora = run(tiny(sst2_dir, "lora"), store)
    assert lora["status"] == "done" and "tta_s" not in lora["metrics"]   # no FT yet
    ft = run(tiny(sst2_dir, "ft"), store)
    assert lora["metrics"]["params"] == ft["metrics"]["params"]           # merged back to the dense shape
    assert lora["metrics"]["params_trainable_start"] < ft["metrics"]["params_trainable_start"]
    from prunelab.derived import with_derived
    again = with_derived(store.get(lora["id"]), store)
    assert "tta_s" in again["metrics"] and again["metrics"]["ft_score"] == ft["metrics"]["score"]


@pytest.mark.parametrize("argv, words", [
    (["--model", "tiny-bret"], ["tiny-bert"]),
    (["--task", "glue/sst3"], ["glue/sst2"]),
    (["--method", "lorra"], ["lora"]),
    (["--set", "train.lrr=1"], ["'lr'"]),
    (["--lr", "-1"], ["train.lr"]),
    (["--data-dir", "/nonexistent/dir"], ["/nonexistent/dir"]),
])
def test_bad_input_one_line_exit_2_nothing_done(argv, words, tmp_path, capsys, sst2_dir):
    base = ["train", "--model", "tiny-bert", "--task", "glue/sst2", "--max-steps", "2",
            "--store", str(tmp_path / "r.db")]
    if "--data-dir" not in argv:
        base += ["--data-dir", sst2_dir]
    code = main(base + argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and err.startswith("prunelab: error:")
    for w in words:
        assert w in err
    assert Store(tmp_path / "r.db").runs(status="done") == []


def test_real_sst2_minilm(data_dir, tmp_path):
    """A short real fine-tuning of MiniLM-L6 on SST-2 learns something."""
    cfg = RunConfig(model="minilm-l6", task="glue/sst2", method="ft", seed=0,
                    train=TrainConfig(lr=1e-4, batch_size=16, max_steps=30, train_limit=480, eval_limit=160,
                                      eval_points=2),
                    measure={"throughput": False})
    row = run(cfg, tmp_path / "r.db")
    assert row["status"] == "done" and row["metrics"]["score"] > 0.6
