"""One run, one record: check input and load model + data (prepare) -> claim the store row ->
attach method -> train with dev evals -> finalize (physical pruning / adapter merge) -> export
(--output-dir) -> measure inference -> write the row.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

import torch

from prunelab.config import RunConfig
from prunelab.errors import PrunelabError
from prunelab.progress import attach, phase
from prunelab.store import AlreadyDone, Store, environment
from prunelab.train import measure
from prunelab.train.loop import TrainingDiverged, set_seed, train


@dataclass
class RunContext:
    """What a method's build() may use besides the model: data, task, device."""
    config: RunConfig
    task: Any
    tokenizer: Any
    train_features: list
    dev_features: list
    device: torch.device


def is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available()).is_main_process   # as train()'s Accelerator


@dataclass
class Setup:
    """Everything a run needs that can be wrong because of the user's input (names, options,
    data), loaded before the store row is claimed: bad input then writes nothing."""
    method: Any
    method_config: Any
    task: Any = None
    loaded: Any = None
    dense_params: dict | None = None
    train_features: list | None = None
    dev_features: list | None = None


@dataclass
class Trained:
    """A finished run's deployable model and its training metrics (inference not measured yet)."""
    model: torch.nn.Module
    metrics: dict
    curve: list
    setup: Setup
    device: torch.device


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def run(config: RunConfig, store: Store | str | None = None, *, force: bool = False, progress=None) -> dict:
    """Execute `config` unless an identical run is already done; return its store row.

    Bad input (unknown model/task/method/option, missing data) raises PrunelabError before
    the row is claimed, so nothing is written; a failure during the run writes a failed row."""
    from prunelab.derived import with_derived

    config = config.resolve()
    store = store if isinstance(store, Store) else Store(store or "runs/prunelab.db")
    run_id = config.hash()
    existing = store.get(run_id)
    if existing and existing["status"] == "done" and not force:
        _link(store, config, run_id)
        deliver_cached_export(existing, config)
        return with_derived(existing, store)
    setup = prepare(config)
    if not is_main_process():   # another rank of `accelerate launch`: train in step, write nothing
        metrics, curve = execute(config, progress=progress, setup=setup)
        return {"id": run_id, "status": "done", "method": config.method, "model": config.model,
                "task": config.task, "seed": config.seed, "metrics": metrics, "curve": curve}
    _link(store, config, run_id)
    try:
        store.start(run_id, config.to_dict(), environment(config.seed, device_name()), force=force)
    except AlreadyDone:                   # another process finished it since we looked
        row = store.get(run_id)
        deliver_cached_export(row, config)
        return with_derived(row, store)
    progress = attach(progress, store, run_id)
    curve: list = []
    try:
        metrics, curve = execute(config, progress=progress, setup=setup)
    except TrainingDiverged as e:
        store.fail(run_id, f"diverged: {e}", curve)
    except PrunelabError as e:
        store.fail(run_id, str(e))
        raise
    except BaseException as e:  # KeyboardInterrupt too: never leave a 'done'
        store.fail(run_id, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}")
        raise
    else:
        store.finish(run_id, metrics, curve)
    row = with_derived(store.get(run_id), store)
    if row["status"] == "done" and (row.get("metrics") or {}).get("export_format"):
        from prunelab.model_card import write_model_card

        write_model_card(config.output_dir, row, setup.task.kind)    # README.md beside the export
    return row


def _link(store: Store, config: RunConfig, run_id: str) -> None:
    if config.study and config.cell and is_main_process():
        store.link(config.study, config.cell, config.seed, run_id)


