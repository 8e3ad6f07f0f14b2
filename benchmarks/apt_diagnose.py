"""What holds APT below FT at a short budget: one-seed comparisons of APT variants.

Every variant is a prunelab.run.run of MiniLM-L6 / SST-2 (real data), seed 0, 2,000 stratified
training examples, 150 steps of batch 32, 5 evaluations on the full dev set, APT lr 1e-3 at
60% sparsity (FT lr 5e-5), throughput not measured. Runs go to runs/apt-diagnose.db, so a
variant already trained with the same config is read back, not retrained.

    PYTHONPATH=src PRUNELAB_DATA=../shared/data OMP_NUM_THREADS=1 \\
        python benchmarks/apt_diagnose.py                     # every variant, one after another
    python benchmarks/apt_diagnose.py --variants lora_only,no_hidden   # a subset (run two shells
                                                                       # in parallel on 2 cores)
    python benchmarks/apt_diagnose.py --report                # table of what the store holds

    python benchmarks/apt_diagnose.py --selection             # one batch, no training: what each
                                                              # outlier unit keeps at 60%

Seed 0, 2026-11-30, 2-core CPU VM (load ~10): FT 0.8073 (colleague's run, not rerun here);
lora_only 0.8142; no_distill 0.7638; distill_short 0.7695; teacher_train 0.7420;
kurt_rank 0.7339; no_hidden 0.6686 (APT defaults before these commits: 0.7385). Pruning at
this budget costs ~5 points (lora_only -> no_distill) and the label-free distillation phase
with an early, near-chance self-teacher ~2-3 more.

One seed, one budget: differences under ~0.02 (about 17 of 872 dev sentences) are noise.
The table goes to stdout only; nothing is written under benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

DB = "runs/apt-diagnose.db"
FT_LR, APT_LR = 5e-5, 1e-3
BASE = {"sparsity": 0.6}

# name -> (method, method_args overrides, what it tests)
VARIANTS = {
    "ft": ("ft", {}, "full fine-tuning reference"),
    "apt": ("apt", {}, "APT defaults (outlier_aware, outlier_unit=rank since 168d379)"),
    "kurt_density": ("apt", {"outlier_unit": "density"}, "(a) K x median density (the default before 168d379)"),
    "lora_only": ("apt", {"pruning": "off", "distill": "none", "outlier_unit": "density"},
                  "(ceiling) APT adapters, adaptive ranks, no pruning, no distillation"),
    "no_hidden": ("apt", {"prune_hidden": False, "outlier_unit": "density"}, "(b) hidden dims not pruned"),
    "standard": ("apt", {"salience": "standard"}, "(a) no kurtosis term"),
    "kurt_code": ("apt", {"outlier_unit": "code"}, "(a) released-code kurtosis: + sqrt(Kurt) per block"),
    "kurt_rank": ("apt", {"outlier_unit": "rank"}, "(a) rank-normalised kurtosis bonus"),
    "early_end": ("apt", {"prune_end": 0.25, "distill_end": 0.35, "prune_start": 0.05},
                  "(c) pruning done by 25%: more post-pruning recovery"),
    "distill_short": ("apt", {"distill_end": 0.4, "outlier_unit": "density"}, "(c)/(e) distillation ends with pruning (no label-free phase)"),
    "no_distill": ("apt", {"distill": "none", "outlier_unit": "density"}, "(e) no self-distillation"),
    "teacher_train": ("apt", {"teacher_refresh": "train_loss", "outlier_unit": "density"},
                      "(e) self-teacher also re-taken at pruning steps when the label loss improved"),
    "static_rank": ("apt", {"tuning": "static"}, "(d) fixed LoRA rank"),
    "lr3e-4": ("apt", {}, "(d) APT at lr 3e-4"),
}
LR_OVERRIDE = {"lr3e-4": 3e-4}


def config(name: str, seed: int, steps: int, train_limit: int):
    from prunelab.config import RunConfig, TrainConfig

    method, args, _ = VARIANTS[name]
    lr = LR_OVERRIDE.get(name, FT_LR if method == "ft" else APT_LR)
    margs = {**BASE, **args} if method == "apt" else {}
    train = TrainConfig(lr=lr, train_limit=train_limit, max_steps=steps, batch_size=32, eval_points=5,
                        max_length=128)
    return RunConfig(model="minilm-l6", task="glue/sst2", method=method, seed=seed, method_args=margs,
                     train=train, measure={"throughput": False, "flops": False})


def _older(store, cfg):
    """A run stored before a method field was added: same config on the fields it has, and the
    missing fields at the values the code had then (outlier_unit density, teacher_refresh eval)."""
    import sqlite3

    want = cfg.resolve().to_dict()
    then = {"outlier_unit": "density", "teacher_refresh": "eval"}
    for (rid,) in sqlite3.connect(store.path).execute("select id from runs where status='done'"):
        row = store.get(rid)
        have = row.get("config") or {}
        if isinstance(have, str):
            have = json.loads(have)
        args = have.get("method_args") or {}
        missing = set(want["method_args"]) - set(args)
        if not missing or any(want["method_args"][k] != then.get(k, object()) for k in missing):
            continue
        w = {**want, "method_args": {k: v for k, v in want["method_args"].items() if k in args}}
        if all(w.get(k) == have.get(k) for k in ("model", "task", "method", "seed", "train", "method_args")):
            return row
    return None


def summary(row: dict) -> dict:
    m = row.get("metrics") or {}
    w = m.get("apt_widths") or {}
    out = {"status": row.get("status"), "score": m.get("score")}
    if w:
        out["heads"] = sum(w.get("heads", []) or [])
        out["neurons"] = sum(w.get("ffn", []) or [])
        out["hidden"] = w.get("hidden")
        out["sparsity"] = m.get("apt_sparsity")
    return out


def selection(n: int = 64, seed: int = 0) -> None:
    """(a)/(b) without training: one batch of n SST-2 sentences through pretrained MiniLM-L6 (random
    classifier), the outlier-aware collector's S~ and K per unit, and what one 60% selection keeps
    under each outlier unit. Prints K per block type, how much of each form's density ranking
    follows the salience density S~/C and how much the kurtosis K (Spearman), and the kept counts."""
    import csv
    import random

    import torch

    import prunelab.methods.apt.salience as S
    from prunelab.methods.apt.pruner import Structure, densities, measured_size, select
    from prunelab.models.load import load_model
    from prunelab.tasks import get_task

    torch.manual_seed(seed)
    loaded = load_model("minilm-l6", get_task("glue/sst2"))
    model, fam, tok = loaded.model, loaded.family, loaded.tokenizer
    path = os.path.join(os.environ.get("PRUNELAB_DATA", "../shared/data"), "sst2", "train.tsv")
    rows = list(csv.reader(open(path), delimiter="\t"))[1:]
    random.Random(seed).shuffle(rows)
    col = S.SalienceCollector(fam, "outlier_aware", {}, lambda kind, b, role, lin: lin.weight)
    col.install()
    col.active = True
    col.reset()
    batch = tok([r[0] for r in rows[:n]], padding=True, truncation=True, max_length=128, return_tensors="pt")
    model(**batch, labels=torch.tensor([int(r[1]) for r in rows[:n]])).loss.backward()
    st = Structure.from_family(fam)
    cap = {}
    orig = S.add_outlier_term

    def spy(structure, base, kurt, unit="density"):
        cap["base"], cap["kurt"] = base, kurt
        return orig(structure, base, kurt, unit)
    S.add_outlier_term = spy
    try:
        col.scores(st)
    finally:
        S.add_outlier_term = orig
        col.remove()
    base, kurt = cap["base"], cap["kurt"]
    costs = st.unit_costs()
    flat = lambda d: torch.cat([*d["head"].values(), *d["neuron"].values(), d["hidden"]])  # noqa: E731
    for kind in ("head", "neuron", "hidden"):
        K = kurt[kind] if kind == "hidden" else torch.cat(list(kurt[kind].values()))
        B = base[kind] if kind == "hidden" else torch.cat(list(base[kind].values()))
        c = costs[kind] if kind == "hidden" else costs[kind][0]
        print(f"{kind:7s} cost {c:6d}  K q10/q50/q90 " + "/".join(f"{float(K.quantile(q)):.2f}" for q in (.1, .5, .9))
              + f"  median S~/C {float((B / c).median()):.2e}")
    d0, K = flat(densities(st, base)), flat(kurt)
    print(f"rho- (median S~/C over all units) {float(d0.median()):.2e}")

    def spearman(a, b):
        ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
        return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])
    target = (1 - BASE["sparsity"]) * measured_size(fam)
    forms = {"standard": base, **{u: orig(st, base, kurt, u) for u in ("density", "rank", "code")}}
    for name, sc in forms.items():
        d = flat(densities(st, sc))
        keep = select(st, densities(st, sc), target).counts()
        print(f"{name:9s} spearman(density, S~/C) {spearman(d, d0):.2f}  spearman(density, K) {spearman(d, K):.2f}  "
              f"kept heads {sum(keep['heads'].values())}/72 neurons {sum(keep['neurons'].values())}/9216 "
              f"hidden {keep['hidden']}/384")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--train-limit", type=int, default=2000)
    ap.add_argument("--report", action="store_true", help="only print what the store already holds")
    ap.add_argument("--selection", action="store_true", help="only the one-batch selection analysis (no training)")
    a = ap.parse_args(argv)
    if a.selection:
        selection(seed=a.seed)
        return
    from prunelab.run import run
    from prunelab.store import Store

    store = Store(DB)
    names = [n.strip() for n in a.variants.split(",") if n.strip()]
    rows = {}
    for n in names:
        cfg = config(n, a.seed, a.steps, a.train_limit)
        if a.report:
            row = store.get(cfg.resolve().hash()) or _older(store, cfg)
            if row is None:
                continue
        else:
            row = run(cfg, store)
        rows[n] = summary(row)
        print(json.dumps({"variant": n, **rows[n]}), flush=True)
    ft = (rows.get("ft") or {}).get("score")
    print(f"\n| variant | tests | dev acc | / FT | heads /72 | neurons /9216 | hidden /384 |")
    print("|---|---|---|---|---|---|---|")
    for n, r in rows.items():
        s = r.get("score")
        print(f"| {n} | {VARIANTS[n][2]} | {s if s is None else f'{s:.4f}'} | "
              f"{'-' if not (ft and s) else f'{s / ft:.3f}'} | {r.get('heads', '-')} | {r.get('neurons', '-')} | "
              f"{r.get('hidden', '-')} |")


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    main()
