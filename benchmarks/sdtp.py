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

    # full (after the pruner-training fix; hours on 2 shared cores)
    PRUNELAB_DATA=../shared/data PYTHONPATH=src .venv/bin/python benchmarks/sdtp.py --train-steps 200
    # with a saved pruner checkpoint (PrunerStack.save) instead of training
    ... benchmarks/sdtp.py --pruners path/to/pruners.safetensors
    # seconds, tiny-llama
    PYTHONPATH=src .venv/bin/python benchmarks/sdtp.py --smoke --out /tmp/sdtp-smoke

Writes <out>.json and <out>.md (default benchmarks/results/sdtp). Trained pruners are cached
under ~/.cache/prunelab/sdtp keyed by config hash (the run path's get_pruners).
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import subprocess
import sys
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
LABEL = {"learned": "learned pruners (SDTP)", "random": "random", "recency": "recency (4 sinks + most recent)",
         "attention": "attention of last 32 queries (SnapKV/H2O)", "oracle": "oracle: prompt gradient saliency",
         "truncate": "truncate (last tokens from layer 0, same FLOPs)", "dense": "dense"}


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
    valid = token_stream(tok, "valid", data, model.config.vocab_size)
    data_id = data or os.environ.get("PRUNELAB_DATA", "")
    key_extra = {"model": args.model, "fp": model_fingerprint(model), "seed": args.seed, "data": str(data_id)}
    t = time.time()
    stack, info = get_pruners(model, cfg, valid, key_extra, args.seed, cache_root())
    info["pruner_s"] = time.time() - t
    log.info("pruners: %s", info)
    return stack.to(dtype=model.dtype), info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny-llama, synthetic text, tiny sizes (seconds)")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--preset", default="paper", help="SDTP method preset (keep counts, stages, protected tokens)")
    ap.add_argument("--options", default=",".join(SELECTORS), help="token selectors to compare")
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pruners", help="PrunerStack checkpoint (.safetensors); default: train via the run path")
    ap.add_argument("--train-steps", type=int, default=200)
    ap.add_argument("--train-seq-len", type=int, default=256)
    ap.add_argument("--windows", type=int, default=64)
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--cont", type=int, default=64)
    ap.add_argument("--retrieval-kinds", default="passkey,kv")
    ap.add_argument("--retrieval-lens", default="1024,2048,4096")
    ap.add_argument("--depths", default="0.1,0.3,0.5,0.7,0.9")
    ap.add_argument("--retrieval-per", type=int, default=2, help="prompts per (kind, length, depth)")
    ap.add_argument("--retrieval-options", help="subset of --options for retrieval (default all)")
    ap.add_argument("--leval-tasks", default=",".join(E.LEVAL_TASKS))
    ap.add_argument("--leval-len", type=int, default=4096)
    ap.add_argument("--leval-docs", type=int, default=None, help="documents per task (default all)")
    ap.add_argument("--leval-per-doc", type=int, default=None, help="questions per document (default all)")
    ap.add_argument("--speed-lens", default="1024,2048,4096")
    ap.add_argument("--speed-repeats", type=int, default=3)
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--out", default=str(ROOT / "results" / "sdtp"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    log = logging.getLogger("bench")
    options = names(args.options, SELECTORS)
    parts = names(args.parts, PARTS)
    if args.smoke:
        args.model = "tiny-llama"
        budget = "tiny"
    else:
        budget = "cpu"
    cfg = make_config(args.preset, budget, train_steps=args.train_steps,
                      train_seq_len=args.train_seq_len if not args.smoke else 48)
    model, tok = _load.load(args.model)
    model.requires_grad_(False)
    V = model.config.vocab_size
    encode = E.char_encoder(V) if tok is None else E.tokenizer_encoder(tok)
    data = "synthetic" if args.smoke else None
    test = token_stream(tok, "test", data, V)
    t0 = time.time()
    git = git_state()          # the code that runs, before anything can change the tree
    res: dict = {"options": options, "parts": parts}
    pruners = None
    if "learned" in options and cfg.pruner == "mlp":
        pruners, res["pruner_info"] = get_learned(args, model, cfg, tok, log)
    say = log.info

    if "quality" in parts:
        win = chunks(test, args.windows, args.ctx + args.cont)
        t = time.time()
        res["quality"] = E.lm_quality(model, cfg, win, args.ctx, options, pruners, args.seed, log=say)
        res["quality"]["paired_vs_learned"] = paired_vs(res["quality"], "learned", args.seed)
        res["quality"]["wall_s"] = time.time() - t
    if "retrieval" in parts:
        ropts = names(args.retrieval_options, options) if args.retrieval_options else options
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
                                   args.leval_len, options, pruners, args.leval_docs, args.leval_per_doc,
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
            "preset": args.preset, "config": cfg.to_dict(), "total_wall_s": time.time() - t0,
            "stage_layers": cfg.stage_layers(len(model.model.layers))}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": res}, indent=1, default=str))
    out.with_suffix(".md").write_text(report(meta, res))
    log.info("wrote %s.json/.md (%.0fs)", out, meta["total_wall_s"])


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


