"""SDTP evaluation suite: every token selector (the learned pruner and its baselines) through
the same pruned prefill, with the same protected tokens and keep counts (truncate: the same
prefill FLOPs), on tasks that can tell a good token choice from a cheap one.

  lm_quality   continuation perplexity, KL(dense || pruned) and top-1 agreement with the dense
               model on WikiText windows; per-window values, 95% CIs (bootstrap over windows
               for the perplexity rise, Student t for KL and top-1)
  retrieval    generated passkey / key-value prompts, the needle at a chosen depth of a
               prompt of a chosen length, the question at the end: answer log-likelihood and
               exact match. Recency (and truncation) cannot see a needle that lies before the
               most recent kept span, so they fail there by construction
  leval        L-Eval closed-ended tasks (tpo, quality, coursera: multiple choice; topic
               retrieval), the document truncated to fit, scored by answer log-likelihood and
               exact match (and letter accuracy for single-answer multiple choice)
  speed        prefill time (= time to first token), end-to-end latency with greedy decoding,
               analytic FLOPs limit and measured KV-cache bytes, dense vs every selector

Exact match is teacher-forced: every answer token is the argmax given the gold prefix. This is
the same as "greedy decoding starts with the answer", without a second generation pass.
"""
from __future__ import annotations

import json
import math
import random
import re
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from prunelab.errors import PrunelabError, unknown

from .config import SDTPConfig
from .inference import continuation_logits, decode, dense_prefill, learned_scorer_flops, prefill
from .metrics import bootstrap_ci, interleaved_times, mean_ci, paired_ratio, prefill_flops, selector_prefill_flops
from .select import SELECTORS

SPEED_SELECTORS = tuple(s for s in SELECTORS if s != "oracle")   # the oracle needs a backward pass


def prefill_kwargs(model, cfg: SDTPConfig, selector: str, ids: torch.Tensor, pruners=None, seed: int = 0,
                   saliency_window: int | None = None) -> dict:
    """Arguments for ``prefill`` that make `selector` work on prompt `ids` (the oracle and a
    saliency-configured learned option get the prompt's gradient saliency here)."""
    if selector not in SELECTORS:
        raise unknown("SDTP selector", selector, SELECTORS)
    d = {"selector": selector, "generator": torch.Generator().manual_seed(seed)}
    if selector == "learned" and cfg.pruner == "mlp":
        if pruners is None:
            raise PrunelabError("SDTP selector 'learned' needs trained pruners (pass pruners=...)")
        d["pruners"] = pruners
    if selector == "oracle" or (selector == "learned" and cfg.pruner == "saliency"):
        from .saliency import prompt_saliency

        d["saliency"] = prompt_saliency(model, ids, cfg.stage_layers(len(model.model.layers)),
                                        saliency_window or cfg.train_cont_len)
    return d


def _flops(model, cfg: SDTPConfig, selector: str, layer_tokens: list, stage_layers: list) -> float:
    return selector_prefill_flops(model.config, layer_tokens, stage_layers, selector, cfg.pruner,
                                  learned_scorer_flops(model, cfg))


def _summary_flops(model, cfg, selector, tokens: list[list[int]], stages: list[int], n: int) -> dict:
    lt = [statistics.mean(col) for col in zip(*tokens)]
    fl = _flops(model, cfg, selector, lt, stages)
    fl_dense = prefill_flops(model.config, [n] * len(lt))
    return {"flops_ratio": fl_dense / fl, "prefill_gflops": fl / 1e9, "compression": n / statistics.mean(lt),
            "final_tokens": lt[-1], "layer_tokens": lt}


