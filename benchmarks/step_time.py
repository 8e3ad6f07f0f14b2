"""Training step time of several methods, interleaved in one process.

Separate runs measure step time under whatever else the machine was doing at the time, and on
a shared CPU that load changes by 2-5x over minutes. Here every method gets its own training
session (prunelab.train.loop.Loop: the plugin, optimizer and schedule of a real run) and the
sessions take turns, one optimizer step each per round, in a rotating order: the load of any
moment hits all methods alike. Each step's wall time is kept with the round it ran in, so a
method's step is compared with the *same rounds'* steps of the reference (paired per round,
median ratio).

APT's steps carry the phase of its plan (before the first pruning step / while pruning and
distilling / after, as methods/apt/method.py times them), so the benchmark can compare APT's
step before pruning and after it with LoRA's step in the same rounds. Memory tracking is off
here (the tensor tracker would add per-operator cost, most to the method with the most
operators).

    PYTHONPATH=src python benchmarks/step_time.py --steps 100      # prints the summary as JSON
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time

import torch

PHASES = ("before_pruning", "pruning", "after_pruning")


def _session(cfg, total: int):
    """A started Loop for `cfg` (built as run.train_model builds it) and an endless batch iterator."""
    from prunelab.run import build_plugin, prepare
    from prunelab.train.loop import Loop

    setup = prepare(cfg)
    task, loaded = setup.task, setup.loaded
    plugin, model = build_plugin(cfg, setup, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    loop = Loop(model, plugin, task, loaded.tokenizer, cfg, family=loaded.family, total_steps=total)
    loop.start()

    def batches():
        for epoch in itertools.count():
            yield from task.batches(setup.train_features, cfg.train.batch_size, shuffle=True,
                                    seed=cfg.seed * 1000 + epoch, bucket=cfg.train.bucket)
    return loop, batches(), setup.dev_features


def _phase(plugin, t: int) -> str | None:
    """APT's phase of step t (0-based), as its own timer names it; None for other methods."""
    plan = getattr(plugin, "plan", None)
    if plan is None or not getattr(plan, "steps", None):
        return None
    return "before_pruning" if t < plan.steps[0] else "pruning" if t < plan.distill_end else "after_pruning"


def interleaved_steps(cfgs: dict, total: int, ref: str = "lora", eval_points: int = 5, dev_limit: int = 256,
                      log=print) -> dict:
    """Train every config in `cfgs` (name -> RunConfig) for `total` steps, one step each per round
    in rotating order. Returns per-method step times and, per APT phase, the median over rounds
    of (method step / `ref` step in the same round).

    Dev evaluations (untimed, on `dev_limit` examples) run at the usual eval points because APT's
    self-distillation teacher is refreshed there."""
    from prunelab.train.loop import eval_steps

    names = list(cfgs)
    sessions = {n: _session(cfgs[n], total) for n in names}
    evals = eval_steps(total, eval_points)
    rows = []          # {round, method, seconds, phase}
    load_before = os.getloadavg()
    t0 = time.time()
    for r in range(total):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            loop, it, _ = sessions[n]
            t = loop.state.step
            secs = loop.step(next(it))
            rows.append({"round": r, "method": n, "seconds": secs, "phase": _phase(loop.plugin, t)})
        if r + 1 in evals:
            for n in names:
                loop, _, dev = sessions[n]
                loop.evaluate(dev[:dev_limit])
        if log and (r + 1) % 20 == 0:
            log(f"  round {r + 1}/{total} ({time.time() - t0:.0f} s)")
    for loop, _, _ in sessions.values():
        loop.end()
    return summarize(rows, names, ref) | {"rounds": total, "loadavg_before": load_before,
                                          "loadavg_after": os.getloadavg(), "wall_s": time.time() - t0}


def summarize(rows: list[dict], names: list[str], ref: str) -> dict:
    by = {(x["round"], x["method"]): x for x in rows}
    rounds = sorted({x["round"] for x in rows})
    out = {"median_step_s": {}, "ratio_to_" + ref: {}, "steps": {}}
    for n in names:
        mine = [x for x in rows if x["method"] == n]
        out["median_step_s"][n] = statistics.median(x["seconds"] for x in mine)
        phases = sorted({x["phase"] for x in mine if x["phase"]}, key=lambda p: PHASES.index(p) if p in PHASES else 9)
        groups = {"all": mine, **{p: [x for x in mine if x["phase"] == p] for p in phases}}
        out["steps"][n] = {g: len(v) for g, v in groups.items()}
        if n == ref:
            continue
        ratios = {}
        for g, v in groups.items():
            rs = [x["seconds"] / by[(x["round"], ref)]["seconds"] for x in v if (x["round"], ref) in by]
            if rs:
                ratios[g] = {"median": statistics.median(rs), "q25_q75": _quartiles(rs), "n": len(rs),
                             "median_step_s": statistics.median(x["seconds"] for x in v)}
        out["ratio_to_" + ref][n] = ratios
    out["rounds_used"] = len(rounds)
    return out


def _quartiles(xs: list[float]) -> list[float]:
    if len(xs) < 4:
        return [min(xs), max(xs)]
    q = statistics.quantiles(xs, n=4)
    return [q[0], q[2]]


def main(argv=None):
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    import apt as bench

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-limit", type=int, default=8000)
    a = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("PRUNELAB_THREADS", "2")))
    ns = argparse.Namespace(train_limit=a.train_limit, steps=a.steps, eval_points=5)
    print(json.dumps(interleaved_steps(bench.configs(a.seed, ns), a.steps), indent=1))


if __name__ == "__main__":
    main()
