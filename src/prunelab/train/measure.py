"""Measurements of the seed-003 protocol, each computed in exactly one place.

- peak memory: CUDA -> torch.cuda.max_memory_allocated (kind 'cuda', what APT reports). CPU,
  two kinds: 'cpu_tensors' -> the peak of the bytes held by live CPU tensor storages (every
  tensor alive at the start of the phase plus every storage an operator creates during it,
  released when its storage dies), i.e. the CPU counterpart of max_memory_allocated, so CPU
  and CUDA ratios mean the same thing; 'cpu_rss' -> the peak resident set size of this
  process, sampled by a thread (it includes the interpreter, the heap glibc keeps and the
  libraries, so its ratios are compressed towards 1). ``PeakMemory(device, kind=...)`` picks
  the kind; without one, CPU uses $PRUNELAB_CPU_MEMORY ('tensors' or 'rss', default 'rss').
  The tensor tracker runs every operator through a Python dispatch mode (a few microseconds
  per op), so do not time inside it when the timing matters. `rise_mb` is the rise over the
  phase for every kind. Inference memory on CPU is the model's own bytes plus
  that rise after the heap is trimmed (`model_memory_mb`, `trim_heap`): the absolute RSS
  after training still holds what training freed but glibc kept.
- throughput: samples/s after warm-up, median over timed repeats.
- FLOPs per sample: torch.utils.flop_counter on one batch.
- time-to-accuracy: first training second (evals excluded) at which the dev score reaches
  97% of the FT baseline's final dev score.
"""
from __future__ import annotations

import gc
import os
import statistics
import threading
import time
import weakref
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


# -- memory -----------------------------------------------------------------------------
CPU_MEMORY_KINDS = {"rss": "cpu_rss", "tensors": "cpu_tensors", "cpu_rss": "cpu_rss", "cpu_tensors": "cpu_tensors"}


class LiveTensorBytes(TorchDispatchMode):
    """Bytes held by live CPU tensor storages, and their peak, while the mode is active.

    At entry every CPU tensor the garbage collector can see (parameters, buffers, optimizer
    state, data) is counted once per storage; then every storage an operator returns is
    counted when it first appears and uncounted when it is freed (a finalizer on the storage,
    whose Python object lives exactly as long as the storage). Views share their base's
    storage and count once. The autograd engine runs CPU backward passes on the calling
    thread with the mode's thread-local state, so saved activations and gradients count too.
    """

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self.start = 0
        self._live: dict[int, int] = {}

    def _add(self, t) -> None:
        if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or t.is_sparse or t.is_meta:
            return
        if type(t) is not torch.Tensor and not isinstance(t, torch.nn.Parameter):
            return          # tensor subclasses (fake / functional wrappers) own no CPU bytes of their own
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError):
            return
        key = id(st)
        if key in self._live:
            return
        n = int(st.nbytes())
        self._live[key] = n
        self.current += n
        if self.current > self.peak:
            self.peak = self.current
        weakref.finalize(st, self._free, key)

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def __enter__(self):
        for obj in gc.get_objects():
            if issubclass(type(obj), torch.Tensor):     # type(), not isinstance: no __class__ lookups
                self._add(obj)
        self.start = self.peak = self.current
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            self._add(t)
        return out


class PeakMemory:
    """Context manager: peak memory of the enclosed phase, in MB, with its kind (see above)."""

    def __init__(self, device: torch.device | str = "cpu", interval: float = 0.01, kind: str | None = None):
        self.device = torch.device(device)
        self.interval = interval
        self.peak_mb = self.rise_mb = 0.0
        if self.device.type == "cuda":
            self.kind = "cuda"
        else:
            choice = kind or os.environ.get("PRUNELAB_CPU_MEMORY", "rss")
            if choice not in CPU_MEMORY_KINDS:
                raise ValueError(f"unknown CPU memory kind {choice!r}; expected 'rss' or 'tensors'")
            self.kind = CPU_MEMORY_KINDS[choice]

    def __enter__(self):
        if self.kind == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.kind == "cpu_tensors":
            self._tracker = LiveTensorBytes()
            self._tracker.__enter__()
        else:
            import psutil

            self._proc = psutil.Process()
            self._peak = self._start = self._proc.memory_info().rss
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __exit__(self, *exc):
        if self.kind == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.kind == "cpu_tensors":
            tr = self._tracker
            tr.__exit__(*exc)
            self.peak_mb = tr.peak / 2**20
            self.rise_mb = (tr.peak - tr.start) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, self._proc.memory_info().rss)
            self.peak_mb = self._peak / 2**20
            self.rise_mb = (self._peak - self._start) / 2**20
        return False


