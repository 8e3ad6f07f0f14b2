"""Free text -> (component, option) and metric keys, with a method registered by the test."""
import dataclasses
import glob

import pytest

from prunelab.ablation.fake import reference_components
from prunelab.ablation.generate import generate_plan
from prunelab.ablation.metrics import resolve_metric
from prunelab.ablation.parse import load_plan
from prunelab.ablation.plan import Ablation, Plan
from prunelab.ablation.resolve import parse_number, resolve_ablation, resolve_plan
from prunelab.errors import PrunelabError
from prunelab.methods.registry import Component, Method, get_method, register_method
from paths import SEEDS


@dataclasses.dataclass
class ToyAptConfig:
    salience: str = "outlier_aware"
    tuning: str = "adaptive"
    distill: str = "self"
    schedule: str = "early"
    mask_update: str = "adaptive"
    target_sparsity: float = 0.6


@pytest.fixture(scope="module")
def toy_apt():
    register_method(Method("toy_apt", ToyAptConfig, build=lambda *a: None,
                           components=reference_components("apt")))
    return "toy_apt"


def seed(prefix):
    found = glob.glob(f"{SEEDS}/{prefix}_*.txt")
    if not found:
        pytest.skip("seed plans not found")
    return found[0]


def picks(res):
    return [[(c.component, c.label) for c in item.choices] for item in res.items]


def test_seed_000_resolves(toy_apt):
    res = resolve_plan(load_plan(seed("000")), toy_apt)
    assert picks(res) == [
        [("tuning", "static_initial"), ("tuning", "static_mid"), ("tuning", "static_final")],
        [("distill", "none")],
        [("schedule", "gradual"), ("schedule", "late")],
        [("mask_update", "fixed")],
        [("salience", "standard")]]
    m = res.items[0].metrics
    assert [(x.key, x.spec.unit) for x in m] == [("score", ""), ("train_seconds", "min"), ("train_peak_mem_mb", "GB"),
                                                  ("speedup", "x"), ("inf_peak_mem_mb", "GB")]
    assert m[1].spec.scale == pytest.approx(1 / 60) and m[2].spec.scale == pytest.approx(1 / 1024)


def test_seed_001_resolves(toy_apt):
    res = resolve_plan(load_plan(seed("001")), toy_apt)
    assert picks(res) == [
        [("salience", "magnitude"), ("salience", "gradient"), ("salience", "random")],
        [("tuning", "static_initial"), ("tuning", "uniform")],
        [("teacher_sharing", "separate")],          # 'Parameter sharing in self-distillation': the head noun
        [("schedule", "late"), ("schedule", "gradual"), ("schedule", "oneshot_init")]]
    assert [m.key for m in res.items[1].metrics] == ["score", "tta_s", "train_peak_mem_mb"]
    assert [m.key for m in res.items[3].metrics] == ["score", "tta_s", "speedup"]


def test_seed_002_resolves_numbers(toy_apt):
    res = resolve_plan(load_plan(seed("002")), toy_apt)
    assert picks(res)[:4] == [[("pruning", "none")], [("tuning", "static_initial")],
                              [("salience", "random"), ("salience", "uniform")], [("distill", "none")]]
    sweep = res.items[4].choices
    assert [(c.component, c.value, c.overrides) for c in sweep] == [
        ("sparsity", 0.2, {"target_sparsity": 0.2}), ("sparsity", 0.5, {"target_sparsity": 0.5}),
        ("sparsity", 0.8, {"target_sparsity": 0.8})]
    assert [m.key for m in res.items[0].metrics] == ["score", "speedup"]
    assert [m.key for m in res.items[2].metrics] == ["score", "tta_s"]


