"""Run a prunelab method inside your own Hugging Face `Trainer` loop.

    from prunelab.trainer import PruningTrainer
    from prunelab.methods.apt import APTConfig

    trainer = PruningTrainer(model=model, args=TrainingArguments(...), train_dataset=train, eval_dataset=dev,
                             processing_class=tokenizer, method="apt", method_config=APTConfig(sparsity=0.6))
    trainer.train()
    pruned = trainer.finalize()          # adapters merged, pruned structures physically removed
    trainer.save_pruned("out/apt")       # loads with from_pretrained (see prunelab.export)

The method is the same plugin `prunelab train` uses (methods/registry.py); this class maps the
Trainer's loop onto the plugin protocol (train/callbacks.py): on_step_start + forward +
compute_loss in `compute_loss`, after_backward after `training_step`'s backward, on_step_end
after the optimizer step, on_eval after each evaluation. When a method changes parameter
shapes it calls `state.rebuild_optimizer()`; here that swaps in a new optimizer over the live
parameters and a scheduler that continues the same linear schedule from the current step.
Datasets are tokenized rows (input_ids, attention_mask, ..., label or labels), as for Trainer.
"""
from __future__ import annotations

import dataclasses

import torch
from transformers import Trainer, TrainerCallback

from prunelab.errors import PrunelabError
from prunelab.tasks.base import Task, collate_features, make_batches
from prunelab.train.callbacks import TrainState
from prunelab.train.loop import lr_factor

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids", "labels")


def _features(dataset) -> list[dict]:
    """Trainer-style rows -> prunelab features (the model's keys; label -> labels)."""
    if dataset is None:
        return []
    rows = []
    for row in dataset:
        row = dict(row)
        if "labels" not in row and "label" in row:
            row["labels"] = row.pop("label")
        rows.append({k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in row.items() if k in MODEL_KEYS})
    return rows


class FeatureTask(Task):
    """The slice of the Task interface methods use (batches, collate, evaluate), over features
    that are already tokenized: what a Trainer user has."""

    def __init__(self, model):
        regression = getattr(model.config, "problem_type", None) == "regression" or model.config.num_labels == 1
        self.name, self.kind = "trainer", "regression" if regression else "classification"
        self.num_labels, self.metric, self.higher_is_better = model.config.num_labels, "accuracy", True

    def collate(self, features, tokenizer):
        return collate_features(features, tokenizer)

    def batches(self, features, batch_size, shuffle, seed, bucket=True):
        return make_batches(features, batch_size, shuffle, seed, bucket)

    def evaluate(self, model, features, tokenizer, batch_size, device):
        from prunelab.tasks import metrics
        from prunelab.tasks.glue import predict_labels

        preds, labels = predict_labels(self, model, features, tokenizer, batch_size, device)
        if self.kind == "regression":
            return {"pearson": metrics.pearson(preds, labels), "score": metrics.pearson(preds, labels)}
        acc = metrics.accuracy(preds, labels)
        return {"accuracy": acc, "score": acc}


