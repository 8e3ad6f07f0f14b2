"""`make demo` / `prunelab demo`: the three things prunelab does, end to end, in about 5 minutes.

1. Prune while fine-tuning: FT and APT (60% sparsity) on MiniLM-L6 / SST-2; the pruned model is
   exported and reloaded in a fresh process with plain transformers (dev accuracy, parameters,
   measured speedup next to the FLOPs limit).
2. Drop prompt tokens: SDTP on SmolLM2-135M with pruners trained here on a tiny budget; prefill
   time dense vs pruned at 1,024 tokens and the perplexity rise, next to a recency baseline
   (first 4 + most recent tokens at the same keep counts).
3. Run an ablation plan: two ablations of seed plan 000 (APT), two seeds, a tiny budget; the
   paper section it writes and the HTML report.

`--smoke` runs the same code on tiny random models in seconds (the test in tests/test_demo.py).
Every budget below is printed with its part, so a shrunken budget is never silent.
"""
from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from prunelab.errors import PrunelabError

SEED_PLAN = "000"
# the two ablations of seed plan 000 the demo runs (one variant cell each)
PLAN_ABLATIONS = ("No Knowledge Distillation", "Fixed Pruning Mask")

BUDGETS = {
    # MiniLM-L6 / SmolLM2-135M, real SST-2 and WikiText-2; ~5 min on a quiet 2-core CPU.
    # APT lr 2e-3 without distillation: at these 80 steps (seeds 0/1, full dev) APT scored 0.761/0.780
    # against FT's 0.771/0.769; lr 1e-3 gave 0.726/0.739 and the unpruned adapters at 1e-3 0.733,
    # and the self-distilled default 0.511 (the teacher is taken at step 8, near chance).
    "real": dict(
        model="minilm-l6", train_limit=2560, max_steps=80, batch_size=32, max_length=64, eval_points=1,
        eval_limit=None, ft_lr=5e-5, apt_lr=2e-3, apt_args={"sparsity": 0.6, "distill": "none"},
        reload_rounds=7,
        sdtp_model="smollm2-135m", sdtp_preset="paper",
        sdtp=dict(train_steps=8, train_batch_size=1, train_seq_len=256, train_cont_len=32, rank_pairs=256,
                  eval_samples=3, eval_ctx_len=1024, eval_cont_len=32, gen_samples=1, gen_ctx_len=256,
                  gen_tokens=4, latency_lens=(1024,), latency_repeats=2),
        abl_preset="cpu", abl_seeds=2,
        # the plan's full APT (self-distillation on) at lr 2e-3: at 40 steps and lr 1e-3 it stayed at the
        # majority class, so its ablation verdicts said nothing
        abl_overrides={"train.max_steps": 60, "train.train_limit": 1920, "train.eval_limit": None, "train.lr": 2e-3,
                       "train.max_length": 64,
                       "train.eval_points": 1, "measure.batch_sizes": [32], "measure.warmup": 0,
                       "measure.repeats": 1, "measure.min_seconds": 0.2},
    ),
    # tiny random models, seconds: same code paths (tests/test_demo.py)
    "smoke": dict(
        model="tiny-bert", train_limit=64, max_steps=6, batch_size=8, max_length=32, eval_points=1,
        eval_limit=64, ft_lr=1e-3, apt_lr=1e-3, apt_args={"sparsity": 0.6, "distill": "none", "preset": "tiny"},
        reload_rounds=2,
        sdtp_model="tiny-llama", sdtp_preset="paper",
        sdtp=dict(train_steps=4, train_batch_size=1, train_seq_len=48, train_cont_len=8, rank_pairs=64,
                  eval_samples=2, eval_ctx_len=128, eval_cont_len=8, gen_samples=1, gen_ctx_len=32,
                  gen_tokens=4, latency_lens=(128,), latency_repeats=1),
        abl_preset="tiny", abl_seeds=2, abl_overrides={},
    ),
}


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(n: int | str, text: str) -> None:
    say()
    say(f"== {n}. {text} ==" if n != "" else f"== {text} ==")


