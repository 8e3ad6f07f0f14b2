"""Reports regenerated from a store: stats, verdicts, Markdown/LaTeX/CSV/PNG/HTML, paper section."""
import csv
import glob
import io

import pytest

from prunelab.ablation import cli
from prunelab.ablation.fake import fake_runner, register_fake_methods
from prunelab.ablation.matrix import build_matrix
from prunelab.ablation.parse import load_plan
from prunelab.ablation.plan import Ablation, Plan
from prunelab.ablation.presets import base_config
from prunelab.ablation.analysis import analyze
from prunelab.ablation.report import write_report
from prunelab.ablation.resolve import resolve_plan
from prunelab.ablation.stats import Comparison, Expectation, expected_sign, paired, parse_expectations, verdict
from prunelab.ablation.studies import save_study, study_meta
from prunelab.errors import PrunelabError
from prunelab.store import Store
from paths import SEEDS


@pytest.fixture(scope="module", autouse=True)
def fakes():
    register_fake_methods()


# ----------------------------------------------------------------------------- stats

@pytest.mark.parametrize("text, dims", [
    ("Performance ↓, Speed ≈", [("performance", -1, 1), ("speed", 0, 1)]),
    ("Performance ↓↓, Speed ↑↑", [("performance", -1, 2), ("speed", 1, 2)]),
    ("Performance ↓ (moderate)", [("performance", -1, 1)]),
    ("Small change", [("performance", 0, 1)]),
    ("accuracy degrades and memory decreases", [("performance", -1, 1), ("memory", -1, 1)]),
    ("faster inference", [("speed", 1, 1)]),
])
def test_parse_expectations(text, dims):
    assert [(e.dimension, e.direction, e.strength) for e in parse_expectations(text)] == dims


def test_expectations_from_hypothesis_and_implied():
    assert parse_expectations(None, "Ranking loss is important")[0].direction == -1
    crash = parse_expectations("Model crashes")[0]
    assert crash.crash and crash.direction == -1
    implied = parse_expectations(None, None, implied_action="REMOVE")[0]
    assert implied.implied and implied.dimension == "performance"
    assert parse_expectations(None, None, implied_action="ADD") == []


def test_expected_sign_follows_metric_orientation():
    perf_down = parse_expectations("Performance ↓")
    assert expected_sign(perf_down, "score").direction == -1
    assert expected_sign(perf_down, "perplexity").direction == 1       # worse = higher perplexity
    assert expected_sign(perf_down, "score", higher_is_better=False).direction == 1
    speed_up = parse_expectations("Speed ↑")
    assert expected_sign(speed_up, "prefill_latency_s").direction == -1
    assert expected_sign(speed_up, "train_peak_mem_mb") is None


def test_paired_and_verdicts():
    base = {0: 0.90, 1: 0.91, 2: 0.905}
    worse = {0: 0.85, 1: 0.86, 2: 0.851}
    c = paired(base, worse)
    assert c.n == 3 and c.test == "t-test" and c.significant and c.mean_diff == pytest.approx(-0.0513, abs=1e-3)
    assert c.ci[1] < 0 and c.p_value < 0.05
    assert verdict(Expectation("performance", -1), c, 0.905) == "confirmed"
    assert verdict(Expectation("performance", 1), c, 0.905) == "refuted"
    same = paired(base, {0: 0.901, 1: 0.909, 2: 0.906})
    assert verdict(Expectation("performance", 0), same, 0.905) == "confirmed"
    assert verdict(Expectation("performance", 0), c, 0.905) == "refuted"
    noisy = paired(base, {0: 0.95, 1: 0.86, 2: 0.90})
    assert verdict(Expectation("performance", -1), noisy, 0.905) == "inconclusive"
    assert verdict(Expectation("performance", -1), paired(base, {0: 0.5}), 0.905) == "inconclusive"
    assert verdict(Expectation("performance", -1, crash=True), Comparison(0, None, None, None, None, "none", False),
                   0.9, variant_failed=True) == "confirmed"
    assert verdict(None, c, 0.9) == ""
    # "the model crashes": runs that finish without collapsing refute it; a collapse confirms it
    crash = Expectation("performance", -1, crash=True)
    assert verdict(crash, c, 0.905) == "refuted"                         # 5.7% worse is no crash
    collapsed = paired(base, {0: 0.30, 1: 0.31, 2: 0.305})
    assert verdict(crash, collapsed, 0.905) == "confirmed"
    ppl_crash = Expectation("performance", 1, crash=True)                # perplexity: up is worse
    assert verdict(ppl_crash, paired({0: 16.0, 1: 17.0}, {0: 15.8, 1: 16.9}), 16.5) == "refuted"
    assert verdict(ppl_crash, paired({0: 16.0, 1: 17.0, 2: 16.5}, {0: 90.0, 1: 95.0, 2: 93.0}), 16.5) == "confirmed"
    many = paired({s: 0.9 + 0.001 * s for s in range(6)}, {s: 0.88 + 0.002 * (s % 2) for s in range(6)})
    assert many.test == "t-test" and many.significant


