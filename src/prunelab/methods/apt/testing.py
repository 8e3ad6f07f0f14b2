"""Helpers for APT's tests: a synthetic task for tiny models and a plugin built without a run.

``SyntheticTask`` implements the part of prunelab.tasks.Task the training loop uses
(batches / collate / evaluate) over random token ids with a learnable rule, for the three
task kinds the tiny families cover: classification (BERT, LLaMA), seq2seq (T5), lm (LLaMA).
"""
from __future__ import annotations

import random
from types import SimpleNamespace

import torch

from prunelab.config import RunConfig, TrainConfig


class SyntheticTask:
    metric = "score"
    higher_is_better = True

    def __init__(self, kind: str = "classification", num_labels: int = 2):
        self.kind, self.num_labels = kind, num_labels
        self.name = f"synthetic/{kind}"

    def features(self, n: int, length: int = 12, seed: int = 0, eos: int | None = 102) -> list[dict]:
        g = torch.Generator().manual_seed(seed)
        out = []
        for i in range(n):
            L = int(torch.randint(length // 2, length + 1, (1,), generator=g))
            ids = torch.randint(1000, 2000, (L,), generator=g)
            label = int((ids < 1500).float().mean() > 0.5)
            if eos is not None:
                ids[-1] = eos
            f = {"input_ids": ids.tolist(), "attention_mask": [1] * L}
            if self.kind in ("classification", "regression"):
                f["labels"] = label
            elif self.kind == "seq2seq":
                f["labels"] = [1000 + label, 1001, eos or 1]
            else:
                f["labels"] = ids.tolist()
            out.append(f)
        return out

    def batches(self, features, batch_size, shuffle=False, seed=0, bucket=True):
        order = list(range(len(features)))
        if shuffle:
            random.Random(seed).shuffle(order)
        for j in range(0, len(order), batch_size):
            yield [features[i] for i in order[j:j + batch_size]]

    def collate(self, features, tokenizer=None) -> dict:
        out = {}
        for key in features[0]:
            vals = features[0][key]
            if isinstance(vals, list):
                width = max(len(f[key]) for f in features)
                pad = -100 if key == "labels" else 0
                out[key] = torch.tensor([f[key] + [pad] * (width - len(f[key])) for f in features])
            else:
                out[key] = torch.tensor([f[key] for f in features])
        return out

    @torch.no_grad()
    def evaluate(self, model, features, tokenizer, batch_size, device) -> dict:
        was = model.training
        model.eval()
        correct, total, loss = 0, 0, 0.0
        for group in self.batches(features, batch_size):
            b = {k: v.to(device) for k, v in self.collate(group).items()}
            out = model(**b)
            loss += float(out.loss) * len(group)
            if self.kind == "classification":
                correct += int((out.logits.argmax(-1) == b["labels"]).sum())
            total += len(group)
        model.train(was)
        score = correct / max(1, total) if self.kind == "classification" else -loss / max(1, total)
        return {"score": score}


def run_config(steps: int = 20, batch_size: int = 8, lr: float = 1e-3, seed: int = 0, **method_args) -> RunConfig:
    return RunConfig(model="tiny-bert", task="glue/sst2", method="apt", method_args=method_args, seed=seed,
                     train=TrainConfig(batch_size=batch_size, max_steps=steps, eval_points=2, lr=lr,
                                       warmup_ratio=0.0))


def make_plugin(model_name: str = "tiny-bert", kind: str = "classification", n_train: int = 64, seed: int = 0,
                steps: int = 20, batch_size: int = 8, config_overrides: dict | None = None, **method_args):
    """(plugin, prepared model, task, ctx) for a tiny model, without a run."""
    from prunelab.methods.registry import get_method
    from prunelab.models.load import load_model

    task = SyntheticTask(kind)
    loaded = load_model(model_name, task, config_overrides=config_overrides)
    cfg = run_config(steps=steps, batch_size=batch_size, seed=seed, **method_args)
    eos = getattr(loaded.model.config, "eos_token_id", 102)
    train = task.features(n_train, seed=seed, eos=eos if isinstance(eos, int) else 102)
    dev = task.features(16, seed=seed + 1, eos=eos if isinstance(eos, int) else 102)
    ctx = SimpleNamespace(config=cfg, task=task, tokenizer=loaded.tokenizer, train_features=train,
                          dev_features=dev, device=torch.device("cpu"))
    method = get_method("apt")
    plugin = method.build(loaded, method.make_config(cfg.method_args), ctx)
    model = plugin.prepare(loaded.model)
    return plugin, model, task, ctx


def train_plugin(plugin, model, task, ctx, callbacks=()):
    """Run the real training loop with the plugin; returns the TrainResult."""
    from prunelab.train.loop import set_seed, train

    set_seed(ctx.config.seed)
    return train(model, plugin, task, ctx.tokenizer, ctx.train_features, ctx.dev_features, ctx.config,
                 family=plugin.family, callbacks=callbacks)


def randomize_adapters(plugin, seed: int = 0, scale: float = 0.05) -> None:
    """Give every adapter a non-zero B (so adapter bookkeeping is visible in outputs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for ad in plugin.adapters.student.values():
            ad.B.copy_(torch.randn(ad.B.shape, generator=g) * scale)
