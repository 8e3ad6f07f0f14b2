"""Full fine-tuning: every parameter trains; the reference for TTA, speedup and relative accuracy."""
from __future__ import annotations

from dataclasses import dataclass

from prunelab.methods.registry import Method, register_method
from prunelab.train.callbacks import MethodPlugin


@dataclass
class FTConfig:
    pass


class FullFineTuning(MethodPlugin):
    def prepare(self, model):
        for p in model.parameters():
            p.requires_grad_(True)
        return model


def build(loaded, config: FTConfig, ctx) -> MethodPlugin:
    return FullFineTuning()


register_method(Method("ft", FTConfig, build, description="full fine-tuning"))
