"""Metric text in plans -> metric keys of the results store, with display units.

Choices (the plans' words are loose; each mapping is deliberate):
  "Avg. Performance", "task performance", "performance", "score", "F1", "ROUGE"
                                          -> score; SDTP: perplexity (ppl), lower is better
  "accuracy"                              -> score; SDTP: accuracy (else next-token agreement)
  "perplexity", "ppl"                     -> perplexity (falls back to score on LM tasks), lower is better
  "Training Time (min)", "training time"  -> train_seconds, shown in min (s/h when the text says so)
  "Peak Memory (GB)", "memory footprint", "training memory usage", "memory usage"
                                          -> train_peak_mem_mb, shown in GB (MB when the text says MB)
  "Inference Memory"                      -> inf_peak_mem_mb, shown in GB
  "Inference Speedup", "inference speed", "Inference efficiency", "speed"
                                          -> speedup (inference throughput / FT throughput);
                                             for SDTP: prefill_speedup, falling back to speedup
  "convergence speed", "Training efficiency", "Pruning efficiency", "time to accuracy"
                                          -> tta_s: seconds of training until the dev score reaches
                                             97% of FT's (how fast the pruned model recovers)
  "throughput"                            -> throughput_bs32 (bs128 when the text says 128)
  "relative accuracy"                     -> rel_acc (score / FT score), in %
  "parameters", "model size"              -> params (M); "non-embedding" -> params_nonemb
  "FLOPs", "MACs"                         -> flops_per_sample (G); SDTP: prefill_gflops
  "latency"                               -> SDTP: prefill_latency_s ("end-to-end"/"generation" ->
                                             e2e_latency_s); others: step_seconds
  "communication", "bytes"                -> comm_bytes (MB)
  "memory" (SDTP)                         -> inf_peak_mem_mb (SDTP's peak_mem_mb)
  "end-to-end speedup"                    -> e2e_speedup
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from prunelab.ablation.text import norm
from prunelab.errors import PrunelabError


@dataclass
class MetricSpec:
    key: str
    label: str
    unit: str
    scale: float = 1.0                   # displayed = stored * scale
    higher_is_better: bool = True
    keys: tuple = ()                     # keys tried in a row's metrics, first present wins
    needs_reference: bool = False        # derived from an FT reference run
    # a done run without this value never reached it within the budget (time-to-accuracy): a mean
    # over the runs that did would flatter a method that often fails, so tables say "k of n"
    censored: bool = False

    def __post_init__(self):
        if not self.key or not self.label:
            raise ValueError("a metric needs a key and a label")
        if not self.keys:
            self.keys = (self.key,)
        if self.scale <= 0:
            raise ValueError(f"metric {self.key}: scale must be > 0")

    def with_unit(self, unit: str, scale: float) -> "MetricSpec":
        return MetricSpec(self.key, self.label, unit, scale, self.higher_is_better, self.keys, self.needs_reference,
                          self.censored)


SPECS = {s.key: s for s in [
    MetricSpec("score", "Score", ""),
    MetricSpec("accuracy", "Accuracy", "", keys=("accuracy", "next_token_agreement", "score")),
    MetricSpec("perplexity", "Perplexity", "", higher_is_better=False, keys=("perplexity", "ppl", "score")),
    MetricSpec("rel_acc", "Relative accuracy", "%", 100.0, needs_reference=True),
    MetricSpec("train_seconds", "Training time", "min", 1 / 60, higher_is_better=False),
    MetricSpec("tta_s", "Time to 97% of FT", "min", 1 / 60, higher_is_better=False, needs_reference=True,
               censored=True),
    MetricSpec("train_peak_mem_mb", "Peak training memory", "GB", 1 / 1024, higher_is_better=False),
    MetricSpec("inf_peak_mem_mb", "Inference memory", "GB", 1 / 1024, higher_is_better=False,
               keys=("inf_peak_mem_mb", "peak_mem_mb")),
    MetricSpec("speedup", "Inference speedup", "x", needs_reference=True),
    MetricSpec("prefill_speedup", "Prefill speedup", "x", keys=("prefill_speedup", "speedup")),
    MetricSpec("throughput_bs32", "Throughput (bs 32)", "samples/s"),
    MetricSpec("throughput_bs128", "Throughput (bs 128)", "samples/s"),
    MetricSpec("params", "Parameters", "M", 1e-6, higher_is_better=False),
    MetricSpec("params_nonemb", "Non-embedding parameters", "M", 1e-6, higher_is_better=False),
    MetricSpec("flops_per_sample", "FLOPs per sample", "GFLOPs", 1e-9, higher_is_better=False),
    MetricSpec("prefill_gflops", "Prefill FLOPs", "GFLOPs", higher_is_better=False),
    MetricSpec("e2e_speedup", "End-to-end speedup", "x"),
    MetricSpec("step_seconds", "Step time", "s", higher_is_better=False),
    MetricSpec("prefill_latency_s", "Prefill latency", "s", higher_is_better=False),
    MetricSpec("e2e_latency_s", "End-to-end latency", "s", higher_is_better=False),
    MetricSpec("comm_bytes", "Communication", "MB", 1 / 2 ** 20, higher_is_better=False),
]}

# (pattern on normalised text, key, key for SDTP plans); first match wins
_RULES = [
    (r"relative acc", "rel_acc", "rel_acc"),
    (r"perplexity|\bppl\b", "perplexity", "perplexity"),
    (r"time to acc|\btta\b|converg|training efficien|pruning efficien|train efficien", "tta_s", "tta_s"),
    (r"prefill.*speed|speed.*prefill", "prefill_speedup", "prefill_speedup"),
    (r"prefill.*(latency|time)", "prefill_latency_s", "prefill_latency_s"),
    (r"(end to end|e2e|generation).*latency|latency.*(end to end|e2e|generation)", "e2e_latency_s",
     "e2e_latency_s"),
    (r"(end to end|e2e|generation).*speed", "e2e_speedup", "e2e_speedup"),
    (r"latency", "step_seconds", "prefill_latency_s"),
    (r"prefill.*flop", "prefill_gflops", "prefill_gflops"),
    (r"\bflops?\b|\bmacs?\b|compute cost", "flops_per_sample", "prefill_gflops"),
    (r"communicat|\bbytes\b|transfer", "comm_bytes", "comm_bytes"),
    (r"inference.*mem|mem.*inference|serving mem", "inf_peak_mem_mb", "inf_peak_mem_mb"),
    (r"(train|peak|fine ?tun).*mem|mem.*(train|footprint|usage)|\bvram\b|gpu mem", "train_peak_mem_mb",
     "inf_peak_mem_mb"),
    (r"\bmemory\b|\bmem\b", "train_peak_mem_mb", "inf_peak_mem_mb"),
    (r"throughput", "throughput_bs32", "throughput_bs32"),
    (r"inference.*(speed|efficien)|speed ?up|\bspeed\b|faster|inference time", "speedup", "prefill_speedup"),
    (r"step time|time per step|seconds per step", "step_seconds", "step_seconds"),
    (r"train.*time|fine ?tun.*time|wall ?clock|time cost|\btraining cost", "train_seconds", "train_seconds"),
    (r"non ?emb.*param", "params_nonemb", "params_nonemb"),
    (r"param|model size|\bsize\b|sparsity|compression", "params", "params"),
    (r"\baccuracy\b|\bacc\b", "score", "accuracy"),
    (r"perform|\bscore\b|\bf1\b|rouge|\bexact match\b|\bem\b|\bdev\b|quality|\bglue\b|\bmetric\b", "score",
     "perplexity"),
]
_UNITS = [(r"\(\s*gb\s*\)|\bgb\b|gib", "GB", 1 / 1024), (r"\(\s*mb\s*\)|\bmb\b|mib", "MB", 1.0),
          (r"\(\s*min\s*\)|\bmin(ute)?s?\b", "min", 1 / 60), (r"\(\s*h\s*\)|\bhours?\b", "h", 1 / 3600),
          (r"\(\s*s\s*\)|\bsec(ond)?s?\b", "s", 1.0)]
_MEM_KEYS = ("train_peak_mem_mb", "inf_peak_mem_mb")
_TIME_KEYS = ("train_seconds", "tta_s")


@dataclass
class MetricRef:
    text: str                 # as written in the plan
    spec: MetricSpec
    note: str = field(default="")

    @property
    def key(self) -> str:
        return self.spec.key

    def to_dict(self) -> dict:
        return {"text": self.text, "key": self.spec.key, "unit": self.spec.unit, "scale": self.spec.scale,
                "label": self.spec.label, "higher_is_better": self.spec.higher_is_better,
                "keys": list(self.spec.keys), "censored": self.spec.censored}


def is_censored(metric: dict) -> bool:
    """Whether a missing value of a done run means "not reached" (studies registered before the
    flag was stored fall back to the metric's spec)."""
    if "censored" in metric:
        return bool(metric["censored"])
    spec = SPECS.get(metric.get("key", ""))
    return bool(spec and spec.censored)


def resolve_metric(text: str, method: str | None = None) -> MetricRef:
    """'Peak Memory (GB)' -> train_peak_mem_mb shown in GB; PrunelabError when nothing fits."""
    t = norm(text).replace("avg.", "avg").replace("%", " percent ")
    if not t:
        raise PrunelabError("empty metric name")
    sdtp = is_sdtp(method)
    key = None
    for pattern, k, k_sdtp in _RULES:
        if re.search(pattern, t):
            key = k_sdtp if sdtp else k
            break
    if key is None:
        key = _fuzzy(t)
    if key is None:
        raise PrunelabError(
            f"metric {text!r} not understood; known: {', '.join(sorted(SPECS))} "
            f"(or words like performance, training time, peak memory, inference speedup)")
    spec = SPECS[key]
    low = str(text).lower()
    for pattern, unit, factor in _UNITS:
        if re.search(pattern, low):
            if key in _MEM_KEYS and unit in ("GB", "MB"):
                spec = spec.with_unit(unit, factor)
            elif key in _TIME_KEYS and unit in ("min", "h", "s"):
                spec = spec.with_unit(unit, factor)
            break
    return MetricRef(text=str(text), spec=spec)


def _fuzzy(t: str) -> str | None:
    phrases = {"accuracy": "score", "performance": "score", "training time": "train_seconds",
               "memory": "train_peak_mem_mb", "speedup": "speedup", "throughput": "throughput_bs32",
               "parameters": "params", "perplexity": "perplexity", "latency": "step_seconds",
               "convergence": "tta_s"}
    for word in t.split():
        near = difflib.get_close_matches(word, list(phrases), n=1, cutoff=0.8)
        if near:
            return phrases[near[0]]
    key = t.replace(" ", "_")
    return key if key in SPECS else None


def is_sdtp(method: str | None) -> bool:
    """Token-pruning methods report LM metrics (perplexity, prefill speedup, ...)."""
    return "sdtp" in (method or "").lower()


def default_metrics(method: str | None) -> list[str]:
    """Metrics used when an ablation lists none."""
    if is_sdtp(method):
        return ["Performance", "Prefill speedup", "Prefill FLOPs"]
    return ["Avg. Performance", "Training Time (min)", "Peak Memory (GB)", "Inference Speedup",
            "Inference Memory"]