class _PluginCallbacks(TrainerCallback):
    """The plugin events the Trainer's own callback points can carry."""

    def __init__(self, trainer: "PruningTrainer"):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer._start(state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        t = self.trainer
        t.state_.step = state.global_step
        t.plugin.on_step_end(t.state_)
        t._sync_model()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        t = self.trainer
        key = "eval_" + (args.metric_for_best_model or "accuracy").removeprefix("eval_")
        if metrics and key in metrics:
            score = metrics[key]
        elif metrics and "eval_loss" in metrics:
            score = -metrics["eval_loss"]            # higher is better for the plugin
        else:
            return
        s = t.state_
        s.last_score = score
        if s.best_score is None or score > s.best_score:
            s.best_score = score
        t.plugin.on_eval(s, {**(metrics or {}), "score": score})

    def on_train_end(self, args, state, control, **kwargs):
        self.trainer.plugin.on_train_end(self.trainer.state_)


class PruningTrainer(Trainer):
    """A `transformers.Trainer` that trains with a prunelab method (apt, masktune, lora_prune, ...)."""

    def __init__(self, model=None, args=None, *, method: str = "apt", method_config=None, **kwargs):
        from prunelab.config import RunConfig, TrainConfig
        from prunelab.methods.registry import get_method
        from prunelab.models import get_family
        from prunelab.models.load import LoadedModel
        from prunelab.run import RunContext

        if model is None or args is None:
            raise PrunelabError("PruningTrainer needs model= and args=")
        if args.gradient_accumulation_steps != 1:
            raise PrunelabError("PruningTrainer runs one forward per optimizer step: set gradient_accumulation_steps=1")
        spec = get_method(method)
        if spec.runner is not None:
            raise PrunelabError(f"method {method!r} is not a fine-tuning method; it cannot run inside a Trainer")
        if method_config is None:
            method_config = spec.make_config({})
        elif isinstance(method_config, dict):
            method_config = spec.make_config(method_config)
        elif not isinstance(method_config, spec.config_cls):
            raise PrunelabError(f"method_config for {method!r} must be a {spec.config_cls.__name__} or a dict")
        tokenizer = kwargs.get("processing_class") or kwargs.get("tokenizer")
        if tokenizer is None:
            raise PrunelabError("PruningTrainer needs processing_class= (the tokenizer)")
        self.task = FeatureTask(model)
        self.tokenizer_ = tokenizer
        device = torch.device("cuda" if torch.cuda.is_available() and not args.use_cpu else "cpu")
        self.run_config = RunConfig(
            method=method, method_args=dataclasses.asdict(method_config), seed=args.seed,
            train=TrainConfig(lr=args.learning_rate, batch_size=args.per_device_train_batch_size,
                              weight_decay=args.weight_decay,
                              max_steps=args.max_steps if args.max_steps > 0 else None,
                              epochs=float(args.num_train_epochs)))
        self.train_features = _features(kwargs.get("train_dataset"))
        self.dev_features = _features(kwargs.get("eval_dataset"))
        loaded = LoadedModel(model=model, tokenizer=tokenizer, family=get_family(model), name="trainer", source="trainer")
        ctx = RunContext(self.run_config, self.task, tokenizer, self.train_features, self.dev_features, device)
        self.plugin = spec.build(loaded, method_config, ctx)
        self.family = loaded.family
        self.state_: TrainState | None = None
        prepared = self.plugin.prepare(model.to(device))
        callbacks = list(kwargs.pop("callbacks", None) or []) + [_PluginCallbacks(self)]
        super().__init__(model=prepared, args=args, callbacks=callbacks, **kwargs)

    # -- optimizer and schedule: the plugin chooses the parameter groups ------------------------
    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = model or self.model
            groups = self.plugin.param_groups(model, self.args.learning_rate, self.args.weight_decay)
            self.optimizer = torch.optim.AdamW(groups, lr=self.args.learning_rate, weight_decay=self.args.weight_decay)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            self._total = num_training_steps
            self.lr_scheduler = self._schedule(optimizer or self.optimizer, 0)
        return self.lr_scheduler

    def _schedule(self, optimizer, base: int):
        total = self._total
        warmup = self.args.get_warmup_steps(total)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_factor(base + i, total, warmup))

    def _rebuild(self):
        """A new optimizer over the live trainable parameters and a schedule continuing from here."""
        model = self.state_.model
        groups = self.plugin.param_groups(model, self.args.learning_rate, self.args.weight_decay)
        opt = torch.optim.AdamW(groups, lr=self.args.learning_rate, weight_decay=self.args.weight_decay)
        self.optimizer = self.accelerator.prepare_optimizer(opt)
        self.lr_scheduler = self._schedule(self.optimizer, self.state_.step)

    def _start(self, max_steps: int):
        self._total = getattr(self, "_total", None) or max_steps
        self.state_ = TrainState(model=self.model, config=self.run_config, task=self.task, family=self.family,
                                 total_steps=max_steps)
        self.state_.optimizer, self.state_.scheduler = self.optimizer, self.lr_scheduler
        self.state_._rebuild = self._rebuild
        self.plugin.on_train_start(self.state_)

    def _sync_model(self):
        # a method may hand back a new model object (e.g. Mask Tuning merges LoRA, then re-tunes)
        self.state_.optimizer, self.state_.scheduler = self.optimizer, self.lr_scheduler
        if self.state_.model is not self.model:
            self.model = self.model_wrapped = self.state_.model

    # -- the step -------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        s = self.state_
        if s is None:                                      # evaluation before training started
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        s.batch = inputs
        self.plugin.on_step_start(s)
        outputs = s.model(**inputs)
        s.outputs = outputs
        loss = self.plugin.compute_loss(s, outputs.loss)
        if not torch.isfinite(loss):
            raise PrunelabError(f"loss is {loss.item()} at step {s.step}")
        s.loss = loss
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(self.state_.model if self.state_ else model, inputs, num_items_in_batch)
        if self.state_ is not None:
            self.plugin.after_backward(self.state_)
        return loss

    def _clip_grad_norm(self, model):
        return super()._clip_grad_norm(self.state_.model if self.state_ else model)

    # -- after training -------------------------------------------------------------------------
    def finalize(self):
        """Merge adapters and remove pruned structures; the Trainer's model becomes the deployable one."""
        model = self.plugin.finalize(self.state_.model if self.state_ else self.model)
        self.model = self.model_wrapped = model.eval()
        return self.model

    def save_pruned(self, out_dir: str):
        """Write the finalized model + tokenizer (stock config where the widths allow)."""
        from prunelab.export import save_pruned

        return save_pruned(self.model, out_dir, self.tokenizer_)

