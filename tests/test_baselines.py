"""The baseline methods are registered under APT's names, resolve from configs and expose components."""
import pytest

from prunelab.config import RunConfig
from prunelab.errors import PrunelabError
from prunelab.methods.registry import get_method, list_methods

NAMES = {"masktune": "ft", "lora_prune": "lora", "prune_distill": "full", "cofi": "full", "lora_prune_distill": "lora"}


def test_registered():
    assert set(NAMES) <= set(list_methods())


@pytest.mark.parametrize("name", sorted(NAMES))
def test_resolve_defaults(name):
    cfg = RunConfig(model="tiny-bert", method=name).resolve()
    args = cfg.method_args
    assert args["sparsity"] == 0.6
    assert args.get("base", args.get("tuning")) == NAMES[name]
    # the same method args hash the same: shared store rows across benchmarks
    assert RunConfig(model="tiny-bert", method=name).resolve().hash() == cfg.hash()


@pytest.mark.parametrize("name", sorted(NAMES))
def test_components_apply(name):
    m = get_method(name)
    assert "sparsity" in m.components
    for comp in m.components.values():
        for option in comp.options:
            m.make_config(comp.overrides(option))        # every option is a valid config
    m.make_config(m.components["sparsity"].numeric_overrides(0.5))


def test_unknown_arg_is_one_line_error():
    with pytest.raises(PrunelabError, match="did you mean"):
        get_method("lora_prune").make_config({"retune_step": 3})
    with pytest.raises(PrunelabError):
        get_method("prune_distill").make_config({"sparsity": 2})
