"""APT: Adaptive Pruning and Tuning (Zhao, Hajishirzi, Cao; ICML 2024).

During fine-tuning, prune attention heads, FFN neurons and hidden dims to a parameter budget
(outlier-aware salience, cubic schedule, physical removal), grow LoRA ranks where it matters,
and recover accuracy by self-distillation; finalize merges the adapters and returns the
physically pruned model.

    RunConfig(model="minilm-l6", task="glue/sst2", method="apt",
              method_args={"sparsity": 0.6})                      # or {"preset": "paper"}

Paper vs released code (ROIM1998/APT @56eaf8b) -- where they disagree we follow the paper and
seed 003; where the paper is silent, the code:

| topic | paper / seed 003 (followed) | released code |
|---|---|---|
| salience EMA | 0.85 / 0.15 | same |
| kurtosis term | every family | LLaMA only |
| A_T importance | sum |W_B * dL/dW_B| | lora_A based, per rank |
| new rank rows | Gaussian A rows, zero B columns | kaiming-uniform rows |
| rank growth | top half get floor(r Delta'/Delta) | rate fitted to the exact budget |
| distillation | tau = 4, L_pred + 0.9 L_layer (cls), 0.1 / 0.9 (QA, gen) | tau 2/3, x10 KL factor |
| mu | 0 before pruning, linear to 1 at its end | same |
| LR schedule after reshaping | rebuilt, continuing from the current step | possibly left bound to the old optimizer |
| (paper silent, code followed) | cubic on the *retained* fraction, first linspace step dropped, mask +-0.01 with re-ranking every window step, snap at the step, layer survives iff it keeps heads and neurons, Tr = identity + LoRA, EMA of adapter importance, adapters at max rank skipped, tau^2 on the KL, MSE mean per layer summed over 4 layers | |

Our own choices (documented where they live): physical removal at every pruning step, with
the paper's teacher (adapter and head copies over the shared, pruned frozen weights) by
default and a copy-on-prune snapshot teacher as ``distill=self_snapshot`` (distill.py,
teaching.py); the kurtosis term measured in the step's median salience per parameter, so
every block type gets the same bonus per unit of kurtosis and nothing depends on the dataset
size (salience.py); mask windows whose per-step move is max(0.01, 1/window) so masks reach 0
before each snap (schedule.py); schedules in fractions of the run (config.py / schedule.py);
random/uniform scoring at the density level (salience.py).

Modules: config (APTConfig, presets), adapter (dynamic-rank LoRA), salience (how to score),
pruner (what to remove), schedule (when), tuning (rank growth), distill (teachers, losses),
teaching (the distillation lifecycle), method (the MethodPlugin), components (ablation switches).
"""
from prunelab.methods.apt.components import COMPONENTS
from prunelab.methods.apt.config import APTConfig
from prunelab.methods.apt.method import APTPlugin, build
from prunelab.methods.registry import Component, Method, register_method

METHOD = register_method(Method(
    "apt", APTConfig, build,
    components={name: Component(name=name, **spec) for name, spec in COMPONENTS.items()},
    description="APT: adaptive structured pruning + dynamic-rank LoRA + self-distillation (ICML 2024)"))

__all__ = ["APTConfig", "APTPlugin", "COMPONENTS", "METHOD", "build"]
