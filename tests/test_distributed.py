"""Several processes: `accelerate launch` with 2 CPU processes (gloo) trains FT, LoRA and APT.

Each rank trains on its half of every batch; the ranks must end with identical models (APT:
identical pruning decisions), and only rank 0 writes the store row and the export. The loop's
PRUNELAB_RANK_STATE_DIR hook makes each rank write a hash of its trained model.

`accelerate launch --cpu --num_processes 2` starts ONE process (accelerate's simple launcher
fans out on CPU only through mpirun); `--multi_gpu` launches through torchrun, and the loop's
Accelerator(cpu=True) then runs the processes on the CPU with gloo.
"""
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")
BATCH, TRAIN_LIMIT = 8, 32
STEPS = {"ft": 2, "lora": 2, "apt": 8}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp_path, data_dir, method, *args):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PRUNELAB_RANK_STATE_DIR": str(tmp_path / "ranks"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()),
           "-m", "prunelab.cli", "train", "--model", "tiny-bert", "--task", "glue/sst2", "--method", method,
           "--data-dir", data_dir, "--store", str(tmp_path / "r.db"),
           "--output-dir", str(tmp_path / "out"), "--max-steps", str(STEPS[method]),
           "--train-limit", str(TRAIN_LIMIT), "--eval-limit", "12", "--batch-size", str(BATCH),
           "--eval-points", "1", "--set", "measure.throughput=false", "--set", "measure.flops=false", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    ranks = [json.loads((tmp_path / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    with sqlite3.connect(tmp_path / "r.db") as c:
        rows = c.execute("SELECT status, pid, metrics FROM runs").fetchall()
    return ranks, rows


@pytest.mark.parametrize("method,args", [("ft", ()), ("lora", ()), ("apt", ("--arg", "preset=tiny"))])
def test_two_processes_train_identical_models(sst2_dir, tmp_path, method, args):
    ranks, rows = launch(tmp_path, sst2_dir, method, *args)
    r0, r1 = ranks
    assert (r0["rank"], r1["rank"]) == (0, 1) and r0["world"] == r1["world"] == 2
    assert r0["pid"] != r1["pid"]
    # the data was split: each rank trained on half of every batch
    assert r0["examples_seen"] == r1["examples_seen"] == STEPS[method] * BATCH // 2
    assert r0["sha256"] == r1["sha256"] and r0["params"] == r1["params"]
    # one store row, written by rank 0; one export
    assert len(rows) == 1
    status, pid, metrics = rows[0]
    metrics = json.loads(metrics)
    assert status == "done" and pid == r0["pid"]
    assert (tmp_path / "out" / "config.json").exists() and metrics["output_dir"] == str(tmp_path / "out")
    if method == "apt":   # the ranks pruned, and pruned the same units
        assert metrics["apt_sparsity"] > 0.5 and metrics["params"] < metrics["dense_params"]
