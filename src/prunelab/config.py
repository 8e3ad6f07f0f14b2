"""RunConfig: everything that defines one run, validated, hashable, overridable.

A run is fully described by (model, task, method, method args, training, measurement, seed).
The content hash of the resolved config keys the results store, so two identical cells of
two ablation plans are run once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

from prunelab.errors import PrunelabError, close_matches


@dataclass
class TrainConfig:
    lr: float = 5e-5
    batch_size: int = 32
    eval_batch_size: int = 64
    epochs: float = 1.0
    max_steps: int | None = None        # overrides epochs when set
    train_limit: int | None = None      # seeded (stratified) subset of the train split
    eval_limit: int | None = None       # subset of the dev split
    eval_points: int = 8                # dev evaluations spread over the run (the TTA curve)
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    max_length: int = 128
    bucket: bool = True                 # length bucketing (2-3x less padding on SST-2)

    def __post_init__(self):
        _check_range("train.lr", self.lr, lo=0, lo_open=True)
        _check_range("train.batch_size", self.batch_size, lo=1)
        _check_range("train.eval_batch_size", self.eval_batch_size, lo=1)
        _check_range("train.epochs", self.epochs, lo=0, lo_open=True)
        if self.max_steps is not None:
            _check_range("train.max_steps", self.max_steps, lo=1)
        if self.train_limit is not None:
            _check_range("train.train_limit", self.train_limit, lo=1)
        if self.eval_limit is not None:
            _check_range("train.eval_limit", self.eval_limit, lo=1)
        _check_range("train.eval_points", self.eval_points, lo=1)
        _check_range("train.warmup_ratio", self.warmup_ratio, lo=0, hi=1)
        _check_range("train.weight_decay", self.weight_decay, lo=0)
        _check_range("train.grad_clip", self.grad_clip, lo=0)
        _check_range("train.max_length", self.max_length, lo=8)


@dataclass
class MeasureConfig:
    throughput: bool = True
    batch_sizes: tuple = (32, 128)      # APT's efficiency test: all-pad inputs at seq 128
    seq_len: int = 128
    real_lengths: bool = True           # also time the task's own dev batches
    warmup: int = 2
    repeats: int = 5
    min_seconds: float = 0.5            # keep timing until this much time is measured
    flops: bool = True

    def __post_init__(self):
        self.batch_sizes = tuple(int(b) for b in self.batch_sizes)
        for b in self.batch_sizes:
            _check_range("measure.batch_sizes", b, lo=1)
        _check_range("measure.seq_len", self.seq_len, lo=1)
        _check_range("measure.warmup", self.warmup, lo=0)
        _check_range("measure.repeats", self.repeats, lo=1)
        _check_range("measure.min_seconds", self.min_seconds, lo=0)


@dataclass
class RunConfig:
    model: str = "tiny-bert"
    task: str = "glue/sst2"
    method: str = "ft"
    method_args: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    seed: int = 0
    data_dir: str | None = None         # else $PRUNELAB_DATA, else HF datasets
    study: str | None = None            # ablation study name (not part of the hash)
    cell: str | None = None             # ablation cell label (not part of the hash)
    output_dir: str | None = None       # save the final (pruned, merged) model here
    log_dir: str | None = None          # TensorBoard scalars (needs the tensorboard package)

    # fields that label a run but do not change what it computes
    _UNHASHED = ("study", "cell", "data_dir", "output_dir", "log_dir")

    def __post_init__(self):
        if isinstance(self.train, dict):
            self.train = _build(TrainConfig, self.train, "train")
        if isinstance(self.measure, dict):
            self.measure = _build(MeasureConfig, self.measure, "measure")
        self.method_args = dict(self.method_args or {})
        _check_range("seed", self.seed, lo=0)

    # -- resolution -------------------------------------------------------------------
    def resolve(self) -> "RunConfig":
        """Validate names against the registries and fill the method's defaults."""
        from prunelab.methods.registry import get_method
        from prunelab.tasks import get_task

        get_task(self.task)  # raises a one-line error on an unknown task
        method = get_method(self.method)
        args = method.make_config(self.method_args)
        return dataclasses.replace(self, method_args=dataclasses.asdict(args))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["measure"]["batch_sizes"] = list(d["measure"]["batch_sizes"])
        return d

    def hash(self) -> str:
        d = self.to_dict()
        for k in self._UNHASHED:
            d.pop(k, None)
        blob = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        return _build(cls, d, "config")

    def with_overrides(self, overrides: dict | list[str]) -> "RunConfig":
        """Apply dotted overrides: {"train.lr": 1e-4} or ["train.lr=1e-4", "method_args.sparsity=0.5"]."""
        if isinstance(overrides, list):
            overrides = dict(parse_override(o) for o in overrides)
        d = self.to_dict()
        for key, value in overrides.items():
            set_dotted(d, key, value)
        return RunConfig.from_dict(d)


