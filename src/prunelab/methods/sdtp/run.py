"""run_sdtp: train (or load cached) pruners, evaluate, return one flat metrics dict.

Metric keys (dense = the unpruned model through HF's own forward for timings, through the
same layer loop for perplexities):
  ppl, ppl_dense, ppl_rel_increase    continuation perplexity (eval_cont_len tokens scored through
                                      the pruned caches after a pruned prefill of eval_ctx_len tokens)
  next_token_agreement                teacher-forced argmax agreement with dense on those tokens
  gen_agreement, gen_exact_match      greedy generations (gen_tokens after gen_ctx_len): share of
                                      positions equal to dense's / share of identical generations
  prefill_speedup, flops_ratio, speedup_over_flops_limit, prefill_latency_s, prefill_latency_dense_s
                                      at the largest latency length; per length with suffix _<n>
  e2e_latency_s, e2e_latency_dense_s, e2e_speedup   prefill + gen_tokens greedy tokens
  peak_mem_mb, peak_mem_dense_mb      CPU: RSS rise over one prefill at the largest latency length
                                      (freed heap trimmed first); CUDA: max allocated
  kv_cache_mb, kv_cache_dense_mb      analytic KV cache after prefill at eval_ctx_len
  compression                         1/tau = N / mean tokens per layer (eval_ctx_len)
  kept_per_stage, kept_frac_per_stage mean survivors after each stage (eval_ctx_len)
  comm_*                              pipeline bytes (metrics.pipeline_comm) at eval_ctx_len
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import math
import os
import statistics
import time
from pathlib import Path

import torch

from prunelab.errors import PrunelabError, unknown

from . import _load
from .config import SDTPConfig
from .data import chunks, token_stream, training_sequences
from .io import save_pruners
from .inference import continuation_logits, continuation_nll, dense_generate, dense_prefill, generate, prefill
from .metrics import compression, interleaved_times, kv_cache_bytes, paired_ratio, pipeline_comm, prefill_flops
from .modules import POS_FEATURES, PrunerStack
from .presets import budget_overrides
from .saliency import prompt_saliency
from .train import check_trainable, collect_features, compute_targets, train_pruners

log = logging.getLogger("prunelab.sdtp")
_DENSE_MEMO: dict[tuple, dict] = {}
_DTYPE_MEMO: dict[tuple, torch.nn.Module] = {}


def cache_root(cache_dir: str | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir)
    return Path(os.environ.get("PRUNELAB_CACHE", Path.home() / ".cache" / "prunelab")) / "sdtp"


def model_fingerprint(model) -> str:
    h = hashlib.sha1(model.config.to_json_string(use_diff=False).encode())
    w = model.model.embed_tokens.weight
    h.update(w.detach().flatten()[:256].float().cpu().numpy().tobytes())
    h.update(model.model.layers[-1].mlp.down_proj.weight.detach().flatten()[:256].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _model(name: str, dtype: str):
    model, tok = _load.load(name)
    if dtype == "float32":
        return model, tok
    key = (name, dtype)
    if key not in _DTYPE_MEMO:
        _DTYPE_MEMO[key] = copy.deepcopy(model).to(getattr(torch, dtype)).eval()
    return _DTYPE_MEMO[key], tok


def training_data(model, cfg: SDTPConfig, tok, data_dir: str | None, seed: int) -> list[torch.Tensor]:
    """One (M, length) tensor of cfg.train_data sequences per training length
    (cfg.train_lengths(); data.training_sequences). Extra lengths draw with their own seeds."""
    count = cfg.train_sequences or cfg.train_steps * cfg.train_batch_size
    return [training_sequences(tok, model.config.vocab_size, data_dir, cfg.train_data, count, n,
                               cfg.train_cont_len, seed=seed + 1000 * i)
            for i, n in enumerate(cfg.train_lengths())]


def cached_targets(model, cfg: SDTPConfig, data: torch.Tensor, key_extra: dict, seed: int, root: Path,
                   log_fn=None) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Saliency targets (and dense stage inputs for train_mode="cached") of one length's
    sequences `data` (M, T), computed once and cached on disk under root/saliency, keyed by
    model, data, lengths, stages and saliency kind."""
    stages = cfg.stage_layers(len(model.model.layers))
    T = data.size(1)
    ctx = T - cfg.train_cont_len
    feats = cfg.train_mode == "cached"
    data_sig = hashlib.sha1(data.numpy().tobytes()).hexdigest()[:16]
    skey = hashlib.sha1(repr((key_extra, stages, T, cfg.train_cont_len, tuple(data.shape), data_sig,
                              seed, cfg.dtype, cfg.saliency, feats)).encode()).hexdigest()[:16]
    spath = root / "saliency" / f"{skey}.pt"
    if spath.exists():
        blob = torch.load(spath)
        return blob["targets"], blob.get("features"), True
    if feats:
        targets, features = collect_features(model, data, stages, ctx, cfg.saliency, log=log_fn)
    else:
        targets, features = compute_targets(model, data, stages, ctx, log=log_fn, kind=cfg.saliency), None
    spath.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"targets": targets, "features": features}, spath)
    return targets, features, False


