"""Presets: the base RunConfig an ablation study starts from, per method.

  tiny   random tiny models (tiny-bert / tiny-llama), a few dozen examples, a handful of
         steps: a whole seed plan runs in minutes on a laptop CPU. Used by the tests.
  cpu    MiniLM-L6 on SST-2 (APT and the other encoder methods: 8,000 training examples, 250
         steps of batch 32, the full dev set; lr APT 2e-3, FT 5e-5, LoRA 5e-4, others 1e-3),
         SmolLM2-135M on WikiText-2 (SDTP, its `study` budget: pruners fitted on cached
         features of 16 sequences of 1,088 tokens, 500 steps; perplexity on 16 windows of 1024 +
         64 tokens; latency at 1024). Both budgets are calibrated: the baseline reaches >= 95% of
         its long-run score (encoder: 500 steps; SDTP: the cpu-budget pruner on the same windows,
         where seed 0 scored 18.78 against 18.74; benchmarks/study.py measures it per study). An
         encoder run takes ~2.5 min of one core (seed 000 at 5 seeds: 50 runs, about 1 h on 2
         cores), an SDTP run ~2.5 min, plus ~1 min for the first run of each seed (its features).
  paper  RoBERTa-base on GLUE (APT: 40 epochs, lr 2e-4, batch 32, weight decay 0.1, the
         method's `paper` preset) and LLaMA-2-7B for SDTP (the method's `paper` preset).
         Needs GPUs and the Hugging Face hub. T5-base runs: `--set model=t5-base task=cnn_dm`.

A method's own hyper-parameters come from its config class's PRESETS[preset] when it has
one (method_args={"preset": name}); the training budget comes from here. Encoder methods
other than FT also get a `reference` FT cell, which derived metrics (speedup, tta_s,
rel_acc) are computed against; SDTP measures its dense reference itself.
"""
from __future__ import annotations

from prunelab.config import RunConfig
from prunelab.errors import PrunelabError, unknown

PRESETS = ("tiny", "cpu", "paper")
DECODER_METHODS = ("sdtp", "fake_sdtp")
REFERENCE_METHOD = "ft"

_ENCODER = {
    "tiny": dict(model="tiny-bert", task="glue/sst2",
                 train=dict(max_steps=6, batch_size=8, eval_batch_size=16, train_limit=64, eval_limit=32,
                            eval_points=2, max_length=32, lr=1e-3),
                 measure=dict(batch_sizes=[32], seq_len=32, warmup=0, repeats=1, real_lengths=False, flops=False)),
    # calibrated (issue 12): 250 steps, where APT reached 0.965 of its 500-step benchmark mean on seed 0
    # (0.806 vs 0.835) and FT is past 0.97 of its own by step 150 (benchmarks/results/apt.json curves);
    # benchmarks/study.py prints the measured calibration of every committed study in its README
    "cpu": dict(model="minilm-l6", task="glue/sst2",
                train=dict(max_steps=250, batch_size=32, eval_batch_size=64, train_limit=8000, eval_limit=None,
                           eval_points=5, max_length=128, lr=1e-3),
                measure=dict(batch_sizes=[32, 128], seq_len=128, warmup=1, repeats=2, real_lengths=False,
                             flops=True)),
    "paper": dict(model="roberta-base", task="glue/sst2",
                  train=dict(epochs=40, batch_size=32, eval_batch_size=128, eval_points=40, max_length=128,
                             lr=2e-4, weight_decay=0.1),
                  measure=dict(batch_sizes=[32, 128], seq_len=128, warmup=5, repeats=20, real_lengths=True,
                               flops=True)),
}
_DECODER = {
    "tiny": dict(model="tiny-llama", task="wikitext2",
                 train=dict(max_steps=4, batch_size=1, eval_batch_size=2, train_limit=8, eval_limit=4,
                            eval_points=1, max_length=64),
                 measure=dict(batch_sizes=[1], seq_len=32, warmup=0, repeats=1, real_lengths=False, flops=False)),
    "cpu": dict(model="smollm2-135m", task="wikitext2",
                train=dict(max_steps=150, batch_size=1, eval_batch_size=1, eval_points=1, max_length=1024),
                measure=dict(batch_sizes=[1], seq_len=1024, warmup=1, repeats=3, real_lengths=False, flops=True)),
    "paper": dict(model="meta-llama/Llama-2-7b-hf", task="wikitext2",
                  train=dict(max_steps=1000, batch_size=1, eval_batch_size=1, eval_points=1, max_length=4096),
                  measure=dict(batch_sizes=[1], seq_len=4096, warmup=3, repeats=10, real_lengths=False,
                               flops=True)),
}
# learning rates that differ from the preset's (adapter methods learn with larger ones than FT)
# APT at 2e-3 on MiniLM-L6 / SST-2: better than 1e-3 at 80 steps (0.761/0.780 vs 0.726/0.739 without
# distillation, seeds 0/1) and at 500 steps (0.839 vs 0.817 on seed 0; benchmarks/apt.py)
_METHOD_LR = {"cpu": {"ft": 5e-5, "lora": 5e-4, "apt": 2e-3}, "paper": {"ft": 2e-5}}


