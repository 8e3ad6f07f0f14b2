"""Stand-ins for dry runs and tests: reference components and a simulated runner.

`reference_components("apt" | "sdtp")` lists the components, options and aliases the seed
plans (000-002, 004) need, so method authors can copy the aliases. `register_fake_methods()`
registers them as methods `fake_apt` / `fake_sdtp`. `fake_runner` has the signature of
`prunelab.run.run`, writes a store row with plausible metrics derived from the config, and
takes hints from the environment:
  PRUNELAB_FAKE_LOG=path      append 'hash cell seed' per executed run (tests count re-runs)
  PRUNELAB_FAKE_SLEEP=s       sleep this long inside the run
  PRUNELAB_FAKE_FAIL=text     fail runs whose cell label contains text
  PRUNELAB_FAKE_FAIL_ONCE=dir fail each run once (marker file in dir), succeed on retry
  PRUNELAB_FAKE_CRASH=text    kill the process (exit 3, row left 'running') for matching cells
  PRUNELAB_FAKE_SHIFT=text=d[,text=d]  score of matching cells: the full method's 0.90 + d (+ noise)
                              instead of the effect derived from the config (planted effects)
  PRUNELAB_FAKE_NOISE=text=a[,text=a]  seed noise of matching cells spans a instead of 0.01
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass

from prunelab.config import RunConfig
from prunelab.methods.registry import Component, Method, register_method
from prunelab.store import AlreadyDone, Store


def reference_components(method: str) -> dict[str, Component]:
    if method == "apt":
        comps = [
            Component("salience", "outlier_aware",
                      {"outlier_aware": {}, "standard": {"salience": "standard"},
                       "magnitude": {"salience": "magnitude"}, "gradient": {"salience": "gradient"},
                       "random": {"salience": "random"}, "uniform": {"salience": "uniform"}},
                      remove="standard",
                      aliases=["outlier-aware salience scoring", "salience score", "salience scoring function",
                               "pruning salience", "kurtosis"],
                      option_aliases={"standard": ["standard activation-gradient product salience",
                                                   "activation-gradient salience", "standard salience"],
                                      "magnitude": ["magnitude-based scoring", "weight magnitude"],
                                      "gradient": ["gradient-based scoring"],
                                      "random": ["random scoring"], "uniform": ["uniform scoring"]}),
            Component("tuning", "adaptive",
                      {"adaptive": {}, "static_initial": {"tuning": "static_initial"},
                       "static_mid": {"tuning": "static_mid"}, "static_final": {"tuning": "static_final"},
                       "uniform": {"tuning": "uniform"}},
                      remove="static_initial",
                      aliases=["adaptive tuning", "adaptive tuning mechanism", "dynamic rank", "adapter rank growth",
                               "dynamic parameter addition", "tuning parameters"],
                      option_aliases={"static_initial": ["fixed initial rank", "static parameter allocation",
                                                         "static rank"],
                                      "static_mid": ["fixed intermediate rank"],
                                      "static_final": ["fixed final rank"],
                                      "uniform": ["uniform parameter addition", "uniform rank growth"]}),
            Component("distill", "self",
                      {"self": {}, "none": {"distill": "none"}, "separate_teacher": {"distill": "separate_teacher"}},
                      remove="none",
                      aliases=["efficient self-knowledge distillation", "self-distillation", "knowledge distillation",
                               "distillation"],
                      option_aliases={"none": ["no distillation"],
                                      "separate_teacher": ["separate teacher", "static teacher", "frozen teacher"]}),
            Component("teacher_sharing", "shared", {"shared": {}, "separate": {"distill": "separate_teacher"}},
                      remove="separate", aliases=["parameter sharing", "teacher-student parameter sharing"]),
            Component("schedule", "early",
                      {"early": {}, "gradual": {"schedule": "gradual"}, "late": {"schedule": "late"},
                       "oneshot_init": {"schedule": "oneshot_init"}},
                      remove=None,
                      aliases=["early pruning schedule", "early pruning", "pruning schedule", "early-stage pruning",
                               "pruning timing"],
                      option_aliases={"gradual": ["prune gradually throughout training", "gradual pruning"],
                                      "late": ["late pruning", "prune all at once in the last quarter of training"],
                                      "oneshot_init": ["one-shot pruning at initialization"]}),
            Component("mask_update", "adaptive", {"adaptive": {}, "fixed": {"mask_update": "fixed"}},
                      remove="fixed",
                      aliases=["adaptive mask update", "pruning mask update", "update of pruning masks"],
                      option_aliases={"fixed": ["compute mask once at the very beginning and keep fixed",
                                                "fixed mask"]}),
            Component("pruning", "adaptive", {"adaptive": {}, "none": {"target_sparsity": 0.0}},
                      remove="none", aliases=["adaptive pruning", "structured pruning"]),
            Component("sparsity", "paper", {"paper": {}}, numeric="target_sparsity", numeric_range=(0.0, 0.95),
                      aliases=["pruning ratio", "sparsity", "target sparsity"]),
        ]
    elif method == "sdtp":
        comps = [
            Component("pruner", "learned", {"learned": {}, "saliency_only": {"pruner": "saliency_only"},
                                             "random": {"pruner": "random"}},
                      remove="saliency_only", aliases=["pruner", "learnable pruner", "token pruner", "importance"],
                      option_aliases={"saliency_only": ["saliency-only", "saliency baseline"],
                                      "random": ["random pruning"]}),
            Component("loss", "lm_mse_ranking",
                      {"lm_mse_ranking": {}, "lm_mse": {"loss": "lm_mse"}, "lm_ranking": {"loss": "lm_ranking"},
                       "lm": {"loss": "lm"}},
                      aliases=["loss", "loss function", "supervision", "ranking loss", "mse loss"],
                      option_aliases={"lm_mse": ["LM+MSE", "no ranking loss"], "lm_ranking": ["LM+Ranking", "no mse loss"],
                                      "lm": ["LM", "LM only", "only LM loss"]}),
            Component("keep_ratio", "paper", {"paper": {}}, numeric="keep_ratio", numeric_range=(0.05, 1.0),
                      aliases=["keep ratio", "ratio", "pruning ratio"]),
            Component("head_tail", "keep", {"keep": {}, "none": {"head_tail": False}}, remove="none",
                      aliases=["head/tail preserve", "head/tail preservation", "head tail tokens"]),
            Component("rope_fix", "on", {"on": {}, "off": {"rope_fix": False}}, remove="off",
                      aliases=["rope index fix", "rope index correction", "rope"]),
            Component("prune_layers", "multi", {"multi": {}, "single": {"prune_layers": "single"}},
                      aliases=["layer-wise pruning", "multi-layer pruning", "pruning layers"],
                      option_aliases={"single": ["single-layer pruning", "prune only L4", "single layer"]}),
            Component("mask", "hard", {"hard": {}, "soft": {"mask": "soft"}}, remove="soft",
                      aliases=["hard mask", "mask type"], option_aliases={"soft": ["soft mask only"]}),
            Component("mask_propagation", "on", {"on": {}, "local": {"mask_propagation": False}}, remove="local",
                      aliases=["mask propagation", "multi-layer mask propagation"],
                      option_aliases={"local": ["per-layer local"]}),
        ]
    else:
        raise ValueError(f"no reference components for {method!r}")
    return {c.name: c for c in comps}


@dataclass
class FakeAptConfig:
    salience: str = "outlier_aware"
    tuning: str = "adaptive"
    distill: str = "self"
    schedule: str = "early"
    mask_update: str = "adaptive"
    target_sparsity: float = 0.6


@dataclass
class FakeSdtpConfig:
    pruner: str = "learned"
    loss: str = "lm_mse_ranking"
    keep_ratio: float = 0.7
    head_tail: bool = True
    rope_fix: bool = True
    prune_layers: str = "multi"
    mask: str = "hard"
    mask_propagation: bool = True


def register_fake_methods() -> None:
    """Register `fake_apt` and `fake_sdtp` (reference components, no real training)."""
    for name, cls, comps in (("fake_apt", FakeAptConfig, "apt"), ("fake_sdtp", FakeSdtpConfig, "sdtp")):
        register_method(Method(name, cls, build=_no_build, components=reference_components(comps),
                               description=f"simulated {comps.upper()} for dry runs and tests"))


def _no_build(*args, **kwargs):  # pragma: no cover - the fake methods never train
    raise RuntimeError("fake methods run only through fake_runner")


# ----------------------------------------------------------------------------- runner

def _unit(*parts) -> float:
    """A stable pseudo-random number in [0, 1) from the parts."""
    h = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()
    return int(h[:8], 16) / 2 ** 32


def fake_metrics(config: RunConfig) -> tuple[dict, list]:
    args = config.method_args or {}
    score, speed, mem, time_s = 0.90, 2.0, 4000.0, 600.0
    for key, value in sorted(args.items()):
        default = _defaults(config.method).get(key, value)
        if value != default:
            u = _unit(key, value)
            score -= 0.01 + 0.04 * u
            speed *= 0.8 + 0.4 * _unit(value, key, "speed")
            time_s *= 0.9 + 0.3 * _unit(value, "time")
    sparsity = args.get("target_sparsity", args.get("keep_ratio"))
    if isinstance(sparsity, (int, float)) and not isinstance(sparsity, bool):
        score -= 0.05 * abs(sparsity - 0.6)
    shift = _env_for("PRUNELAB_FAKE_SHIFT", config.cell)
    if shift is not None:
        score = 0.90 + shift
    amp = _env_for("PRUNELAB_FAKE_NOISE", config.cell)
    noise = (_unit(config.seed, config.hash()) - 0.5) * (0.01 if amp is None else amp)
    score = round(score + noise, 4)
    if config.method == "ft":
        score, speed, time_s = 0.93 + noise, 1.0, 900.0
    metrics = {"score": score, "train_seconds": time_s, "train_peak_mem_mb": mem * (0.9 + 0.2 * _unit(args)),
               "train_peak_mem_kind": "cpu_rss", "throughput_bs32": 100.0 * speed, "throughput_bs128": 110.0 * speed,
               "inf_peak_mem_mb": 800.0, "params": 2.2e7 / speed, "params_nonemb": 1.0e7 / speed,
               "flops_per_sample": 2.0e9 / speed, "step_seconds": time_s / 300, "prefill_speedup": speed}
    curve = [{"step": k * 50, "seconds": time_s * k / 6, "score": score * (0.7 + 0.3 * k / 6)} for k in range(1, 7)]
    return metrics, curve


def _env_for(name: str, cell: str | None) -> float | None:
    """'text=value,text=value' in $name: the value of the first text the cell label contains."""
    for part in (os.environ.get(name) or "").split(","):
        text, _, value = part.rpartition("=")
        if text and text in (cell or ""):
            return float(value)
    return None


def _defaults(method: str) -> dict:
    cls = {"fake_apt": FakeAptConfig, "fake_sdtp": FakeSdtpConfig}.get(method)
    return dataclasses.asdict(cls()) if cls else {}


def fake_runner(config: RunConfig, store: Store | str, *, force: bool = False) -> dict:
    store = store if isinstance(store, Store) else Store(store)
    run_id = config.hash()
    row = store.get(run_id)
    if row and row["status"] == "done" and not force:
        return row
    try:
        store.start(run_id, config.to_dict(), {"fake": True, "seed": config.seed}, force=force)
    except AlreadyDone:
        return store.get(run_id)
    log = os.environ.get("PRUNELAB_FAKE_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{run_id} {config.cell} {config.seed}\n")
    time.sleep(float(os.environ.get("PRUNELAB_FAKE_SLEEP", "0") or 0))
    crash = os.environ.get("PRUNELAB_FAKE_CRASH")
    if crash and crash in (config.cell or ""):
        os._exit(3)
    fail = os.environ.get("PRUNELAB_FAKE_FAIL")
    once = os.environ.get("PRUNELAB_FAKE_FAIL_ONCE")
    error = None
    if fail and fail in (config.cell or ""):
        error = f"simulated failure for {config.cell}"
    elif once:
        marker = os.path.join(once, run_id)
        if not os.path.exists(marker):
            open(marker, "w").close()
            error = "simulated first-attempt failure"
    if error:
        store.fail(run_id, error)
    else:
        metrics, curve = fake_metrics(config)
        store.finish(run_id, metrics, curve)
    return store.get(run_id)