def get_pruners(model, cfg: SDTPConfig, tok, data_dir: str | None, key_extra: dict, seed: int, root: Path,
                train_seed: int | None = None) -> tuple:
    """Trained PrunerStack (from the cache keyed by config hash, else trained now) and train info.

    `seed` draws the training sequences (and so their cached features); `train_seed` (default:
    the same) sets the pruners' initialisation and step order only, so several training seeds
    share one feature cache: how much the result moves from training alone."""
    own = train_seed is not None and train_seed != seed
    key = cfg.hash({**key_extra, "train_seed": train_seed} if own else key_extra)
    path = root / "pruners" / f"{key}.safetensors"
    if path.exists():
        log.info("sdtp: loading cached pruners %s", path)
        return PrunerStack.load(str(path), model.config.hidden_size, cfg.pruner_hidden_frac), {"pruners_cached": True, "config_hash": key}
    check_trainable(cfg)    # before the minutes of feature collection
    data = training_data(model, cfg, tok, data_dir, seed)
    t0 = time.perf_counter()
    got = [cached_targets(model, cfg, d, key_extra, seed, root, log_fn=log.info) for d in data]
    targets, features, hit = [g[0] for g in got], [g[1] for g in got], all(g[2] for g in got)
    t1 = time.perf_counter()
    stack, hist = train_pruners(model, cfg, data, targets, seed=seed if train_seed is None else train_seed,
                                log=log.info, features=features if cfg.train_mode == "cached" else None)
    t2 = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    stack.save(str(path))
    last = hist[-1] if hist else {}
    info = {"pruners_cached": False, "config_hash": key, "saliency_s": t1 - t0, "saliency_cached": hit,
            "train_s": t2 - t1, "train_final_loss": last.get("loss"), "train_final_kept_frac": last.get("kept_frac"),
            "train_final_prob_frac": last.get("prob_frac"), "train_sequences": sum(int(d.size(0)) for d in data),
            "train_lengths": [int(d.size(1)) for d in data]}
    return stack, info


PARTS = ("quality", "speed", "memory", "generation")


def run_sdtp(config: SDTPConfig, model_name: str = "smollm2-135m", data_dir: str | None = None, seed: int = 0,
             budget: str | None = None, cache_dir: str | None = None, parts: tuple | list | None = None,
             output_dir: str | None = None) -> dict:
    """Train (or load cached) SDTP pruners for `config` on `model_name`, evaluate, return metrics.

    budget: None keeps the config's budget fields; "tiny"/"cpu" overrides them.
    data_dir: folder holding wikitext-2/ (default $PRUNELAB_DATA) or "synthetic".
    parts: which measurements to run (default all): quality, speed, memory, generation.
    output_dir: save the trained pruners with their config there (io.save_pruners; load with
    io.load_pruners or SDTPModel.from_pretrained).
    """
    if not isinstance(config, SDTPConfig):
        raise PrunelabError(f"run_sdtp needs an SDTPConfig, got {type(config).__name__}")
    parts = tuple(PARTS if parts is None else parts)
    for p in parts:
        if p not in PARTS:
            raise unknown("SDTP measurement part", p, PARTS)
    cfg = dataclasses.replace(config, **budget_overrides(budget)) if budget else config
    torch.manual_seed(seed)
    model, tok = _model(model_name, cfg.dtype)
    model.requires_grad_(False)
    V, L = model.config.vocab_size, len(model.model.layers)
    stages = cfg.stage_layers(L)
    root = cache_root(cache_dir)
    data_id = data_dir or os.environ.get("PRUNELAB_DATA", "")
    key_extra = {"model": model_name, "fp": model_fingerprint(model), "seed": seed, "data": str(data_id)}
    test = token_stream(tok, "test", data_dir, V)

    out: dict = {"method": "sdtp", "model": model_name, "seed": seed, "stage_layers": stages,
                 "num_stages": len(stages), "config_hash": cfg.hash(key_extra)}
    pruners = None
    if cfg.pruner == "mlp":
        pruners, info = get_pruners(model, cfg, tok, data_dir, key_extra, seed, root)
        if output_dir:
            save_pruners(pruners, cfg, output_dir, model_name, info={**info, "seed": seed, "fingerprint": key_extra["fp"]})
            out["output_dir"] = str(output_dir)
        pruners.to(dtype=getattr(torch, cfg.dtype))
        out.update(info)
    elif output_dir:
        raise PrunelabError(f"SDTP pruner {cfg.pruner!r} has nothing to save; --output-dir needs pruner 'mlp'")

    def kw(ids: torch.Tensor) -> dict:
        """Prefill arguments for one prompt; the saliency pruner scores it with a backward pass."""
        d = {"pruners": pruners, "generator": torch.Generator().manual_seed(seed)}
        if cfg.pruner == "saliency":
            d["saliency"] = prompt_saliency(model, ids, stages, cfg.train_cont_len)
        return d

    if "quality" in parts:
        out.update(_quality(model, cfg, test, kw, key_extra, root))
    if "speed" in parts:
        out.update(_speed(model, cfg, test, kw))
    if "memory" in parts:
        out.update(_memory(model, cfg, test, kw))
    if "generation" in parts:
        out.update(_generation(model, cfg, test, kw))
    return out