# -- helpers ----------------------------------------------------------------------------
def _check_range(name, value, lo=None, hi=None, lo_open=False):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise PrunelabError(f"{name} must be a number, got {value!r}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise PrunelabError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {value}")
    if hi is not None and value > hi:
        raise PrunelabError(f"{name} must be <= {hi}, got {value}")


def _build(cls, d: dict, where: str):
    """Construct a dataclass from a dict, rejecting unknown keys with close matches."""
    if not isinstance(d, dict):
        raise PrunelabError(f"{where} must be a mapping, got {type(d).__name__}")
    names = [f.name for f in fields(cls) if not f.name.startswith("_")]
    for key in d:
        if key not in names:
            near = close_matches(key, names)
            hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            raise PrunelabError(f"unknown {where} key {key!r}{hint} valid: {', '.join(names)}")
    kwargs = {}
    for f in fields(cls):
        if f.name in d:
            kwargs[f.name] = _coerce(f, d[f.name], f"{where}.{f.name}" if where != "config" else f.name)
    try:
        return cls(**kwargs)
    except TypeError as e:  # wrong type reached a constructor
        raise PrunelabError(f"bad {where}: {e}") from None


def _coerce(f, value, name):
    """YAML/CLI values arrive as strings sometimes; convert to the field's declared type."""
    t = str(f.type)
    if value is None:
        return None
    if isinstance(value, str):
        if t.startswith("int") or t == "int | None":
            try:
                return int(float(value)) if float(value).is_integer() else int(value)
            except ValueError:
                raise PrunelabError(f"{name} must be an integer, got {value!r}") from None
        if t.startswith("float"):
            try:
                return float(value)
            except ValueError:
                raise PrunelabError(f"{name} must be a number, got {value!r}") from None
        if t == "bool":
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise PrunelabError(f"{name} must be true/false, got {value!r}")
    return value


def parse_value(text: str):
    """'1e-4' -> 1e-4, 'true' -> True, '[32,128]' -> [32,128], 'none' -> None, else the string."""
    import yaml

    try:
        v = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(v, str) and v.lower() in ("none", "null"):
        return None
    return v


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise PrunelabError(f"override {text!r} must look like key=value (e.g. train.lr=1e-4)")
    key, _, value = text.partition("=")
    return key.strip(), parse_value(value.strip())


def set_dotted(d: dict, key: str, value):
    parts = key.split(".")
    cur = d
    for i, p in enumerate(parts[:-1]):
        if not isinstance(cur.get(p), dict):
            if p == "method_args" or (i > 0 and parts[0] == "method_args"):
                cur[p] = cur.get(p) or {}
            else:
                valid = [k for k, v in cur.items() if isinstance(v, dict)]
                near = close_matches(p, valid)
                hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
                raise PrunelabError(f"unknown config section {p!r} in {key!r}{hint} valid: {', '.join(valid)}")
        cur = cur[p]
    cur[parts[-1]] = value