def deliver_cached_export(row: dict, config: RunConfig) -> None:
    """A cached run asked for an --output-dir: copy the model it exported earlier there, or
    fail with the fix. Never report 'done' for a directory nothing was written to."""
    import shutil
    from pathlib import Path

    if not config.output_dir:
        return
    want = Path(config.output_dir)
    saved = (row.get("metrics") or {}).get("output_dir")
    if saved and (Path(saved) / "config.json").is_file():
        if want.resolve() != Path(saved).resolve():
            shutil.copytree(saved, want, dirs_exist_ok=True)
        return
    where = (f"; its export in {saved!r} is gone" if saved else "; it was run without --output-dir")
    raise PrunelabError(f"run {row['id']} is cached (done), so there is no trained model to write to "
                        f"{str(want)!r}{where}. Pass --force to re-train and export to {str(want)!r}")


def prepare(config: RunConfig) -> Setup:
    """Resolve names and load model and data (see Setup). Raises PrunelabError on bad input."""
    from prunelab.methods.registry import get_method
    from prunelab.models.load import load_model
    from prunelab.tasks import get_task

    set_seed(config.seed)
    method = get_method(config.method)
    method_config = method.make_config(config.method_args)
    if method.runner is not None:                 # e.g. SDTP: not a fine-tuning run; checks its own input
        return Setup(method, method_config)
    tc = config.train
    task = get_task(config.task)
    loaded = load_model(config.model, task)
    method.check_supports(task.kind, loaded.family.name)
    dense_params = measure.count_params(loaded.model)
    train_ex = task.load("train", config.data_dir, limit=tc.train_limit, seed=config.seed)
    dev_ex = task.load("dev", config.data_dir, limit=tc.eval_limit, seed=config.seed)
    train_features = task.encode(train_ex, loaded.tokenizer, tc.max_length)
    dev_features = task.encode(dev_ex, loaded.tokenizer, tc.max_length)
    return Setup(method, method_config, task, loaded, dense_params, train_features, dev_features)


def execute(config: RunConfig, progress=None, *, setup: Setup | None = None) -> tuple[dict, list]:
    """Train, export (before anything else can fail, so a trained model is never lost), then
    measure inference. Returns (metrics, curve)."""
    setup = setup or prepare(config)
    if setup.method.runner is not None:
        return setup.method.runner(config, setup.method_config)
    done = train_model(config, setup, progress=progress)
    metrics = done.metrics
    if config.output_dir and is_main_process():
        phase(progress, "export", path=config.output_dir)
        metrics.update(export_model(done.model, config.output_dir, setup.loaded.tokenizer))
    phase(progress, "measure")
    metrics.update(measure_inference(done.model, setup.task, setup.loaded.tokenizer, setup.dev_features,
                                     config, done.device))
    metrics["param_ratio"] = metrics["params"] / setup.dense_params["params"]
    return metrics, done.curve


def export_model(model, output_dir: str, tokenizer) -> dict:
    from prunelab.export import save_pruned

    result = save_pruned(model, output_dir, tokenizer)
    return {"output_dir": str(output_dir), "export_format": result.format}


def build_plugin(config: RunConfig, setup: Setup, device: torch.device):
    """The method's plugin and the model it prepared (adapters, masks), ready for the loop."""
    loaded = setup.loaded
    ctx = RunContext(config, setup.task, loaded.tokenizer, setup.train_features, setup.dev_features, device)
    plugin = setup.method.build(loaded, setup.method_config, ctx)
    set_seed(config.seed)                          # method set-up must not shift the data order
    return plugin, plugin.prepare(loaded.model.to(device))