# -- (a) continuation perplexity, KL, top-1 -------------------------------------------------
@torch.no_grad()
def lm_quality(model, cfg: SDTPConfig, windows: torch.Tensor, ctx_len: int, selectors, pruners=None,
               seed: int = 0, log: Callable[[str], None] | None = None) -> dict:
    """Per selector: ppl, ppl rise over dense (bootstrap CI over windows), KL(dense||pruned) per
    token and top-1 agreement (t-intervals over windows), FLOPs; plus per-window values."""
    per = {s: {"nll": [], "kl": [], "top1": [], "tokens": [], "stages": None} for s in selectors}
    dense_nll = []
    t0 = time.perf_counter()
    for w_i, w in enumerate(windows):
        ctx, cont = w[None, :ctx_len], w[None, ctx_len:]
        dl, _ = continuation_logits(model, cfg, ctx, cont, prune=False)
        dlp = F.log_softmax(dl.float(), -1)
        dense_nll.append(float(-dlp.gather(-1, cont[..., None]).sum()))
        for s in selectors:
            lg, st = continuation_logits(model, cfg, ctx, cont, **prefill_kwargs(model, cfg, s, ctx, pruners, seed))
            lp = F.log_softmax(lg.float(), -1)
            per[s]["nll"].append(float(-lp.gather(-1, cont[..., None]).sum()))
            per[s]["kl"].append(float((dlp.exp() * (dlp - lp)).sum(-1).mean()))
            per[s]["top1"].append(float((lg.argmax(-1) == dl.argmax(-1)).float().mean()))
            per[s]["tokens"].append(st.layer_tokens)
            per[s]["stages"] = st.stage_layers
        if log:
            log(f"lm_quality window {w_i + 1}/{len(windows)} ({time.perf_counter() - t0:.0f}s)")
    M = windows.size(1) - ctx_len
    out = {"windows": len(windows), "ctx_len": ctx_len, "cont_len": M,
           "ppl_dense": math.exp(sum(dense_nll) / (M * len(windows))), "by_selector": {}}
    for s in selectors:
        nll = per[s]["nll"]

        def rise(ix, nll=nll):
            return math.exp(sum(nll[i] - dense_nll[i] for i in ix) / (M * len(ix))) - 1.0

        r, rlo, rhi = bootstrap_ci(rise, len(nll), seed=seed)
        kl, klo, khi = mean_ci(per[s]["kl"])
        klo = max(0.0, klo)                     # KL >= 0
        t1, tlo, thi = _clip01(mean_ci(per[s]["top1"]))
        out["by_selector"][s] = {
            "ppl": math.exp(sum(nll) / (M * len(nll))), "ppl_rise": r, "ppl_rise_ci": [rlo, rhi],
            "kl": kl, "kl_ci": [klo, khi], "top1": t1, "top1_ci": [tlo, thi],
            **_summary_flops(model, cfg, s, per[s]["tokens"], per[s]["stages"] or [], ctx_len),
            "per_window": {"nll": nll, "kl": per[s]["kl"], "top1": per[s]["top1"]}}
    out["dense_nll_per_window"] = dense_nll
    return out


# -- (b) generated retrieval ------------------------------------------------------------------
PASSKEY_FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
PASSKEY_HEAD = ("There is an important piece of information hidden inside a lot of irrelevant text. "
                "Find it and memorize it. I will quiz you about it.\n")


def char_encoder(vocab_size: int) -> Callable[[str], list[int]]:
    """Tokenizer stand-in for random tiny models: characters modulo the vocabulary."""
    return lambda text: [ord(c) % vocab_size for c in text]


def tokenizer_encoder(tokenizer) -> Callable[[str], list[int]]:
    return lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]