def _quality(model, cfg: SDTPConfig, test: torch.Tensor, kw, key_extra: dict, root: Path) -> dict:
    """Continuation perplexity and teacher-forced agreement; kept counts, FLOPs, comm at eval_ctx_len."""
    N, M = cfg.eval_ctx_len, cfg.eval_cont_len
    win = chunks(test, cfg.eval_samples, N + M)
    # the dense reference depends on the model, data and windows, not the run's seed: memoised in
    # the process and cached on disk, so every cell of a study (one process each) reuses it
    dkey = (tuple(sorted((k, v) for k, v in key_extra.items() if k != "seed")), N, M, cfg.eval_samples, cfg.dtype)
    path = root / "dense" / f"{hashlib.sha1(repr(dkey).encode()).hexdigest()[:16]}.pt"
    if dkey not in _DENSE_MEMO and path.exists():
        _DENSE_MEMO[dkey] = torch.load(path, weights_only=True)
    if dkey not in _DENSE_MEMO:
        nll, cnt, argmax = 0.0, 0, []
        for w in win:
            lg, _ = continuation_logits(model, cfg, w[None, :N], w[None, N:], prune=False)
            a, b = continuation_nll(lg, w[None, N:])
            nll, cnt = nll + a, cnt + b
            argmax.append(lg.argmax(-1))
        _DENSE_MEMO[dkey] = {"nll": nll, "count": cnt, "argmax": argmax}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")     # whole file or none: parallel cells
        torch.save(_DENSE_MEMO[dkey], tmp)
        os.replace(tmp, path)
    dense = _DENSE_MEMO[dkey]
    nll, cnt, agree, kept, tokens = 0.0, 0, [], [], []
    for i, w in enumerate(win):
        ctx = w[None, :N]
        lg, st = continuation_logits(model, cfg, ctx, w[None, N:], **kw(ctx))
        a, b = continuation_nll(lg, w[None, N:])
        nll, cnt = nll + a, cnt + b
        agree.append(float((lg.argmax(-1) == dense["argmax"][i]).float().mean()))
        kept.append([int(k[0]) for k in st.kept_per_stage])
        tokens.append(st.layer_tokens)
    ppl, ppl_dense = math.exp(nll / cnt), math.exp(dense["nll"] / dense["count"])
    kept_mean = [statistics.mean(col) for col in zip(*kept)] if kept and kept[0] else []
    layer_tokens = [statistics.mean(col) for col in zip(*tokens)]
    mc = model.config
    nbytes = torch.finfo(model.dtype).bits // 8
    pf = _pruner_flops(model, cfg)
    fl = prefill_flops(mc, layer_tokens, cfg.stage_layers(len(layer_tokens)), pf)
    fl_dense = prefill_flops(mc, [N] * len(layer_tokens))
    res = {"ppl": ppl, "ppl_dense": ppl_dense, "ppl_rel_increase": ppl / ppl_dense - 1.0,
           "next_token_agreement": statistics.mean(agree),
           "kept_per_stage": kept_mean, "kept_frac_per_stage": [k / N for k in kept_mean],
           "final_keep_frac": (kept_mean[-1] / N) if kept_mean else 1.0,
           "compression": compression(N, layer_tokens),
           "flops_ratio_eval": fl_dense / fl, "prefill_gflops": fl / 1e9, "prefill_gflops_dense": fl_dense / 1e9,
           "kv_cache_mb": kv_cache_bytes(mc, layer_tokens, nbytes) / 2**20,
           "kv_cache_dense_mb": kv_cache_bytes(mc, [N] * len(layer_tokens), nbytes) / 2**20,
           "eval_ctx_len": N, "eval_cont_len": M, "eval_samples": cfg.eval_samples}
    res.update(pipeline_comm(mc, [int(round(t)) for t in layer_tokens], N, cfg.pipeline_devices, nbytes,
                             cfg.pipeline_prune_before_boundary))
    return res