def train_model(config: RunConfig, setup: Setup, progress=None, callbacks=()) -> Trained:
    """Build the method, train, finalize and score the deployable model on dev.
    `callbacks` are extra loop observers (the test battery's invariant checks)."""
    tc = config.train
    task, loaded = setup.task, setup.loaded
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    plugin, model = build_plugin(config, setup, device)
    trainable = measure.count_params(model)["params_trainable"]

    observers = list(callbacks)
    if config.log_dir:
        from prunelab.train.tensorboard import TensorBoardLogger

        observers.append(TensorBoardLogger(config.log_dir))
    # CPU: live tensor bytes, so CPU and CUDA training-memory ratios mean the same thing
    with measure.PeakMemory(device, kind="tensors") as mem:
        result = train(model, plugin, task, loaded.tokenizer, setup.train_features, setup.dev_features, config,
                       family=loaded.family, callbacks=observers, progress=progress)
    state = result.state
    phase(progress, "finalize")
    model = plugin.finalize(state.model)
    model.eval()
    release_training_memory(state)
    final = task.evaluate(model, setup.dev_features, loaded.tokenizer, tc.eval_batch_size, device)

    metrics = {
        "score": final["score"],
        **{f"dev_{k}": v for k, v in final.items() if k != "score"},
        "score_before_finalize": result.curve[-1]["score"] if result.curve else None,
        "best_score": state.best_score,
        "metric": task.metric,
        "higher_is_better": task.higher_is_better,
        "train_seconds": state.train_seconds,
        "train_cpu_seconds": state.train_cpu_seconds,
        "train_steps": state.step,
        "final_loss": state.loss.item() if state.loss is not None else None,
        "step_seconds": state.train_seconds / max(1, state.step),
        "train_peak_mem_mb": mem.peak_mb,
        "train_peak_mem_kind": mem.kind,
        "params_trainable_start": trainable,
        "dense_params": setup.dense_params["params"],
        **state.extra_metrics,
    }
    return Trained(model, metrics, result.curve, setup, device)


def release_training_memory(state) -> None:
    """Drop optimizer state, the last batch and its graph before inference is measured, so
    inference peak memory is the deployable model's, not the training leftovers'."""
    import gc

    state.optimizer = state.scheduler = state.batch = state.outputs = None
    state._rebuild = None
    if state.loss is not None:
        state.loss = state.loss.detach()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure_inference(model, task, tokenizer, dev_features, config, device) -> dict:
    """Throughput at fixed shapes and at the task's real lengths, peak memory, params, FLOPs."""
    mc = config.measure
    out = measure.count_params(model)
    out.pop("params_trainable", None)
    if mc.flops:
        out["flops_per_sample"] = measure.flops_per_sample(
            model, measure.dummy_inputs(model, 1, mc.seq_len, device))
    if not mc.throughput:
        return out
    if torch.device(device).type == "cpu":
        measure.trim_heap()
    with measure.PeakMemory(device, kind="rss") as mem:     # no tensor tracker around timed inference
        for bs in mc.batch_sizes:
            batch = measure.dummy_inputs(model, bs, mc.seq_len, device)
            thr = measure.throughputs(model, [batch], device, mc.warmup, mc.repeats, mc.min_seconds)
            out[f"throughput_bs{bs}"] = thr["wall"]
            if "cpu" in thr:     # one-thread CPU runs: samples per CPU second, immune to machine load
                out[f"throughput_cpu_bs{bs}"] = thr["cpu"]
        if mc.real_lengths and dev_features:
            batches = []
            for chunk in task.batches(dev_features, config.train.eval_batch_size, shuffle=False, seed=0):
                b = task.collate(chunk, tokenizer)
                b.pop("labels", None)
                b.pop("start_positions", None)
                b.pop("end_positions", None)
                b.update(measure.decoder_inputs(model, b["input_ids"].shape[0], "cpu"))
                batches.append({k: v.to(device) for k, v in b.items()})
            out["throughput_real"] = measure.throughput(model, batches, device, 1, max(1, mc.repeats // 2),
                                                        mc.min_seconds)
    if mem.kind == "cuda":
        out["inf_peak_mem_mb"], out["inf_peak_mem_kind"] = mem.peak_mb, mem.kind
    else:
        # the deployable footprint: the model's bytes plus what running it added; the process's
        # RSS (kept as inf_peak_rss_mb) also holds the interpreter and the training leftovers
        out["inf_peak_mem_mb"] = measure.model_memory_mb(model) + mem.rise_mb
        out["inf_peak_mem_kind"] = "cpu_model+activations"
        out["inf_peak_rss_mb"] = mem.peak_mb
    return out

