"""APT benchmark: FT, LoRA and APT (60% sparsity) on MiniLM-L6 / SST-2 (real data), same data and steps.

One command regenerates every APT result (benchmarks/results/apt.md and apt.json, with the
command, date, machine, git SHA and seeds); it refuses to write from uncommitted code:

    make bench-apt                  # = PRUNELAB_DATA=../shared/data PYTHONPATH=src \\
                                    #   .venv/bin/python benchmarks/apt.py
    python benchmarks/apt.py --seeds 0 --train-limit 1000 --steps 40 --name apt-smoke   # smoke test
    python benchmarks/apt.py --report-only                                              # re-render
    python benchmarks/apt.py --runs-from benchmarks/results/apt.json    # same runs, timings measured now

Defaults are the targets' setting: seeds 5-9 (seeds 0-4 chose APT's lr and schedule, see
TUNED_ON), 8000 stratified SST-2 training examples, 500 steps of batch 32, 10 dev evaluations
on the full dev set; lr FT 5e-5, LoRA 5e-4 (r 8, q/v), APT 2e-3 (see APT_LR) with its default
(``cpu``) schedule at 60% sparsity. Every run goes through
prunelab.run.run into its own store (runs/bench-apt.db; identical configs are trained once).

What is measured and how:
- accuracy: final dev accuracy; APT / FT is the ratio of seed means. A control, APT with
  pruning off (CONTROLS), splits APT's gap to FT into tuning cost and pruning cost, paired by seed;
  a second, APT whose teacher keeps the dropped weights, says how much of the pruning cost the
  paper's weight-sharing teacher leaves on the table, and at what memory.
- training memory: the peak of the run's training phase, of one kind for every method:
  on CPU the bytes of live tensors (``--memory tensors``, the CPU counterpart of
  torch.cuda.max_memory_allocated; ``--memory rss`` for process RSS); on CUDA
  max_memory_allocated. Ratios are only formed between rows of the same kind.
- TTA: first training second at which the dev score reaches 97% of FT's mean final score;
  a seed that never gets there is "not reached within budget" and counts (k of n reached);
  ratios of mean TTA only when every seed of both methods reached it.
- step time: the targets are judged on benchmarks/step_time.py's interleaved measurement (FT,
  LoRA and APT trained for --step-rounds steps in one process, one step each per round, APT's
  steps labelled with its phase; median over rounds of APT step / LoRA step of the same round).
  The separate runs' own per-phase step times (``apt_step_seconds``) are shown too, but they
  were measured under different machine loads.
- inference: measured again here, in one process and interleaved (every model and batch size
  once per round; speedup = median over rounds of the paired dense / pruned time) so that the
  load of other processes hits both alike; the FT model is the dense MiniLM
  with its classifier, each APT model is MiniLM with that seed's final per-layer widths
  (weights do not change speed). FLOPs per sample from torch.utils.flop_counter; the FLOPs
  limit is dense FLOPs / pruned FLOPs.
Note: the tensor-memory tracker runs every operator through a Python dispatch mode; it adds
a few microseconds per operator to every method's steps (more operators, more time: APT's
hooks make this a bias against APT in the step-time ratio).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path


import common
from common import ROOT, mean_std, wait_for_other_process, write

# APT's lr was chosen between 1e-3 and 2e-3 on seeds 0 and 1 of this very setting (dev accuracy
# 0.8165/0.8200 at 1e-3, 0.8394/0.8326 at 2e-3, both with self-distillation; at 2e-3 without it
# 0.8291/0.8303), and the `cpu` preset's distill_end (0.4, ending distillation with pruning,
# against the paper's 0.5) on seeds 0-4 (APT dev accuracy 0.8314 -> 0.8390, paired by seed).
# The dev set is also the reported one, so the report runs seeds that took no part in either
# choice (5-9 by default) and, if given tuned seeds too, gives APT / FT on the others separately.
APT_LR = 2e-3
TUNED_ON = (0, 1, 2, 3, 4)
LR = {"ft": 5e-5, "lora": 5e-4, "apt": APT_LR}
APT_ARGS = {"sparsity": 0.6}
BATCHES = (32, 128)
SEQ = 128
ROUNDS = 27     # 9 rounds moved speedup/limit by up to +-8% between repeats in one process
METHODS = ("ft", "lora", "apt")
# Controls, each APT with one thing changed, paired with APT by seed:
# - apt_unpruned: the same adapters, rank growth, distillation and lr but pruning off. It splits
#   APT's gap to FT into what its tuning costs (FT - control) and what pruning to 60% costs
#   (control - APT).
# - apt_snapshot: the teacher keeps the weights the student drops (`distill=self_snapshot`)
#   instead of the paper's teacher, which shares the student's frozen weights and so is pruned
#   with it. It measures how much of the pruning cost a teacher that still knows the pruned
#   structures recovers, and what that costs in training memory.
CONTROLS = {"apt_unpruned": dict(APT_ARGS, pruning="off"), "apt_snapshot": dict(APT_ARGS, distill="self_snapshot")}
CONTROL_TEXT = {"apt_unpruned": "APT, pruning off (`pruning.off`)",
                "apt_snapshot": "APT, teacher keeps the dropped weights (`distill.self_snapshot`)"}
STEP_SEED = 0
TARGETS = {"accuracy": 0.98, "speed_over_limit": 0.95, "step_before": 1.5}


def configs(seed: int, args, controls: bool = False) -> dict:
    from prunelab.config import RunConfig, TrainConfig

    train = dict(train_limit=args.train_limit, max_steps=args.steps, batch_size=32, eval_points=args.eval_points,
                 max_length=128)

    def one(method, method_args):
        return RunConfig(model="minilm-l6", task="glue/sst2", method=method, seed=seed, method_args=method_args,
                         train=TrainConfig(lr=LR[method], **train), measure={"throughput": False, "flops": True})

    out = {m: one(m, dict(APT_ARGS) if m == "apt" else {}) for m in METHODS}
    if controls:
        out.update({name: one("apt", dict(a)) for name, a in CONTROLS.items()})
    return out


# -- interleaved inference ----------------------------------------------------------------------------
def interleaved_speed(apt_widths: list[dict]) -> dict:
    return common.interleaved_speed({f"apt{i}": w for i, w in enumerate(apt_widths)}, ref="ft", rounds=ROUNDS,
                                    seq=SEQ, batches=BATCHES)


# -- report -------------------------------------------------------------------------------------------
def metric(row, key):
    return (row.get("metrics") or {}).get(key)


def ms(values, fmt="{:.4f}"):
    mu, sd = mean_std(values)
    return "-" if mu is None else (fmt + " ± " + fmt).format(mu, sd)


def fmt(x, f="{:.3f}"):
    return "-" if x is None else f.format(x)


def ratio(a, b):
    a, b = mean_std(a)[0], mean_std(b)[0]
    return a / b if a is not None and b else None


def verdict(ok) -> str:
    return "-" if ok is None else ("met" if ok else "NOT met")


def summarize(rows: dict, speed: dict | None, steps: dict | None = None) -> dict:
    from prunelab.derived import tta_aggregate, tta_ratio

    get = lambda meth, key: [metric(r, key) for r in rows[meth]]  # noqa: E731
    acc = {k: get(k, "score") for k in rows}
    kinds = {k: sorted({str(v) for v in get(k, "train_peak_mem_kind")}) for k in rows}
    same_kind = len({tuple(v) for v in kinds.values()}) == 1 and len(next(iter(kinds.values()), [])) == 1
    mem = {k: get(k, "train_peak_mem_mb") for k in rows}
    tta = {k: get(k, "tta_s") for k in rows}
    phases = [metric(r, "apt_step_seconds") or {} for r in rows["apt"]]
    step_before = [p.get("before_pruning") for p in phases]
    step_after = [p.get("after_pruning") for p in phases]
    lora_step = get("lora", "step_seconds")
    s = {
        "dev_accuracy": {k: mean_std(v) for k, v in acc.items()},
        "apt_over_ft_accuracy": ratio(acc["apt"], acc["ft"]),
        "train_peak_mem_kind": kinds,
        "train_peak_mem_mb": {k: mean_std(v) for k, v in mem.items()},
        "train_peak_mem_ratio": ({"apt/ft": ratio(mem["apt"], mem["ft"]), "lora/ft": ratio(mem["lora"], mem["ft"]),
                                  "apt/lora": ratio(mem["apt"], mem["lora"])} if same_kind else None),
        "tta": {k: tta_aggregate(v) for k, v in tta.items()},
        "tta_ratio": {"apt/ft": tta_ratio(tta["apt"], tta["ft"]), "apt/lora": tta_ratio(tta["apt"], tta["lora"])},
        "step_seconds": {k: mean_std(get(k, "step_seconds")) for k in rows},
        "apt_step_seconds": {ph: mean_std([p.get(ph) for p in phases]) for ph in ("before_pruning", "pruning", "after_pruning")},
        "step_ratio_apt_before_pruning_over_lora": ratio(step_before, lora_step),
        "step_ratio_apt_after_pruning_over_lora": ratio(step_after, lora_step),
        "apt_sparsity": mean_std(get("apt", "apt_sparsity")),
    }
    if speed:
        for bs in BATCHES:
            sp, lim = list(speed[f"bs{bs}"]["speedup"].values()), list(speed[f"bs{bs}"]["flops_limit"].values())
            s[f"speedup_bs{bs}"] = mean_std(sp)
            s[f"flops_limit_bs{bs}"] = mean_std(lim)
            s[f"speedup_over_limit_bs{bs}"] = mean_std([a / b for a, b in zip(sp, lim)])
    if steps:   # interleaved (benchmarks/step_time.py): these decide the step-time targets
        rr = steps["ratio_to_lora"]["apt"]
        s["step_ratio_apt_before_pruning_over_lora"] = rr.get("before_pruning", {}).get("median")
        s["step_ratio_apt_after_pruning_over_lora"] = rr.get("after_pruning", {}).get("median")
        s["step_ratio_source"] = "interleaved"
    else:
        s["step_ratio_source"] = "separate runs"
    r = s["train_peak_mem_ratio"]
    s["targets"] = {
        "apt/ft accuracy >= 0.98": s["apt_over_ft_accuracy"] is not None and s["apt_over_ft_accuracy"] >= TARGETS["accuracy"],
        **({f"speedup/FLOPs limit >= 0.95 (bs {bs})": s[f"speedup_over_limit_bs{bs}"][0] >= TARGETS["speed_over_limit"]
            for bs in BATCHES} if speed else {}),
        "peak train memory APT < FT": None if not r or r["apt/ft"] is None else r["apt/ft"] < 1,
        "APT step <= 1.5x LoRA before pruning": None if s["step_ratio_apt_before_pruning_over_lora"] is None
        else s["step_ratio_apt_before_pruning_over_lora"] <= TARGETS["step_before"],
        "APT step < LoRA after pruning": None if s["step_ratio_apt_after_pruning_over_lora"] is None
        else s["step_ratio_apt_after_pruning_over_lora"] < 1,
    }
    return s


def runs_code(rows: dict, args) -> str:
    if getattr(args, "runs_code", None):
        return args.runs_code
    return ", ".join(f"{m} {sorted({(r.get('env') or {}).get('git_sha', '?')[:7] for r in rows[m]})}" for m in METHODS)


def render(rows: dict, speed: dict | None, args, prov: dict, steps: dict | None = None) -> tuple[dict, str]:
    s = summarize(rows, speed, steps)
    get = lambda meth, key: [metric(r, key) for r in rows[meth]]  # noqa: E731
    kinds = s["train_peak_mem_kind"]
    fresh = {k: [r for r in rows[k] if r["seed"] not in TUNED_ON] for k in rows}
    fresh_seeds = sorted({r["seed"] for r in fresh["apt"]})
    fresh_ratio = ratio([metric(r, "score") for r in fresh["apt"]], [metric(r, "score") for r in fresh["ft"]]) \
        if fresh["apt"] and fresh["ft"] else None
    s["apt_over_ft_accuracy_fresh_seeds"] = {"seeds": fresh_seeds, "ratio": fresh_ratio}

    def row3(label, key, f="{:.4f}"):
        return f"| {label} | " + " | ".join(ms(get(k, key), f) for k in METHODS) + " |"

    lines = [
        "# APT benchmark: MiniLM-L6 / SST-2, FT vs LoRA vs APT (60% sparsity)\n",
        f"Command: `{prov['command']}`  \nDate: {prov['date']}  \ngit: {prov['git_sha']}  \nMachine: {prov['machine']}  \n"
        f"Seeds: {list(args.seeds)}\n",
        f"Settings: {args.train_limit} stratified SST-2 training examples, {args.steps} steps of batch 32 "
        f"(length-bucketed), {args.eval_points} evaluations on the full dev set (872); lr FT 5e-5, LoRA 5e-4 "
        f"(r 8, q/v), APT {APT_LR:g} (default `cpu` schedule: salience and mu ramp from 10%, 10 pruning steps to "
        f"40%, distillation ending with pruning, plain fine-tuning after). Training memory kind: {kinds}.\n",
        f"APT's lr ({APT_LR:g}) was picked from {{1e-3, 2e-3}} on seeds [0, 1] of this setting and its `cpu` "
        "schedule's distillation end (40%, with pruning, where the paper distils to 50%: label-free "
        "distillation from the pruned model cost accuracy in 500 steps) on seeds "
        f"{list(TUNED_ON)}, both judged on the same dev set; FT's and LoRA's are their usual values, "
        "untuned here.\n",
        "Code of the stored runs (a run whose config is unchanged is reused, not retrained): "
        + runs_code(rows, args) + "\n",
        "| metric (mean ± std over seeds) | FT | LoRA | APT |", "|---|---|---|---|",
        row3("dev accuracy", "score"),
        "| TTA, wall s (97% of FT; every seed counts) | " + " | ".join(s["tta"][k]["label"] for k in METHODS) + " |",
        row3("step time (wall s, whole run)", "step_seconds", "{:.3f}"),
        row3("train time (wall s)", "train_seconds", "{:.0f}"),
        row3(f"peak train memory (MB, {'/'.join(kinds['ft'])})", "train_peak_mem_mb", "{:.0f}"),
        row3("params", "params", "{:,.0f}"),
        "",
        "| APT step time (wall s) | before pruning | pruning + distillation | after |", "|---|---|---|---|",
        "| APT | " + " | ".join(ms([(metric(r, "apt_step_seconds") or {}).get(ph) for r in rows["apt"]], "{:.3f}")
                         for ph in ("before_pruning", "pruning", "after_pruning")) + " |",
        "",
        "| ratio | value | target | verdict |", "|---|---|---|---|",
        f"| APT / FT dev accuracy | {fmt(s['apt_over_ft_accuracy'])} | >= 0.98 | {verdict(s['targets']['apt/ft accuracy >= 0.98'])} |",
        f"| APT / FT dev accuracy, seeds not used to tune APT ({fresh_seeds or 'none'}) | "
        f"{fmt(fresh_ratio)} | | |",
    ]
    if speed:
        for bs in BATCHES:
            sp = speed[f"bs{bs}"]
            lim = list(sp["flops_limit"].values())
            vals = list(sp["speedup"].values())
            lines.append(f"| inference speedup vs FT, bs {bs} (interleaved, wall) | {ms(vals, '{:.2f}')}x "
                         f"(FLOPs limit {ms(lim, '{:.2f}')}x) | | |")
            key = f"speedup/FLOPs limit >= 0.95 (bs {bs})"
            lines.append(f"| speedup / FLOPs limit, bs {bs} | {ms([a / b for a, b in zip(vals, lim)], '{:.2f}')} "
                         f"| >= 0.95 | {verdict(s['targets'][key])} |")
            thirds = [[t / l for t in sp["speedup_by_third"][k]] for k, l in zip(sp["speedup"], lim)
                      if sp.get("speedup_by_third", {}).get(k)]
            if thirds:      # the same figure from each third of the rounds: the machine's drift
                lines.append(f"| speedup / FLOPs limit, bs {bs}, first / middle / last third of the rounds | "
                             + " / ".join(ms([t[j] for t in thirds], '{:.2f}') for j in range(3)) + " | | |")
    mr = s["train_peak_mem_ratio"] or {}
    lines += [
        f"| peak train memory APT / FT | {fmt(mr.get('apt/ft'))} | < 1 | {verdict(s['targets']['peak train memory APT < FT'])} |",
        f"| peak train memory LoRA / FT | {fmt(mr.get('lora/ft'))} | | |",
        f"| TTA APT / FT (only if every seed reached) | {fmt(s['tta_ratio']['apt/ft'])} | | |",
        f"| step time APT before pruning / LoRA ({s['step_ratio_source']}) | "
        f"{fmt(s['step_ratio_apt_before_pruning_over_lora'])} | <= 1.5 "
        f"| {verdict(s['targets']['APT step <= 1.5x LoRA before pruning'])} |",
        f"| step time APT after pruning / LoRA ({s['step_ratio_source']}) | "
        f"{fmt(s['step_ratio_apt_after_pruning_over_lora'])} | < 1 "
        f"| {verdict(s['targets']['APT step < LoRA after pruning'])} |",
        f"| APT achieved sparsity (layers' linear params) | {ms(get('apt', 'apt_sparsity'))} | 0.60 ± 0.01 | |",
        "",
    ]
    if speed:
        lines.append(f"Interleaved inference: {ROUNDS} rounds at seq {SEQ}, each timing every batch size and model once; speedup = median over rounds of the dense / pruned time of the same round; load average "
                     f"(1/5/15 min) {tuple(round(x, 1) for x in speed['loadavg_before'])} before and "
                     f"{tuple(round(x, 1) for x in speed['loadavg_after'])} after, on {os.cpu_count()} cores.\n")
    if steps:
        rr = steps["ratio_to_lora"]
        lines += [f"Interleaved step time ({steps['rounds']} rounds, FT / LoRA / APT one step each per round in "
                  f"rotating order, seed {STEP_SEED}, same settings as above with the schedule over {steps['rounds']} "
                  f"steps; load average {tuple(round(x, 1) for x in steps['loadavg_before'])} before and "
                  f"{tuple(round(x, 1) for x in steps['loadavg_after'])} after): median over rounds of the step time "
                  "over LoRA's step in the same round [quartiles], n rounds.\n",
                  "| method / phase | median step (s) | / LoRA [q25, q75] | n |", "|---|---|---|---|",
                  f"| LoRA | {steps['median_step_s']['lora']:.3f} | 1 | {steps['steps']['lora']['all']} |"]
        for n, groups in rr.items():
            for g, v in groups.items():
                lines.append(f"| {n} {g.replace('_', ' ')} | {v['median_step_s']:.3f} | {v['median']:.2f} "
                             f"[{v['q25_q75'][0]:.2f}, {v['q25_q75'][1]:.2f}] | {v['n']} |")
        lines.append("")
    lines += gap_section(rows)
    widths = [metric(r, "apt_widths") for r in rows["apt"]]
    lines.append("APT final widths per seed (heads per layer / FFN per layer / hidden): " + "; ".join(
        f"{w['heads']} / {w['ffn']} / {w['hidden']}" for w in widths if w))
    settings = configs(args.seeds[0], args, controls=True)
    data = {"provenance": prov, "settings": {k: v.to_dict() for k, v in settings.items()},
            "runs": {k: [{"id": r["id"], "seed": r["seed"], "metrics": r["metrics"], "curve": r.get("curve")}
                         for r in v] for k, v in rows.items()},
            "runs_code": runs_code(rows, args),
            "interleaved_inference": speed, "interleaved_steps": steps, "summary": s}
    return data, "\n".join(lines) + "\n"


def gap_section(rows: dict) -> list[str]:
    """APT's accuracy gap to FT split, paired by seed, through the pruning-off control."""
    from prunelab.ablation.stats import null_text, paired

    if not rows.get("apt_unpruned"):
        return []
    acc = {k: {r["seed"]: metric(r, "score") for r in v} for k, v in rows.items()}
    ctl = [metric(r, "score") for r in rows["apt_unpruned"]]
    lines = ["Where APT's accuracy gap to FT comes from: the control `apt_unpruned` is APT with the same adapters, "
             "rank growth, self-distillation, lr and schedule, but pruning off (the `pruning.off` ablation option). "
             f"Its dev accuracy: {ms(ctl)} over seeds {sorted(acc['apt_unpruned'])}, "
             f"{fmt(ratio(ctl, [metric(r, 'score') for r in rows['ft']]))} of FT's. "
             "Differences in accuracy points, paired by seed (mean, 95% bootstrap interval from 3 seeds, "
             "paired t-test p; a non-significant one with its minimum detectable effect):\n",
             "| difference | what it measures | mean (points) | 95% CI | p | n |", "|---|---|---|---|---|---|"]
    for a, b, what in (("ft", "apt", "APT's whole gap"),
                       ("ft", "apt_unpruned", "the cost of tuning adapters instead of every weight"),
                       ("apt_unpruned", "apt", "the cost of pruning to 60%"),
                       ("apt_unpruned", "lora", "APT's tuning (rank growth, distillation, lr) over plain LoRA"),
                       ("apt_snapshot", "apt", "what the weight-sharing (pruned) teacher costs against one that "
                                               "keeps the dropped weights"),
                       ("ft", "apt_snapshot", "the gap left with that teacher")):
        if not acc.get(a) or not acc.get(b):
            continue
        c = paired(acc[b], acc[a])
        if not c.n:
            continue
        ci = "-" if c.ci is None else f"[{100 * c.ci[0]:+.2f}, {100 * c.ci[1]:+.2f}]"
        p = "-" if c.p_value is None else ("< 0.001" if c.p_value < 0.001 else f"{c.p_value:.3f}")
        null = null_text(c, lambda x: f"{100 * x:.2f} points")
        lines.append(f"| {a} - {b} | {what} | {100 * c.mean_diff:+.2f} | {ci} | {p}{' ' + null if null else ''} "
                     f"| {c.n} |")
    ft_acc, ft_mem = [metric(r, "score") for r in rows["ft"]], [metric(r, "train_peak_mem_mb") for r in rows["ft"]]
    lines += ["", "The controls beside APT and FT (mean ± std over seeds; memory of the same kind as the table above):\n",
              "| run | dev accuracy | / FT | peak train memory (MB) | / FT | n |", "|---|---|---|---|---|---|"]
    for k, text in (("apt", "APT (the default, the paper's teacher)"), *CONTROL_TEXT.items()):
        if not rows.get(k):
            continue
        a_, m_ = [metric(r, "score") for r in rows[k]], [metric(r, "train_peak_mem_mb") for r in rows[k]]
        lines.append(f"| {text} | {ms(a_)} | {fmt(ratio(a_, ft_acc))} | {ms(m_, '{:.0f}')} | {fmt(ratio(m_, ft_mem))} "
                     f"| {len(a_)} |")
    return lines + [""]