# ----------------------------------------------------------------------------- reports

def synthetic_study(tmp_path):
    """A fake_apt study with planted outcomes: confirmed, refuted, no-change, crash, pending."""
    plan = Plan("synthetic apt plan", "fake_apt", [
        Ablation(name="No KD", ablated_part="self-distillation", action="REMOVE", metrics=["accuracy", "Peak Memory (GB)"],
                 expected_effect="Performance ↓", id="A1"),
        Ablation(name="Random salience", ablated_part="salience", action="REPLACE", replacement=["random scoring"],
                 metrics=["accuracy", "Inference Speedup"], hypothesis="random scoring is better", expected_effect="Performance ↑"),
        Ablation(name="Uniform salience", ablated_part="salience", action="REPLACE", replacement=["uniform scoring"],
                 metrics=["accuracy"], expected_effect="Performance ≈"),
        Ablation(name="Gradual", ablated_part="pruning schedule", action="REPLACE", replacement=["gradual pruning"],
                 metrics=["accuracy"], expected_effect="Model crashes"),
        Ablation(name="Late", ablated_part="pruning schedule", action="REPLACE", replacement=["late pruning"],
                 metrics=["accuracy"]),
    ])
    res = resolve_plan(plan)
    m = build_matrix(res, base_config("tiny", "fake_apt"), [0, 1, 2], study="synth")
    store = Store(tmp_path / "runs.db")
    save_study(store.path, study_meta(m, "tiny"))
    shift = {"baseline": 0.0, "no-kd/none": -0.05, "random-salience/random": -0.04,
             "uniform-salience/uniform": 0.0005}
    for run in m.runs:
        cell = run.links[0][0]
        for c, s in run.links:
            store.link(m.study, c, s, run.run_id)
        if cell == "late/late":
            continue                                    # pending
        store.start(run.run_id, run.config.to_dict(), {})
        if cell == "gradual/gradual":
            store.fail(run.run_id, "RuntimeError: NaN loss")
            continue
        seed = run.config.seed
        metrics = {"score": 0.90 + 0.004 * seed + shift[cell] + 0.0003 * (seed % 2), "higher_is_better": True,
                   "train_peak_mem_mb": 4096 + 10 * seed, "throughput_bs32": 100 + seed, "speedup": 2.0 + 0.01 * seed,
                   # one run shared the CPU with another process: its wall time is stretched
                   "train_seconds": 60.0 * (2.0 if (cell, seed) == ("no-kd/none", 1) else 1.02),
                   "train_cpu_seconds": 60.0 - seed}
        curve = [{"step": 1, "seconds": 5.0, "score": metrics["score"]}]
        store.finish(run.run_id, metrics, curve)
    return store, m