def test_seed_004_resolves_against_reference_sdtp_components():
    comps = reference_components("sdtp")
    res = resolve_plan(load_plan(seed("004")), components=comps)
    assert not res.unresolved and len(res.items) == 13
    got = {i.ablation.id: (i.choices[0].component, i.choices[0].label) for i in res.items}
    assert got["A1"] == ("pruner", "saliency_only")
    assert got["A3"] == ("loss", "lm_mse") and got["A5"] == ("loss", "lm")
    assert got["A8"] == ("keep_ratio", "keep_ratio=0.3")
    assert got["B1"] == ("prune_layers", "single") and got["B2"] == ("rope_fix", "off")
    assert [m.key for m in res.items[0].metrics] == ["perplexity", "prefill_speedup"]


def test_seed_004_resolves_against_the_real_sdtp_components():
    mod = pytest.importorskip("prunelab.methods.sdtp.components", reason="SDTP not in this tree")
    comps = {k: Component(name=k, **v) for k, v in mod.COMPONENTS.items()}
    res = resolve_plan(load_plan(seed("004")), components=comps)
    assert not res.unresolved and len(res.items) == 13


@pytest.mark.parametrize("part, action, repl, expected", [
    ("kurtosis-based salience", "REPLACE", ["weight magnitude"], [("salience", "magnitude")]),
    ("salience scores", "REPLACE", ["`uniform`"], [("salience", "uniform")]),
    ("self distillation", "REMOVE", [], [("distill", "none")]),
    ("the distillation objective", "REPLACE", ["a frozen teacher"], [("distill", "separate_teacher")]),
    ("target sparsity", "ADD", ["50%", "70%", "sparsity=0.3"], [("sparsity", "sparsity=0.5"),
                                                               ("sparsity", "sparsity=0.7"),
                                                               ("sparsity", "sparsity=0.3")]),
    ("Pruning Schedule", "REPLACE", ["prune late"], [("schedule", "late")]),
])
def test_paraphrases(part, action, repl, expected):
    comps = reference_components("apt")
    got = resolve_ablation(Ablation(name="x", ablated_part=part, action=action, replacement=repl), comps)
    assert [(c.component, c.label) for c in got] == expected


def test_unresolvable_part_lists_closest_components():
    comps = reference_components("apt")
    with pytest.raises(PrunelabError, match=r"(matches no component well|is out of scope: no component covers it); closest: .*\(0\.\d\d\)"):
        resolve_ablation(Ablation(name="x", ablated_part="optimizer momentum", action="REMOVE"), comps)


def test_unresolvable_option_lists_closest_options():
    comps = reference_components("apt")
    with pytest.raises(PrunelabError, match=r"matches no option; closest: salience\."):
        resolve_ablation(Ablation(name="x", ablated_part="salience scoring", action="REPLACE",
                                  replacement=["quantum annealing"]), comps)


def test_ambiguous_part_is_an_error():
    comps = {n: Component(n, "a", {"a": {}, "b": {n: "b"}}, remove="b", aliases=["token dropping"])
             for n in ("drop_early", "drop_late")}
    with pytest.raises(PrunelabError, match="ambiguous: drop_.*drop_"):
        resolve_ablation(Ablation(name="x", ablated_part="token dropping", action="REMOVE"), comps)
    # a backtick pin settles it
    got = resolve_ablation(Ablation(name="x", ablated_part="token dropping (`drop_late`)", action="REMOVE"), comps)
    assert got[0].component == "drop_late"


def test_component_without_remove_option():
    comps = reference_components("apt")
    with pytest.raises(PrunelabError, match="cannot be removed; REPLACE it with one of: gradual, late"):
        resolve_ablation(Ablation(name="x", ablated_part="pruning schedule", action="REMOVE"), comps)


def test_number_for_a_component_without_numeric_argument():
    comps = reference_components("apt")
    with pytest.raises(PrunelabError, match="matches component 'tuning', which takes no number"):
        resolve_ablation(Ablation(name="x", ablated_part="adapter rank", action="ADD", replacement=["8"]), comps)
    with pytest.raises(PrunelabError, match="matches no numeric component well"):
        resolve_ablation(Ablation(name="x", ablated_part="learning rate", action="ADD", replacement=["8"]), comps)