def trim_heap() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them), so an RSS rise is visible."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def model_memory_mb(model: torch.nn.Module) -> float:
    """Bytes of the model's parameters and buffers (shared tensors counted once)."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total / 2**20


# -- parameters and FLOPs ---------------------------------------------------------------
def count_params(model: torch.nn.Module) -> dict:
    total = sum(p.numel() for p in model.parameters())
    emb = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters(recurse=False))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params": total, "params_nonemb": total - emb, "params_trainable": trainable}


# Encoder-decoder heads that build their decoder inputs from input_ids (shift right) and pool
# the decoder state at the end-of-sequence tokens: giving them a one-token decoder input breaks
# that pooling ("All examples must have the same number of <eos> tokens", issue 9).
_SELF_DECODING_HEADS = ("ForSequenceClassification", "ForQuestionAnswering")


def decoder_inputs(model: torch.nn.Module, batch_size: int, device) -> dict:
    """The one-token decoder start an encoder-decoder model needs for a forward pass, or {}
    when the model has no decoder or derives its decoder inputs itself."""
    cfg = model.config
    if not getattr(cfg, "is_encoder_decoder", False) or type(model).__name__.endswith(_SELF_DECODING_HEADS):
        return {}
    return {"decoder_input_ids": torch.full((batch_size, 1), cfg.decoder_start_token_id or 0, device=device)}


def dummy_inputs(model: torch.nn.Module, batch_size: int, seq_len: int, device, vocab_size: int | None = None) -> dict:
    """Random token ids with a full attention mask (APT times all-pad inputs; random ids
    exercise the same matmuls and avoid pad-specific shortcuts). Every row ends with the one
    end-of-sequence token real encoded text has (T5 classifiers pool at it; random ids never
    draw it elsewhere)."""
    cfg = model.config
    vocab = vocab_size or cfg.vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, max(6, vocab - 1), (batch_size, seq_len), generator=g)
    eos = getattr(cfg, "eos_token_id", None)
    if isinstance(eos, int) and 0 <= eos < vocab:
        ids[ids == eos] = eos + 1 if eos + 1 < vocab else eos - 1
        ids[:, -1] = eos
    ids = ids.to(device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), **decoder_inputs(model, batch_size, device)}


def flops_per_sample(model: torch.nn.Module, inputs: dict) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**inputs)
    return counter.get_total_flops() / inputs["input_ids"].shape[0]


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_forward_clocks(model: torch.nn.Module, batches: list[dict], device, warmup: int = 2, repeats: int = 5,
                        min_seconds: float = 0.5) -> tuple[float, float]:
    """Median (wall, process CPU) seconds for one pass over `batches` (model-input dicts).

    At least `repeats` timed passes, and more until `min_seconds` have been timed: a 4 ms
    GPU pass timed five times is mostly noise."""
    model.eval()
    for _ in range(warmup):
        for b in batches:
            model(**b)
    _sync(device)
    times, cpu = [], []
    while len(times) < repeats or (sum(times) < min_seconds and len(times) < 1000):
        t0, c0 = time.perf_counter(), time.process_time()
        for b in batches:
            model(**b)
        _sync(device)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), statistics.median(cpu)


def throughput(model, batches: list[dict], device, warmup: int = 2, repeats: int = 5,
               min_seconds: float = 0.5) -> float:
    """Samples per wall second (throughputs()["wall"])."""
    return throughputs(model, batches, device, warmup, repeats, min_seconds)["wall"]


def throughputs(model, batches: list[dict], device, warmup: int = 2, repeats: int = 5,
                min_seconds: float = 0.5) -> dict:
    """{"wall": samples/s} and, on CPU with one torch thread, {"cpu": samples per CPU second}:
    with one thread the process's CPU time is its compute time, which other processes on a
    shared machine do not stretch (they stretch the wall clock: a run that waited for the core
    half of the time looks twice as slow). With more threads CPU time adds up over threads and
    spin-waits, so only the wall figure is given."""
    n = sum(b["input_ids"].shape[0] for b in batches)
    wall, cpu = time_forward_clocks(model, batches, device, warmup, repeats, min_seconds)
    out = {"wall": n / wall}
    if torch.device(device).type == "cpu" and torch.get_num_threads() == 1 and cpu > 0:
        out["cpu"] = n / cpu
    return out


# -- time to accuracy -------------------------------------------------------------------
TTA_FRACTION = 0.97


def time_to_accuracy(curve: list[dict], reference: float, higher_is_better: bool = True,
                     fraction: float = TTA_FRACTION, clock: str = "seconds") -> float | None:
    """First training second (`clock`: wall "seconds" or "cpu_seconds") at which the score
    reaches `fraction` of `reference`. For lower-is-better metrics (perplexity) the target is
    reference / fraction."""
    if reference is None:
        return None
    target = reference * fraction if higher_is_better else reference / fraction
    for point in curve:
        s = point.get("score")
        if s is None:
            continue
        if (s >= target) if higher_is_better else (s <= target):
            return float(point[clock]) if clock in point else None
    return None


def cuda_sync_if_used() -> None:
    """Wait for queued CUDA work (a no-op when CUDA was never initialised in this process)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@dataclass
class Timer:
    """Accumulates wall time of the enclosed blocks (training time with evals excluded), and
    this process's CPU time, which other processes on a shared machine do not inflate.

    CUDA kernels run asynchronously: the clock is read only after the queued work finished,
    at entry and at exit, so a block is charged for its own kernels and not for earlier ones."""
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def __enter__(self):
        cuda_sync_if_used()
        self._t0, self._c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        cuda_sync_if_used()
        self.seconds += time.perf_counter() - self._t0
        self.cpu_seconds += time.process_time() - self._c0
        return False
