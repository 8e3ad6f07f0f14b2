"""Study results from the store: per cell and metric, values per seed; per variant, the
paired comparison with the baseline and a verdict against the plan's expectation.

Derived metrics (speedup, tta_s, rel_acc) come from prunelab.derived.with_derived, i.e.
against the FT runs of the same model and task present in the store when the report runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from prunelab.ablation.metrics import is_censored
from prunelab.ablation.stats import (Comparison, Expectation, expected_sign, mean_std, paired,
                                     parse_expectations, verdict)
from prunelab.ablation.studies import load_study
from prunelab.store import Store


@dataclass
class CellResult:
    cell: dict                               # matrix Cell as a dict
    seeds: list[int]
    rows: dict[int, dict] = field(default_factory=dict)    # seed -> store row (with derived metrics)

    @property
    def label(self) -> str:
        return self.cell["label"]

    def status(self, seed: int) -> str:
        row = self.rows.get(seed)
        return (row or {}).get("status") or "pending"

    @property
    def done(self) -> list[int]:
        return [s for s in self.seeds if self.status(s) == "done"]

    @property
    def failed(self) -> list[int]:
        return [s for s in self.seeds if self.status(s) == "failed"]

    @property
    def pending(self) -> list[int]:
        return [s for s in self.seeds if self.status(s) not in ("done", "failed")]

    def errors(self) -> list[str]:
        return [(self.rows[s].get("error") or "").strip().splitlines()[0] for s in self.failed
                if (self.rows[s].get("error") or "").strip()]

    def values(self, metric: dict) -> dict[int, float]:
        out = {}
        for s in self.done:
            v = metric_value(self.rows[s].get("metrics") or {}, metric)
            if v is not None:
                out[s] = v
        return out

    def reach(self, metric: dict) -> tuple[int, int]:
        """(done seeds with a value, done seeds): for a censored metric the gap is the seeds that
        never reached the target within the budget."""
        return len(self.values(metric)), len(self.done)

    def complete(self, metric: dict) -> bool:
        """False when a censored metric was not reached by every done seed: no mean is honest then."""
        k, n = self.reach(metric)
        return not is_censored(metric) or k == n

    def summary(self, metric: dict) -> tuple[float | None, float | None]:
        """(mean, std) over the done seeds; (None, None) for a censored metric some seed never reached."""
        if not self.complete(metric):
            return None, None
        return mean_std(list(self.values(metric).values()))

    def higher_is_better(self) -> bool:
        for s in self.done:
            hib = (self.rows[s].get("metrics") or {}).get("higher_is_better")
            if isinstance(hib, bool):
                return hib
        return True


@dataclass
class Line:
    """One variant x one metric."""
    cell: CellResult
    metric: dict
    base: tuple                 # (mean, std, n) raw
    value: tuple                # (mean, std, n) raw
    comparison: Comparison
    expectation: Expectation | None
    verdict: str


@dataclass
class AblationResult:
    ablation: dict
    metrics: list[dict]
    variants: list[CellResult]
    lines: list[Line]

    @property
    def name(self) -> str:
        return self.ablation["name"]

    def line(self, cell: str, key: str) -> Line | None:
        return next((ln for ln in self.lines if ln.cell.label == cell and ln.metric["key"] == key), None)


@dataclass
class StudyResult:
    study: str
    meta: dict
    baseline: CellResult
    reference: CellResult | None
    ablations: list[AblationResult]
    unresolved: list[dict]
    trivial: AblationResult | None = None    # the method's trivial baselines vs the baseline (not in the plan)

    @property
    def method(self) -> str:
        return self.meta.get("method") or ""

    @property
    def plan(self) -> dict:
        return self.meta.get("plan") or {}

    def all_metrics(self) -> list[dict]:
        seen, out = set(), []
        for a in self.ablations:
            for m in a.metrics:
                if m["key"] not in seen:
                    seen.add(m["key"])
                    out.append(m)
        return out

    def cells(self) -> list[CellResult]:
        return ([self.baseline] + [v for a in self.ablations for v in a.variants]
                + (self.trivial.variants if self.trivial else []))


CONTENTION_LIMIT = 1.25   # wall / CPU time this much above the study's median: disturbed timing


def disturbed_timings(res: StudyResult, limit: float = CONTENTION_LIMIT) -> list[dict]:
    """Runs whose training wall time was stretched by other processes on the machine.

    A run's train wall / process-CPU time is ~constant across a study's runs on one machine
    (it depends on the thread count, not the method); a run well above the study's median
    waited for the CPU, so its wall-clock metrics (training time, TTA, in-run throughput)
    are not comparable with the others. Scores are unaffected.
    """
    ratios = []
    ref = [res.reference] if res.reference else []
    for c in res.cells() + ref:
        for s in c.done:
            m = c.rows[s].get("metrics") or {}
            wall, cpu = m.get("train_seconds"), m.get("train_cpu_seconds")
            if isinstance(wall, (int, float)) and isinstance(cpu, (int, float)) and cpu > 0 and wall > 0:
                ratios.append((c.label, s, wall / cpu, wall, cpu))
    if len(ratios) < 3:
        return []
    med = sorted(r[2] for r in ratios)[len(ratios) // 2]
    return [{"cell": lab, "seed": s, "ratio": r, "median": med, "wall": w, "cpu": c}
            for lab, s, r, w, c in ratios if r > limit * med]


def metric_value(metrics: dict, metric: dict) -> float | None:
    for k in metric.get("keys") or [metric["key"]]:
        v = metrics.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


def analyze(store: Store | str, study: str) -> StudyResult:
    store = store if isinstance(store, Store) else Store(store)
    meta = load_study(store.path, study)
    seeds = list(meta.get("seeds") or [])
    rows = _rows(store, study)
    cells = {c["label"]: CellResult(c, seeds, rows.get(c["label"], {})) for c in meta.get("cells") or []}
    baseline = cells.get("baseline") or CellResult({"label": "baseline", "kind": "baseline"}, seeds)
    reference = cells.get("reference")
    plan = meta.get("plan") or {}
    ablations = []
    for abl in plan.get("ablations") or []:
        variants = [c for c in cells.values() if c.cell.get("ablation") == abl["name"]]
        if not variants:
            continue
        metrics = meta.get("metrics", {}).get(abl["name"]) or []
        exps = parse_expectations(abl.get("expected_effect"), abl.get("hypothesis"),
                                  implied_action=abl.get("action"))
        lines = []
        for v in variants:
            for m in metrics:
                lines.append(_line(baseline, v, m, exps))
        ablations.append(AblationResult(abl, metrics, variants, lines))
    out = StudyResult(study, meta, baseline, reference, ablations, meta.get("unresolved") or [])
    trivial = [c for c in cells.values() if c.cell.get("kind") == "trivial"]
    if trivial:
        metrics = out.all_metrics() or [{"key": "score", "label": "score", "text": "score"}]
        out.trivial = AblationResult(
            {"name": "Trivial baselines (not in the plan)", "action": "COMPARE",
             "ablated_part": "the method against the cheapest alternatives it exists to beat, same budget and seeds"},
            metrics, trivial, [_line(baseline, c, m, []) for c in trivial for m in metrics])
    return out


def _line(baseline: CellResult, cell: CellResult, metric: dict, exps: list[Expectation]) -> Line:
    b, v = baseline.values(metric), cell.values(metric)
    hib = metric.get("higher_is_better", True)
    if metric["key"] == "score":
        hib = baseline.higher_is_better()
    exp = expected_sign(exps, metric["key"], hib)
    # a seed that never reached a time-to-accuracy target is not a missing value: comparing the
    # seeds that reached it on both sides would drop exactly the runs that failed
    both = baseline.complete(metric) and cell.complete(metric)
    cmp = paired(b, v) if both else paired({}, {})
    bm, bs = baseline.summary(metric)
    vm, vs = cell.summary(metric)
    failed_all = not cell.done and bool(cell.failed) and not cell.pending
    return Line(cell, metric, (bm, bs, len(b)), (vm, vs, len(v)), cmp, exp,
                verdict(exp, cmp, bm, variant_failed=failed_all))


def _rows(store: Store, study: str) -> dict[str, dict[int, dict]]:
    try:
        from prunelab.derived import with_derived
    except ImportError:  # pragma: no cover - derived metrics are optional
        def with_derived(row, store):
            return row
    out: dict[str, dict[int, dict]] = {}
    for r in store.study(study):
        if r.get("id") is None:      # linked but never started
            continue
        try:
            r = with_derived(r, store) or r
        except Exception:  # noqa: BLE001 - a derived metric must not break the report
            pass
        out.setdefault(r["cell"], {})[r["cell_seed"]] = r
    return out
