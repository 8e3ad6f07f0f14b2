"""LoRA baseline through peft: frozen backbone, low-rank adapters on q and v by default.

The task head trains too (peft's modules_to_save for classification), as in the APT paper's
LoRA rows. `finalize` merges the adapters so inference runs the plain dense model.
"""
from __future__ import annotations

from dataclasses import dataclass

from prunelab.errors import PrunelabError
from prunelab.methods.registry import Method, register_method
from prunelab.train.callbacks import MethodPlugin

# prunelab task kind -> peft task type
PEFT_TASK = {"classification": "SEQ_CLS", "regression": "SEQ_CLS", "qa": "QUESTION_ANS",
             "seq2seq": "SEQ_2_SEQ_LM", "lm": "CAUSAL_LM"}
TARGETS = ("q", "k", "v", "o", "up", "down")


@dataclass
class LoRAConfig:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    targets: tuple = ("q", "v")

    def __post_init__(self):
        if self.r < 1:
            raise PrunelabError(f"method_args.r must be >= 1, got {self.r}")
        if not 0 <= self.dropout < 1:
            raise PrunelabError(f"method_args.dropout must be in [0, 1), got {self.dropout}")
        self.targets = tuple(self.targets)
        bad = [t for t in self.targets if t not in TARGETS]
        if bad:
            raise PrunelabError(f"unknown LoRA target {bad[0]!r}; valid: {', '.join(TARGETS)}")


class LoRAPlugin(MethodPlugin):
    def __init__(self, loaded, config: LoRAConfig, task):
        self.loaded, self.config, self.task = loaded, config, task

    def prepare(self, model):
        from peft import LoraConfig, get_peft_model

        c = self.config
        targets = self.loaded.family.lora_targets(c.targets)
        peft_config = LoraConfig(r=c.r, lora_alpha=c.alpha, lora_dropout=c.dropout, target_modules=targets,
                                 task_type=PEFT_TASK.get(self.task.kind))
        return get_peft_model(model, peft_config)

    def finalize(self, model):
        return model.merge_and_unload()


def continue_training(state, model, lora: MethodPlugin | None = None):
    """Train `model` (merged, physically pruned) for the rest of the run: through a fresh LoRA
    when `lora` is given, else all its weights; the optimizer and scheduler are rebuilt.
    Returns the model now being trained (LoRA-wrapped or `model` itself)."""
    if lora is not None:
        model = lora.prepare(model)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    state.model = model
    state.rebuild_optimizer()
    return model


def lora_plugin_from(loaded, task, config) -> LoRAPlugin:
    """A LoRA plugin from another method's config fields lora_r/lora_alpha/lora_dropout/lora_targets
    (methods that tune with LoRA before or while they prune)."""
    lc = LoRAConfig(r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout,
                    targets=config.lora_targets)
    return LoRAPlugin(loaded, lc, task)


def build(loaded, config: LoRAConfig, ctx) -> MethodPlugin:
    return LoRAPlugin(loaded, config, ctx.task)


register_method(Method("lora", LoRAConfig, build, description="LoRA (peft) on q, v; r=8, alpha=16"))