def _fmt_params(n: float) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.0f} k"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# -- 1. prune while fine-tuning ---------------------------------------------------------------
def part_apt(b: dict, store, out: Path, data_dir: str, env: dict) -> dict:
    from prunelab.config import MeasureConfig, RunConfig, TrainConfig
    from prunelab.run import run

    heading(1, f"Prune while fine-tuning: FT vs APT (60% sparsity) on {b['model']} / SST-2")
    say(f"budget: {b['max_steps']} steps of batch {b['batch_size']} on {b['train_limit']} SST-2 training "
        f"examples (max length {b['max_length']}), dev = "
        + ("all 872 examples" if b["eval_limit"] is None else f"{b['eval_limit']} examples")
        + " (the README's numbers: 500 steps on 8000)")
    if b["apt_args"].get("distill") == "none":
        say("APT runs without its self-distillation here: at a budget this short the teacher is barely "
            "trained and costs accuracy (benchmarks/results/ablation-000; part 3 ablates it)")
    rows = {}
    for method, lr, args in (("ft", b["ft_lr"], {}), ("apt", b["apt_lr"], b["apt_args"])):
        export = out / f"{method}-{b['model']}"
        cfg = RunConfig(model=b["model"], task="glue/sst2", method=method, method_args=dict(args), seed=0,
                        train=TrainConfig(lr=lr, batch_size=b["batch_size"], max_steps=b["max_steps"],
                                          train_limit=b["train_limit"], eval_limit=b["eval_limit"],
                                          eval_points=b["eval_points"], max_length=b["max_length"]),
                        measure=MeasureConfig(throughput=False, flops=True, seq_len=128),
                        output_dir=str(export))
        # a stored identical run is reused; its export must still be on disk
        before = store.get(cfg.resolve().hash())
        force = not (export / "config.json").exists()
        reused = bool(before and before["status"] == "done" and not force)
        say(f"[demo] {method}: " + ("found in the store" if reused else "training ..."))
        row = run(cfg, store, force=force)
        if row["status"] != "done":
            raise PrunelabError(f"demo {method} run failed: {(row.get('error') or '').splitlines()[0]}")
        m = row["metrics"]
        say(f"[demo] {method}: dev accuracy {m['score']:.3f} after {m['train_steps']} steps, "
            f"{m['train_seconds']:.0f} s of training" + (" (reused from the store)" if reused else ""))
        rows[method] = row

    say("[demo] reloading the exported APT model in a fresh process (plain transformers) ...")
    rl = reload_check(rows["apt"]["metrics"]["output_dir"], rows["ft"]["metrics"]["output_dir"], data_dir,
                      b["max_length"], b["reload_rounds"], env)
    ft, apt = rows["ft"]["metrics"], rows["apt"]["metrics"]
    flops_limit = ft["flops_per_sample"] / apt["flops_per_sample"]
    say(_table([
        ["", "FT", "APT (60% sparsity)"],
        ["dev accuracy (SST-2)", f"{ft['score']:.3f}", f"{apt['score']:.3f} ({apt['score'] / ft['score']:.2f} of FT)"],
        ["dev accuracy, reloaded", "", f"{rl['dev_accuracy']:.3f} ({rl['class']}, fresh process)"],
        ["parameters", _fmt_params(rl["dense_params"]), f"{_fmt_params(rl['params'])} "
                                                           f"({rl['params'] / rl['dense_params']:.2f} of FT)"],
        ["inference speedup, bs 32 x 128", "1", f"{rl['speedup']:.2f}x measured (FLOPs limit {flops_limit:.2f}x)"],
        ["training time", f"{ft['train_seconds']:.0f} s", f"{apt['train_seconds']:.0f} s"],
    ]))
    say(f"pruned checkpoint: {apt['output_dir']}")
    say(f"  load it: AutoModelForSequenceClassification.from_pretrained('{apt['output_dir']}', "
        "trust_remote_code=True)")
    return {"ft": ft, "apt": apt, "reload": rl, "flops_limit": flops_limit}


