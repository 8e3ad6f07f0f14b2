"""CoFi configuration (Xia, Zhong, Chen, ACL 2022: "Structured Pruning Learns Compact and
Accurate Models"), with its schedule expressed as fractions of the run.

CoFi on a large GLUE task runs 1 pre-pruning fine-tuning epoch, Lagrangian warm-up over 2
epochs, 20 pruning epochs in all, then 20 epochs of fine-tuning the pruned model: 40 epochs,
of which 1/40 pre-pruning, 2/40 warm-up, 20/40 final fine-tuning. Expressed as fractions the
same shape fits a CPU run of a few hundred steps. (Small GLUE tasks: 4 pre, 20 warm-up, 100
pruning, 20 fine-tuning epochs -> pre 4/120, warm-up 20/120, final 20/120.)

Defaults are CoFi's: hard-concrete temperature 2/3, droprate_init 0.5, magical number 0.8,
reg_lr 0.01, layer distillation v4 with (alpha_layer, alpha_ce) = (0.9, 0.1) and T = 2, every
granularity pruned. `reg_lr` is the L0 and Lagrangian learning rate; CoFi's 0.01 moves a log
alpha by ~0.01 per step (Adam), which suits its ~40k pruning steps on SST-2; a run of a few
hundred steps needs a proportionally larger value (the benchmark documents what it uses).

Variants: `tuning="full"` is APT's "Prune+Distill" (CoFi as published); `tuning="lora"` is
APT's "LoRA+Prune+Distill": the backbone is frozen and only LoRA adapters (q, v and the FFN
up projection by default), the task head, the L0 masks, the Lagrangian multipliers and the
distillation layer transform train.
"""
from __future__ import annotations

from dataclasses import dataclass

from prunelab.errors import PrunelabError, unknown
from prunelab.methods.cofi.l0 import GRANULARITIES

LAYOUTS = ("free", "uniform")

TUNINGS = ("full", "lora")
MASK_RULES = ("cofi", "expected")


# CoFi's two published schedules as fractions: large GLUE tasks (MNLI, QQP, QNLI, SST-2: 1 pre-
# pruning epoch, 2 warm-up, 20 pruning in all, 20 fine-tuning) and small ones (CoLA, RTE, MRPC,
# STS-B: 4 pre-pruning, 20 warm-up, 100 pruning in all, 20 fine-tuning).
SCHEDULES = {
    "large": {"pre_finetune_frac": 1 / 40, "lagrangian_warmup_frac": 2 / 40, "final_finetune_frac": 20 / 40},
    "small": {"pre_finetune_frac": 4 / 120, "lagrangian_warmup_frac": 20 / 120, "final_finetune_frac": 20 / 120},
}


