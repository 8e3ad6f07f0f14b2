"""Methods and their ablatable components, registered by name.

A method is (config dataclass, build function). `build(loaded, config, ctx)` returns a
`MethodPlugin`: the callbacks the training loop calls plus `prepare`/`finalize` hooks. The
loop never asks which method is running.

A component is a named switch of a method with options; each option is a set of overrides
of the method's config, so an ablation cell is just another RunConfig. The ablation engine
reads components from here and never imports method internals.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from prunelab.errors import PrunelabError, unknown


@dataclass
class Component:
    name: str
    default: str
    options: dict[str, dict[str, Any]]          # option -> method_args overrides
    remove: str | None = None                    # the option REMOVE maps to
    aliases: list[str] = field(default_factory=list)           # free-text names of the component
    option_aliases: dict[str, list[str]] = field(default_factory=dict)  # option -> free-text names
    numeric: str | None = None                   # method arg that takes any number (ADD 0.2, 0.5 ...)
    numeric_range: tuple[float, float] | None = None
    description: str = ""                        # what the component changes, in the method's terms
    # option -> what choosing it does, in words (one sentence or several phrasings); plan text is
    # matched against these by sentence embeddings (prunelab.ablation.semantic)
    option_descriptions: dict[str, str | list[str]] = field(default_factory=dict)
    # for a component whose options switch a set of terms on and off (SDTP's losses: which of LM,
    # MSE and ranking): phrase -> the option keys it names; a plan that lists the terms kept or
    # dropped ('MSE + ranking only', 'without the LM term') picks the option with that set
    terms: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self):
        if self.default not in self.options:
            raise ValueError(f"component {self.name}: default {self.default!r} not in options")
        if self.remove is not None and self.remove not in self.options:
            raise ValueError(f"component {self.name}: remove {self.remove!r} not in options")
        keys = {k for ov in self.options.values() for k in ov}
        bad = sorted({k for ks in self.terms.values() for k in ks} - keys)
        if bad:
            raise ValueError(f"component {self.name}: terms name keys no option sets: {bad}")
        extra = set(self.option_descriptions) - set(self.options)
        if extra:
            raise ValueError(f"component {self.name}: option_descriptions for unknown options {sorted(extra)}")

    def overrides(self, option: str) -> dict[str, Any]:
        if option not in self.options:
            raise unknown(f"option of component {self.name!r}", option, self.options)
        return dict(self.options[option])

    def numeric_overrides(self, value: float) -> dict[str, Any]:
        if self.numeric is None:
            raise PrunelabError(f"component {self.name!r} takes no numeric value (options: {', '.join(self.options)})")
        lo, hi = self.numeric_range or (float("-inf"), float("inf"))
        if not lo <= value <= hi:
            raise PrunelabError(f"{self.name} value {value} out of range [{lo}, {hi}]")
        return {self.numeric: value}


@dataclass
class Method:
    name: str
    config_cls: type
    build: Callable[..., Any]                    # build(loaded, config, ctx) -> MethodPlugin
    components: dict[str, Component] = field(default_factory=dict)
    description: str = ""
    runner: Callable[..., dict] | None = None    # methods that are not a fine-tuning run (SDTP) run themselves
    # What the method can train, declared so that a run is refused before it starts and the test
    # battery (tests/test_battery.py) knows which cases to run. None = every one.
    task_kinds: tuple[str, ...] | None = None    # classification, regression, qa, seq2seq, lm
    families: tuple[str, ...] | None = None      # family adapter names: bert, t5, llama

    def supports(self, task_kind: str, family: str | None = None) -> bool:
        return ((self.task_kinds is None or task_kind in self.task_kinds)
                and (family is None or self.families is None or family in self.families))

    def check_supports(self, task_kind: str, family: str | None = None) -> None:
        if not self.supports(task_kind, family):
            kinds = ", ".join(self.task_kinds or ("any",))
            fams = ", ".join(self.families or ("any",))
            raise PrunelabError(f"method {self.name!r} does not support {task_kind} on {family} models "
                                f"(task kinds: {kinds}; families: {fams})")

    def make_config(self, args: dict | None):
        from prunelab.config import _build

        args = dict(args or {})
        preset = args.pop("preset", None)
        base = {}
        if preset is not None:
            presets = getattr(self.config_cls, "PRESETS", {})
            if preset not in presets:
                raise unknown(f"preset of method {self.name!r}", preset, presets)
            base = dict(presets[preset])
        base.update(args)
        return _build(self.config_cls, base, f"method_args ({self.name})")


_METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    _METHODS[method.name] = method
    return method


def _load_builtin():
    # importing each package registers its methods; new methods add one line here
    import prunelab.methods.ft  # noqa: F401
    import prunelab.methods.lora  # noqa: F401

    for optional in ("prunelab.methods.apt", "prunelab.methods.masktune", "prunelab.methods.cofi",
                     "prunelab.methods.sdtp"):
        try:
            __import__(optional)
        except ModuleNotFoundError as e:
            if e.name != optional and not optional.startswith(str(e.name)):
                raise


def get_method(name: str) -> Method:
    _load_builtin()
    if name not in _METHODS:
        raise unknown("method", name, _METHODS)
    return _METHODS[name]


def list_methods() -> list[str]:
    _load_builtin()
    return sorted(_METHODS)


def components(method: str) -> dict[str, Component]:
    return get_method(method).components


def config_fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]
