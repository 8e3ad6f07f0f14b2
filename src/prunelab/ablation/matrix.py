"""Resolved plan + base RunConfig + seeds -> cells -> runs, each keyed by its config hash.

Cells: one shared `baseline` (the method's defaults), one cell per REMOVE (the component's
remove option), one per REPLACE replacement, one per ADD setting, and optionally a
`reference` cell (FT on the same model/task) that derived metrics (tta_s, speedup, rel_acc)
need, and for methods that have them `trivial/...` cells: the cheapest alternatives the method
exists to beat (SDTP: recency and truncation at the same keep counts), run on the same budget
and seeds so the report can set the learned method against them. Each cell x seed is a RunConfig; cells whose configs hash the same (two ablations
asking for the same thing, or a variant equal to the baseline) share one run.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from prunelab.ablation.resolve import Resolution
from prunelab.ablation.text import slug
from prunelab.config import RunConfig
from prunelab.errors import PrunelabError

BASELINE = "baseline"
REFERENCE = "reference"
TRIVIAL = "trivial"


@dataclass
class Cell:
    label: str
    kind: str                          # baseline | variant | reference | trivial
    ablation: str | None = None        # ablation name (variants)
    component: str | None = None
    option: str | None = None
    value: float | None = None
    text: str | None = None            # what the plan said
    overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in ("baseline", "variant", "reference", "trivial"):
            raise ValueError(f"cell kind {self.kind!r}")
        if not self.label:
            raise ValueError("a cell needs a label")


@dataclass
class Run:
    run_id: str
    config: RunConfig
    links: list[tuple[str, int]] = field(default_factory=list)   # (cell label, seed)

    @property
    def label(self) -> str:
        return ", ".join(sorted({c for c, _ in self.links}))


@dataclass
class Matrix:
    study: str
    method: str
    seeds: list[int]
    cells: list[Cell]
    runs: list[Run]
    notes: list[str] = field(default_factory=list)
    resolution: Resolution | None = None

    def links(self) -> list[tuple[str, int, str]]:
        return [(c, s, r.run_id) for r in self.runs for c, s in r.links]

    def run_of(self, label: str, seed: int) -> Run:
        for r in self.runs:
            if (label, seed) in r.links:
                return r
        raise KeyError((label, seed))


def study_name(text: str) -> str:
    return slug(re.sub(r"^lm[- ]planner/", "", text), max_len=64)


def build_matrix(resolution: Resolution, base: RunConfig, seeds=(0, 1, 2), *, study: str | None = None,
                 reference: RunConfig | None = None, trivial: dict | None = None) -> Matrix:
    """trivial: name -> (what it is, method_args overrides): comparison cells on the base config."""
    seeds = _check_seeds(seeds)
    method = resolution.method
    if base.method != method:
        raise PrunelabError(f"the base config is for method {base.method!r} but the plan ablates {method!r}")
    study = study or study_name(resolution.plan.name)
    cells = [Cell(BASELINE, "baseline")]
    used: set[str] = {BASELINE}
    for item in resolution.items:
        prefix = slug(item.ablation.name, 40)
        for ch in item.choices:
            label = f"{prefix}/{ch.label}"
            k = 2
            while label in used:
                label = f"{prefix}/{ch.label}-{k}"
                k += 1
            used.add(label)
            cells.append(Cell(label, "variant", ablation=item.ablation.name, component=ch.component,
                              option=ch.option, value=ch.value, text=ch.text, overrides=dict(ch.overrides)))
    if reference is not None:
        cells.append(Cell(REFERENCE, "reference", text=f"{reference.method} on the same model and task"))
    for name, (text, overrides) in (trivial or {}).items():
        cells.append(Cell(f"{TRIVIAL}/{name}", "trivial", option=name, text=text, overrides=dict(overrides)))

    runs: dict[str, Run] = {}
    notes: list[str] = []
    for cell in cells:
        for seed in seeds:
            cfg = cell_config(base if cell.kind != "reference" else reference, cell, seed, study)
            run_id = cfg.hash()
            if run_id not in runs:
                runs[run_id] = Run(run_id, cfg)
            runs[run_id].links.append((cell.label, seed))
    for name, ch in resolution.flagged():
        notes.append(f"low-margin mapping, check it: {name}: {ch.text!r} -> {ch.component}.{ch.label} ({ch.flag})")
    for row in resolution.not_run:
        notes.append(f"plan row at line {row['line']} produces no cell, not run: {row['part']}: {row['change']}"
                     + (f" (would be {', '.join(row['maps_to'])})" if row["maps_to"] else ""))
    for r in runs.values():
        labels = sorted({c for c, _ in r.links})
        if len(labels) > 1 and r.config.seed == seeds[0]:
            notes.append(f"cells {', '.join(labels)} have identical configs: run once, reported for each")
    return Matrix(study=study, method=method, seeds=seeds, cells=cells, runs=list(runs.values()), notes=notes,
                  resolution=resolution)


def cell_config(base: RunConfig, cell: Cell, seed: int, study: str) -> RunConfig:
    overrides = {f"method_args.{k}": v for k, v in cell.overrides.items()}
    overrides.update({"seed": seed, "study": study, "cell": cell.label})
    try:
        cfg = base.with_overrides(overrides)
    except PrunelabError as e:
        raise PrunelabError(f"cell {cell.label}: {e}") from None
    return resolve_config(cfg, cell.label)


def resolve_config(cfg: RunConfig, label: str = "") -> RunConfig:
    """Fill the method's defaults so equal settings hash equal (RunConfig.resolve when it can)."""
    where = f"cell {label}: " if label else ""
    try:
        return cfg.resolve()
    except PrunelabError as e:
        if "unknown task" not in str(e):
            raise PrunelabError(f"{where}{e}") from None
    except ImportError:
        pass
    # task registry not importable/registered here: resolve the method part only
    from prunelab.methods.registry import get_method

    try:
        args = get_method(cfg.method).make_config(cfg.method_args)
    except PrunelabError as e:
        raise PrunelabError(f"{where}{e}") from None
    return dataclasses.replace(cfg, method_args=dataclasses.asdict(args))


def _check_seeds(seeds) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise PrunelabError(f"seeds must be >= 1, got {seeds}")
        return list(range(seeds))
    try:
        out = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise PrunelabError(f"seeds must be a count or a list of integers, got {seeds!r}") from None
    if not out or any(s < 0 for s in out) or len(set(out)) != len(out):
        raise PrunelabError(f"seeds must be distinct integers >= 0, got {seeds!r}")
    return out