def test_report_files_and_verdicts(tmp_path):
    store, m = synthetic_study(tmp_path)
    paths = write_report("synth", store, tmp_path / "out")
    names = {p.name for p in paths}
    assert {"report.md", "section.md", "report.tex", "results.csv", "report.html", "metric_score.png",
            "metric_train_peak_mem_mb.png", "metric_speedup.png", "accuracy_vs_speedup.png"} <= names
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| No KD | none | accuracy | ↓ | -0.05 (-5.5%) | confirmed |" in md
    assert "| Random salience | random (random scoring) | accuracy | ↑ | -0.04 (-4.4%) | REFUTED |" in md
    assert "| Uniform salience | uniform (uniform scoring) | accuracy | ≈ | +0.0005 (+0.1%) | confirmed |" in md
    assert "| Gradual | gradual (gradual pruning) | accuracy | crash | -- | confirmed |" in md
    assert "[3 pending]" in md and "failed: RuntimeError: NaN loss" in md
    assert "Peak Memory (GB) ↓" in md and "4.01 ± 0.0098" in md        # MB shown in GB
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "results.csv").read_text())))
    kd = [r for r in rows if r["cell"] == "no-kd/none" and r["metric"] == "score"][0]
    assert kd["verdict"] == "confirmed" and float(kd["delta"]) == pytest.approx(-0.05) and kd["n"] == "3"
    assert float([r for r in rows if r["cell"] == "no-kd/none" and r["metric"] == "train_peak_mem_mb"][0]["mean"]) \
        == pytest.approx(4106 / 1024 - 0.0, rel=1e-3)
    tex = (tmp_path / "out" / "report.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "$\\pm$" in tex
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "<table>" in html and "src=\"http" not in html
    section = (tmp_path / "out" / "section.md").read_text()
    assert "#### 6.1 Effect of Self-distillation" in section
    assert "lowers score from 0.9041 ± 0.004 to 0.8541 ± 0.004 (Δ -0.05 (-5.5%)" in section
    assert "3 paired seeds), as the plan predicted (Performance ↓)." in section
    assert "; the plan predicted a rise (“random scoring is better”: Performance ↑)." in section
    assert "APT's salience is worth having: `random` in its place costs 4.4% of score" in section
    assert "made every run fail (RuntimeError: NaN loss), as the plan predicted (a collapse)" in section
    assert "results pending (0/3 seeds finished)" in section
    # the timing check names the one disturbed run and how to re-run it
    assert "## Timing check" in md and "| no-kd/none | 1 | 120.0 | 59.0 | 2.03 |" in md
    assert md.count("--rerun ") == 1 and "--rerun no-kd/none:1" in md


def test_report_is_regenerated_from_the_store(tmp_path):
    store, m = synthetic_study(tmp_path)
    first = (tmp_path / "a")
    write_report("synth", store.path, first)
    run = m.run_of("late/late", 0)
    store.start(run.run_id, run.config.to_dict(), {})
    store.finish(run.run_id, {"score": 0.5}, [])
    write_report("synth", store.path, tmp_path / "b")
    assert "[3 pending]" in (first / "report.md").read_text()
    assert "[2 pending]" in (tmp_path / "b" / "report.md").read_text()


def test_unknown_study(tmp_path):
    store, _ = synthetic_study(tmp_path)
    with pytest.raises(PrunelabError, match="unknown study 'synt'; did you mean 'synth'"):
        write_report("synt", store)
    with pytest.raises(PrunelabError, match="no ablation study"):
        write_report("x", Store(tmp_path / "empty.db"))


def _fake_study(m, path) -> Store:
    """A store holding matrix `m` as a study, every run done by fake_runner."""
    store = Store(path)
    save_study(store.path, study_meta(m, "tiny"))
    for run in m.runs:
        for c, s in run.links:
            store.link(m.study, c, s, run.run_id)
        fake_runner(run.config, store)
    return store


def test_sdtp_section_follows_the_plan_layout(tmp_path):
    found = glob.glob(f"{SEEDS}/004_*.txt")
    if not found:
        pytest.skip("seed 004 not found")
    res = resolve_plan(load_plan(found[0]), "fake_sdtp")
    m = build_matrix(res, base_config("tiny", "fake_sdtp"), [0, 1], study="sdtp-synth")
    store = _fake_study(m, tmp_path / "runs.db")
    write_report("sdtp-synth", store, tmp_path / "out")
    section = (tmp_path / "out" / "section.md").read_text()
    heads = [line for line in section.splitlines() if line.startswith("#### ")]
    assert heads == ["#### 6.1 Effect of the Learnable Pruner", "#### 6.2 Contribution of Each Loss Component",
                     "#### 6.3 Influence of Pruning Ratio", "#### 6.4 Role of Head/Tail Preservation",
                     "#### 6.5 RoPE Index Correction Is Essential", "#### 6.6 Multi-Layer vs Single-Layer Pruning",
                     "#### 6.7 Communication Reduction in Multi-GPU Inference", "#### Threats to validity"]
    assert section.startswith("### 6. Ablation Studies\n\nTo better understand the contribution of each SDTP")
    # the three keep ratios of 6.3 read as one sweep, ordered, with the full method's 0.7 in its place
    sweep = section.split("#### 6.3")[1].split("#### ")[0]
    assert "Across ratio = 0.3, 0.5, 0.7, 0.8, perplexity goes" in sweep and "(full SDTP, 0.7)" in sweep
    assert sweep.index("(0.3)") < sweep.index("(0.5)") < sweep.index("(full SDTP, 0.7)") < sweep.index("(0.8)")
    assert "“Learnable pruner performance > saliency”: Performance ↓, Speed ≈" in section
    assert "prefill speedup" in section
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## A1: Remove Pruner → Use saliency baseline" in md and "Expected effect: Performance ↓, Speed ≈." in md


def test_cli_functions(tmp_path, monkeypatch, capsys):
    found = glob.glob(f"{SEEDS}/002_*.txt")
    if not found:
        pytest.skip("seed 002 not found")
    text, code = cli.plan_check(found[0], method="fake_apt")
    assert code == 0 and "-> sparsity.sparsity=0.5" in text and "Pruning efficiency -> tta_s" in text
    js, code = cli.plan_check(found[0], method="fake_apt", as_json=True)
    assert code == 0 and '"component": "distill"' in js
    text, code = cli.plan_check(found[0], method="nosuch")
    assert code == 2 and text.startswith("error: unknown method")
    plan = tmp_path / "p.md"
    plan.write_text("# x\n### Ablation: A\n- Ablated Part: warp drive\n- Action: REMOVE\n"
                    "### Ablation: B\n- Ablated Part: salience\n- Action: REPLACE\n- Replacement: random scoring\n")
    text, code = cli.plan_check(str(plan), method="fake_apt", skip_unresolved=True)
    assert code == 1 and "unresolved (1, skipped)" in text
    assert cli.plan_generate("fake_apt").startswith("# prunelab/generated/fake_apt")

    monkeypatch.setenv("PRUNELAB_FAKE_LOG", str(tmp_path / "calls.log"))
    out = io.StringIO()
    store = str(tmp_path / "runs.db")
    code = cli.ablate(str(plan), preset="tiny", seeds=2, method="fake_apt", store=store, skip_unresolved=True,
                      runner="prunelab.ablation.fake:fake_runner", workers=2, progress=False, out=out)
    log = out.getvalue()
    assert code == 0 and "study x-tiny: 3 cells x 2 seeds = 6 (6 distinct runs)" in log
    assert "skipped: A: 'warp drive'" in log and "report: prunelab report x-tiny" in log
    paths = cli.report("x-tiny", store, str(tmp_path / "rep"))
    assert any(p.endswith("report.html") for p in paths)


# ----------------------------------------------------------------------------- paper section (issue 12 part 5)

def _prose_and_latex(section: str) -> tuple[str, str]:
    prose, _, rest = section.partition("```latex")
    return prose, rest.partition("```")[0]


def _sentences(text: str) -> list[str]:
    import re

    return [s.strip() for s in re.split(r"(?<=[.)])\s+(?=[A-Z`])", text) if len(s.strip()) > 20]


def test_section_numbers_interpretation_threats_and_latex(tmp_path):
    from prunelab.ablation.report import section_rows, to_section

    store, m = synthetic_study(tmp_path)
    res = analyze(store, "synth")
    section = to_section(res)
    prose, latex = _prose_and_latex(section)
    subs = [s for s in prose.split("#### ")[1:] if s.startswith("6.")]
    assert len(subs) == 5
    # per subsection with results: means ± std with seeds, Δ with its CI and p
    for sub in subs[:3]:
        assert "±" in sub and "Δ " in sub and "95% CI [" in sub and "3 paired seeds" in sub and "p " in sub
    # direction against the plan, and an interpretation that varies with the outcome
    assert "as the plan predicted" in subs[0] and "does real work in APT" in subs[0]
    assert "the plan predicted a rise" in subs[1] and "is worth having" in subs[1]
    assert "inside the ±2% band that counts as no change" in subs[2]
    assert "Salience can be replaced by `uniform` at no measurable cost" in subs[2]
    # secondary metrics carry the power statement (non-significant, MDE)
    assert "no effect larger than" in subs[0] or "underpowered (MDE" in subs[0]
    # no sentence repeated verbatim across subsections
    seen = {}
    for k, sub in enumerate(subs):
        for s in set(_sentences(sub.split("\n", 1)[1])):
            assert s not in seen, f"repeated in 6.{seen.get(s)} and 6.{k + 1}: {s}"
            seen[s] = k + 1
    # threats to validity from the study's config: the budget against the paper's, seeds, scale, timing
    threats = prose.split("#### Threats to validity")[1]
    assert "6 optimisation steps of batch 8 on 64 training examples" in threats and "40 epochs" in threats
    assert "same evaluation data" in threats and "7 comparisons" in threats
    assert "3 seeds per cell" in threats and "tiny-bert" in threats and "roberta-base" in threats
    assert "1 run waited for the CPU" in threats
    # the LaTeX table has every number; the prose has the same strings for each primary metric
    # and each significant one, and names a non-significant secondary metric with its MDE only
    rows = section_rows(res)
    assert rows and latex.count("\\\\") >= len(rows) + 1
    quiet = 0
    for r in rows:
        for key in ("base", "value", "delta", "ci", "p"):
            assert r[key].replace("%", "\\%").replace("±", "$\\pm$") in latex, (key, r[key])
        if all(r[key] in prose for key in ("base", "value", "delta", "ci", "p")):
            continue
        quiet += 1
        assert r["outcome"] in ("underpowered", "no_effect", "inconclusive"), r
        assert r["power"] and r["power"].split()[-1].rstrip(")") in prose, r
        assert r["metric"] in prose.lower(), r
    assert 0 < quiet < len(rows)
    # the LaTeX is also written on its own
    write_report("synth", store, tmp_path / "out")
    assert (tmp_path / "out" / "section.tex").read_text().strip() == latex.strip()


def test_section_interprets_underpowered_and_null_results(tmp_path):
    from prunelab.ablation.report import to_section

    store, m = synthetic_study(tmp_path)
    # make 'uniform' noisy: a mean shift of 0.03 with a large spread across seeds -> underpowered
    for run in m.runs:
        if run.links[0][0] == "uniform-salience/uniform":
            seed = run.config.seed
            score = 0.90 + 0.004 * seed + 0.0003 * (seed % 2) + [0.06, -0.03, 0.06][seed]
            store.finish(run.run_id, {"score": score, "higher_is_better": True}, [])
    section = to_section(analyze(store, "synth"))
    sub = section.split("#### 6.3")[1].split("#### ")[0]
    assert "not significant, but these seeds only detect changes of" in sub
    assert "stays open: a Δ of this size would need about" in sub


def test_trivial_baselines_run_beside_the_plan_and_get_their_own_table(tmp_path):
    """A method's trivial baselines (presets.TRIVIAL) are cells on the base config, paired with the
    baseline in the report, outside the plan's ablations (no verdict, not in the section)."""
    from prunelab.ablation.presets import trivial_cells

    triv = trivial_cells("sdtp")
    assert set(triv) == {"recency", "truncate"}
    assert triv["recency"][1]["selector"] == "recency" and triv["truncate"][1]["selector"] == "truncate"
    assert trivial_cells("apt") == {} and trivial_cells("fake_sdtp") == {}
    found = glob.glob(f"{SEEDS}/004_*.txt")
    if not found:
        pytest.skip("seed 004 not found")
    res = resolve_plan(load_plan(found[0]), "fake_sdtp")
    fake = {"recency": ("first 4 + most recent tokens", {"pruner": "recency"})}
    m = build_matrix(res, base_config("tiny", "fake_sdtp"), [0, 1, 2], study="triv", trivial=fake)
    cell = next(c for c in m.cells if c.kind == "trivial")
    assert cell.label == "trivial/recency"
    assert m.run_of("trivial/recency", 0).run_id != m.run_of("baseline", 0).run_id
    store = _fake_study(m, tmp_path / "runs.db")
    r = analyze(store, "triv")
    assert r.trivial is not None and [v.label for v in r.trivial.variants] == ["trivial/recency"]
    assert {m["key"] for m in r.trivial.metrics} == {m["key"] for m in r.all_metrics()}
    ppl = r.trivial.line("trivial/recency", "perplexity")
    assert ppl.comparison.n == 3 and ppl.comparison.mean_diff is not None and ppl.verdict == ""
    assert all(v.label != "trivial/recency" for a in r.ablations for v in a.variants)
    write_report("triv", store, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Trivial baselines (not in the plan)" in md
    assert "| trivial baseline: recency (first 4 + most recent tokens) | 3 |" in md
    # the section reads them in a subsection of their own, after the plan's
    section = (tmp_path / "out" / "section.md").read_text()
    plan_part, _, cheap = section.partition("#### Against the cheapest alternatives (not in the plan)")
    assert "trivial" not in section and "recency (first 4 + most recent tokens) gives perplexity" in cheap
    assert "recency" not in plan_part.split("#### 6.1", 1)[1] and "#### Threats to validity" in cheap
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    triv_rows = [r for r in rows if r["cell"] == "trivial/recency"]
    assert {r["metric"] for r in triv_rows} == {m["key"] for m in r.all_metrics()}
    assert all(t["action"] == "COMPARE" and t["verdict"] == "" for t in triv_rows)
    tex = (tmp_path / "out" / "report.tex").read_text()
    assert "Trivial baselines (not in the plan)" in tex and "trivial baseline: recency" in tex


def test_floating_point_residue_prints_as_zero():
    from prunelab.ablation.report import _signed, fmt

    assert _signed(2.220446049250313e-17, {}) == "+0" and fmt(-1e-15, {}) == "0"
    assert fmt(0.0156, {}) == "0.0156" and _signed(-0.00459, {}) == "-0.00459"


def test_a_refuted_collapse_is_not_called_the_opposite_direction():
    """Seed 004's 'No RoPE index fix -> Model crashes': runs that finish slightly worse refute the
    collapse; the sentence must not say the variant went the opposite way of what was expected."""
    from types import SimpleNamespace

    from prunelab.ablation.section import interpretation

    c = paired({0: 18.8, 1: 18.9, 2: 18.9}, {0: 18.9, 1: 19.0, 2: 18.95})
    ln = SimpleNamespace(expectation=Expectation("performance", 1, crash=True), comparison=c, verdict="refuted",
                         metric={"key": "perplexity", "higher_is_better": False})
    v = SimpleNamespace(cell={"option": "off"}, done=[0, 1, 2])
    text = interpretation(ln, {"ablated_part": "RoPE index fix", "action": "REMOVE"}, v,
                          {"metric": "perplexity", "delta": "+0.08 (+0.4%)"}, "SDTP")
    assert "predicted collapse does not happen" in text and "+0.08 (+0.4%) only" in text and "opposite" not in text


def test_no_change_needs_an_equivalence_interval_not_a_non_significant_test():
    """'≈' is an equivalence claim (TOST): a small mean difference from noisy seeds is not
    evidence of no change; a tight one is."""
    from prunelab.ablation.stats import seeds_needed

    base = {0: 18.80, 1: 18.90, 2: 18.85}
    noisy = paired(base, {0: 18.60, 1: 19.40, 2: 19.05})        # Δ +0.17 (0.9%), spread ~0.35
    assert not noisy.significant and abs(noisy.mean_diff) < 0.02 * 18.85
    assert verdict(Expectation("performance", 0), noisy, 18.85) == "inconclusive"
    tight = paired(base, {0: 18.84, 1: 18.93, 2: 18.90})
    assert tight.tost[0] > -0.377 and tight.tost[1] < 0.377
    assert verdict(Expectation("performance", 0), tight, 18.85) == "confirmed"
    # seeds a Δ of the observed size needs at the observed spread: more for a noisier one
    n_noisy = seeds_needed(noisy)
    assert n_noisy is not None and n_noisy > 3
    assert seeds_needed(paired(base, {0: 18.70, 1: 19.30, 2: 19.10})) < n_noisy


def _fake_004(tmp_path, study: str, seeds=(0, 1, 2)):
    """Seed plan 004 run by the fake SDTP runner: a store with every cell done."""
    found = glob.glob(f"{SEEDS}/004_*.txt")
    if not found:
        pytest.skip("seed 004 not found")
    res = resolve_plan(load_plan(found[0]), "fake_sdtp")
    return _fake_study(build_matrix(res, base_config("tiny", "fake_sdtp"), list(seeds), study=study),
                       tmp_path / "runs.db")


def _skeleton(sentence: str, parts: list[str]) -> str:
    import re

    s = re.sub(r"`[^`]*`|“[^”]*”|\([^()]*\)|\([^()]*\([^()]*\)[^()]*\)", "", sentence)
    for p in sorted(parts, key=len, reverse=True):
        s = s.replace(p, "").replace(p[:1].upper() + p[1:], "")
    s = re.sub(r"[-+]?\d[\d.,%]*", "", s)
    return re.sub(r"\s+", " ", s).strip()


def test_section_does_not_read_as_one_template(tmp_path):
    """Seed 004's section (11 variants): with names, numbers, quotes and parentheses stripped, no
    sentence shape may come back more than twice (the old writer repeated four shapes per variant)."""
    from collections import Counter

    from prunelab.ablation.report import to_section

    r = analyze(_fake_004(tmp_path, "sdtp-shape"), "sdtp-shape")
    prose = to_section(r).split("#### Threats")[0].split("#### ", 1)[1]
    parts = [a.ablation["ablated_part"] for a in r.ablations]
    shapes = Counter(_skeleton(s, parts) for line in prose.splitlines() if not line.startswith("#")
                     for s in _sentences(line))
    assert sum(shapes.values()) >= 20
    worst = shapes.most_common(1)[0]
    assert worst[1] <= 2, worst


def test_a_report_renders_again_from_its_runs_jsonl(tmp_path):
    """write_report leaves runs.jsonl beside the report; loading it into an empty store gives the
    same report, so committed studies can be re-rendered by newer report code without their store."""
    from prunelab.ablation.studies import import_runs

    store, m = synthetic_study(tmp_path)
    write_report("synth", store, tmp_path / "a")
    raw = tmp_path / "a" / "runs.jsonl"
    assert raw.exists() and raw.read_text().count("\n") == 1 + len(store.study("synth"))
    fresh = tmp_path / "fresh.db"
    assert import_runs(raw, str(fresh)) == "synth"
    write_report("synth", str(fresh), tmp_path / "b")
    for name in ("section.md", "results.csv", "report.tex"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text(), name
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"cell": "x"}\n')
    with pytest.raises(PrunelabError, match="not a study export"):
        import_runs(bad, str(tmp_path / "other.db"))


def test_a_sweep_without_the_full_methods_setting_still_lists_every_value(tmp_path, monkeypatch):
    from prunelab.ablation import section
    from prunelab.ablation.report import to_section

    store = _fake_004(tmp_path, "sweep")
    monkeypatch.setattr(section, "base_value", lambda res, comp: None)
    sweep = to_section(analyze(store, "sweep")).split("#### 6.3")[1].split("#### ")[0]
    assert "Setting ratio to 0.3, 0.5, 0.8 gives perplexity" in sweep and "against" in sweep
    assert sweep.count("paired seeds") == 1 and " at 0.3" in sweep and " at 0.8" in sweep


def test_time_to_accuracy_counts_every_seed_never_a_mean_over_survivors(tmp_path):
    """A seed that never reached 97% of FT has no tta_s: the report says how many seeds reached it
    and compares nothing, rather than averaging the seeds that happened to get there."""
    from prunelab.ablation.fmt import lower_label
    from prunelab.ablation.report import to_latex, to_section

    plan = Plan("tta plan", "fake_apt", [
        Ablation(name="No KD", ablated_part="self-distillation", action="REMOVE",
                 metrics=["accuracy", "time to accuracy"], expected_effect="Performance ↓", id="A1"),
        Ablation(name="Random salience", ablated_part="salience", action="REPLACE", replacement=["random scoring"],
                 metrics=["accuracy", "time to accuracy"], id="A2")])
    m = build_matrix(resolve_plan(plan), base_config("tiny", "fake_apt"), [0, 1, 2], study="tta")
    store = Store(tmp_path / "runs.db")
    save_study(store.path, study_meta(m, "tiny"))
    assert any(x["key"] == "tta_s" and x["censored"] for x in study_meta(m, "tiny")["metrics"]["No KD"])
    for run in m.runs:
        cell = run.links[0][0]
        for c, s in run.links:
            store.link(m.study, c, s, run.run_id)
        store.start(run.run_id, run.config.to_dict(), {})
        seed = run.config.seed
        metrics = {"score": 0.9 + 0.01 * seed - (0.05 if cell != "baseline" else 0), "higher_is_better": True}
        if cell == "baseline" or seed == 0:          # the variant reaches the target in one seed of three
            metrics["tta_s"] = 60.0 * (1 + seed) if cell == "baseline" else 30.0
        store.finish(run.run_id, metrics, [])
    res = analyze(store, "tta")
    tta = [ln for ln in res.ablations[0].lines if ln.metric["key"] == "tta_s"][0]
    # no Δ from the one surviving seed (30 s would look 4x faster than the baseline's 120 s mean)
    assert tta.comparison.mean_diff is None and tta.value[0] is None and tta.base[0] == pytest.approx(120.0)
    md_path = [p for p in write_report("tta", store, tmp_path / "out") if p.name == "report.md"][0]
    md = md_path.read_text()
    assert "| none | 3 | 0.86 ± 0.01 (Δ -0.05 (-5.5%)) | 1/3 reached |" in md and "| 0.91 ± 0.01 | 2 ± 1 |" in md
    section = to_section(res)
    assert "Time to 97% of FT was reached within the budget by 3/3 seeds of the full method and 1/3" in section
    # the second unreached comparison in a section is told more briefly, not as the same sentence
    assert "Fewer of its seeds reached 97% of FT within the budget (1/3 against 3/3)." in section
    assert "1/3 reached" in to_latex(res)
    assert lower_label("Time to 97% of FT") == "time to 97% of FT"
    # once every seed reaches it, it is an ordinary paired comparison
    for run in m.runs:
        if run.links[0][0] != "baseline":
            store.finish(run.run_id, {"score": 0.85 + 0.01 * run.config.seed, "higher_is_better": True,
                                      "tta_s": 50.0 + run.config.seed}, [])
    tta = [ln for ln in analyze(store, "tta").ablations[0].lines if ln.metric["key"] == "tta_s"][0]
    assert tta.comparison.mean_diff == pytest.approx(51.0 - 120.0)
    assert "reached within the budget" not in to_section(analyze(store, "tta"))


def test_a_censored_cell_prints_counts_and_a_median_once_most_seeds_reached():
    from prunelab.ablation.analysis import CellResult
    from prunelab.ablation.fmt import fmt_cell
    from prunelab.ablation.metrics import SPECS, MetricRef

    tta = MetricRef("tta", SPECS["tta_s"]).to_dict()

    def cell(vals):
        return CellResult({"label": "x"}, list(range(len(vals))),
                          {s: {"status": "done", "metrics": {} if v is None else {"tta_s": v}}
                           for s, v in enumerate(vals)})

    assert fmt_cell(cell([None, None, None]), tta) == "not reached (0/3)"
    assert fmt_cell(cell([60.0, None, None]), tta) == "1/3 reached"
    assert fmt_cell(cell([60.0, 120.0, None]), tta).startswith("2/3 reached, median ")
    assert fmt_cell(cell([60.0, 120.0, 180.0]), tta) == "2 ± 1"
    # an uncensored metric with a missing value is just fewer numbers, not "not reached"
    acc = MetricRef("acc", SPECS["score"]).to_dict()
    assert "reached" not in fmt_cell(cell([None, None, None]), acc)
