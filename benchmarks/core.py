"""Core benchmark: full fine-tuning vs LoRA on MiniLM-L6 / SST-2 (real data), same data and steps.

    PRUNELAB_DATA=../shared/data .venv/bin/python benchmarks/core.py [--seeds 0 1 2]

Writes benchmarks/results/core.json and core.md. Runs are stored in runs/bench.db and shared
with the APT and baseline benchmarks (identical configs are trained once).
"""
from __future__ import annotations

import argparse

import torch

from common import SEEDS, STORE, fmt_ms, mean_std, provenance, sst2_config, write

METRICS = [("dev accuracy", "score", "{:.4f}"), ("TTA (s)", "tta_s", "{:.1f}"),
           ("TTA (process CPU s)", "tta_cpu_s", "{:.1f}"),
           ("train time (s)", "train_seconds", "{:.1f}"), ("train CPU time (s)", "train_cpu_seconds", "{:.1f}"),
           ("step time (s)", "step_seconds", "{:.3f}"),
           ("peak train mem (MB)", "train_peak_mem_mb", "{:.0f}"),
           ("throughput bs32 (samples/s)", "throughput_bs32", "{:.1f}"),
           ("throughput bs128 (samples/s)", "throughput_bs128", "{:.1f}"),
           ("throughput real lengths", "throughput_real", "{:.1f}"),
           ("inference peak mem (MB)", "inf_peak_mem_mb", "{:.0f}"),
           ("trainable params at start", "params_trainable_start", "{:,.0f}"),
           ("GFLOPs / sample (seq 128)", "flops_per_sample", "{:.3f}")]


def main():
    from prunelab.derived import with_derived
    from prunelab.run import run
    from prunelab.store import Store

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--name", default="core", help="results file name (e.g. core-cuda for a GPU run)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        torch.set_num_threads(2)
    store = Store(STORE)
    ids = {"ft": [], "lora": []}
    for seed in args.seeds:
        for method in ids:
            row = run(sst2_config(method, seed), store)
            print(method, seed, row["status"], row["metrics"].get("score") if row.get("metrics") else row.get("error"),
                  flush=True)
            ids[method].append(row["id"])
    rows = {m: [with_derived(store.get(i), store) for i in v] for m, v in ids.items()}

    data = {"provenance": provenance(), "settings": sst2_config("ft", 0).to_dict(), "methods": {}}
    head = "| metric | FT | LoRA | LoRA / FT |\n|---|---|---|---|\n"
    lines = []
    for label, key, fmt in METRICS:
        vals = {m: [(r["metrics"] or {}).get(key) for r in rs] for m, rs in rows.items()}
        for m in vals:
            data["methods"].setdefault(m, {})[key] = vals[m]
        f, lo = mean_std(vals["ft"])[0], mean_std(vals["lora"])[0]
        ratio = f"{lo / f:.2f}" if f and lo else "-"
        cell = lambda v: fmt_ms(v, fmt) if key != "flops_per_sample" else fmt_ms([x / 1e9 for x in v if x], fmt)  # noqa: E731
        lines.append(f"| {label} | {cell(vals['ft'])} | {cell(vals['lora'])} | {ratio} |")
    p = data["provenance"]
    md = (f"# Core benchmark: FT vs LoRA, MiniLM-L6 / SST-2\n\n"
          f"Command: `{p['command']}`  \nDate: {p['date']}  \ngit: {p['git_sha']}  \n"
          f"Machine: {p['machine']}\n\n"
          f"Settings: {len(args.seeds)} seeds; train subset {sst2_config('ft', 0).train.train_limit} examples "
          f"(stratified, seeded), {sst2_config('ft', 0).train.max_steps} steps, batch 32, length-bucketed; "
          f"lr FT 5e-5, LoRA 5e-4 (r=8, alpha=16, q/v); full SST-2 dev set (872).\n"
          f"Mean ± std over seeds. TTA = first training second (evals excluded) at which dev accuracy "
          f"reaches 97% of FT's final dev accuracy; the process-CPU variant is robust to other processes sharing the machine. Memory: peak RSS of the process on CPU; torch.cuda.max_memory_allocated on CUDA.\n\n"
          + head + "\n".join(lines) + "\n")
    write(args.name, data, md)
    print(md)


if __name__ == "__main__":
    main()