def _progress(method: str, seed: int):
    t0 = time.time()

    def report(state):
        if state.step % 50 == 0:
            print(f"  {method} seed {seed}: step {state.step}/{state.total_steps}, {time.time() - t0:.0f} s, "
                  f"last dev {state.last_score}", flush=True)
    return report


def train_rows(args, store) -> dict:
    """Every method and control for every seed through prunelab.run.run (a run whose config is
    already in the store is reused), as done rows with their derived metrics."""
    from prunelab.derived import with_derived
    from prunelab.run import run

    ids = {m: [] for m in (*METHODS, *CONTROLS)}
    for seed in args.seeds:
        for method in ("ft", "lora", "apt", *CONTROLS):       # FT first: TTA needs its score
            cfg = configs(seed, args, controls=True)[method]
            if args.report_only:
                ids[method].append(cfg.resolve().hash())
                continue
            wait_for_other_process(store, cfg)
            row = run(cfg, store, progress=_progress(method, seed))
            print(method, seed, row["status"], metric(row, "score") or row.get("error"), flush=True)
            ids[method].append(row["id"])
    rows = {k: [with_derived(store.get(i), store) for i in v] for k, v in ids.items()}
    return {k: [r for r in v if r and r["status"] == "done"] for k, v in rows.items()}


