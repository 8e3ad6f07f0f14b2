"""The Python API: prune your model on your data in one call.

    import prunelab
    from prunelab.methods.apt import APTConfig

    result = prunelab.prune("minilm-l6", method="apt", config=APTConfig(sparsity=0.6),
                            train_data="reviews.jsonl", max_steps=300)
    result.model                 # the pruned, merged model (a transformers PreTrainedModel)
    result.metrics["score"]      # dev score of that model; result.record is the whole store row
    result.save_pretrained("out/reviews-apt")

It builds the same RunConfig as `prunelab train` and runs it through the same code, so the
run lands in the store (cached by its config hash) like any CLI run.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

from prunelab.errors import PrunelabError

DEV_SPLITS = ("validation", "dev", "valid", "test")


@dataclass
class PruneResult:
    model: Any            # the exported model reloaded (None for methods that export no model)
    tokenizer: Any
    record: dict          # the store row: config, metrics, curve, environment
    path: str             # where the export lies

    @property
    def metrics(self) -> dict:
        return self.record.get("metrics") or {}

    def save_pretrained(self, out_dir: str) -> str:
        """Copy the export (weights, config, tokenizer, loading code) to out_dir."""
        if os.path.abspath(out_dir) != os.path.abspath(self.path):
            shutil.copytree(self.path, out_dir, dirs_exist_ok=True)
        return out_dir


def _rows(data) -> list[dict]:
    """A list of dicts from a path, a datasets.Dataset, a pandas DataFrame or a list of dicts."""
    from prunelab.tasks.custom import read_rows

    if isinstance(data, (str, os.PathLike)):
        return read_rows(os.fspath(data))
    if hasattr(data, "to_dict") and hasattr(data, "columns"):          # pandas
        return data.to_dict("records")
    if isinstance(data, list):
        return data
    try:                                                              # datasets.Dataset and friends
        return [dict(r) for r in data]
    except TypeError:
        raise PrunelabError(f"train/eval data must be a path, a datasets.Dataset, a DataFrame or a list of "
                            f"dicts, got {type(data).__name__}") from None


def _task_name(task, train_data, eval_data, text, text_pair, label, metric) -> str:
    from prunelab.tasks.custom import data_task, file_spec, holdout

    if task is not None:
        if train_data is not None:
            raise PrunelabError("give either task= (a registered task) or train_data=, not both")
        return str(task)
    if train_data is None:
        raise PrunelabError("prune() needs task= (e.g. 'glue/sst2') or train_data= (a file, a Dataset or rows)")
    if isinstance(train_data, (str, os.PathLike)) and eval_data is None and metric is None:
        return file_spec(os.fspath(train_data), text, text_pair, label)
    if hasattr(train_data, "keys") and not isinstance(train_data, dict) and eval_data is None:  # DatasetDict
        dev = next((s for s in DEV_SPLITS if s in train_data.keys()), None)
        if "train" not in train_data.keys() or dev is None:
            raise PrunelabError(f"a DatasetDict needs 'train' and one of {', '.join(DEV_SPLITS)}; "
                                f"it has {', '.join(train_data.keys())}")
        train_data, eval_data = train_data["train"], train_data[dev]
    train_rows = _rows(train_data)
    dev_rows = _rows(eval_data) if eval_data is not None else None
    if dev_rows is None:
        train_rows, dev_rows = holdout(train_rows, 0.1)
    return data_task(train_rows, dev_rows, text=text, text_pair=text_pair, label=label, metric=metric).name


def _model_name(model, tokenizer) -> tuple[str, str | None]:
    """(name or directory for load_model, temporary directory to remove afterwards or None)."""
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model), None
    if not hasattr(model, "save_pretrained"):
        raise PrunelabError(f"model must be a name, a directory or a transformers model, got {type(model).__name__}")
    if tokenizer is None:
        raise PrunelabError("pass tokenizer= with a model object (prunelab saves both to load them its own way)")
    tmp = tempfile.mkdtemp(prefix="prunelab-model-")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    return tmp, tmp


def _method_args(config) -> dict:
    if config is None:
        return {}
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    if isinstance(config, dict):
        return dict(config)
    raise PrunelabError(f"config must be the method's config dataclass or a dict, got {type(config).__name__}")


def prune(model, tokenizer=None, *, method: str = "apt", config=None, task: str | None = None,
          train_data=None, eval_data=None, text: str = "text", text_pair: str | None = None,
          label: str = "label", metric: Callable[[list, list], float] | None = None,
          output_dir: str | None = None, store: str | None = None, seed: int = 0,
          measure: bool = True, force: bool = False, **train: Any) -> PruneResult:
    """Fine-tune and prune (or just tune, for ft/lora) `model` with `method`; export and reload it.

    model: an alias (`prunelab list models`), a hub id, a local directory, or a transformers model
      object (then also `tokenizer`).
    config: the method's config dataclass (e.g. APTConfig(sparsity=0.6)) or a dict of its fields.
    task: a registered task name; or train_data: a jsonl/csv/tsv path, a datasets.Dataset or
      DatasetDict, a DataFrame or a list of dicts, with columns `text` (+ `text_pair`) and `label`
      (other names via text=, text_pair=, label=). Without eval_data 10% of train is held out.
    metric: metric(predictions, labels) -> float, the dev score instead of accuracy.
    **train: TrainConfig fields (lr, max_steps, epochs, batch_size, train_limit, eval_limit, ...).
    measure: False skips the inference timing and FLOPs (faster; metrics then hold the score only).
    """
    from prunelab.config import MeasureConfig, RunConfig, TrainConfig, _build
    from prunelab.export import load_pruned
    from prunelab.run import run

    task_name = _task_name(task, train_data, eval_data, text, text_pair, label, metric)
    model_name, tmp_model = _model_name(model, tokenizer)
    out = output_dir or tempfile.mkdtemp(prefix="prunelab-out-")
    cfg = RunConfig(model=model_name, task=task_name, method=method, method_args=_method_args(config),
                    train=_build(TrainConfig, train, "train"), seed=seed, output_dir=out,
                    measure=MeasureConfig() if measure else MeasureConfig(throughput=False, flops=False))
    store = store or os.environ.get("PRUNELAB_STORE", "runs/prunelab.db")
    try:
        row = run(cfg, store, force=force)
        if row["status"] == "done" and not os.path.exists(os.path.join(out, "config.json")) and not force:
            row = run(cfg, store, force=True)       # a cached run: train again to write this export
    finally:
        if tmp_model:
            shutil.rmtree(tmp_model, ignore_errors=True)
    if row["status"] != "done":
        first = (row.get("error") or "no error recorded").splitlines()[0]
        raise PrunelabError(f"{method} run {row['id']} failed: {first}")
    pruned = tok = None
    if os.path.exists(os.path.join(out, "config.json")):
        from transformers import AutoTokenizer

        pruned = load_pruned(out)
        tok = AutoTokenizer.from_pretrained(out)
    return PruneResult(model=pruned, tokenizer=tok, record=row, path=out)