def test_numeric_out_of_range():
    comps = reference_components("apt")
    with pytest.raises(PrunelabError, match="out of range"):
        resolve_ablation(Ablation(name="x", ablated_part="pruning ratio", action="ADD", replacement=["0.99"]), comps)


def test_skip_unresolved_collects(toy_apt):
    plan = Plan("p", "toy_apt", [
        Ablation(name="ok", ablated_part="salience", action="REPLACE", replacement=["random scoring"],
                 metrics=["accuracy", "vibes"]),
        Ablation(name="bad", ablated_part="learning-rate warmup", action="REMOVE")])
    with pytest.raises(PrunelabError, match="ablation 'ok': metric 'vibes' not understood"):
        resolve_plan(plan)
    res = resolve_plan(plan, skip_unresolved=True)
    assert [i.ablation.name for i in res.items] == ["ok"]
    assert [(u.ablation, u.item) for u in res.unresolved] == [("ok", "vibes"), ("bad", "learning-rate warmup")]


def test_plan_without_method():
    plan = Plan("p", None, [Ablation(name="a", ablated_part="b", action="REMOVE")])
    with pytest.raises(PrunelabError, match="pass --method"):
        resolve_plan(plan)


def test_unknown_method_is_one_line():
    plan = Plan("p", "nosuchmethod", [Ablation(name="a", ablated_part="b", action="REMOVE")])
    with pytest.raises(PrunelabError, match="unknown method 'nosuchmethod'"):
        resolve_plan(plan)


@pytest.mark.parametrize("text, key, unit", [
    ("Avg. Performance", "score", ""), ("task performance", "score", ""), ("Training Time (min)", "train_seconds", "min"),
    ("training time", "train_seconds", "min"), ("Training time (s)", "train_seconds", "s"),
    ("Peak Memory (GB)", "train_peak_mem_mb", "GB"), ("memory footprint", "train_peak_mem_mb", "GB"),
    ("training memory usage", "train_peak_mem_mb", "GB"), ("Peak memory (MB)", "train_peak_mem_mb", "MB"),
    ("Inference Speedup", "speedup", "x"), ("inference speed", "speedup", "x"),
    ("Inference efficiency", "speedup", "x"), ("Inference Memory", "inf_peak_mem_mb", "GB"),
    ("convergence speed", "tta_s", "min"), ("Training efficiency", "tta_s", "min"),
    ("Pruning efficiency", "tta_s", "min"), ("throughput (bs 32)", "throughput_bs32", "samples/s"),
    ("relative accuracy", "rel_acc", "%"), ("#params", "params", "M"), ("FLOPs", "flops_per_sample", "GFLOPs"),
])
def test_metric_text(text, key, unit):
    m = resolve_metric(text, "apt")
    assert (m.key, m.spec.unit) == (key, unit)


@pytest.mark.parametrize("text, key", [
    ("perplexity", "perplexity"), ("PPL", "perplexity"), ("Performance", "perplexity"), ("accuracy", "accuracy"),
    ("prefill speedup", "prefill_speedup"), ("Speed", "prefill_speedup"), ("FLOPs", "prefill_gflops"),
    ("latency", "prefill_latency_s"), ("end-to-end latency", "e2e_latency_s"), ("memory", "inf_peak_mem_mb"),
    ("communication", "comm_bytes"),
])
def test_sdtp_metric_text(text, key):
    assert resolve_metric(text, "sdtp").key == key


def test_unknown_metric():
    with pytest.raises(PrunelabError, match="not understood"):
        resolve_metric("vibes", "apt")


def test_parse_number():
    assert parse_number("0.2") == (0.2, False)
    assert parse_number("50%") == (0.5, True)
    assert parse_number("keep ratio 0.5") == (0.5, False)
    assert parse_number("prune only L4") is None
    assert parse_number("Fixed initial rank") is None
    assert parse_number("between 0.2 and 0.4") is None


