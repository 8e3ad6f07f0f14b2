"""Plan parsers: the seed plans, AblationBench JSONL, YAML, matrix tables, and their errors."""
import glob
import json
from pathlib import Path

import pytest

from prunelab.ablation.parse import detect_method, load_plan, sniff
from prunelab.ablation.plan import Ablation, Action, Plan
from prunelab.ablation.text import clean_lines, fix_mojibake
from prunelab.errors import PrunelabError
from paths import SEEDS



def seed(prefix: str) -> str:
    found = glob.glob(str(SEEDS / f"{prefix}_*.txt"))
    if not found:
        pytest.skip(f"seed {prefix} not found under {SEEDS}")
    return found[0]


def test_seed_000_gemini():
    p = load_plan(seed("000"))
    assert p.method == "apt"
    assert [a.name for a in p.ablations] == ["Static Tuning Rank", "No Knowledge Distillation", "Late Pruning",
                                            "Fixed Pruning Mask", "Standard Salience Score"]
    assert [a.action for a in p.ablations] == [Action.REPLACE, Action.REMOVE, Action.REPLACE, Action.REPLACE,
                                              Action.REPLACE]
    assert p.ablations[0].replacement == ["Fixed initial rank", "Fixed intermediate rank", "Fixed final rank"]
    assert p.ablations[1].replacement == []
    assert p.ablations[2].replacement == ["Prune gradually throughout training",
                                          "Prune all at once in the last quarter of training"]
    assert p.ablations[0].metrics == ["Avg. Performance", "Training Time (min)", "Peak Memory (GB)",
                                      "Inference Speedup", "Inference Memory"]
    assert p.ablations[1].metrics == ["Avg. Performance", "Training Time (min)", "Peak Memory (GB)"]
    assert p.ablations[4].ablated_part == "Outlier-aware salience scoring function for pruning"


def test_seed_001_claude():
    p = load_plan(seed("001"))
    assert p.method == "apt"
    assert [a.name for a in p.ablations] == ["Salience Scoring", "Adaptive Tuning", "Self-Distillation",
                                            "Early Pruning Schedule"]
    assert [len(a.replacement) for a in p.ablations] == [3, 2, 0, 3]
    assert p.ablations[2].action is Action.REMOVE
    assert p.ablations[1].metrics == ["task performance", "convergence speed", "memory footprint"]


def test_seed_002_llama():
    p = load_plan(seed("002"))
    assert len(p.ablations) == 5
    assert [a.action.value for a in p.ablations] == ["REMOVE", "REMOVE", "REPLACE", "REMOVE", "ADD"]
    assert [a.id for a in p.ablations] == ["1", "2", "3", "4", "5"]
    assert p.ablations[4].ablated_part == "Pruning ratio"
    assert p.ablations[4].replacement == ["0.2", "0.5", "0.8"]
    assert p.ablations[2].replacement == ["Random scoring", "Uniform scoring"]


def test_seed_004_matrix_keeps_hypotheses_and_sections():
    p = load_plan(seed("004"))
    assert p.method == "sdtp"
    assert [a.id for a in p.ablations] == ["A1", "A2", "A3", "A4", "A5", "A6", "A7", "A8", "A9", "B1", "B2",
                                          "C1", "C2"]     # the Chinese copy of the table adds nothing
    a = {x.id: x for x in p.ablations}
    assert a["A1"].hypothesis == "Learnable pruner performance > saliency"
    assert a["A1"].expected_effect == "Performance ↓, Speed ≈"
    assert a["A3"].action is Action.REPLACE and a["A3"].replacement == ["LM+MSE"]
    assert a["A3"].ablated_part == "ranking loss" and a["A3"].variable == "loss=LM+MSE"
    assert a["A7"].replacement == ["0.5"] and a["A7"].ablated_part == "ratio"
    assert a["A6"].action is Action.REMOVE and a["A6"].ablated_part == "head/tail Preserve"
    assert a["B1"].replacement == ["prune only L4"]
    assert a["B2"].action is Action.REMOVE and a["B2"].expected_effect == "Model crashes"
    assert a["C1"].action is Action.REMOVE and a["C1"].ablated_part == "hard mask"
    assert all(x.metrics[:2] == ["Performance", "Speed"] for x in p.ablations)
    assert [(s.number, s.ids) for s in p.sections] == [
        ("6.1", ["A1", "A2"]), ("6.2", ["A3", "A4", "A5"]), ("6.3", ["A7", "A8", "A9"]), ("6.4", ["A6"]),
        ("6.5", ["B2"]), ("6.6", ["B1"]), ("6.7", ["C1", "C2"])]
    assert p.sections[0].title == "Effect of the Learnable Pruner"
    assert p.intro.startswith("To better understand the contribution of each SDTP component")