def report(meta: dict, res: dict) -> str:
    c = meta["config"]
    g = meta["git"]
    L = [f"# SDTP vs baselines on {meta['model']} (CPU)", "",
         f"- command: `{meta['command']}`", f"- date: {meta['date']}", f"- machine: {meta['machine']}",
         f"- git: {g['sha']}{' (DIRTY tree: not a valid result)' if g['dirty'] else ''}; seed {meta['seed']}",
         f"- torch {meta['torch']}, transformers {meta['transformers']}, OMP_WAIT_POLICY={meta.get('omp_wait_policy')}; "
         f"total wall {meta['total_wall_s'] / 60:.1f} min; load average at the end "
         f"{', '.join(f'{x:.1f}' for x in meta['load_average_end'])}", "", "## Setup", "",
         f"- Preset `{meta['preset']}`: stages (0-indexed layers whose input is pruned) {meta['stage_layers']}, "
         f"keep {c['keep_ratio']} {c['keep_ratio_mode']}, first {c['protect_first']} + last "
         f"max({c['protect_last']}, {c['protect_last_frac']} x n) tokens protected "
         f"({'inside' if c['count_protected'] else 'outside'} the budget).",
         "- Every option runs through the same pruned prefill (per-layer KV caches of the survivors, original "
         "RoPE positions) with the same protected tokens and the same per-stage keep counts; `truncate` instead "
         "keeps the last k tokens from layer 0 on, k chosen so its prefill FLOPs do not exceed the learned "
         "schedule's. `oracle` scores each prompt by its own gradient saliency (a backward pass: a ceiling, "
         "not a deployable option, left out of the speed table).",
         "- Exact match is teacher-forced (every answer token is the argmax given the gold prefix; equal to "
         "greedy decoding starting with the answer)."]
    pi = res.get("pruner_info")
    if pi:
        L.append(f"- Learned pruners: " + (f"checkpoint `{pi['pruners']}`" if "pruners" in pi else
                 f"trained by the run path ({c['train_steps']} steps x {c['train_batch_size']} sequence of "
                 f"{c['train_seq_len']} tokens on WikiText-2 valid, config hash {pi.get('config_hash')}, "
                 f"{'from cache' if pi.get('pruners_cached') else 'trained in this run'})") + ".")
    opts = res["options"]
    q = res.get("quality")
    rt = res.get("retrieval", {})
    lv = res.get("leval")
    sp = res.get("speed")
    L += ["", "## All options", ""]
    head = ["option"]
    if q:
        head += [f"ppl rise [95% CI]", "KL [CI]", "top-1 [CI]", "FLOPs limit"]
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
                row += [f"ppl {q['ppl_dense']:.3f}", "0", "1", "1.00x"]
            else:
                v = q["by_selector"][o]
                row += [_ci(v, "ppl_rise", pct=True), _ci(v, "kl"), _ci(v, "top1"), f"{v['flops_ratio']:.2f}x"]
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
