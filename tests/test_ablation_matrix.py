"""Plan -> cells x seeds -> RunConfigs keyed by hash; identical cells share one run."""
import glob

import pytest

from prunelab.ablation.fake import register_fake_methods
from prunelab.ablation.matrix import build_matrix
from prunelab.ablation.parse import load_plan
from prunelab.ablation.plan import Ablation, Plan
from prunelab.ablation.presets import base_config, reference_config
from prunelab.ablation.resolve import resolve_plan
from prunelab.errors import PrunelabError
from paths import SEEDS


@pytest.fixture(scope="module", autouse=True)
def fakes():
    register_fake_methods()


def seed(prefix):
    found = glob.glob(f"{SEEDS}/{prefix}_*.txt")
    if not found:
        pytest.skip("seed plans not found")
    return found[0]


def matrix_for(plan, seeds=3, reference=True, study=None):
    res = resolve_plan(plan, "fake_apt")
    ref = reference_config("tiny", "fake_apt") if reference else None
    return build_matrix(res, base_config("tiny", "fake_apt"), seeds, study=study, reference=ref)


def test_seed_000_counts():
    m = matrix_for(load_plan(seed("000")))
    labels = [c.label for c in m.cells]
    assert labels[0] == "baseline" and labels[-1] == "reference"
    assert len(m.cells) == 1 + 3 + 1 + 2 + 1 + 1 + 1
    assert len(m.runs) == len(m.cells) * 3 and len(m.links()) == len(m.runs)
    assert "static-tuning-rank/static_initial" in labels and "no-knowledge-distillation/none" in labels
    run = m.run_of("no-knowledge-distillation/none", 2)
    assert run.config.seed == 2 and run.config.method_args["distill"] == "none"
    assert run.config.study == m.study and run.config.cell == "no-knowledge-distillation/none"
    ref = m.run_of("reference", 0).config
    assert ref.method == "ft" and ref.model == run.config.model and ref.task == run.config.task


def test_seed_002_numeric_cells():
    m = matrix_for(load_plan(seed("002")), seeds=[0, 7], reference=False)
    sweep = [c for c in m.cells if c.component == "sparsity"]
    assert [c.label for c in sweep] == ["ablation-5/sparsity=0.2", "ablation-5/sparsity=0.5", "ablation-5/sparsity=0.8"]
    assert m.run_of("ablation-5/sparsity=0.5", 7).config.method_args["target_sparsity"] == 0.5
    assert m.seeds == [0, 7]


def test_identical_cells_share_one_run():
    plan = Plan("p", "fake_apt", [
        Ablation(name="Standard Salience", ablated_part="salience", action="REPLACE",
                 replacement=["standard activation-gradient product salience"]),
        Ablation(name="Salience Scoring", ablated_part="salience scoring", action="REPLACE",
                 replacement=["standard salience", "`outlier_aware`"]),
    ])
    m = matrix_for(plan, seeds=2, reference=False)
    assert len(m.cells) == 4                       # baseline + 3 variants
    assert len(m.links()) == 8
    assert len(m.runs) == 4                        # standard twice -> once; outlier_aware == baseline
    shared = m.run_of("standard-salience/standard", 1)
    assert shared is m.run_of("salience-scoring/standard", 1)
    assert m.run_of("salience-scoring/outlier_aware", 0) is m.run_of("baseline", 0)
    assert any("identical configs" in n for n in m.notes)


def test_hash_is_shared_across_plans_and_ignores_labels():
    a = matrix_for(Plan("one", "fake_apt", [Ablation(name="A", ablated_part="distillation", action="REMOVE")]),
                   seeds=1, reference=False, study="s1")
    b = matrix_for(Plan("two", "fake_apt", [Ablation(name="B", ablated_part="self-distillation", action="REMOVE")]),
                   seeds=1, reference=False, study="s2")
    assert {r.run_id for r in a.runs} == {r.run_id for r in b.runs}
    assert a.run_of("a/none", 0).config.study == "s1" and b.run_of("b/none", 0).config.study == "s2"


def test_seed_changes_the_hash():
    m = matrix_for(Plan("p", "fake_apt", [Ablation(name="A", ablated_part="distillation", action="REMOVE")]),
                   seeds=3, reference=False)
    assert len({m.run_of("baseline", s).run_id for s in range(3)}) == 3


@pytest.mark.parametrize("seeds", [0, [], [1, 1], [-1], ["x"]])
def test_bad_seeds(seeds):
    with pytest.raises(PrunelabError, match="seeds"):
        matrix_for(Plan("p", "fake_apt", [Ablation(name="A", ablated_part="distillation", action="REMOVE")]),
                   seeds=seeds)


def test_base_must_match_method():
    res = resolve_plan(Plan("p", "fake_apt", [Ablation(name="A", ablated_part="distillation", action="REMOVE")]))
    with pytest.raises(PrunelabError, match="base config is for method 'ft'"):
        build_matrix(res, base_config("tiny", "ft"), 1)


def test_presets():
    assert base_config("tiny", "fake_sdtp").model == "tiny-llama"
    assert base_config("cpu", "apt").model == "minilm-l6"
    assert base_config("paper", "sdtp").model.startswith("meta-llama/")
    assert reference_config("tiny", "fake_sdtp") is None
    assert base_config("tiny", "fake_apt", ["model=tiny-roberta"]).model == "tiny-roberta"
    with pytest.raises(PrunelabError, match="unknown preset"):
        base_config("huge", "apt")