@dataclass
class CoFiConfig:
    PRESETS = SCHEDULES                    # method_args: {"preset": "small"} picks a schedule

    tuning: str = "full"
    sparsity: float = 0.6                  # CoFi's target_sparsity of the prunable weights
    # which of the five granularities are learned
    prune_heads: bool = True
    prune_mha: bool = True                 # whole attention layers
    prune_neurons: bool = True
    prune_ffn: bool = True                 # whole FFN layers
    prune_hidden: bool = True
    # hard concrete
    temperature: float = 2.0 / 3.0
    droprate_init: float = 0.5
    magical_number: float = 0.8
    reg_lr: float = 0.01                   # L0 log-alpha lr; the Lagrangian uses -reg_lr
    start_sparsity: float = 0.0
    layout: str = "free"                   # "uniform": equal heads / neurons in every layer (stock export)
    mask_rule: str = "cofi"                # deterministic masks: "cofi" (original) or "expected" (see l0.py)
    # schedule, as fractions of the run's steps
    pre_finetune_frac: float = 1 / 40      # CoFi: 1 pre-pruning epoch of 40
    lagrangian_warmup_frac: float = 2 / 40  # CoFi: 2 warm-up epochs (large GLUE)
    final_finetune_frac: float = 0.5       # CoFi: 20 fine-tuning epochs of 40
    final_ft_lr: float | None = None       # peak lr of the final fine-tuning (fresh linear decay); None = train.lr
    # distillation
    distill: bool = True                   # False: label cross-entropy instead (CoFi without a teacher)
    distill_final: bool = True             # keep distilling while fine-tuning the pruned model
    distill_layer_alpha: float = 0.9
    distill_ce_alpha: float = 0.1
    distill_temp: float = 2.0
    teacher_layers: tuple | None = None    # None: last layer of each quarter ({2,5,8,11} of 12)
    teacher_lr: float = 5e-5               # the teacher is a plain FT run at FT's lr
    teacher_steps: int | None = None       # None: the run's train.max_steps (or epochs)
    teacher_seed: int = 0                  # one teacher shared by all seeds of a study
    teacher_cache: bool = True
    # LoRA (tuning="lora")
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple = ("q", "v", "up")

    def __post_init__(self):
        if self.tuning not in TUNINGS:
            raise unknown("cofi tuning", self.tuning, TUNINGS)
        if self.layout not in LAYOUTS:
            raise unknown("cofi layout", self.layout, LAYOUTS)
        if self.mask_rule not in MASK_RULES:
            raise unknown("cofi mask_rule", self.mask_rule, MASK_RULES)
        if not 0.0 < self.sparsity < 1.0:
            raise PrunelabError(f"method_args.sparsity must be in (0, 1), got {self.sparsity!r}")
        for name in ("pre_finetune_frac", "lagrangian_warmup_frac", "final_finetune_frac", "start_sparsity"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise PrunelabError(f"method_args.{name} must be in [0, 1), got {v!r}")
        if self.pre_finetune_frac + self.final_finetune_frac >= 1.0:
            raise PrunelabError("method_args.pre_finetune_frac + final_finetune_frac must leave steps to prune (< 1)")
        if self.temperature <= 0 or not 0 < self.droprate_init < 1 or self.reg_lr <= 0:
            raise PrunelabError("method_args: temperature and reg_lr must be > 0, droprate_init in (0, 1)")
        if self.distill_temp <= 0 or self.distill_layer_alpha < 0 or self.distill_ce_alpha < 0:
            raise PrunelabError("method_args: distill_temp must be > 0 and the distillation alphas >= 0")
        if self.final_ft_lr is not None and self.final_ft_lr <= 0:
            raise PrunelabError(f"method_args.final_ft_lr must be > 0, got {self.final_ft_lr!r}")
        if self.teacher_steps is not None and self.teacher_steps < 1:
            raise PrunelabError(f"method_args.teacher_steps must be >= 1, got {self.teacher_steps!r}")
        if not any(self.granularities()):
            raise PrunelabError("method_args: at least one of prune_heads/mha/neurons/ffn/hidden must be true")
        if self.teacher_layers is not None:
            self.teacher_layers = tuple(int(i) for i in self.teacher_layers)
        self.lora_targets = tuple(self.lora_targets)

    def granularities(self) -> tuple:
        flags = (self.prune_heads, self.prune_mha, self.prune_neurons, self.prune_ffn, self.prune_hidden)
        return tuple(g for g, on in zip(GRANULARITIES, flags) if on)

    def phases(self, total: int) -> tuple[int, int, int]:
        """(first pruning step, Lagrangian warm-up steps, step at which the model is pruned)."""
        pre = int(round(self.pre_finetune_frac * total))
        end = total - int(round(self.final_finetune_frac * total))
        end = max(end, pre + 1)
        warm = int(round(self.lagrangian_warmup_frac * total))
        return pre, warm, min(end, total)


@dataclass
class LoRACoFiConfig(CoFiConfig):
    """APT's "LoRA+Prune+Distill": CoFi where only LoRA, the task head and the L0 modules train."""
    tuning: str = "lora"