def reload_check(pruned_dir: str, dense_dir: str, data_dir: str, max_length: int, rounds: int, env: dict) -> dict:
    from prunelab import demo_reload

    dev = Path(data_dir) / "sst2" / "dev.tsv"
    if not dev.exists():
        raise PrunelabError(f"the demo needs SST-2 dev data: {dev} not found")
    cmd = [sys.executable, demo_reload.__file__, pruned_dir, dense_dir, str(dev), "--max-length", str(max_length),
           "--rounds", str(rounds)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise PrunelabError(f"reloading {pruned_dir} with plain transformers failed (exit {proc.returncode})")
    if proc.stderr.strip() and env.get("TRANSFORMERS_VERBOSITY") != "error":
        sys.stderr.write(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- 2. drop prompt tokens --------------------------------------------------------------------
def part_sdtp(b: dict, out: Path) -> dict:
    from prunelab.methods.sdtp.presets import make_config
    from prunelab.methods.sdtp.run import run_sdtp

    cfg = make_config(b["sdtp_preset"], **b["sdtp"])
    n = max(cfg.latency_lens)
    heading(2, f"Drop prompt tokens: SDTP on {b['sdtp_model']} (WikiText-2)")
    from prunelab.methods.sdtp.presets import BUDGETS

    prior = (f"recency prior x{cfg.prior_weight:g} + MLP, not in the paper" if cfg.prior_weight
             else "the MLP alone, as in the paper")
    say(f"budget: pruners trained here for {cfg.train_steps} steps on {cfg.train_seq_len}-token sequences "
        f"(the paper preset's layers and keep ratio; {prior}; the `cpu` budget trains "
        f"{BUDGETS['cpu']['train_steps']} steps); perplexity on "
        f"{cfg.eval_samples} windows of {cfg.eval_ctx_len} + {cfg.eval_cont_len} tokens; prefill timed "
        f"{cfg.latency_repeats}x at {n} tokens")
    say("[demo] sdtp: training pruners, then measuring ...")
    t = time.time()
    m = run_sdtp(cfg, b["sdtp_model"], seed=0, cache_dir=str(out / "sdtp-cache"), parts=("quality", "speed"))
    trained = ("loaded from " + str(out / "sdtp-cache") if m.get("pruners_cached")
               else f"trained in {m.get('saliency_s', 0) + m.get('train_s', 0):.0f} s")
    say(f"[demo] sdtp: pruners {trained}; measured in {time.time() - t:.0f} s")
    say("[demo] recency baseline: first 4 + most recent tokens, same keep counts ...")
    rec = recency_quality(cfg, b["sdtp_model"], m)
    kept = m["final_keep_frac"]
    say(_table([
        ["", "dense", "SDTP (learned)", "recency baseline"],
        [f"prefill time, {n} tokens", f"{m['prefill_latency_dense_s']:.2f} s",
         f"{m['prefill_latency_s']:.2f} s ({m['prefill_speedup']:.2f}x; FLOPs limit {m['flops_ratio']:.2f}x)", "same counts"],
        ["perplexity", f"{m['ppl_dense']:.2f}", f"{m['ppl']:.2f} ({m['ppl_rel_increase']:+.1%})",
         f"{rec['ppl']:.2f} ({rec['ppl_rel_increase']:+.1%})"],
        ["prompt tokens after the last stage", f"{cfg.eval_ctx_len}",
         f"{kept * cfg.eval_ctx_len:.0f} ({kept:.0%})", f"{rec['final_keep_frac'] * cfg.eval_ctx_len:.0f} "
                                                        f"({rec['final_keep_frac']:.0%})"],
    ]))
    return {"m": m, "recency": rec, "cfg": cfg}


def recency_quality(cfg, model_name: str, learned: dict) -> dict:
    """Perplexity of the registered `recency` selector (attention sinks + most recent tokens) on
    the windows run_sdtp scored, at the learned schedule's stage layers and exact keep counts
    (evaluate.lm_quality; the protected head and tail follow the same rule)."""
    from prunelab.methods.sdtp.data import chunks, token_stream
    from prunelab.methods.sdtp.evaluate import lm_quality
    from prunelab.methods.sdtp.run import _model

    model, tok = _model(model_name, cfg.dtype)   # the instance run_sdtp scored (memoised): no second load
    model.requires_grad_(False)
    N, M = cfg.eval_ctx_len, cfg.eval_cont_len
    test = token_stream(tok, "test", None, model.config.vocab_size)
    windows = chunks(test, cfg.eval_samples, N + M)            # the windows run_sdtp scored
    q = lm_quality(model, cfg, windows, N, ["recency"])
    rec = q["by_selector"]["recency"]
    final = rec["final_tokens"] / N
    if abs(final - learned["final_keep_frac"]) > 1e-6:
        raise PrunelabError(f"recency kept {final:.4f} of the prompt, the learned pruners "
                            f"{learned['final_keep_frac']:.4f}: not the same keep counts")
    return {"ppl": rec["ppl"], "ppl_rel_increase": rec["ppl"] / learned["ppl_dense"] - 1.0,
            "final_keep_frac": final, "kl": rec["kl"], "top1": rec["top1"]}


# -- 3. an ablation plan ----------------------------------------------------------------------
def seed_plan_path(data_dir: str) -> Path | None:
    roots = [os.environ.get("PRUNELAB_SEEDS"), str(Path(data_dir).parent / "seeds")]
    for root in filter(None, roots):
        hits = sorted(glob.glob(str(Path(root) / f"{SEED_PLAN}_*.txt")))
        if hits:
            return Path(hits[0])
    return None


def plan_subset(text: str, names=PLAN_ABLATIONS) -> str:
    """The seed plan with only the `### Ablation: <name>` blocks in `names` (header kept)."""
    parts = re.split(r"(?m)^(?=### Ablation:)", text)
    head, blocks = parts[0], parts[1:]
    keep = []
    for blk in blocks:
        name = blk.splitlines()[0].split(":", 1)[1].strip()
        body = blk.split("</div>")[0].rstrip() + "\n\n"
        if name in names:
            keep.append(body)
    if len(keep) != len(names):
        raise PrunelabError(f"seed plan {SEED_PLAN} lacks the ablations {', '.join(names)}")
    return head + "".join(keep) + "</div>\n"


def part_ablation(b: dict, store_path: str, out: Path, data_dir: str, verbose: bool) -> dict:
    import io
    import textwrap

    from prunelab.ablation import cli as acli
    from prunelab.ablation.analysis import analyze

    src = seed_plan_path(data_dir)
    heading(3, f"Run an ablation plan: {len(PLAN_ABLATIONS)} ablations of seed plan {SEED_PLAN} (APT)")
    if src is None:
        raise PrunelabError(f"seed plan {SEED_PLAN}_*.txt not found in $PRUNELAB_SEEDS or "
                            f"{Path(data_dir).parent / 'seeds'}")
    plan = out / f"plan-{SEED_PLAN}-demo.md"
    plan.write_text(plan_subset(src.read_text(encoding="utf-8")), encoding="utf-8")
    study = f"demo-{SEED_PLAN}-{b['abl_preset']}"
    ov = b["abl_overrides"]
    budget = (f"preset {b['abl_preset']}" + (", " + ", ".join(f"{k}={v}" for k, v in ov.items()) if ov else "")
              + f"; {b['abl_seeds']} seeds")
    say(f"plan: {', '.join(PLAN_ABLATIONS)} (from {src.name}, written to {plan})")
    from prunelab.ablation.presets import base_config

    full = base_config("cpu", "apt").train     # what the demo's budget is shrunk from
    say(f"budget: {budget} (the `cpu` preset is {full.max_steps} steps on {full.train_limit} examples, 3 seeds)")
    say(f"[demo] ablate: baseline + {len(PLAN_ABLATIONS)} variants x {b['abl_seeds']} seeds (no FT reference cell: "
        "the demo reads accuracy only) ...")
    log = io.StringIO()
    # two cells at a time, one thread each: on 2 cores most of a short cell is start-up
    threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        code = acli.ablate(str(plan), preset=b["abl_preset"], seeds=b["abl_seeds"], store=store_path, study=study,
                           overrides=dict(ov), progress=verbose, out=log, workers=2, reference=False)
    finally:
        if threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = threads
    lines = log.getvalue().splitlines()
    for ln in lines:
        if re.match(r"\d+ run\(s\) done|  failed", ln):
            say("[demo] ablate: " + ln.strip())
    if code != 0:
        raise PrunelabError("the demo's ablation runs failed:\n" + log.getvalue())
    out_dir = out / "reports" / study
    paths = acli.report(study, store=store_path, out_dir=str(out_dir))
    section = next(p for p in paths if p.endswith("section.md"))
    html = next(p for p in paths if p.endswith("report.html"))
    res = analyze(store_path, study)
    verdicts = []
    for ab in res.ablations:
        for ln in ab.lines:
            if ln.metric["key"] == "score":
                verdicts.append((ab.name, ln.cell.label.rsplit("/", 1)[-1], ln.base[0], ln.value[0], ln.verdict))
    say(_table([["ablation", "variant", "accuracy: full APT", "variant", "verdict"]]
               + [[a, c, f"{x:.3f}", f"{y:.3f}", v] for a, c, x, y, v in verdicts]))
    if verdicts and verdicts[0][2] < 0.55:
        say(f"note: at this budget full APT has not left the majority class ({verdicts[0][2]:.3f}), so these "
            "verdicts say nothing about the method; the `cpu` preset (120 steps, benchmarks/results/ablation-000) "
            "is where the plan's effects separate")
    say()
    say(f"the paper section it wrote ({section}):")
    say()
    for line in Path(section).read_text(encoding="utf-8").strip().splitlines():
        if not line.strip():
            say("  |")
            continue
        for piece in textwrap.wrap(line, 96) or [""]:
            say("  | " + piece)
    say()
    say(f"HTML report: {html}")
    return {"study": study, "html": html, "section": section, "verdicts": verdicts}


# -- summary ----------------------------------------------------------------------------------
def summary(p1: dict | None, p2: dict | None, p3: dict | None, seconds: float, store_path: str) -> None:
    heading("", "Summary")
    rows = [["part", "result"]]
    if p1:
        ft, apt, rl = p1["ft"], p1["apt"], p1["reload"]
        rows.append(["1. prune while fine-tuning",
                     f"APT: {apt['score']:.3f} dev accuracy vs FT's {ft['score']:.3f} "
                     f"({apt['score'] / ft['score']:.0%}), {rl['params'] / rl['dense_params']:.0%} of the parameters,"])
        rows.append(["", f"{rl['speedup']:.1f}x faster (FLOPs limit {p1['flops_limit']:.1f}x); "
                         f"reloads with plain transformers"])
    if p2:
        m, rec = p2["m"], p2["recency"]
        rows.append(["2. drop prompt tokens",
                     f"SDTP: prefill {m['prefill_speedup']:.2f}x faster at {max(p2['cfg'].latency_lens)} tokens,"])
        rows.append(["", f"perplexity {m['ppl_rel_increase']:+.1%} (recency baseline: {rec['ppl_rel_increase']:+.1%})"])
    if p3:
        for i, (_, c, x, y, v) in enumerate(p3["verdicts"]):
            rows.append(["3. ablation plan" if i == 0 else "", f"{c}: accuracy {x:.3f} -> {y:.3f} vs full APT ({v})"])
    say(_table(rows))
    if p3:
        say(f"  report: {p3['html']}")
    say(f"\ndone in {seconds / 60:.1f} min; every run is stored in {store_path} "
        f"(prunelab runs ls --store {store_path})")
    say("next steps (README, `Use`): `prunelab train --method apt --model minilm-l6 --task glue/sst2 "
        "--output-dir out/apt` for a longer budget; `prunelab ablate ../shared/seeds/000_*.txt --preset cpu` "
        "then `prunelab report STUDY` for a whole plan")


def main(store: str = "runs/prunelab.db", smoke: bool = False, verbose: bool = False, out: str | None = None,
         parts: str = "123") -> int:
    from prunelab.quiet import quiet
    from prunelab.store import Store

    quiet(not verbose)
    data_dir = os.environ.get("PRUNELAB_DATA")
    if not data_dir:
        raise PrunelabError("the demo reads SST-2 and WikiText-2 from $PRUNELAB_DATA (e.g. PRUNELAB_DATA=../shared/data)")
    if not parts or set(parts) - set("123"):
        raise PrunelabError(f"demo --parts takes digits 1-3 (e.g. 13), got {parts!r}")
    b = BUDGETS["smoke" if smoke else "real"]
    out_dir = Path(out or Path(store).parent / ("demo-smoke" if smoke else "demo")).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    st = Store(store)
    env = dict(os.environ)
    t0 = time.time()
    say(f"prunelab demo{' --smoke (tiny random models)' if smoke else ''}: outputs in {out_dir}")
    p1 = part_apt(b, st, out_dir, data_dir, env) if "1" in parts else None
    p2 = part_sdtp(b, out_dir) if "2" in parts else None
    p3 = part_ablation(b, st.path if hasattr(st, "path") else store, out_dir, data_dir, verbose) \
        if "3" in parts else None
    summary(p1, p2, p3, time.time() - t0, str(store))
    return 0
