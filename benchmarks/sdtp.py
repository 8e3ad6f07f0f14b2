"""SDTP on SmolLM2-135M (CPU): the learned pruner against its baselines, every option through the
same pruned prefill with the same protected tokens and keep counts (truncate: the same prefill
FLOPs). One table per run, all options:

  quality    WikiText-2 test continuation: perplexity rise over dense, KL(dense || pruned) and
             top-1 agreement, 95% CIs over windows (bootstrap for the ppl rise, t for the others)
  retrieval  generated passkey (and key-value) prompts, needle at depths 0.1-0.9 of 1k-4k-token
             prompts: answer log-likelihood and exact match
  leval      L-Eval closed-ended tasks (tpo, quality, coursera, topic retrieval), truncated to
             --leval-len tokens: answer log-likelihood, exact match, letter accuracy
  speed      prefill speedup vs the analytic FLOPs limit, time to first token, e2e latency with
             greedy decoding, KV-cache bytes, at --speed-lens

    # full: pruners trained as SDTPConfig's `cpu` budget says (32 sequences of 1024 + 64 tokens of
    # the training mix, 1500 cached-feature steps, the default recency prior), then every part
    # at its default size, the parts split over two one-thread processes (--workers 2); about
    # 1.5-2 h on 2 cores (training first, on both threads). Refuses a dirty tree when writing to benchmarks/results (results there
    # come from committed code only).
    PRUNELAB_DATA=../shared/data OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/sdtp.py \
        --workers 2 --threads 1
    # with a saved pruner checkpoint (PrunerStack.save) instead of training
    ... benchmarks/sdtp.py --pruners path/to/pruners.safetensors
    # ~2 min on SmolLM2-135M: every part at a toy size (4 windows of 256 + 32 tokens, pruners
    # trained 20 steps on 4 sequences); checks the script end to end, not a result
    PRUNELAB_DATA=../shared/data PYTHONPATH=src .venv/bin/python benchmarks/sdtp.py --quick
    # seconds, tiny-llama, synthetic text
    PYTHONPATH=src .venv/bin/python benchmarks/sdtp.py --smoke

Writes <out>.json and <out>.md (default benchmarks/results/sdtp; --quick and --smoke default
to a scratch folder under the system temp dir). Trained pruners are cached under
~/.cache/prunelab/sdtp keyed by config hash (the run path's get_pruners).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Other engineers' processes share the 2 cores; with OpenMP's default spin-waiting, a 2-thread
# torch oversubscribed this way ran a forward+backward ~10x slower. Passive waiting fixes that;
# dense and pruned timings run under the same policy.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from prunelab.methods.sdtp import PrunerStack, make_config  # noqa: E402
from prunelab.methods.sdtp import _load  # noqa: E402
from prunelab.methods.sdtp import evaluate as E  # noqa: E402
from prunelab.methods.sdtp.data import chunks, token_stream  # noqa: E402
from prunelab.methods.sdtp.metrics import bootstrap_ci  # noqa: E402
from prunelab.methods.sdtp.select import SELECTORS  # noqa: E402

ROOT = Path(__file__).resolve().parent
PARTS = ("quality", "retrieval", "leval", "speed")
# every selector gets a row of the table, in this order (the learned pruner, then its baselines)
TABLE_ORDER = ("learned", "recency", "truncate", "attention", "random", "oracle")
assert set(TABLE_ORDER) == set(SELECTORS), "a selector without a row in the benchmark table"
LABEL = {"learned": "learned pruners (SDTP)", "random": "random", "recency": "recency (4 sinks + most recent)",
         "attention": "attention of last 32 queries (SnapKV/H2O)", "oracle": "oracle: prompt gradient saliency",
         "truncate": "truncate (last tokens from layer 0, same FLOPs)", "dense": "dense"}
# --quick: every part on the real model at a toy size (about 2 min on a busy 2-core CPU)
QUICK = dict(train_steps=20, train_sequences=4, train_seq_len=288, train_cont_len=32, windows=3, ctx=256, cont=32,
             retrieval_kinds="passkey,kv", retrieval_lens="512", depths="0.1", retrieval_per=1,
             leval_tasks="quality", leval_len=512, leval_docs=1, leval_per_doc=1, speed_lens="256",
             speed_repeats=1, gen_tokens=4)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}; {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}; {platform.platform()}"


def git_state() -> dict:
    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""
    dirty = [l for l in git("status", "--porcelain", "--untracked-files=no").splitlines() if l.strip()]
    return {"sha": git("rev-parse", "HEAD"), "dirty": bool(dirty)}


def floats(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x]


def ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def names(s: str, allowed) -> list[str]:
    out = [x for x in s.split(",") if x]
    bad = [x for x in out if x not in allowed]
    if bad:
        raise SystemExit(f"unknown {bad}; choose from {list(allowed)}")
    return out


def get_learned(args, model, cfg, tok, log):
    """The learned PrunerStack: from --pruners, else trained (or loaded from cache) via run.py."""
    if args.pruners:
        stack = PrunerStack.load(args.pruners, model.config.hidden_size, cfg.pruner_hidden_frac)
        return stack.to(dtype=model.dtype), {"pruners": str(args.pruners), "trained_here": False}
    from prunelab.methods.sdtp.run import cache_root, get_pruners, model_fingerprint

    data = "synthetic" if args.smoke else None
    data_id = data or os.environ.get("PRUNELAB_DATA", "")
    # the same cache key as benchmarks/sdtp_train_check.py: its trained pruners are reused
    key_extra = {"model": args.model, "fp": model_fingerprint(model), "seed": args.seed, "data": str(data_id)}
    t = time.time()
    stack, info = get_pruners(model, cfg, tok, data, key_extra, args.seed, cache_root())
    info["pruner_s"] = time.time() - t
    log.info("pruners: %s", info)
    return stack.to(dtype=model.dtype), info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny-llama, synthetic text, tiny sizes (seconds)")
    ap.add_argument("--quick", action="store_true",
                    help="the real model, every part at a toy size (~2 min): checks the script, not a result")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--preset", default="paper",
                    help="SDTP method preset (keep counts, stages, protected tokens; `paper-faithful`: the paper's "
                         "pruner without the default recency prior)")
    ap.add_argument("--options", default=",".join(TABLE_ORDER), help="token selectors to compare")
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pruners", help="PrunerStack checkpoint (.safetensors); default: train via the run path")
    ap.add_argument("--train-steps", type=int, default=None, help="default: the cpu budget's (1500)")
    ap.add_argument("--train-seq-len", type=int, default=None, help="default: the cpu budget's (1088 = 1024 + 64)")
    ap.add_argument("--train-cont-len", type=int, default=None, help="default: the cpu budget's (64)")
    ap.add_argument("--train-sequences", type=int, default=None, help="default: the cpu budget's (32)")
    ap.add_argument("--target-prior", type=float, default=None,
                    help="position weight of the training labels (target_prior; default the config's, 1)")
    ap.add_argument("--target-top", type=float, default=None,
                    help="fraction of most salient tokens labelled keep whatever their age (target_top)")
    ap.add_argument("--train-extra-lens", default=None,
                    help="more training lengths beside --train-seq-len, e.g. 2112,4160 (default: the cpu budget's)")
    ap.add_argument("--prior-weight", type=float, default=None,
                    help="recency prior of the learned pruner (default: the config's, 1; 0 = the paper's MLP alone)")
    ap.add_argument("--prior-curve", default=None, help="shape of that prior: log | linear (SDTPConfig.prior_curve)")
    ap.add_argument("--windows", type=int, default=64)
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--cont", type=int, default=64)
    ap.add_argument("--retrieval-kinds", default="passkey,kv")
    ap.add_argument("--retrieval-lens", default="1024,2048,4096")
    ap.add_argument("--depths", default="0.1,0.3,0.5,0.7,0.9")
    ap.add_argument("--retrieval-per", type=int, default=1, help="prompts per (kind, length, depth)")
    ap.add_argument("--retrieval-options", help="subset of --options for retrieval (default: --options, less the "
                                                "oracle unless --oracle-parts names retrieval)")
    # the oracle is a ceiling, not a deployable option, and costs a backward pass over the whole
    # prompt (~4 dense forwards): by default it runs where the table needs a ceiling (quality)
    ap.add_argument("--oracle-parts", default="quality", help="parts in which the oracle row runs (default quality)")
    ap.add_argument("--leval-tasks", default=",".join(E.LEVAL_TASKS))
    ap.add_argument("--leval-len", type=int, default=4096)
    # 4 x 1 questions per task by default: all 793 questions of the four tasks at 4k tokens would
    # take ~12 h of one core with every option, and the default command must run in about 1.5 h on
    # 2 cores; the report gives n beside each figure. 0 = all
    ap.add_argument("--leval-docs", type=int, default=4, help="documents per task (0: all)")
    ap.add_argument("--leval-per-doc", type=int, default=1, help="questions per document (0: all)")
    ap.add_argument("--speed-lens", default="1024,2048,4096")
    ap.add_argument("--speed-repeats", type=int, default=3)
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--out", default=None, help="output path without suffix (default benchmarks/results/sdtp; "
                                                 "--quick/--smoke: a scratch folder)")
    ap.add_argument("--workers", type=int, default=1,
                    help="run the parts in this many parallel processes (one torch thread each is best), then "
                         "merge them into one report; the learned pruners are trained once, first, and the "
                         "speed part runs alone, last")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write to benchmarks/results from a tree with uncommitted changes (the report says DIRTY)")
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--quick", action="store_true")
    if pre.parse_known_args()[0].quick:
        ap.set_defaults(**QUICK)           # explicit flags still win
    args = ap.parse_args()
    if args.smoke and args.quick:
        raise SystemExit("--smoke and --quick are exclusive")
    if args.workers < 1:
        raise SystemExit(f"--workers must be >= 1, got {args.workers}")
    if args.out is None:
        args.out = (str(Path(tempfile.gettempdir()) / f"sdtp-{'quick' if args.quick else 'smoke'}" / "sdtp")
                    if args.quick or args.smoke else str(ROOT / "results" / "sdtp"))
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    log = logging.getLogger("bench")
    options = names(args.options, SELECTORS)
    parts = names(args.parts, PARTS)
    oracle_parts = names(args.oracle_parts, PARTS)
    git = git_state()          # the code that runs, before anything can change the tree
    results_dir = (ROOT / "results").resolve()
    if git["dirty"] and not args.allow_dirty and results_dir in Path(args.out).resolve().parents:
        raise SystemExit(f"the tree has uncommitted changes: a result in {results_dir} must come from committed "
                         "code (commit first, write elsewhere with --out, or pass --allow-dirty)")
    if args.smoke:
        args.model = "tiny-llama"
        budget = "tiny"
    else:
        budget = "cpu"
    train = {"train_steps": args.train_steps, "train_seq_len": 48 if args.smoke else args.train_seq_len,
             "train_cont_len": args.train_cont_len, "train_sequences": args.train_sequences,
             "prior_weight": args.prior_weight, "train_extra_lens": () if args.smoke else args.train_extra_lens,
             "target_top": args.target_top, "target_prior": args.target_prior,
             "prior_curve": args.prior_curve}
    cfg = make_config(args.preset, budget, **{k: v for k, v in train.items() if v is not None})
    model, tok = _load.load(args.model)
    model.requires_grad_(False)
    V = model.config.vocab_size
    encode = E.char_encoder(V) if tok is None else E.tokenizer_encoder(tok)
    data = "synthetic" if args.smoke else None
    test = token_stream(tok, "test", data, V)
    t0 = time.time()
    res: dict = {"options": options, "parts": parts}
    pruners = None
    if "learned" in options and cfg.pruner == "mlp":
        # training (or the feature cache) runs before the parts split: it may use every worker's thread
        torch.set_num_threads(args.threads * args.workers)
        pruners, res["pruner_info"] = get_learned(args, model, cfg, tok, log)
        torch.set_num_threads(args.threads)
    say = log.info
    groups = None
    groups, parts = split_parts(parts, args, len(options), args.workers)
    if groups:
        log.info("parts in %d processes: %s, then %s here", len(groups), groups, parts)
        res.update(run_children(groups, args, log))

    if "quality" in parts:
        win = chunks(test, args.windows, args.ctx + args.cont)
        t = time.time()
        res["quality"] = E.lm_quality(model, cfg, win, args.ctx, options, pruners, args.seed, log=say)
        res["quality"]["paired_vs_learned"] = paired_vs(res["quality"], "learned", args.seed)
        res["quality"]["wall_s"] = time.time() - t
    if "retrieval" in parts:
        ropts = (names(args.retrieval_options, options) if args.retrieval_options
                 else part_options(options, "retrieval", oracle_parts))
        res["retrieval"] = {}
        for kind in [k for k in args.retrieval_kinds.split(",") if k]:
            t = time.time()
            prompts = E.retrieval_prompts(encode, ints(args.retrieval_lens), floats(args.depths),
                                          args.retrieval_per, kind, args.seed)
            r = E.retrieval(model, cfg, prompts, ropts, pruners, args.seed, log=say)
            r["wall_s"] = time.time() - t
            res["retrieval"][kind] = r
    if "leval" in parts:
        if args.smoke:
            log.info("leval skipped in --smoke (needs PRUNELAB_DATA and a tokenizer)")
        else:
            t = time.time()
            res["leval"] = E.leval(model, cfg, encode, os.environ["PRUNELAB_DATA"], names(args.leval_tasks, E.LEVAL_TASKS),
                                   args.leval_len, part_options(options, "leval", oracle_parts), pruners,
                                   args.leval_docs or None, args.leval_per_doc or None,
                                   args.seed, log=say)
            res["leval"]["wall_s"] = time.time() - t
    if "speed" in parts:
        t = time.time()
        res["speed"] = E.speed(model, cfg, test, ints(args.speed_lens), [o for o in options if o in E.SPEED_SELECTORS],
                               pruners, args.speed_repeats, args.gen_tokens, seed=args.seed, log=say)
        res["speed"]["wall_s"] = time.time() - t

    import transformers
    meta = {"command": f"PRUNELAB_DATA={os.environ.get('PRUNELAB_DATA', '')} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} "
                       "PYTHONPATH=src python benchmarks/sdtp.py " + " ".join(sys.argv[1:]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(), "git": git, "seed": args.seed,
            "load_average_end": os.getloadavg(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "torch": torch.__version__, "transformers": transformers.__version__, "model": args.model,
            "preset": args.preset, "quick": args.quick, "smoke": args.smoke,
            "config": cfg.to_dict(), "total_wall_s": time.time() - t0, "workers": groups,
            "stage_layers": cfg.stage_layers(len(model.model.layers)), "oracle_parts": oracle_parts}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": res}, indent=1, default=str))
    out.with_suffix(".md").write_text(report(meta, res))
    log.info("wrote %s.json/.md (%.0fs)", out, meta["total_wall_s"])


# -- parallel parts ---------------------------------------------------------------------------------
def part_options(options: list[str], part: str, oracle_parts: list[str]) -> list[str]:
    """The options a part runs: all of them, less the oracle where it is not asked for."""
    return [o for o in options if o != "oracle" or part in oracle_parts]


def part_cost(part: str, args, n_options: int) -> float:
    """Rough cost of a part in token-forwards, only to balance the parts across processes."""
    if part == "quality":
        return args.windows * (args.ctx + args.cont) * (n_options + 1)
    if part == "retrieval":
        per = len(floats(args.depths)) * args.retrieval_per * len([k for k in args.retrieval_kinds.split(",") if k])
        return per * sum(ints(args.retrieval_lens)) * (n_options + 1)
    if part == "leval":
        tasks = len([t for t in args.leval_tasks.split(",") if t])
        return tasks * (args.leval_docs or 15) * (args.leval_per_doc or 13) * args.leval_len * (n_options + 1)
    return sum(ints(args.speed_lens)) * args.speed_repeats * n_options * 6        # speed: repeats, decode


def split_parts(parts: list[str], args, n_options: int, workers: int) -> tuple[list[list[str]], list[str]]:
    """(groups of parts for parallel child processes, parts this process runs after them). The
    speed part shares no core: it runs here, alone, once the others have finished (run beside
    another process, one selector's speedup/limit fell from 1.01 to 0.91)."""
    shared = [p for p in parts if p != "speed"]
    if workers < 2 or len(shared) < 2:
        return [], parts
    return part_groups(shared, args, n_options, workers), [p for p in parts if p == "speed"]


def part_groups(parts: list[str], args, n_options: int, workers: int) -> list[list[str]]:
    """Longest part first onto the least loaded process."""
    load = [[0.0, []] for _ in range(min(workers, len(parts)))]
    for p in sorted(parts, key=lambda p: -part_cost(p, args, n_options)):
        slot = min(load, key=lambda x: x[0])
        slot[0] += part_cost(p, args, n_options)
        slot[1].append(p)
    return [ps for _, ps in load if ps]


def child_argv(argv: list[str], drop=("--workers", "--parts", "--out")) -> list[str]:
    """`argv` without the flags (and their values) that the parent sets per child."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in drop:
            skip = True
            continue
        if any(a.startswith(d + "=") for d in drop):
            continue
        out.append(a)
    return out


def run_children(groups: list[list[str]], args, log) -> dict:
    """Run each group of parts in its own process (same flags, its own --parts and a scratch
    --out), wait for all, and return their merged results. A failed child fails the run."""
    tmp = Path(tempfile.mkdtemp(prefix="sdtp-parts-"))
    base = [sys.executable, str(Path(__file__).resolve()), *child_argv(sys.argv[1:])]
    procs = []
    for i, g in enumerate(groups):
        out = tmp / f"part{i}"
        logf = open(tmp / f"part{i}.log", "w")
        cmd = [*base, "--parts", ",".join(g), "--out", str(out), "--workers", "1"]
        procs.append((g, out, logf, subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)))
    merged: dict = {}
    for g, out, logf, p in procs:
        rc = p.wait()
        logf.close()
        if rc != 0:
            raise SystemExit(f"the process for parts {g} failed (exit {rc}); its log: {logf.name}")
        got = json.loads(out.with_suffix(".json").read_text())["results"]
        merged.update({k: got[k] for k in g if k in got})
        log.info("parts %s done (log %s)", g, logf.name)
    return merged


def paired_vs(q: dict, ref: str, seed: int) -> dict:
    """Paired bootstrap (same resampled windows) of ppl-rise(option) - ppl-rise(ref)."""
    by = q["by_selector"]
    if ref not in by:
        return {}
    M, dense = q["cont_len"], q["dense_nll_per_window"]
    out = {}
    for s, v in by.items():
        if s == ref:
            continue
        a, b = v["per_window"]["nll"], by[ref]["per_window"]["nll"]

        def diff(ix, a=a, b=b):
            n = M * len(ix)
            d = sum(dense[i] for i in ix)
            return math.exp((sum(a[i] for i in ix) - d) / n) - math.exp((sum(b[i] for i in ix) - d) / n)

        d, lo, hi = bootstrap_ci(diff, len(a), seed=seed)
        out[s] = {"rise_minus_ref": d, "ci": [lo, hi]}
    return out


def _ci(v, key, pct=False, digits=3):
    x, (lo, hi) = v[key], v[f"{key}_ci"]
    if pct:
        return f"{100 * x:+.1f}% [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    return f"{x:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def learned_label(c: dict) -> str:
    w, shape = c.get("prior_weight", 0.0), c.get("prior_curve", "log")
    return "learned pruners (SDTP" + (f", {shape} recency prior x{w:g} + MLP)" if w else ", MLP alone as in the paper)")


def reading(q: dict, labels: dict) -> list[str]:
    """What the quality numbers say, computed from them (no sentence here is fixed in advance)."""
    by = q["by_selector"]
    out = []
    ranked = sorted(by, key=lambda s: by[s]["ppl_rise"])
    out.append("- Perplexity rise, lowest first: " + ", ".join(
        f"{s} {100 * by[s]['ppl_rise']:+.1f}%" for s in ranked) + ".")
    same = {s: by[s]["final_tokens"] for s in by if s != "truncate"}
    if same:
        lo, hi = min(same.values()), max(same.values())
        out.append(f"- Tokens alive after the last stage (mean over windows): {lo:.1f}" +
                   (f" for every selector but truncate" if hi - lo < 0.5 else f" to {hi:.1f} (NOT the same counts)") +
                   (f"; truncate keeps {by['truncate']['final_tokens']:.1f} from layer 0 on, FLOPs limit "
                    f"{by['truncate']['flops_ratio']:.2f}x vs {by[next(iter(same))]['flops_ratio']:.2f}x ({next(iter(same))})"
                    if "truncate" in by else "") + ".")
    pv = q.get("paired_vs_learned", {})
    # truncate is matched on FLOPs, not on keep counts: it says nothing about token choice at equal counts
    resolved = {s: d for s, d in pv.items() if s != "truncate" and (d["ci"][0] > 0 or d["ci"][1] < 0)}
    if "learned" in by and "recency" in pv:
        d = pv["recency"]
        lo, hi = d["ci"]
        verdict = ("beats recency" if lo > 0 else "loses to recency" if hi < 0 else "is not resolved from recency")
        out.append(f"- The learned pruner {verdict}: rise(recency) - rise(learned) = "
                   f"{100 * d['rise_minus_ref']:+.1f} pts [{100 * lo:+.1f}, {100 * hi:+.1f}] over {q['windows']} windows.")
    if [s for s in pv if s != "truncate"]:
        if resolved:
            out.append("- At the same keep counts the choice of tokens changes the rise (rise(option) - "
                       "rise(learned) with a 95% CI that excludes 0: " + ", ".join(
                           f"{s} {100 * d['rise_minus_ref']:+.1f} pts" for s, d in resolved.items()) +
                       "), so the rise is not fixed by how much context is removed.")
        else:
            out.append(f"- No paired difference vs the learned pruner at the same keep counts is resolved at "
                       f"{q['windows']} windows: this run cannot separate which tokens are kept from how many.")
    if "truncate" in pv:
        d = pv["truncate"]
        lo, hi = d["ci"]
        verdict = ("above" if lo > 0 else "below" if hi < 0 else "not resolved from")
        out.append(f"- At the same prefill FLOPs, truncation's rise is {verdict} the learned pruner's: "
                   f"{100 * d['rise_minus_ref']:+.1f} pts [{100 * lo:+.1f}, {100 * hi:+.1f}].")
    return out


def report(meta: dict, res: dict) -> str:
    c = meta["config"]
    g = meta["git"]
    LABEL["learned"] = learned_label(c)
    scale = ("QUICK smoke configuration (--quick): checks the script end to end, the numbers are not a result"
             if meta.get("quick") else "SMOKE run on a tiny random model: not a result" if meta.get("smoke") else None)
    L = [f"# SDTP vs baselines on {meta['model']} (CPU)", "", *([f"**{scale}.**", ""] if scale else []),
         f"- command: `{meta['command']}`", f"- date: {meta['date']}", f"- machine: {meta['machine']}",
         f"- git: {g['sha']}{' (DIRTY tree: not a valid result)' if g['dirty'] else ''}; seed {meta['seed']}",
         f"- torch {meta['torch']}, transformers {meta['transformers']}, OMP_WAIT_POLICY={meta.get('omp_wait_policy')}; "
         f"total wall {meta['total_wall_s'] / 60:.1f} min; load average at the end "
         f"{', '.join(f'{x:.1f}' for x in meta['load_average_end'])}",
         *([f"- parts run in {len(meta['workers'])} parallel processes: {meta['workers']} (each part's wall time "
            "shares the machine with the others; speed figures are dense/pruned ratios measured interleaved "
            "inside one process" + ("; the speed part ran beside them" if any("speed" in g for g in meta["workers"])
                                     else "; the speed part ran alone afterwards") + ")"]
           if meta.get("workers") else []), "", "## Setup", "",
         f"- Preset `{meta['preset']}`: stages (0-indexed layers whose input is pruned) {meta['stage_layers']}, "
         f"keep {c['keep_ratio']} {c['keep_ratio_mode']}, first {c['protect_first']} + last "
         f"max({c['protect_last']}, {c['protect_last_frac']} x n) tokens protected "
         f"({'inside' if c['count_protected'] else 'outside'} the budget).",
         "- Every option runs through the same pruned prefill (per-layer KV caches of the survivors, original "
         "RoPE positions) with the same protected tokens and the same per-stage keep counts; `truncate` instead "
         "keeps the last k tokens from layer 0 on, k chosen so its prefill FLOPs do not exceed the learned "
         "schedule's. `oracle` scores each prompt by its own gradient saliency (a backward pass: a ceiling, "
         "not a deployable option, left out of the speed table; it runs in the parts "
         f"{meta.get('oracle_parts', PARTS)}, the others leave it out to save its cost).",
         "- Exact match is teacher-forced (every answer token is the argmax given the gold prefix; equal to "
         "greedy decoding starting with the answer)."]
    pi = res.get("pruner_info")
    if pi:
        seqs = c.get("train_sequences") or c["train_steps"] * c["train_batch_size"]
        data = {"mix": "the training mix (WikiText-2 valid, L-Eval documents, key-value prompts)",
                "wikitext": "WikiText-2 valid"}.get(c.get("train_data"), c.get("train_data"))
        L.append(f"- Learned pruners: " + (f"checkpoint `{pi['pruners']}`" if "pruners" in pi else
                 f"trained by the run path ({c['train_steps']} steps of batch {c['train_batch_size']} over {seqs} "
                 f"sequences of each of {', '.join(str(n) for n in [c['train_seq_len'], *(c.get('train_extra_lens') or [])])} "
                 f"tokens ({c['train_cont_len']} continuation) of {data}, "
                 f"train_mode {c.get('train_mode')}, config hash {pi.get('config_hash')}, "
                 f"{'from cache' if pi.get('pruners_cached') else 'trained in this run'})") + ".")
        w = c.get("prior_weight", 0.0)
        L.append(f"- Learned keep logit: " + (
            f"{w:g} x {c.get('prior_curve', 'log')} recency prior + an MLP residual whose last layer starts at zero "
            f"(prior_weight={w:g}, prior_curve={c.get('prior_curve', 'log')}, this "
            "project's default; not in the paper, whose pruner is the MLP alone: preset `paper-faithful`)." if w else
            "the MLP alone, as in the paper (prior_weight=0)."))
    opts = res["options"]
    q = res.get("quality")
    rt = res.get("retrieval", {})
    lv = res.get("leval")
    sp = res.get("speed")
    L += ["", "## All options", ""]
    head = ["option"]
    if q:
        head += [f"ppl rise [95% CI]", "KL [CI]", "top-1 [CI]", "tokens after last stage", "FLOPs limit"]
    for kind in rt:
        head += [f"{kind} EM", f"{kind} loglik"]
    if lv:
        head += [f"L-Eval {t} EM" for t in lv["tasks"]]
    if sp:
        for n in sp["by_len"]:
            head += [f"speedup/limit @{n}"]
    L += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for o in ["dense", *opts]:
        row = [LABEL.get(o, o)]
        if q:
            if o == "dense":
                row += [f"ppl {q['ppl_dense']:.3f}", "0", "1", str(q["ctx_len"]), "1.00x"]
            else:
                v = q["by_selector"][o]
                row += [_ci(v, "ppl_rise", pct=True), _ci(v, "kl"), _ci(v, "top1"), f"{v['final_tokens']:.1f}",
                        f"{v['flops_ratio']:.2f}x"]
        for kind, r in rt.items():
            v = r["by_selector"].get(o)
            row += [f"{v['em']:.2f} [{v['em_ci'][0]:.2f}, {v['em_ci'][1]:.2f}]", f"{v['loglik']:.2f}"] if v else ["-", "-"]
        if lv:
            for t, tv in lv["tasks"].items():
                v = tv["by_selector"].get(o)
                row.append(f"{v['em']:.2f} (n={v['n']})" if v else "-")
        if sp:
            for n, bl in sp["by_len"].items():
                v = bl.get(o)
                row.append("-" if o == "dense" or not v else
                           f"{v['speedup']:.2f}x / {v['flops_limit']:.2f}x = {v['speedup_over_limit']:.2f}")
        L.append("| " + " | ".join(row) + " |")
    if q:
        L += ["", f"Quality: WikiText-2 test, {q['windows']} windows, prefill {q['ctx_len']} context tokens with "
              f"pruning, then score the next {q['cont_len']} tokens through the pruned caches; ppl rise CI = "
              "percentile bootstrap over windows (2000 resamples), KL(dense || pruned) per token and top-1 "
              "agreement CIs = Student t over windows.", ""]
        pv = q.get("paired_vs_learned", {})
        if pv:
            L += ["Paired difference of ppl rise against the learned pruner (same windows resampled):", "",
                  "| option | rise(option) - rise(learned) [95% CI] | verdict |", "|---|---|---|"]
            for s, d in pv.items():
                lo, hi = d["ci"]
                verdict = ("learned better" if lo > 0 else "learned worse" if hi < 0 else "not resolved")
                L.append(f"| {LABEL.get(s, s)} | {100 * d['rise_minus_ref']:+.1f} pts [{100 * lo:+.1f}, {100 * hi:+.1f}] | {verdict} |")
        L += ["", "Reading (computed from the numbers above):", "", *reading(q, LABEL)]
    for kind, r in rt.items():
        cells = list(next(iter(r["by_selector"].values()))["cells"])
        L += ["", f"## Retrieval: {kind} ({r['n']} prompts), exact match / answer log-likelihood per length@depth", "",
              "| option | " + " | ".join(cells) + " |", "|---|" + "---|" * len(cells)]
        for o, v in r["by_selector"].items():
            L.append(f"| {LABEL.get(o, o)} | " + " | ".join(
                f"{v['cells'][k]['em']:.2f} / {v['cells'][k]['loglik']:.1f}" for k in cells) + " |")
    if lv:
        L += ["", f"## L-Eval closed-ended (documents cut to {lv['max_len']} tokens incl. the question)", "",
              "| task | option | n | EM [CI] | letter acc [CI] | answer loglik [CI] |", "|---|---|---|---|---|---|"]
        for t, tv in lv["tasks"].items():
            for o, v in tv["by_selector"].items():
                acc = _ci(v, "choice_acc", digits=2) if "choice_acc" in v else "-"
                L.append(f"| {t} | {LABEL.get(o, o)} | {v['n']} | {_ci(v, 'em', digits=2)} | {acc} | {_ci(v, 'loglik', digits=2)} |")
    if sp:
        L += ["", f"## Speed (batch 1; {sp['repeats']} interleaved repeats, speedup = median of per-repeat dense/option "
              f"ratios; TTFT = prefill time; e2e = prefill + {sp['gen_tokens']} greedy tokens)", "",
              "Timing does not depend on the pruners' weights: every option keeps the same number of tokens per "
              "stage (`truncate`: the same prefill FLOPs), so the learned row times the same pruned prefill however "
              "long its pruners were trained.", "",
              "| length | option | TTFT s | speedup | FLOPs limit | speedup / limit | e2e s (speedup) | KV cache MB (x dense) |",
              "|---|---|---|---|---|---|---|---|"]
        for n, bl in sp["by_len"].items():
            for o, v in bl.items():
                if o == "dense":
                    L.append(f"| {n} | dense | {v['ttft_s']:.2f} | - | - | - | {v.get('e2e_s', float('nan')):.2f} | "
                             f"{v['kv_bytes'] / 2**20:.1f} |")
                else:
                    L.append(f"| {n} | {LABEL.get(o, o)} | {v['ttft_s']:.2f} | {v['speedup']:.2f}x | {v['flops_limit']:.2f}x | "
                             f"{v['speedup_over_limit']:.2f} | {v.get('e2e_s', float('nan')):.2f} ({v.get('e2e_speedup', float('nan')):.2f}x) | "
                             f"{v['kv_bytes'] / 2**20:.1f} ({v['kv_ratio']:.2f}) |")
        L += ["", "Target: prefill speedup >= 0.95 x FLOPs limit at every length:", ""]
        for n, bl in sp["by_len"].items():
            for o, v in bl.items():
                if o != "dense":
                    x = v["speedup_over_limit"]
                    L.append(f"- @{n} {o}: {x:.2f} -> " + ("met" if x >= 0.95 else f"MISSED by {0.95 - x:.2f}"))
    L.append("")
    return "\n".join(L)


if __name__ == "__main__":
    main()