def retrieval_prompts(encode: Callable[[str], list[int]], lengths, depths, per_cell: int, kind: str = "passkey",
                      seed: int = 0) -> list[dict]:
    """Prompts of (at most, kv; exactly, passkey) `length` tokens with a needle at `depth`
    (fraction of the haystack before it; `needle_frac`: of the whole prompt) and the question at
    the end; the answer is scored as a continuation.

    passkey: a repeated filler with "The pass key is NNNNN ..." inside.
    kv:      lines "key <hex>: value <hex>", the queried line at `depth` (every line looks alike,
             so only the question says which one matters).
    """
    if kind not in ("passkey", "kv"):
        raise unknown("retrieval kind", kind, ("passkey", "kv"))
    rng = random.Random(seed)
    head = encode(PASSKEY_HEAD if kind == "passkey" else
                  "Below is a list of keys and values. Remember them; I will ask for the value of one key.\n")
    filler_unit = encode(PASSKEY_FILLER)
    out = []
    for n in lengths:
        for d in depths:
            for _ in range(per_cell):
                if kind == "passkey":
                    key = str(rng.randint(10000, 99999))
                    needle = encode(f" The pass key is {key}. Remember it. {key} is the pass key. ")
                    tail = encode("\nWhat is the pass key? The pass key is")
                    answer = encode(f" {key}")
                    room = n - len(head) - len(needle) - len(tail)
                    if room < 2:
                        raise PrunelabError(f"retrieval prompt length {n} is too short")
                    hay = (filler_unit * (room // len(filler_unit) + 1))[:room]
                    cut = int(round(d * room))
                    ids = head + hay[:cut] + needle + hay[cut:] + tail
                else:
                    lines, total = [], 0     # (key, value, tokens)
                    tail_len = len(encode("\nWhat is the value of key 00000000? The value of key 00000000 is value"))
                    while total < n - len(head) - tail_len:
                        k, v = f"{rng.getrandbits(32):08x}", f"{rng.getrandbits(32):08x}"
                        t = encode(f"key {k}: value {v}\n")
                        lines.append((k, v, t))
                        total += len(t)
                    if len(lines) > 1:
                        lines = lines[:-1]
                    q = min(len(lines) - 1, int(d * len(lines)))
                    key, val = lines[q][0], lines[q][1]
                    tail = encode(f"\nWhat is the value of key {key}? The value of key {key} is value")
                    answer = encode(f" {val}")
                    ids = head + [t for L in lines for t in L[2]] + tail
                    frac = (len(head) + sum(len(L[2]) for L in lines[:q])) / len(ids)
                needle_frac = frac if kind == "kv" else (len(head) + cut) / len(ids)
                out.append({"kind": kind, "length": n, "depth": d, "needle_frac": needle_frac, "ids": ids[-n:],
                            "answer": answer})
    return out


@torch.no_grad()
def answer_scores(model, cfg: SDTPConfig, ctx: list[int], answer: list[int], selector: str | None,
                  pruners=None, seed: int = 0, choices: list[int] | None = None) -> dict:
    """Answer log-likelihood (sum over its tokens), teacher-forced exact match, and (with
    `choices`, first-token ids of the options) whether the gold first token wins among them."""
    c = torch.tensor([ctx])
    a = torch.tensor([answer])
    if selector is None:
        lg, st = continuation_logits(model, cfg, c, a, prune=False)
    else:
        lg, st = continuation_logits(model, cfg, c, a, **prefill_kwargs(model, cfg, selector, c, pruners, seed))
    lp = F.log_softmax(lg.float(), -1)
    res = {"loglik": float(lp.gather(-1, a[..., None]).sum()), "em": float(bool((lg.argmax(-1) == a).all())),
           "tokens": st.layer_tokens, "stages": st.stage_layers}
    if choices:
        first = lg[0, 0, choices]
        res["choice_acc"] = float(choices[int(first.argmax())] == answer[0])
    return res


def _clip01(ci: tuple) -> tuple:
    """A t-interval of a 0/1 rate, clipped to [0, 1] (tiny n makes it wider than the range)."""
    m, lo, hi = ci
    return m, max(0.0, lo), min(1.0, hi)


def _cell_summary(rows: list[dict]) -> dict:
    ll, llo, lhi = mean_ci([r["loglik"] for r in rows])
    em, elo, ehi = _clip01(mean_ci([r["em"] for r in rows]))
    out = {"n": len(rows), "loglik": ll, "loglik_ci": [llo, lhi], "em": em, "em_ci": [elo, ehi]}
    if rows and "choice_acc" in rows[0]:
        acc = [r["choice_acc"] for r in rows if "choice_acc" in r]
        a, alo, ahi = _clip01(mean_ci(acc))
        out.update({"choice_acc": a, "choice_acc_ci": [alo, ahi], "choice_n": len(acc)})
    return out


@torch.no_grad()
def retrieval(model, cfg: SDTPConfig, prompts: list[dict], selectors, pruners=None, seed: int = 0,
              log: Callable[[str], None] | None = None) -> dict:
    """Answer log-likelihood and exact match per selector (and dense), overall and per (length, depth)."""
    rows: dict[str, list] = {s: [] for s in ["dense", *selectors]}
    t0 = time.perf_counter()
    for i, p in enumerate(prompts):
        for s in rows:
            r = answer_scores(model, cfg, p["ids"], p["answer"], None if s == "dense" else s, pruners, seed)
            r.update({"length": p["length"], "depth": p["depth"]})
            rows[s].append(r)
        if log:
            log(f"retrieval prompt {i + 1}/{len(prompts)} ({time.perf_counter() - t0:.0f}s)")
    out = {"kind": prompts[0]["kind"] if prompts else None, "n": len(prompts), "by_selector": {}}
    for s, rs in rows.items():
        cells = {}
        for key in sorted({(r["length"], round(r["depth"], 2)) for r in rs}):
            cells[f"{key[0]}@{key[1]}"] = _cell_summary([r for r in rs if (r["length"], round(r["depth"], 2)) == key])
        out["by_selector"][s] = {**_cell_summary(rs), "cells": cells,
                                 "per_prompt": [{k: r[k] for k in ("length", "depth", "loglik", "em")} for r in rs]}
    return out


# -- (c) L-Eval closed-ended --------------------------------------------------------------------
LEVAL_TASKS = {"tpo": "mc", "quality": "mc", "coursera": "mc", "topic_retrieval_longchat": "topic"}


def leval_items(data_dir: str, task: str, max_docs: int | None = None, per_doc: int | None = None) -> list[dict]:
    """(document, question, gold answer) triples of an L-Eval closed-ended task.

    Multiple choice golds are reduced to their option letters ('(B) ...' -> 'B', 'ABD' stays)."""
    if task not in LEVAL_TASKS:
        raise unknown("L-Eval task", task, LEVAL_TASKS)
    path = Path(data_dir) / "leval" / f"{task}.jsonl"
    if not path.exists():
        raise PrunelabError(f"L-Eval file not found: {path}")
    items = []
    for d_i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if max_docs is not None and d_i >= max_docs:
            break
        doc = json.loads(line)
        for q_i, (q, a) in enumerate(zip(doc["instructions"], doc["outputs"])):
            if per_doc is not None and q_i >= per_doc:
                break
            if LEVAL_TASKS[task] == "mc":
                m = re.match(r"^\s*\(?([A-D]+)\)?", a)
                if not m:
                    continue
                a = m.group(1)
            items.append({"task": task, "doc": doc["input"], "question": q.strip(), "answer": a.strip()})
    return items


def leval_prompt(encode: Callable[[str], list[int]], item: dict, max_len: int) -> tuple[list[int], list[int]]:
    """(context ids of at most max_len tokens, answer ids): the document's beginning, then the
    question. The document is cut (from its end) to make room for the question."""
    mc = LEVAL_TASKS[item["task"]] == "mc"
    instr = "\nAnswer with the letter of the correct option." if mc else "\nAnswer with the topic name only."
    q = encode(f"\n\nQuestion: {item['question']}{instr}\nAnswer:")
    doc = encode("Document:\n" + item["doc"])
    room = max_len - len(q)
    if room < 16:
        raise PrunelabError(f"L-Eval question of {len(q)} tokens does not fit a context of {max_len}")
    return doc[:room] + q, encode(" " + item["answer"])


@torch.no_grad()
def leval(model, cfg: SDTPConfig, encode, data_dir: str, tasks, max_len: int, selectors, pruners=None,
          max_docs: int | None = None, per_doc: int | None = None, seed: int = 0,
          log: Callable[[str], None] | None = None) -> dict:
    """Per task and selector (and dense): answer log-likelihood, exact match, letter accuracy."""
    letters = [encode(f" {c}") for c in "ABCD"]
    choice_ids = [t[0] for t in letters] if all(len(t) == 1 for t in letters) else None
    out: dict = {"max_len": max_len, "tasks": {}}
    t0 = time.perf_counter()
    for task in tasks:
        items = leval_items(data_dir, task, max_docs, per_doc)
        rows: dict[str, list] = {s: [] for s in ["dense", *selectors]}
        for i, it in enumerate(items):
            ctx, ans = leval_prompt(encode, it, max_len)
            ch = choice_ids if (LEVAL_TASKS[task] == "mc" and len(it["answer"]) == 1) else None
            for s in rows:
                rows[s].append(answer_scores(model, cfg, ctx, ans, None if s == "dense" else s, pruners, seed, ch))
            if log:
                log(f"leval {task} {i + 1}/{len(items)} ({time.perf_counter() - t0:.0f}s)")
        out["tasks"][task] = {"n": len(items), "by_selector": {s: _cell_summary(rs) for s, rs in rows.items()}}
    return out


# -- (5) speed ------------------------------------------------------------------------------------
def cache_bytes(cache) -> int:
    """Bytes of keys and values held by a (Dynamic)Cache."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if t is not None:
                total += t.numel() * t.element_size()
    return total


@torch.no_grad()
def speed(model, cfg: SDTPConfig, stream: torch.Tensor, lens, selectors, pruners=None, repeats: int = 3,
          gen_tokens: int = 16, e2e_repeats: int = 1, seed: int = 0,
          log: Callable[[str], None] | None = None) -> dict:
    """Per prompt length: dense and per-selector prefill time (= time to first token, the first
    token being the argmax of the prefill logits), interleaved repeats; speedup (median of
    per-repeat ratios) against the analytic FLOPs limit; e2e latency (prefill + gen_tokens
    greedy tokens); KV-cache bytes after prefill (measured)."""
    from .data import chunks
    from .inference import dense_generate, generate

    out: dict = {"repeats": repeats, "gen_tokens": gen_tokens, "by_len": {}}
    for n in lens:
        ids = chunks(stream, 1, n)
        kws = {s: prefill_kwargs(model, cfg, s, ids, pruners, seed) for s in selectors}
        fns = {"dense": lambda ids=ids: dense_prefill(model, ids)}
        for s in selectors:
            fns[s] = lambda s=s, ids=ids: prefill(model, cfg, ids, **kws[s])
        times = interleaved_times(fns, repeats)
        _, dcache = dense_prefill(model, ids)
        res = {"dense": {"ttft_s": statistics.median(times["dense"]), "kv_bytes": cache_bytes(dcache)}}
        fl_dense = prefill_flops(model.config, [n] * len(model.model.layers))
        e2e_fns = {"dense": lambda ids=ids: dense_generate(model, ids, gen_tokens)}
        for s in selectors:
            e2e_fns[s] = lambda s=s, ids=ids: generate(model, cfg, ids, gen_tokens, **kws[s])
        e2e = interleaved_times(e2e_fns, e2e_repeats, warmup=0) if gen_tokens > 0 else None
        if e2e:
            res["dense"]["e2e_s"] = statistics.median(e2e["dense"])
        for s in selectors:
            _, st = prefill(model, cfg, ids, **kws[s])
            limit = fl_dense / _flops(model, cfg, s, st.layer_tokens, st.stage_layers)
            sp = paired_ratio(times["dense"], times[s])
            res[s] = {"ttft_s": statistics.median(times[s]), "speedup": sp, "flops_limit": limit,
                      "speedup_over_limit": sp / limit, "kv_bytes": cache_bytes(st.cache),
                      "kv_ratio": cache_bytes(st.cache) / max(1, res["dense"]["kv_bytes"])}
            if e2e:
                res[s].update({"e2e_s": statistics.median(e2e[s]), "e2e_speedup": paired_ratio(e2e["dense"], e2e[s])})
        out["by_len"][str(n)] = res
        if log:
            log(f"speed @{n}: " + ", ".join(f"{s} {res[s]['speedup']:.2f}x/{res[s]['flops_limit']:.2f}x"
                                            for s in selectors))
    return out
