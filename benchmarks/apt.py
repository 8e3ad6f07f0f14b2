"""APT benchmark: FT, LoRA and APT (60% sparsity) on MiniLM-L6 / SST-2 (real data), same data and steps.

    PRUNELAB_DATA=../shared/data PYTHONPATH=src .venv/bin/python benchmarks/apt.py [--seeds 0 1 2]
    PYTHONPATH=src .venv/bin/python benchmarks/apt.py --report-only     # re-render from the store

Every run goes through prunelab.run.run into runs/bench.db (benchmarks/common.py), so FT and
LoRA rows are the core benchmark's (identical configs hash alike) and are trained once. The
training budget is common.SST2_TRAIN: 8000 stratified SST-2 examples, 500 steps of batch 32,
10 dev evaluations on the full dev set. APT runs with its default (``cpu``) schedule at 60%
sparsity and lr 1e-3 (FT 5e-5 and LoRA 5e-4 as in the core benchmark; APT's adapters sit on
q, v and the FFN up projection and grow, which takes a larger step in 500 steps).

Inference speed is measured again here, in one process and interleaved (dense, pruned, dense,
pruned, ...), so that the load of other processes on this shared machine hits both alike:
the FT model is the dense MiniLM with its classifier, the APT model is MiniLM with each
seed's final per-layer widths (weights do not change speed). FLOPs per sample come from
torch.utils.flop_counter; the FLOPs limit is dense FLOPs / pruned FLOPs.
Writes benchmarks/results/apt.json and apt.md.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from common import pruned_like, round_robin_medians, wait_for_other_process, SEEDS, STORE, SST2_TRAIN, mean_std, provenance, sst2_config, write

APT_LR = 1e-3
APT_ARGS = {"sparsity": 0.6}
BATCHES = (32, 128)
SEQ = 128
ROUNDS = 9


def configs(seed: int) -> dict:
    return {"apt": sst2_config("apt", seed, lr=APT_LR, **APT_ARGS),
            "ft": sst2_config("ft", seed), "lora": sst2_config("lora", seed)}


# -- interleaved inference ----------------------------------------------------------------------------
def interleaved_speed(apt_widths: list[dict]) -> dict:
    from prunelab.models.load import load_model
    from prunelab.tasks import get_task
    from prunelab.train import measure

    dense = load_model("minilm-l6", get_task("glue/sst2")).model.eval()
    models = {"ft": dense, **{f"apt{i}": pruned_like(w) for i, w in enumerate(apt_widths)}}
    cpu = torch.device("cpu")
    flops = {k: measure.flops_per_sample(m, measure.dummy_inputs(m, 1, SEQ, cpu)) for k, m in models.items()}
    out = {"flops_per_sample": flops, "params": {k: measure.count_params(m)["params"] for k, m in models.items()},
           "loadavg_before": os.getloadavg()}
    for bs in BATCHES:
        med, cpu_med = round_robin_medians(models, measure.dummy_inputs(dense, bs, SEQ, cpu), ROUNDS)
        out[f"bs{bs}"] = {"median_s": med, "median_cpu_s": cpu_med,
                          "speedup": {k: med["ft"] / med[k] for k in models if k != "ft"},
                          "speedup_cpu_time": {k: cpu_med["ft"] / cpu_med[k] for k in models if k != "ft"},
                          "flops_limit": {k: flops["ft"] / flops[k] for k in models if k != "ft"}}
    out["loadavg_after"] = os.getloadavg()
    return out


# -- report -------------------------------------------------------------------------------------------
def m(row, key):
    return (row.get("metrics") or {}).get(key)


def ms(values, fmt="{:.4f}"):
    mu, sd = mean_std(values)
    return "-" if mu is None else (fmt + " ± " + fmt).format(mu, sd)


def ratio(a, b):
    a, b = mean_std(a)[0], mean_std(b)[0]
    return a / b if a is not None and b else None


def render(rows: dict, speed: dict | None, seeds) -> tuple[dict, str]:
    get = lambda meth, key: [m(r, key) for r in rows[meth]]  # noqa: E731
    acc = {k: get(k, "score") for k in rows}
    apt_ft = ratio(acc["apt"], acc["ft"])
    tta = {k: get(k, "tta_s") for k in rows}
    tta_cpu = {k: get(k, "tta_cpu_s") for k in rows}
    mem = {k: get(k, "train_peak_mem_mb") for k in rows}
    step = {k: get(k, "step_seconds") for k in rows}
    step_cpu = {k: [(m(r, "train_cpu_seconds") or 0) / max(1, m(r, "train_steps") or 1) for r in rows[k]] for k in rows}

    def reached(vals):
        return sum(v is not None for v in vals)

    summary = {
        "dev_accuracy": {k: mean_std(v) for k, v in acc.items()},
        "apt_over_ft_accuracy": apt_ft,
        "train_peak_mem_ratio": {"apt/ft": ratio(mem["apt"], mem["ft"]), "lora/ft": ratio(mem["lora"], mem["ft"]),
                                 "apt/lora": ratio(mem["apt"], mem["lora"])},
        "tta_s": {k: mean_std(v) for k, v in tta.items()},
        "tta_reached": {k: f"{reached(v)}/{len(v)}" for k, v in tta.items()},
        "tta_ratio": {"apt/ft": ratio(tta["apt"], tta["ft"]), "apt/lora": ratio(tta["apt"], tta["lora"])},
        "tta_cpu_ratio": {"apt/ft": ratio(tta_cpu["apt"], tta_cpu["ft"]),
                          "apt/lora": ratio(tta_cpu["apt"], tta_cpu["lora"])},
        "step_seconds": {k: mean_std(v) for k, v in step.items()},
        "step_ratio_apt_over_lora": ratio(step["apt"], step["lora"]),
        "step_cpu_ratio_apt_over_lora": ratio(step_cpu["apt"], step_cpu["lora"]),
        "apt_sparsity": mean_std(get("apt", "apt_sparsity")),
        "apt_param_ratio": mean_std(get("apt", "param_ratio")),
        "apt_prune_seconds_total": mean_std(get("apt", "apt_prune_seconds_total")),
    }
    if speed:
        for bs in BATCHES:
            sp = list(speed[f"bs{bs}"]["speedup"].values())
            lim = list(speed[f"bs{bs}"]["flops_limit"].values())
            summary[f"speedup_bs{bs}"] = mean_std(sp)
            summary[f"flops_limit_bs{bs}"] = mean_std(lim)
            summary[f"speedup_over_limit_bs{bs}"] = mean_std([s / f for s, f in zip(sp, lim)])
            spc = list(speed[f"bs{bs}"]["speedup_cpu_time"].values())
            summary[f"speedup_cpu_time_bs{bs}"] = mean_std(spc)
            summary[f"speedup_cpu_time_over_limit_bs{bs}"] = mean_std([s / f for s, f in zip(spc, lim)])
    p = provenance()
    t = SST2_TRAIN

    def row3(label, key, fmt="{:.4f}"):
        return f"| {label} | " + " | ".join(ms(get(k, key), fmt) for k in ("ft", "lora", "apt")) + " |"

    lines = [
        f"# APT benchmark: MiniLM-L6 / SST-2, FT vs LoRA vs APT (60% sparsity)\n",
        f"Command: `{p['command']}`  \nDate: {p['date']}  \ngit: {p['git_sha']}  \nMachine: {p['machine']}\n",
        f"Settings: seeds {list(seeds)}; {t['train_limit']} stratified SST-2 training examples, {t['max_steps']} steps "
        f"of batch {t['batch_size']} (length-bucketed), {t['eval_points']} evaluations on the full dev set (872); "
        f"lr FT 5e-5, LoRA 5e-4 (r 8, q/v), APT {APT_LR:g} (default `cpu` schedule: salience and mu ramp from 10%, "
        f"10 pruning steps to 40%, distillation to 50%, plain fine-tuning after). Runs in `{STORE}` (shared with "
        f"benchmarks/core.py). Memory is the process's peak RSS (CPU), so ratios include the Python heap.\n",
        "| metric (mean ± std over seeds) | FT | LoRA | APT |", "|---|---|---|---|",
        row3("dev accuracy", "score"),
        row3("TTA, wall s (97% of FT)", "tta_s", "{:.0f}"),
        row3("TTA, process CPU s", "tta_cpu_s", "{:.0f}"),
        row3("step time (wall s)", "step_seconds", "{:.3f}"),
        row3("train time (wall s)", "train_seconds", "{:.0f}"),
        row3("peak train memory (MB RSS)", "train_peak_mem_mb", "{:.0f}"),
        row3("params", "params", "{:,.0f}"),
        row3("run throughput bs32 (samples/s, not interleaved)", "throughput_bs32", "{:.1f}"),
        row3("run throughput bs128 (samples/s, not interleaved)", "throughput_bs128", "{:.1f}"),
        "",
        "| ratio | value | target |", "|---|---|---|",
        f"| APT / FT dev accuracy | {fmt(apt_ft)} | >= 0.97 |",
    ]
    if speed:
        for bs in BATCHES:
            sp = speed[f"bs{bs}"]
            lim = list(sp["flops_limit"].values())
            for label, key in (("wall", "speedup"), ("process CPU time", "speedup_cpu_time")):
                vals = list(sp[key].values())
                lines.append(f"| inference speedup vs FT, bs {bs}, {label} (interleaved) | {ms(vals, '{:.2f}')}x "
                             f"| FLOPs limit {ms(lim, '{:.2f}')}x |")
                lines.append(f"| speedup / FLOPs limit, bs {bs}, {label} | "
                             f"{ms([a / b for a, b in zip(vals, lim)], '{:.2f}')} | >= 0.9 |")
    lines += [
        f"| peak train memory APT / FT | {fmt(summary['train_peak_mem_ratio']['apt/ft'])} | |",
        f"| peak train memory APT / LoRA | {fmt(summary['train_peak_mem_ratio']['apt/lora'])} | |",
        f"| TTA APT / FT (wall; seeds reaching: APT {summary['tta_reached']['apt']}, FT {summary['tta_reached']['ft']}) "
        f"| {fmt(summary['tta_ratio']['apt/ft'])} | |",
        f"| TTA APT / LoRA (wall; LoRA reaching {summary['tta_reached']['lora']}) | {fmt(summary['tta_ratio']['apt/lora'])} | |",
        f"| TTA APT / FT (process CPU) | {fmt(summary['tta_cpu_ratio']['apt/ft'])} | |",
        f"| step time APT / LoRA (wall) | {fmt(summary['step_ratio_apt_over_lora'])} | |",
        f"| step time APT / LoRA (process CPU) | {fmt(summary['step_cpu_ratio_apt_over_lora'])} | |",
        f"| APT achieved sparsity (layers' linear params) | {ms(get('apt', 'apt_sparsity'))} | 0.60 ± 0.01 |",
        "",
    ]
    if speed:
        lines.append(f"Interleaved inference: {ROUNDS} rounds per batch size at seq {SEQ}, median; load average "
                     f"(1/5/15 min) {tuple(round(x, 1) for x in speed['loadavg_before'])} before and "
                     f"{tuple(round(x, 1) for x in speed['loadavg_after'])} after, on {os.cpu_count()} cores. "
                     "Other processes share this machine: under load the pruned model loses more than the dense "
                     "one (its remaining time is more memory-bound), so the ratios are lower bounds.\n")
    widths = [m(r, "apt_widths") for r in rows["apt"]]
    lines.append("APT final widths per seed (heads per layer / FFN per layer / hidden): " + "; ".join(
        f"{w['heads']} / {w['ffn']} / {w['hidden']}" for w in widths if w))
    data = {"provenance": p, "settings": {k: v.to_dict() for k, v in configs(seeds[0]).items()},
            "runs": {k: [{"id": r["id"], "seed": r["seed"], "metrics": r["metrics"]} for r in v] for k, v in rows.items()},
            "interleaved_inference": speed, "summary": summary}
    return data, "\n".join(lines) + "\n"


def fmt(x, f="{:.3f}"):
    return "-" if x is None else f.format(x)


def _progress(method: str, seed: int):
    """Log a line every 50 steps (a run takes minutes to an hour on a shared 2-core machine)."""
    t0 = time.time()

    def report(state):
        if state.step % 50 == 0:
            print(f"  {method} seed {seed}: step {state.step}/{state.total_steps}, {time.time() - t0:.0f} s, "
                  f"last dev {state.last_score}", flush=True)
    return report


def main():
    from prunelab.derived import with_derived
    from prunelab.run import run
    from prunelab.store import Store

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    store = Store(STORE)
    ids = {"ft": [], "lora": [], "apt": []}

    def collect():
        rows = {k: [with_derived(store.get(i), store) for i in v] for k, v in ids.items()}
        return {k: [r for r in v if r and r["status"] == "done"] for k, v in rows.items()}

    for seed in args.seeds:
        for method in ("apt", "ft", "lora"):          # APT first: FT / LoRA may still be training in core.py
            cfg = configs(seed)[method]
            if args.report_only:
                ids[method].append(cfg.resolve().hash())
                continue
            wait_for_other_process(store, cfg)
            row = run(cfg, store, progress=_progress(method, seed))
            print(method, seed, row["status"], m(row, "score") or row.get("error"), flush=True)
            ids[method].append(row["id"])
        rows = collect()
        if not args.report_only and all(rows.values()):   # partial report after every seed (no speed yet)
            data, md = render(rows, None, args.seeds[:args.seeds.index(seed) + 1])
            write("apt", data, md)
    rows = collect()
    speed = interleaved_speed([m(r, "apt_widths") for r in rows["apt"]]) if rows["apt"] else None
    data, md = render(rows, speed, args.seeds)
    write("apt", data, md)
    print(md)


if __name__ == "__main__":
    main()