@pytest.mark.parametrize("method", ["fake_apt", "fake_sdtp"])
def test_generated_plan_round_trips_and_covers_every_component(method):
    from prunelab.ablation.fake import register_fake_methods

    register_fake_methods()
    text = generate_plan(method)
    plan = load_plan(text, method=method)
    res = resolve_plan(plan)
    assert not res.unresolved
    comps = get_method(method).components
    touched = {c.component for i in res.items for c in i.choices}
    ablatable = {n for n, c in comps.items() if c.remove or c.numeric or len(c.options) > 1}
    assert touched == ablatable
    for item in res.items:
        for ch in item.choices:
            comp = comps[ch.component]
            if ch.option is not None:
                assert ch.overrides == comp.options[ch.option]


def test_generated_plans_of_registered_methods_round_trip():
    from prunelab.methods.registry import list_methods

    done = 0
    for name in list_methods():
        if name.startswith(("fake_", "toy_")) or not get_method(name).components:
            continue
        res = resolve_plan(load_plan(generate_plan(name), method=name))
        assert not res.unresolved
        done += 1
    if not done:
        pytest.skip("no registered method declares components yet")


EXAMPLES = sorted(p for p in glob.glob(str(__import__("pathlib").Path(__file__).parents[1] / "examples/plans/*"))
                  if not p.endswith("README.md"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.rsplit("/", 1)[-1])
def test_example_plans_resolve(path):
    plan = load_plan(path)
    try:
        comps = get_method(plan.method).components
    except PrunelabError:
        pytest.skip(f"method {plan.method!r} not registered")
    if not comps:
        pytest.skip(f"method {plan.method!r} declares no components yet")
    res = resolve_plan(plan)
    assert not res.unresolved and len(res.items) == len(plan.ablations)


@pytest.mark.parametrize("opinion, filled", [
    (("masks.fixed", 0.9), True),            # a confident option fills the cell, flagged
    (("masks.fixed", 0.4), False),           # below second.MIN_PROB: the cell stays unresolved
    (("OUT_OF_SCOPE", 0.9), False),          # 'out of scope' never becomes a run
    (("sparsity=0.5", 0.9), False),          # numbers are the rules' to parse, not the classifier's
    (("masks.no_such_option", 0.9), False),
])
def test_second_opinion_fills_only_a_cell_the_rules_left_open(monkeypatch, opinion, filled):
    from prunelab.ablation import resolve, second

    comps = get_method("apt").components
    m = resolve.Matcher(comps, method="apt")
    abl = Ablation(name="x", ablated_part="the zorblax frobnicator", action="REPLACE", replacement=["quux wibble"])
    monkeypatch.setattr(second, "opinion", lambda *a, **k: None)
    assert isinstance(resolve.resolve_cells(abl, comps, matcher=m)[0], resolve.Unclear)   # the rules alone
    monkeypatch.setattr(second, "opinion", lambda *a, **k: opinion)
    cell = resolve.resolve_cells(abl, comps, matcher=m)[0]
    if filled:
        assert (cell.component, cell.option, cell.overrides) == ("masks", "fixed", comps["masks"].overrides("fixed"))
        assert "check it" in cell.flag and "0.90" in cell.flag
    else:
        assert isinstance(cell, resolve.Unclear)


def test_second_opinion_never_replaces_a_confident_rule_choice(monkeypatch):
    from prunelab.ablation import resolve, second

    comps = get_method("apt").components
    m = resolve.Matcher(comps, method="apt")
    monkeypatch.setattr(second, "opinion", lambda *a, **k: ("masks.fixed", 0.99))
    abl = Ablation(name="x", ablated_part="the importance score", action="REPLACE",
                   replacement=["the absolute values of the weights"])
    cell = resolve.resolve_cells(abl, comps, matcher=m)[0]
    assert (cell.component, cell.option) == ("salience", "magnitude") and cell.flag   # kept, but flagged
