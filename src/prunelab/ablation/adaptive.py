"""`--seeds auto`: add seeds to a study until every comparison can tell, or a cap is reached.

The rule (issue 12, "Studies that can tell"):

  start with AUTO_START (3) seeds per cell (baseline, every variant, the reference);
  after each round, for every variant-vs-baseline comparison on its ablation's primary
  metric (the first metric the ablation lists), take the 95% interval of the mean paired
  difference; stop when every interval either excludes 0 ("decided") or is narrower than
  --ci-width ("narrow"), or when --max-seeds seeds are done ("cap"); else add one seed to
  every cell (the next integer after those used) and run that round.

The interval is the paired t interval, mean ± t(0.975, n-1) · sd / sqrt(n): it excludes 0
exactly when the report's paired t-test is significant at p < 0.05. The bootstrap interval the
report prints beside it is not used here: with 3 pairs it excludes 0 whenever all differences
share a sign, so it would stop studies that cannot tell yet.

--ci-width is either a number in the primary metric's units as the report shows them
(accuracy 0.01, training time in min, memory in GB; each comparison in its own metric's
units) or a percentage of the baseline mean ("2%", the default: the same 2% margin within
which the report calls a difference "no change", stats.EQUIV_REL). A comparison that ends
"narrow" has its whole interval within the width of 0, so it rules out an effect larger than
the width.

Resuming: the rule is recomputed from the stored results round by round from 3 seeds up, so
an interrupted study continues where it stopped and done runs are never run again.
Stopping after looking at the data (optional stopping) makes a false "decided" somewhat more
likely than 5%; the report says so.
"""
from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass

from prunelab.ablation.stats import ALPHA, EQUIV_REL
from prunelab.errors import PrunelabError

AUTO = "auto"
AUTO_START = 3
DEFAULT_MAX_SEEDS = 8
DEFAULT_CI_WIDTH = f"{EQUIV_REL:.0%}"          # "2%"

STOP_TEXT = {
    "decided": "every comparison's interval excludes 0 (all decided)",
    "width": "every comparison's interval excludes 0 or is narrower than the width (width reached)",
    "cap": "the seed cap was reached with comparisons still undecided (cap reached)",
    "no data": "no comparison has paired values of its primary metric (more seeds cannot tell)",
}


@dataclass(frozen=True)
class Width:
    value: float
    relative: bool              # True: a fraction of |baseline mean|; False: the metric's displayed units

    @property
    def text(self) -> str:
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}"

    def limit(self, base_mean: float | None, scale: float = 1.0) -> float | None:
        """The width in the metric's stored units for a comparison with this baseline mean."""
        if self.relative:
            return None if base_mean is None else self.value * abs(base_mean)
        return self.value / scale


@dataclass(frozen=True)
class SeedPlan:
    """What --seeds / --ci-width / --max-seeds ask for: a fixed count or list, or auto."""
    fixed: object = None        # int or list of ints (auto: None)
    width: Width | None = None
    max_seeds: int | None = None

    @property
    def auto(self) -> bool:
        return self.fixed is None


def _whole(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    return None


def parse_width(value) -> Width:
    bad = PrunelabError(f"--ci-width must be a positive number in the primary metric's units (e.g. 0.01) or a "
                        f"percentage of the baseline mean (e.g. {DEFAULT_CI_WIDTH}), got {value!r}")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, (int, float)):
        v, rel = float(value), False
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(%?)\s*", str(value))
        if not m:
            raise bad
        v, rel = float(m.group(1)), bool(m.group(2))
        if rel:
            v /= 100
    if not math.isfinite(v) or v <= 0:
        raise bad
    return Width(v, rel)