def test_plan_round_trips_through_jsonl_and_yaml(tmp_path):
    p = load_plan(seed("000"))
    j = tmp_path / "plan.jsonl"
    j.write_text(p.to_jsonl())
    q = load_plan(j, method="apt")
    assert [a.to_dict() for a in q.ablations] == [a.to_dict() for a in p.ablations]
    y = tmp_path / "plan.yaml"
    y.write_text(p.to_yaml())
    r = load_plan(y)
    assert r.method == "apt" and [a.to_dict() for a in r.ablations] == [a.to_dict() for a in p.ablations]


def test_ablationbench_predictions_block():
    text = ("<discussion>thinking</discussion>\n<predictions>\n"
            '{"name": "no kd", "ablated_part": "distillation", "action": "REMOVE", "replacement": [], '
            '"metrics": ["accuracy"]}\n'
            '{"name": "sal", "ablated_part": "salience", "action": "REPLACE", '
            '"replacement": {"magnitude": "weights", "random": null}, "metrics": ["F1"]}\n'
            "</predictions>")
    p = load_plan(text)
    assert [a.action for a in p.ablations] == [Action.REMOVE, Action.REPLACE]
    assert p.ablations[1].replacement == ["magnitude: weights", "random"]


def test_json_list_and_object_forms():
    one = {"name": "x", "ablated_part": "y", "action": "add", "replacement": ["0.5"], "metrics": "acc, time"}
    assert load_plan(json.dumps([one])).ablations[0].metrics == ["acc, time"]
    assert load_plan(json.dumps({"ablations": [one]})).ablations[0].action is Action.ADD
    assert load_plan(json.dumps(one, indent=2)).ablations[0].name == "x"


def test_tolerant_markdown_variants():
    text = """<div class="x"><style>h3 {color: red}</style>
## Plan
1. **Ablation 1: Rank growth**
   * Ablated Part: adaptive tuning
   * action - REMOVE
   * Action: remove
   * Metrics: accuracy; training time
### Salience Ablation
- **Ablated Part:** salience
- **Replacement**:
  * magnitude
  * fixed rank
    - r=8
    - r=16
- Metrics:
  - accuracy
### Ablation: No Distillation
- **Ablated Part**:
  self distillation
- **Metrics**: accuracy
</div>"""
    p = load_plan(text, method="apt")
    assert [a.name for a in p.ablations] == ["Rank growth", "Salience", "No Distillation"]
    assert p.ablations[0].action is Action.REMOVE and p.ablations[0].metrics == ["accuracy", "training time"]
    assert p.ablations[1].action is Action.REPLACE      # inferred from the replacement list
    assert p.ablations[1].replacement == ["magnitude", "fixed rank: r=8", "fixed rank: r=16"]
    assert p.ablations[2].action is Action.REMOVE and p.ablations[2].ablated_part == "self distillation"


