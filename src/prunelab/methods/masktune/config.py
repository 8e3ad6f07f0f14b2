"""Mask Tuning configuration (Kwon et al., NeurIPS 2022, "A Fast Post-Training Pruning
Framework for Transformers"), adapted so it runs after a LoRA or full fine-tuning run.

Defaults are the original's: 2048 training samples, sample batch 32, a MAC constraint, greedy
per-layer mask rearrangement, least-squares mask rescaling with LSMR (damp=1) that stops as
soon as a solution leaves [-10, 10], first-layer heads never rescaled, and a rescale teacher
masked at the intermediate constraint sqrt(target).

`sparsity` is the fraction of the constrained quantity that is *removed* (APT's Table 2 uses
60% sparsity, i.e. Kwon's `--constraint 0.4`). With `constraint="mac"` the quantity is the
multiply-accumulates of all attention heads and FFN neurons at the task's mean sequence length
(Kwon's accounting); with `constraint="params"` it is their parameters. Embeddings, norms and
the task head are never pruned and are outside both budgets, as in the original.
"""
from __future__ import annotations

from dataclasses import dataclass

from prunelab.errors import PrunelabError, unknown

BASES = ("ft", "lora")
CONSTRAINTS = ("mac", "params")
ON_BAD_SOLUTION = ("stop", "skip")


LAYOUTS = ("free", "uniform")


@dataclass
class MaskTuneConfig:
    base: str = "ft"                 # how the model is tuned before pruning: full FT or LoRA
    sparsity: float = 0.6            # fraction of MACs / params of heads+neurons removed
    layout: str = "free"             # "uniform": the same head / neuron count in every layer (stock export)
    constraint: str = "mac"          # "mac" (Kwon, and APT's LoRA+Prune) or "params"
    num_samples: int = 2048          # training samples for Fisher, rearrangement and rescaling
    sample_batch_size: int = 32      # Kwon: 32 (12 for SQuAD)
    seq_len: float | None = None     # MAC accounting length; None = mean true length of the samples
    rearrange: bool = True           # per-layer greedy mask rearrangement
    rescale: bool = True             # per-layer least-squares rescaling of the kept mask values
    rescale_bound: float = 10.0      # a solution outside [-bound, bound] aborts rescaling
    lsmr_damp: float = 1.0           # LSMR damping, as in the original
    on_bad_solution: str = "stop"    # "stop": keep earlier layers' scales, rescale no further (original)
    #                                  "skip": leave that layer unscaled and go on
    skip_first_layer_heads: bool = True   # the original never rescales layer 0's heads
    # LoRA settings (base="lora", and the adapters re-attached for re-tuning)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple = ("q", "v")
    # optional re-tuning after pruning, carved out of the run's step budget (same data budget
    # as every other method): pruning happens `retune_steps` before the end of the run
    retune_steps: int = 0
    retune_fraction: float = 0.0     # alternative to retune_steps: a fraction of the run
    retune_lr: float | None = None   # peak lr of the re-tuning phase (fresh linear decay); None = train.lr

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise unknown("masktune layout", self.layout, LAYOUTS)
        if self.base not in BASES:
            raise unknown("masktune base", self.base, BASES)
        if self.constraint not in CONSTRAINTS:
            raise unknown("masktune constraint", self.constraint, CONSTRAINTS)
        if self.on_bad_solution not in ON_BAD_SOLUTION:
            raise unknown("masktune on_bad_solution", self.on_bad_solution, ON_BAD_SOLUTION)
        if not isinstance(self.sparsity, (int, float)) or not 0.0 <= self.sparsity < 1.0:
            raise PrunelabError(f"method_args.sparsity must be in [0, 1), got {self.sparsity!r}")
        for name in ("num_samples", "sample_batch_size", "lora_r"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise PrunelabError(f"method_args.{name} must be an integer >= 1, got {v!r}")
        if not isinstance(self.retune_steps, int) or self.retune_steps < 0:
            raise PrunelabError(f"method_args.retune_steps must be an integer >= 0, got {self.retune_steps!r}")
        if not 0.0 <= self.retune_fraction < 1.0:
            raise PrunelabError(f"method_args.retune_fraction must be in [0, 1), got {self.retune_fraction!r}")
        if self.retune_steps and self.retune_fraction:
            raise PrunelabError("set method_args.retune_steps or method_args.retune_fraction, not both")
        if self.seq_len is not None and self.seq_len <= 0:
            raise PrunelabError(f"method_args.seq_len must be > 0, got {self.seq_len!r}")
        if self.rescale_bound <= 0 or self.lsmr_damp < 0:
            raise PrunelabError("method_args.rescale_bound must be > 0 and lsmr_damp >= 0")
        if self.retune_lr is not None and self.retune_lr <= 0:
            raise PrunelabError(f"method_args.retune_lr must be > 0, got {self.retune_lr!r}")
        if not 0 <= self.lora_dropout < 1:
            raise PrunelabError(f"method_args.lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        self.lora_targets = tuple(self.lora_targets)

    def retune_steps_for(self, total: int) -> int:
        """Re-tuning steps in a run of `total` steps (pruning happens at total - this)."""
        n = self.retune_steps or int(round(self.retune_fraction * total))
        return max(0, min(n, total - 1))


@dataclass
class LoRAPruneConfig(MaskTuneConfig):
    """APT's "LoRA+Prune": LoRA fine-tuning, merge, Mask Tuning (MAC constraint), optional LoRA re-tuning."""
    base: str = "lora"
