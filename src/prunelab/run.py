"""One run, one record: build model -> attach method -> train with dev evals -> finalize
(physical pruning / adapter merge) -> measure inference -> write one store row.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

import torch

from prunelab.config import RunConfig
from prunelab.errors import PrunelabError
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


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def run(config: RunConfig, store: Store | str | None = None, *, force: bool = False, progress=None) -> dict:
    """Execute `config` unless an identical run is already done; return its store row."""
    from prunelab.derived import with_derived

    config = config.resolve()
    store = store if isinstance(store, Store) else Store(store or "runs/prunelab.db")
    run_id = config.hash()
    if config.study and config.cell and is_main_process():
        store.link(config.study, config.cell, config.seed, run_id)
    existing = store.get(run_id)
    if existing and existing["status"] == "done" and not force:
        return with_derived(existing, store)
    if not is_main_process():   # another rank of `accelerate launch`: train in step, write nothing
        metrics, curve = execute(config, progress=progress)
        return {"id": run_id, "status": "done", "method": config.method, "model": config.model,
                "task": config.task, "seed": config.seed, "metrics": metrics, "curve": curve}
    try:
        store.start(run_id, config.to_dict(), environment(config.seed, device_name()), force=force)
    except AlreadyDone:                   # another process finished it since we looked
        return with_derived(store.get(run_id), store)
    curve: list = []
    try:
        metrics, curve = execute(config, progress=progress)
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
    return with_derived(store.get(run_id), store)


def execute(config: RunConfig, progress=None) -> tuple[dict, list]:
    from prunelab.methods.registry import get_method
    from prunelab.models.load import load_model
    from prunelab.tasks import get_task

    set_seed(config.seed)
    method = get_method(config.method)
    method_config = method.make_config(config.method_args)
    if method.runner is not None:                 # e.g. SDTP: not a fine-tuning run
        return method.runner(config, method_config)

    tc = config.train
    task = get_task(config.task)
    loaded = load_model(config.model, task)
    dense_params = measure.count_params(loaded.model)
    train_ex = task.load("train", config.data_dir, limit=tc.train_limit, seed=config.seed)
    dev_ex = task.load("dev", config.data_dir, limit=tc.eval_limit, seed=config.seed)
    train_features = task.encode(train_ex, loaded.tokenizer, tc.max_length)
    dev_features = task.encode(dev_ex, loaded.tokenizer, tc.max_length)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    ctx = RunContext(config, task, loaded.tokenizer, train_features, dev_features, device)
    plugin = method.build(loaded, method_config, ctx)
    set_seed(config.seed)                          # method set-up must not shift the data order
    model = plugin.prepare(loaded.model.to(device))
    trainable = measure.count_params(model)["params_trainable"]

    observers = []
    if config.log_dir:
        from prunelab.train.tensorboard import TensorBoardLogger

        observers.append(TensorBoardLogger(config.log_dir))
    with measure.PeakMemory(device) as mem:
        result = train(model, plugin, task, loaded.tokenizer, train_features, dev_features, config,
                       family=loaded.family, callbacks=observers, progress=progress)
    state = result.state
    model = plugin.finalize(state.model)
    model.eval()
    release_training_memory(state)
    final = task.evaluate(model, dev_features, loaded.tokenizer, tc.eval_batch_size, device)

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
        "dense_params": dense_params["params"],
        **state.extra_metrics,
    }
    metrics.update(measure_inference(model, task, loaded.tokenizer, dev_features, config, device))
    metrics["param_ratio"] = metrics["params"] / dense_params["params"]
    if config.output_dir and is_main_process():
        from prunelab.export import save_pruned

        save_pruned(model, config.output_dir, loaded.tokenizer)
        metrics["output_dir"] = config.output_dir
    return metrics, result.curve


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
    with measure.PeakMemory(device) as mem:
        for bs in mc.batch_sizes:
            batch = measure.dummy_inputs(model, bs, mc.seq_len, device)
            out[f"throughput_bs{bs}"] = measure.throughput(model, [batch], device, mc.warmup, mc.repeats,
                                                           mc.min_seconds)
        if mc.real_lengths and dev_features:
            batches = []
            for chunk in task.batches(dev_features, config.train.eval_batch_size, shuffle=False, seed=0):
                b = task.collate(chunk, tokenizer)
                b.pop("labels", None)
                b.pop("start_positions", None)
                b.pop("end_positions", None)
                if getattr(model.config, "is_encoder_decoder", False):
                    b["decoder_input_ids"] = torch.full((b["input_ids"].shape[0], 1),
                                                        model.config.decoder_start_token_id or 0)
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

