import pytest

from prunelab.config import RunConfig, TrainConfig
from prunelab.errors import PrunelabError


def test_hash_is_stable_and_ignores_labels():
    a = RunConfig(model="tiny-bert", seed=1)
    b = RunConfig(model="tiny-bert", seed=1, study="s", cell="c")
    assert a.hash() == b.hash()
    assert a.hash() != RunConfig(model="tiny-bert", seed=2).hash()
    assert a.hash() != a.with_overrides({"train.lr": 1e-4}).hash()


def test_dotted_overrides_from_strings():
    c = RunConfig().with_overrides(["train.lr=1e-4", "train.max_steps=7", "method_args.r=16", "seed=3"])
    assert c.train.lr == 1e-4 and c.train.max_steps == 7 and c.method_args == {"r": 16} and c.seed == 3


def test_round_trip():
    c = RunConfig(model="m", method_args={"x": 1}, train=TrainConfig(lr=1e-3))
    assert RunConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("bad, msg", [
    ({"trian": {}}, "did you mean 'train'"),
    ({"train": {"lrr": 1e-4}}, "did you mean 'lr'"),
    ({"train": {"lr": -1}}, "train.lr must be > 0"),
    ({"train": {"batch_size": "many"}}, "train.batch_size must be an integer"),
    ({"seed": -1}, "seed must be >= 0"),
])
def test_bad_config_is_one_line_error(bad, msg):
    with pytest.raises(PrunelabError) as e:
        RunConfig.from_dict(bad)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_unknown_section_in_override():
    with pytest.raises(PrunelabError, match="did you mean 'train'"):
        RunConfig().with_overrides(["trains.lr=1"])


def test_resolve_rejects_unknown_method_and_method_key():
    with pytest.raises(PrunelabError, match="unknown method 'lorra'.*'lora'"):
        RunConfig(method="lorra").resolve()
    with pytest.raises(PrunelabError, match="did you mean 'alpha'"):
        RunConfig(method="lora", method_args={"alpah": 3}).resolve()
    r = RunConfig(method="lora", method_args={"r": 4}).resolve()
    assert r.method_args["r"] == 4 and r.method_args["alpha"] == 16