def _check(preset: str) -> None:
    if preset not in PRESETS:
        raise unknown("preset", preset, PRESETS)


def _method_args(method: str, preset: str) -> dict:
    try:
        from prunelab.methods.registry import get_method

        presets = getattr(get_method(method).config_cls, "PRESETS", {}) or {}
    except PrunelabError:
        raise
    except Exception:  # noqa: BLE001 - a method module that fails to import is reported by get_method later
        presets = {}
    return {"preset": preset} if preset in presets else {}


def base_config(preset: str, method: str, overrides: dict | list | None = None) -> RunConfig:
    """The baseline RunConfig of `method` under `preset` (then `overrides`, e.g. ['model=minilm-l6'])."""
    _check(preset)
    table = _DECODER if method in DECODER_METHODS else _ENCODER
    d = dict(table[preset], method=method, method_args=_method_args(method, preset))
    if method in _METHOD_LR.get(preset, {}):
        d["train"] = dict(d["train"], lr=_METHOD_LR[preset][method])
    cfg = RunConfig.from_dict(d)
    return cfg.with_overrides(overrides) if overrides else cfg


def reference_config(preset: str, method: str, overrides: dict | list | None = None) -> RunConfig | None:
    """FT on the same model and task (derived metrics need it); None for methods that need none."""
    if method in DECODER_METHODS or method == REFERENCE_METHOD:
        return None
    shared = {k: v for k, v in _as_dict(overrides).items() if not k.startswith("method_args")}
    return base_config(preset, REFERENCE_METHOD, shared)


# The cheapest alternatives a method exists to beat, run beside every study of it (on the base
# config, same seeds): options of one of the method's components, with what they are.
TRIVIAL = {"sdtp": ("selector", {"recency": "first 4 + most recent tokens, the same keep counts",
                                 "truncate": "the last tokens only, from layer 0, the same prefill FLOPs"})}


def trivial_cells(method: str) -> dict:
    """name -> (text, method_args overrides) for build_matrix(trivial=...); {} when the method has none."""
    if method not in TRIVIAL:
        return {}
    from prunelab.methods.registry import components

    comp_name, options = TRIVIAL[method]
    comp = components(method).get(comp_name)
    if comp is None:
        return {}
    return {name: (text, comp.overrides(name)) for name, text in options.items()}


def _as_dict(overrides) -> dict:
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    from prunelab.config import parse_override

    return dict(parse_override(o) for o in overrides)


def describe(preset: str) -> str:
    _check(preset)
    e, d = _ENCODER[preset], _DECODER[preset]
    return (f"{preset}: encoder methods {e['model']} on {e['task']} ({_budget(e)}); "
            f"SDTP {d['model']} on {d['task']}")


def _budget(d: dict) -> str:
    t = d["train"]
    return f"{t['max_steps']} steps" if "max_steps" in t else f"{t.get('epochs')} epochs"