def _pruner_flops(model, cfg: SDTPConfig) -> int:
    if cfg.pruner != "mlp":
        return 0
    d = model.config.hidden_size
    inner = max(1, int(d * cfg.pruner_hidden_frac))
    d_in = d + (POS_FEATURES if cfg.pos_features else 0)
    return 2 * (d_in * inner + inner * 2)


def _speed(model, cfg: SDTPConfig, test: torch.Tensor, kw) -> dict:
    """Prefill latency, dense vs pruned, interleaved; FLOPs limit from the same prompts."""
    res: dict = {}
    mc = model.config
    pf = _pruner_flops(model, cfg)
    for n in cfg.latency_lens:
        ids = chunks(test, 1, n)
        args = kw(ids) if cfg.pruner != "saliency" else None
        def pruned(ids=ids, args=args):
            return prefill(model, cfg, ids, **(args if args is not None else kw(ids)))
        times = interleaved_times({"dense": lambda ids=ids: dense_prefill(model, ids), "pruned": pruned},
                                  cfg.latency_repeats)
        _, st = pruned()
        fl = prefill_flops(mc, st.layer_tokens, st.stage_layers, pf)
        fl_dense = prefill_flops(mc, [n] * len(st.layer_tokens))
        sp = paired_ratio(times["dense"], times["pruned"])
        res.update({f"prefill_speedup_{n}": sp, f"flops_ratio_{n}": fl_dense / fl,
                    f"speedup_over_flops_limit_{n}": sp / (fl_dense / fl),
                    f"prefill_latency_s_{n}": statistics.median(times["pruned"]),
                    f"prefill_latency_dense_s_{n}": statistics.median(times["dense"])})
    top = max(cfg.latency_lens)
    for k in ("prefill_speedup", "flops_ratio", "speedup_over_flops_limit", "prefill_latency_s", "prefill_latency_dense_s"):
        res[k] = res[f"{k}_{top}"]
    res["latency_len"] = top
    return res


def _memory(model, cfg: SDTPConfig, test: torch.Tensor, kw) -> dict:
    """Peak memory of one prefill at the largest latency length, dense vs pruned (each warmed up).

    CPU: the rise of the process RSS over the phase, after returning freed heap pages to the
    OS (otherwise glibc reuses them and the rise reads 0). CUDA: max allocated.
    """
    from prunelab.train.measure import PeakMemory, trim_heap

    res: dict = {}
    ids = chunks(test, 1, max(cfg.latency_lens))
    device = next(model.parameters()).device
    for name, fn in (("peak_mem_dense_mb", lambda: dense_prefill(model, ids)),
                     ("peak_mem_mb", lambda: prefill(model, cfg, ids, **kw(ids)))):
        fn()
        trim_heap()
        base = _rss_mb() if device.type == "cpu" else 0.0
        with PeakMemory(device) as pm:
            fn()
        res[name] = pm.peak_mb - base
    res["peak_mem_kind"] = pm.kind
    res["peak_mem_len"] = max(cfg.latency_lens)
    return res


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _generation(model, cfg: SDTPConfig, test: torch.Tensor, kw) -> dict:
    """End-to-end latency (prefill + greedy tokens) and agreement of greedy generations."""
    # offset by half a window so these prompts differ from the perplexity windows
    win = chunks(test[cfg.gen_ctx_len // 2:], cfg.gen_samples, cfg.gen_ctx_len)
    T = cfg.gen_tokens
    match, exact, t_dense, t_pruned = [], [], [], []
    dense_generate(model, win[:1], 2)          # warm-up
    generate(model, cfg, win[:1], 2, **kw(win[:1]))
    for w in win:
        ids = w[None]
        t = time.perf_counter()
        g_dense = dense_generate(model, ids, T)
        t_dense.append(time.perf_counter() - t)
        t = time.perf_counter()
        g = generate(model, cfg, ids, T, **kw(ids))
        t_pruned.append(time.perf_counter() - t)
        match.append(float((g == g_dense).float().mean()))
        exact.append(float(bool((g == g_dense).all())))
    return {"gen_agreement": statistics.mean(match), "gen_exact_match": statistics.mean(exact),
            "e2e_latency_s": statistics.median(t_pruned), "e2e_latency_dense_s": statistics.median(t_dense),
            "e2e_speedup": paired_ratio(t_dense, t_pruned), "gen_tokens": T, "gen_ctx_len": cfg.gen_ctx_len}