def runs_from(path: str, seeds: list[int]) -> tuple[dict, str]:
    """The runs of an earlier results file, for the seeds asked (their metrics carry the derived
    TTA and ratios already), and a line saying where they came from and what code trained them."""
    data = json.loads(Path(path).read_text())
    rows = {k: [r for r in data["runs"].get(k, []) if r["seed"] in seeds] for k in (*METHODS, *CONTROLS)}
    prev = data["provenance"]
    code = data.get("runs_code")
    if code is None:        # files written before runs_code was stored: the line is in their .md
        md = Path(path).with_suffix(".md")
        found = re.search(r"^Code of the stored runs[^:]*: (.*)$", md.read_text(), re.M) if md.exists() else None
        code = found.group(1) if found else "not recorded"
    code = re.sub(r" \(read from .*\)$", "", code)      # a file itself read from another: its runs' code only
    return rows, f"{code} (read from {path}, written at {prev['git_sha']} on {prev['date']})"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[5, 6, 7, 8, 9])
    ap.add_argument("--train-limit", type=int, default=8000)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--eval-points", type=int, default=10)
    ap.add_argument("--memory", choices=("tensors", "rss"), default="tensors", help="CPU training-memory kind")
    ap.add_argument("--store", default=os.environ.get("PRUNELAB_BENCH_STORE", str(ROOT / "runs" / "bench-apt.db")))
    ap.add_argument("--name", default="apt", help="results file name (benchmarks/results/NAME.md/.json)")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--no-speed", action="store_true", help="skip the interleaved inference timing")
    ap.add_argument("--step-rounds", type=int, default=100,
                    help="interleaved step-time rounds (benchmarks/step_time.py); 0 skips it")
    ap.add_argument("--allow-dirty", action="store_true", help="write even from uncommitted code (do not commit it)")
    ap.add_argument("--runs-from", metavar="JSON",
                    help="take the training runs from an earlier results file (benchmarks/results/NAME.json) "
                         "instead of the store and measure only the interleaved timings now")
    args = ap.parse_args(argv)
    os.environ["PRUNELAB_CPU_MEMORY"] = args.memory
    prov, store = common.open_store("benchmarks/apt.py", args, argv)
    if args.runs_from:
        rows, args.runs_code = runs_from(args.runs_from, args.seeds)
    else:
        rows = train_rows(args, store)
    missing = {k: len(args.seeds) - len(v) for k, v in rows.items() if len(v) < len(args.seeds)}
    if missing:
        print(f"warning: runs missing or failed: {missing}", flush=True)
    speed = None
    if rows["apt"] and not args.no_speed:
        speed = interleaved_speed([metric(r, "apt_widths") for r in rows["apt"]])
    steps = None
    if args.step_rounds:
        from step_time import interleaved_steps

        ns = argparse.Namespace(**{**vars(args), "steps": args.step_rounds, "eval_points": 5})
        steps = interleaved_steps(configs(STEP_SEED, ns), args.step_rounds)
    data, md = render(rows, speed, args, prov, steps)
    write(args.name, data, md, allow_dirty=args.allow_dirty)
    print(md)


if __name__ == "__main__":
    main()