def test_mojibake_and_html_are_cleaned():
    assert fix_mojibake("ðŸ§\xa0 Reasoning") == "🧠 Reasoning"
    assert fix_mojibake("Café costs €5") == "Café costs €5"
    lines = clean_lines("<style>\n.a{}\n</style>\n<h2 style='x'>ðŸ“‹ Ablation Plan</h2>\nok &amp; fine")
    assert lines == ["", "", "", "📋 Ablation Plan", "ok & fine"]


def test_method_detection():
    assert detect_method("lm-planner/gemini-25-flash/apt", "") == "apt"
    assert detect_method("Phase E: SDTP Ablation Study", "") == "sdtp"
    assert detect_method("my plan", "we ablate SDTP ... SDTP ... APT") == "sdtp"
    assert detect_method("my plan", "nothing here") is None


@pytest.mark.parametrize("text, fragment", [
    ("### Ablation: X\n- **Ablated Part**: y\n- **Action**: REPLACE\n- **Metrics**: a\n", "needs a replacement"),
    ("### Ablation: X\n- **Ablated Part**: y\n- **Action**: FROB\n", "unknown action"),
    ("### Ablation: X\n- **Ablated Part**: y\n- **Metrics**: a\n", "has no Action"),
    ("just prose, no plan at all", "no ablations found"),
    ('{"name": "a", "ablated_part": "b", "action": "REMOVE"}\n{"name": ', "invalid JSON"),
    ('{"name": "a", "ablatd_part": "b", "action": "REMOVE"}', "did you mean 'ablated_part'"),
    ('{"name": "a", "action": "REMOVE"}', "missing field 'ablated_part'"),
    ("ablations:\n  - name: [unclosed\n", "invalid YAML"),
    ("ablations: 5\n", "must be a list"),
])
def test_malformed_plans_give_one_line_errors(tmp_path, text, fragment):
    f = tmp_path / ("plan.jsonl" if text.startswith("{") else "plan.yaml" if text.startswith("abl") else "plan.md")
    f.write_text(text)
    with pytest.raises(PrunelabError) as e:
        load_plan(f)
    msg = str(e.value)
    assert fragment in msg and "\n" not in msg
    assert str(f) in msg or "no ablations" in msg or "plan" in msg


def test_error_names_file_and_line(tmp_path):
    f = tmp_path / "p.md"
    f.write_text("# t\n\n### Ablation: X\n- **Ablated Part**: y\n- **Action**: ADD\n")
    with pytest.raises(PrunelabError, match=r"p\.md:5: ablation 'X': action ADD needs a replacement"):
        load_plan(f)


def test_missing_file_and_bad_format():
    with pytest.raises(PrunelabError, match="not found"):
        load_plan("/nonexistent/plan.md")
    with pytest.raises(PrunelabError, match="unknown plan format"):
        load_plan("x", format="docx")


def test_sniff():
    assert sniff('{"a": 1}') == "jsonl"
    assert sniff("ablations:\n  - name: x") == "yaml"
    assert sniff("| ID | Description | Variable Changed | Hypothesis | Expected Effect |\n|---|---|---|---|---|\n") \
        == "table"
    assert sniff("### Ablation: x\n- **Ablated Part**: y") == "markdown"


def test_schema_validation():
    with pytest.raises(PrunelabError, match="no ablated part"):
        Ablation(name="a", ablated_part=" ", action="REMOVE")
    a = Ablation(name="a", ablated_part="b", action="disable", metrics="accuracy")
    assert a.action is Action.REMOVE and a.metrics == ["accuracy"]
    with pytest.raises(PrunelabError, match="duplicate"):
        Plan("p", "apt", [a, Ablation(name="a", ablated_part="c", action="REMOVE")])
    with pytest.raises(PrunelabError, match="no ablations"):
        Plan("p", "apt", [])


def test_duplicate_names_in_a_file_get_suffixes():
    text = "### Ablation: X\n- Ablated Part: a\n- Action: REMOVE\n### Ablation: X\n- Ablated Part: b\n- Action: REMOVE\n"
    assert [a.name for a in load_plan(text).ablations] == ["X", "X (2)"]
