"""Settings and helpers shared by the benchmarks, so FT/LoRA rows are reused across them.

Every benchmark run goes through prunelab.run.run into one store (runs/bench.db, not
committed); identical configs hash to the same row and are trained once.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
STORE = os.environ.get("PRUNELAB_BENCH_STORE", str(ROOT / "runs" / "bench.db"))

# MiniLM-L6 / SST-2: the same data and steps for every method
SST2 = dict(model="minilm-l6", task="glue/sst2")
SST2_TRAIN = dict(train_limit=8000, max_steps=500, batch_size=32, eval_points=10, max_length=128)
SST2_LR = {"ft": 5e-5, "lora": 5e-4}
SEEDS = (0, 1, 2)


def sst2_config(method: str, seed: int, lr: float | None = None, **method_args):
    from prunelab.config import RunConfig, TrainConfig

    return RunConfig(method=method, seed=seed, method_args=method_args,
                     train=TrainConfig(lr=lr or SST2_LR.get(method, 5e-4), **SST2_TRAIN), **SST2)


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version()}


def git_state() -> tuple[str, bool]:
    """(short SHA of HEAD, whether tracked source differs from it). Results may only come from
    committed code: a dirty tree makes `write` refuse unless explicitly allowed."""
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    # the results being (re)written are outputs, not code
    dirty = [ln for ln in dirty.splitlines() if "benchmarks/results/" not in ln]
    return sha, bool(dirty)


def provenance(argv=None, seeds=None) -> dict:
    sha, dirty = git_state()
    sha = os.environ.get("PRUNELAB_GIT_SHA") or sha
    # shell-quoted, so the printed command runs as printed (an empty argument stays '')
    out = {"command": shlex.join(["python", *(sys.argv if argv is None else argv)]),
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "git_sha": sha + ("-dirty" if dirty else ""), "git_dirty": dirty, "machine": machine()}
    if seeds is not None:
        out["seeds"] = list(seeds)
    return out


def committed_provenance(script: str, args, argv=None, seeds=None) -> dict:
    """provenance() of this command; refuses uncommitted code unless --allow-dirty or --report-only."""
    prov = provenance([script, *(sys.argv[1:] if argv is None else argv)], seeds)
    if prov["git_dirty"] and not args.allow_dirty and not args.report_only:
        raise SystemExit("uncommitted changes in src/ or benchmarks/: commit first (or --allow-dirty for scratch)")
    return prov


def open_store(script: str, args, argv=None):
    """Start-up shared by the store-backed benchmarks: provenance, the refusal to write results
    from uncommitted code (unless --allow-dirty or --report-only), torch threads, the Store."""
    import torch

    from prunelab.store import Store

    prov = committed_provenance(script, args, argv, args.seeds)
    torch.set_num_threads(int(os.environ.get("PRUNELAB_THREADS", "2")))
    Path(args.store).parent.mkdir(parents=True, exist_ok=True)
    return prov, Store(args.store)


def mean_std(values) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt_ms(values, fmt="{:.4f}") -> str:
    m, s = mean_std(values)
    if m is None:
        return "-"
    return (fmt + " ± " + fmt).format(m, s)


def write(name: str, data: dict, markdown: str, allow_dirty: bool = False) -> None:
    if (data.get("provenance") or {}).get("git_dirty") and not allow_dirty:
        raise SystemExit(f"refusing to write benchmarks/results/{name}.*: the source tree has uncommitted "
                         "changes (commit first, or pass --allow-dirty for a scratch result you will not commit)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)


def wait_for_other_process(store, cfg, poll: float = 30.0) -> None:
    """Another live process on this host running the same config (e.g. core.py while apt.py
    runs): wait for its row instead of training it a second time (run() would refuse anyway)."""
    import socket

    rid = cfg.resolve().hash()
    while True:
        row = store.get(rid)
        if not row or row["status"] != "running" or row.get("host") != socket.gethostname() \
                or not row.get("pid") or row["pid"] == os.getpid():
            return
        try:
            os.kill(int(row["pid"]), 0)
        except (OSError, ValueError):
            return                          # its process is gone: run it here
        time.sleep(poll)


def round_robin_medians(models: dict, batch: dict, rounds: int) -> tuple[dict, dict]:
    """Time every model on `batch`, one after another, `rounds` times (after one warm-up each), so
    the load of other processes hits them alike; median wall and process-CPU seconds per model."""
    import torch

    wall, proc = {k: [] for k in models}, {k: [] for k in models}
    with torch.no_grad():
        for m in models.values():
            m(**batch)
        for _ in range(rounds):
            for k, m in models.items():
                w0, c0 = time.perf_counter(), time.process_time()
                m(**batch)
                wall[k].append(time.perf_counter() - w0)
                proc[k].append(time.process_time() - c0)
    return ({k: statistics.median(v) for k, v in wall.items()},
            {k: statistics.median(v) for k, v in proc.items()})


def pruned_like(widths: dict):
    """MiniLM-L6 with the given per-layer widths (which units are kept does not change speed)."""
    from prunelab.models.load import load_model
    from prunelab.tasks import get_task

    loaded = load_model("minilm-l6", get_task("glue/sst2"))
    fam = loaded.family
    for b, n in enumerate(widths["heads"]):
        fam.prune_heads(b, list(range(n)))
    for b, n in enumerate(widths["ffn"]):
        fam.prune_neurons(b, list(range(n)))
    if widths["hidden"] < fam.hidden_size:
        fam.prune_hidden(list(range(widths["hidden"])))
    return loaded.model.eval()


def paired_speedup(ref_times: list[float], times: list[float]) -> float:
    """Median over rounds of ref's time / the other's time in the same round."""
    if len(ref_times) != len(times) or not times:
        raise ValueError(f"paired_speedup needs one time per round for both, got {len(ref_times)} and {len(times)}")
    return statistics.median(a / b for a, b in zip(ref_times, times))


def by_third(ref_times: list[float], times: list[float]) -> list[float]:
    """paired_speedup in each third of the rounds (empty below 3 rounds)."""
    n = len(times)
    return [paired_speedup(ref_times[j * n // 3:(j + 1) * n // 3], times[j * n // 3:(j + 1) * n // 3])
            for j in range(3)] if n >= 3 else []


def interleaved_speed(widths: dict, ref: str = "dense", rounds: int = 7, seq: int = 128,
                      batches: tuple = (32, 128)) -> dict:
    """MiniLM-L6 dense (under the name `ref`) against pruned copies of the given widths (name ->
    widths): FLOPs, params, and speedups timed in this one process, next to each copy's FLOPs limit.

    Each round times every batch size and, within it, every model once, starting from a different
    model each round. The speedup of a copy is the median over rounds of ref's time / the copy's
    time *in the same round*: pairing within a round cancels the slow drift of a shared machine
    (other processes, clock), which otherwise moved speedup/limit by +-10% between batch sizes
    measured one after the other (0.93 at bs 32 and 0.96 at bs 128 in one run, 1.07 and 0.93 in the
    next, same models). The ratio of median times is kept beside it as `speedup_of_medians`."""
    import torch

    from prunelab.models.load import load_model
    from prunelab.tasks import get_task
    from prunelab.train import measure

    dense = load_model("minilm-l6", get_task("glue/sst2")).model.eval()
    models = {ref: dense, **{k: pruned_like(w) for k, w in widths.items()}}
    cpu = torch.device("cpu")
    flops = {k: measure.flops_per_sample(m, measure.dummy_inputs(m, 1, seq, cpu)) for k, m in models.items()}
    out = {"flops_per_sample": flops, "params": {k: measure.count_params(m)["params"] for k, m in models.items()},
           "loadavg_before": os.getloadavg(), "rounds": rounds, "seq_len": seq,
           "timing": "batch sizes alternate within each round; speedup = median over rounds of the paired ratio"}
    inputs = {bs: measure.dummy_inputs(dense, bs, seq, cpu) for bs in batches}
    names, others = list(models), [k for k in models if k != ref]
    wall = {bs: {k: [] for k in names} for bs in batches}
    proc = {bs: {k: [] for k in names} for bs in batches}
    with torch.no_grad():
        for batch in inputs.values():           # one warm-up of every model at every shape
            for m in models.values():
                m(**batch)
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for bs, batch in inputs.items():
                for k in order:
                    w0, c0 = time.perf_counter(), time.process_time()
                    models[k](**batch)
                    wall[bs][k].append(time.perf_counter() - w0)
                    proc[bs][k].append(time.process_time() - c0)

    for bs in batches:
        med = {k: statistics.median(v) for k, v in wall[bs].items()}
        out[f"bs{bs}"] = {"median_s": med,
                          "median_cpu_s": {k: statistics.median(v) for k, v in proc[bs].items()},
                          "speedup": {k: paired_speedup(wall[bs][ref], wall[bs][k]) for k in others},
                          "speedup_cpu_time": {k: paired_speedup(proc[bs][ref], proc[bs][k]) for k in others},
                          "speedup_of_medians": {k: med[ref] / med[k] for k in others},
                          # the same paired median in each third of the rounds: how far the
                          # machine's state moves the figure within this one measurement
                          "speedup_by_third": {k: by_third(wall[bs][ref], wall[bs][k]) for k in others},
                          "flops_limit": {k: flops[ref] / flops[k] for k in others}}
    out["loadavg_after"] = os.getloadavg()
    return out
