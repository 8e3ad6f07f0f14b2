"""Layout benchmark: APT at 60% sparsity with layout=free vs layout=uniform on MiniLM-L6 / SST-2.

layout=uniform keeps the same number of heads and FFN neurons in every layer (and, for BERT,
hidden = heads x head_dim), so the export is a stock BertConfig checkpoint; layout=free lets
every layer keep its own widths (a prunelab-format export with remote code). Same data, steps,
lr and seeds for both; the question is what the constraint costs in accuracy and what it
changes in inference speed at the same sparsity. It refuses to write from uncommitted code:

    python benchmarks/layout.py                                          # defaults below
    python benchmarks/layout.py --seeds 0 --train-limit 2000 --steps 150 --eval-points 3   # small budget
    python benchmarks/layout.py --report-only                            # re-render from the store

Measured: final dev accuracy (full dev set, 872), achieved sparsity of the layers' linear
parameters, final widths, the export format each run writes (prunelab_export.json), and
inference time interleaved in one process (dense, free, uniform, dense, ...; median of ROUNDS)
at batch 32 and 128, seq 128, with FLOPs per sample from torch.utils.flop_counter.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


import common
from common import ROOT, mean_std, wait_for_other_process, write

LR = 1e-3
LAYOUTS = ("free", "uniform")
BATCHES = (32, 128)
SEQ = 128
ROUNDS = 7


def configs(seed: int, args) -> dict:
    from prunelab.config import RunConfig, TrainConfig

    train = dict(train_limit=args.train_limit, max_steps=args.steps, batch_size=32, eval_points=args.eval_points,
                 max_length=128)
    return {lay: RunConfig(model="minilm-l6", task="glue/sst2", method="apt", seed=seed,
                           method_args={"sparsity": args.sparsity, "layout": lay},
                           output_dir=str(Path(args.exports) / f"{lay}-s{seed}"),
                           train=TrainConfig(lr=LR, **train), measure={"throughput": False, "flops": True})
            for lay in LAYOUTS}


def metric(row, key):
    return (row.get("metrics") or {}).get(key)


def export_format(row) -> str | None:
    path = Path(metric(row, "output_dir") or "") / "prunelab_export.json"
    return json.loads(path.read_text())["format"] if path.is_file() else None


def interleaved_speed(widths: dict) -> dict:
    return common.interleaved_speed(widths, ref="dense", rounds=ROUNDS, seq=SEQ, batches=BATCHES)


def ms(values, f="{:.4f}"):
    mu, sd = mean_std(values)
    return "-" if mu is None else (f + " ± " + f).format(mu, sd)


def render(rows: dict, speed: list, args, prov: dict) -> tuple[dict, str]:
    get = lambda lay, key: [metric(r, key) for r in rows[lay]]  # noqa: E731
    acc = {lay: mean_std(get(lay, "score")) for lay in LAYOUTS}
    s = {"dev_accuracy": acc,
         "uniform_minus_free_accuracy": (acc["uniform"][0] - acc["free"][0])
         if acc["uniform"][0] is not None and acc["free"][0] is not None else None,
         "apt_sparsity": {lay: mean_std(get(lay, "apt_sparsity")) for lay in LAYOUTS},
         "export_format": {lay: [export_format(r) for r in rows[lay]] for lay in LAYOUTS}}
    for bs in BATCHES:
        s[f"speedup_bs{bs}"] = {lay: mean_std([sp[f"bs{bs}"]["speedup"][lay] for sp in speed]) for lay in LAYOUTS}
        s[f"flops_limit_bs{bs}"] = {lay: mean_std([sp[f"bs{bs}"]["flops_limit"][lay] for sp in speed])
                                    for lay in LAYOUTS}
    lines = [
        f"# Layout benchmark: APT {args.sparsity:.0%} sparsity, layout=free vs layout=uniform, MiniLM-L6 / SST-2\n",
        f"Command: `{prov['command']}`  \nDate: {prov['date']}  \ngit: {prov['git_sha']}  \nMachine: {prov['machine']}  \n"
        f"Seeds: {list(args.seeds)}\n",
        f"Settings: {args.train_limit} stratified SST-2 training examples, {args.steps} steps of batch 32, "
        f"{args.eval_points} evaluations on the full dev set (872); APT lr {LR:g}, default `cpu` schedule.\n",
        "| metric (mean ± std over seeds) | free | uniform |", "|---|---|---|",
        "| dev accuracy | " + " | ".join(ms(get(lay, "score")) for lay in LAYOUTS) + " |",
        "| achieved sparsity (layers' linear params) | " + " | ".join(ms(get(lay, "apt_sparsity")) for lay in LAYOUTS) + " |",
        "| params | " + " | ".join(ms(get(lay, "params"), "{:,.0f}") for lay in LAYOUTS) + " |",
        "| train time (wall s) | " + " | ".join(ms(get(lay, "train_seconds"), "{:.0f}") for lay in LAYOUTS) + " |",
        "| export format | " + " | ".join(", ".join(str(x) for x in s["export_format"][lay]) for lay in LAYOUTS) + " |",
    ]
    for bs in BATCHES:
        lines.append(f"| inference speedup vs dense, bs {bs} (interleaved, wall) | " + " | ".join(
            f"{ms([sp[f'bs{bs}']['speedup'][lay] for sp in speed], '{:.2f}')}x (FLOPs limit "
            f"{ms([sp[f'bs{bs}']['flops_limit'][lay] for sp in speed], '{:.2f}')}x)" for lay in LAYOUTS) + " |")
    lines.append("")
    for lay in LAYOUTS:
        lines.append(f"{lay} final widths per seed (heads per layer / FFN per layer / hidden): " + "; ".join(
            f"{w['heads']} / {w['ffn']} / {w['hidden']}" for w in get(lay, "apt_widths") if w) + "  ")
    if speed:
        lines.append(f"\nInterleaved inference: {ROUNDS} rounds at seq {SEQ}, each timing every batch size and model once; speedup = median over rounds of the dense / pruned time of the same round; load average "
                     f"{tuple(round(x, 1) for x in speed[0]['loadavg_before'])} before, on {os.cpu_count()} cores.")
    data = {"provenance": prov, "settings": {k: v.to_dict() for k, v in configs(args.seeds[0], args).items()},
            "runs": {k: [{"id": r["id"], "seed": r["seed"], "metrics": r["metrics"], "curve": r.get("curve")}
                         for r in v] for k, v in rows.items()},
            "interleaved_inference": speed, "summary": s}
    return data, "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train-limit", type=int, default=8000)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--eval-points", type=int, default=10)
    ap.add_argument("--sparsity", type=float, default=0.6)
    ap.add_argument("--store", default=os.environ.get("PRUNELAB_BENCH_STORE", str(ROOT / "runs" / "bench-layout.db")))
    ap.add_argument("--exports", default=str(ROOT / "runs" / "layout-exports"))
    ap.add_argument("--name", default="layout", help="results file name (benchmarks/results/NAME.md/.json)")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--allow-dirty", action="store_true", help="write even from uncommitted code (do not commit it)")
    args = ap.parse_args(argv)
    from prunelab.derived import with_derived
    from prunelab.run import run

    prov, store = common.open_store("benchmarks/layout.py", args, argv)
    ids = {lay: [] for lay in LAYOUTS}
    for seed in args.seeds:
        for lay in LAYOUTS:
            cfg = configs(seed, args)[lay]
            if args.report_only:
                ids[lay].append(cfg.resolve().hash())
                continue
            wait_for_other_process(store, cfg)
            t0 = time.time()
            row = run(cfg, store)
            print(lay, seed, row["status"], metric(row, "score") or row.get("error"), f"{time.time() - t0:.0f} s",
                  flush=True)
            ids[lay].append(row["id"])
    rows = {k: [with_derived(store.get(i), store) for i in v] for k, v in ids.items()}
    rows = {k: [r for r in v if r and r["status"] == "done"] for k, v in rows.items()}
    speed = []
    for i in range(min(len(rows["free"]), len(rows["uniform"]))):
        speed.append(interleaved_speed({lay: metric(rows[lay][i], "apt_widths") for lay in LAYOUTS}))
    data, md = render(rows, speed, args, prov)
    write(args.name, data, md, allow_dirty=args.allow_dirty)
    print(md)


if __name__ == "__main__":
    main()