def parse_seed_options(seeds, ci_width=None, max_seeds=None) -> SeedPlan:
    """--seeds N | auto (| a list of seeds, from Python), --ci-width, --max-seeds -> SeedPlan.
    Raises PrunelabError with one line naming the argument and what it accepts."""
    if isinstance(seeds, str) and seeds.strip().lower() == AUTO:
        width = parse_width(DEFAULT_CI_WIDTH if ci_width is None else ci_width)
        cap = DEFAULT_MAX_SEEDS if max_seeds is None else _whole(max_seeds)
        if cap is None or cap < AUTO_START:
            raise PrunelabError(f"--max-seeds must be a whole number >= {AUTO_START} (--seeds auto starts with "
                                f"{AUTO_START} seeds per cell), got {max_seeds!r}")
        return SeedPlan(None, width, cap)
    n = _whole(seeds)
    if n is None and isinstance(seeds, (list, tuple)):
        fixed = list(seeds)                     # build_matrix checks the list itself
    elif n is None or n < 1:
        raise PrunelabError(f"--seeds must be a whole number >= 1 or 'auto', got {seeds!r}")
    else:
        fixed = n
    if ci_width is not None or max_seeds is not None:
        given = " and ".join(f for f, v in (("--ci-width", ci_width), ("--max-seeds", max_seeds)) if v is not None)
        raise PrunelabError(f"{given} only apply with --seeds auto (got --seeds {seeds!r})")
    return SeedPlan(fixed)


def t_interval(diffs: list[float]) -> tuple[float, float] | None:
    """95% paired t interval of the mean difference (None below 2 pairs)."""
    n = len(diffs)
    if n < 2:
        return None
    from scipy import stats

    mean = statistics.fmean(diffs)
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * statistics.stdev(diffs) / math.sqrt(n)
    return mean - half, mean + half


def check_study(res, width: Width) -> list[dict]:
    """Per variant: its primary-metric comparison with the baseline and where it stands.

    status: 'decided' (interval excludes 0), 'narrow' (narrower than the width), 'open' (neither:
    more seeds may tell), 'no data' (fewer than 2 paired values: more seeds do not help)."""
    out = []
    for a in res.ablations:
        if not a.metrics:
            continue
        metric = a.metrics[0]
        for v in a.variants:
            base, var = res.baseline.values(metric), v.values(metric)
            seeds = sorted(set(base) & set(var))
            diffs = [var[s] - base[s] for s in seeds]
            base_mean = statistics.fmean(base[s] for s in seeds) if seeds else None
            ci = t_interval(diffs)
            limit = width.limit(base_mean, metric.get("scale", 1.0))
            row = {"ablation": a.name, "cell": v.label, "metric": metric["key"], "n": len(diffs),
                   "mean": statistics.fmean(diffs) if diffs else None, "lo": None, "hi": None, "width": None,
                   "limit": limit, "status": "no data"}
            if ci is not None:
                lo, hi = ci
                row.update(lo=lo, hi=hi, width=hi - lo)
                if lo > 0 or hi < 0:
                    row["status"] = "decided"
                elif limit is not None and hi - lo < limit:
                    row["status"] = "narrow"
                else:
                    row["status"] = "open"
            out.append(row)
    return out


def stop_reason(checks: list[dict], n: int, max_seeds: int) -> str | None:
    """'decided' | 'width' | 'cap' | 'no data', or None: add a seed. A comparison without paired
    values (its metric not recorded) does not keep the study going: more seeds cannot fix that."""
    statuses = {c["status"] for c in checks}
    if "open" in statuses:
        return "cap" if n >= max_seeds else None
    if "narrow" in statuses:
        return "width"
    return "decided" if "decided" in statuses else "no data"


def rule_text(width: str, max_seeds: int, start: int = AUTO_START) -> str:
    return (f"start with {start} seeds per cell; after each round, for every variant against the baseline on its "
            f"ablation's primary metric (the first it lists), take the 95% paired t interval of the difference; "
            f"stop when every interval excludes 0 or is narrower than {width} "
            f"({'of the baseline mean' if width.endswith('%') else 'in the metric units shown'}), or at "
            f"{max_seeds} seeds; else add the next seed to every cell")


def describe(adaptive: dict) -> str:
    """One line for the driver's output and the report: n, why it stopped."""
    n, reason = adaptive.get("n"), adaptive.get("stop")
    counts = {}
    for c in adaptive.get("checks") or []:
        counts[c["status"]] = counts.get(c["status"], 0) + 1
    parts = ", ".join(f"{k} {counts[k]}" for k in ("decided", "narrow", "open", "no data") if counts.get(k))
    why = STOP_TEXT.get(reason, "not finished (re-run the same command to continue)")
    return f"seeds chosen adaptively: n = {n} per cell; stopped because {why}" + (f" [{parts}]" if parts else "")
