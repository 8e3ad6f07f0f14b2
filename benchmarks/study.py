"""Run a seed ablation plan as a committed study: benchmarks/results/ablation-NNN/.

One command runs the plan (prunelab ablate: baseline + variants + the FT reference, x seeds),
writes the report (prunelab report: report.md, section.md, report.tex, results.csv, figures,
report.html) and a README.md with the command, date, machine, SHA, seeds and, for encoder
plans, the preset's calibration: the baseline's and FT's mean score at the study budget next to
their means in the long-run benchmark (benchmarks/results/apt.json, 500 steps on the same
data), so a reader can see whether the budget is long enough for the verdicts to mean anything.

    python benchmarks/study.py 000 --seeds 5 --workers 2     # seed plan 000 (APT)
    python benchmarks/study.py 000 --report-only              # re-render from the store (or from the
                                                              # committed runs.jsonl when the store lacks it)

Nothing in the output directory is edited by hand; a note belongs in this script.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import statistics
import sys
from pathlib import Path

import common
from common import ROOT

SEEDS_DIR = ROOT.parent / "shared" / "seeds"
# the long-run reference per method of the study's baseline, and which of its runs to read
LONG_RUN = {"apt": ("apt.json", "apt"), "ft": ("apt.json", "ft")}
CALIBRATION_TARGET = 0.95
# what a reader of a method's study must know about its budget, printed in the README
BUDGET_NOTES = {"sdtp": (
    "SDTP's study budget fits the pruners on cached dense stage inputs (`train_mode=cached`), which has no "
    "language-modelling or distillation term: the backbone does not run while the pruners train. So the "
    "plan's loss rows compare the saliency losses only: 'LM+MSE' trains on the target loss alone, "
    "'LM+Ranking' on the ranking loss alone, and 'LM' alone has nothing to learn from and fails with that "
    "reason (policy-mode training, which has the LM term, runs the backbone forward and backward at every "
    "step: not affordable in a CPU study). The trivial rows "
    "(recency, truncate) are not in the plan: they are the cheapest ways to drop the same tokens.\n")}


def plan_path(number: str) -> Path:
    hits = sorted(glob.glob(str(SEEDS_DIR / f"{number}_*.txt")))
    if not hits:
        raise SystemExit(f"no seed plan {number!r} in {SEEDS_DIR} (have: "
                         f"{', '.join(sorted(p.name.split('_')[0] for p in SEEDS_DIR.glob('*.txt')))})")
    return Path(hits[0])


# the metric a method's runs report as their score (SDTP runs report perplexity, not `score`)
SCORE_KEY = {"sdtp": "ppl"}
# SDTP's long run: the train check's `seed` preset pruner (cpu budget: 1500 steps at 1k/2k/4k) and
# recency, per window on its 64 WikiText-2 test windows, of which a study's evenly spaced windows
# are a subset when the count divides 64 and the lengths match
SDTP_LONG_RUN = ("sdtp-train-check.json", "seed")


def done_rows(store_path: str, study: str) -> list[dict]:
    from prunelab.store import Store

    return [r for r in Store(store_path).study(study) if r.get("status") == "done" and r.get("metrics")]


def cell_scores(store_path: str, study: str, method: str = "") -> dict:
    """cell -> {seed: score} of the study's done runs."""
    key = SCORE_KEY.get(method, "score")
    out: dict = {}
    for r in done_rows(store_path, study):
        out.setdefault(r["cell"], {})[r["cell_seed"]] = r["metrics"].get(key)
    return out


def run_code(store_path: str, study: str) -> list[str]:
    """Markdown lines: the commits the study's done runs ran from, and whether src/ differs among them."""
    import subprocess

    shas = sorted({(r.get("env") or {}).get("git_sha") or "?" for r in done_rows(store_path, study)})
    clean = sorted({s.removesuffix("+dirty") for s in shas if s != "?"})
    differ = sorted({f for c in clean[1:] for f in subprocess.run(
        ["git", "diff", "--name-only", clean[0], c, "--", "src"], cwd=ROOT, capture_output=True,
        text=True).stdout.split()})
    return [f"Code of the done runs: {', '.join(s[:7] + ('+dirty' if s.endswith('+dirty') else '') for s in shas)}"
            + (("; in `src/` they differ only in " + ", ".join(f"`{f}`" for f in differ) if differ
                else "; `src/` is identical at all of them") if len(clean) > 1 else "")
            + ("; +dirty: the run started while the working tree had uncommitted changes" if any(
                s.endswith("+dirty") for s in shas) else "") + "  "]


def sdtp_calibration(store_path: str, study: str, scores: dict) -> list[str]:
    """Markdown lines: the study's perplexities against the long-run pruner's on the same windows."""
    path = common.RESULTS / SDTP_LONG_RUN[0]
    base = next((r for r in done_rows(store_path, study) if r["cell"] == "baseline"), None)
    if base is None or not path.exists():
        return []
    return sdtp_calibration_lines(base["config"]["method_args"], json.loads(path.read_text()), scores)


def sdtp_calibration_lines(args: dict, check: dict, scores: dict) -> list[str]:
    """The calibration table from a baseline run's SDTP config fields and the long-run check's JSON."""
    fname, preset = SDTP_LONG_RUN
    n, ctx, cont, total = args["eval_samples"], args["eval_ctx_len"], args["eval_cont_len"], check["windows"]
    head = ["## Calibration of the budget\n"]
    if (ctx, cont) != (check["ctx"], check["cont"]) or total % n:
        return head + [f"Not comparable with `benchmarks/results/{fname}`: the study scores {n} windows of "
                       f"{ctx} + {cont} tokens, the long run {total} of {check['ctx']} + {check['cont']}.\n"]
    idx = range(0, total, total // n)
    row = check["presets"][preset]

    def long_ppl(name: str) -> float:
        return math.exp(sum(row[name]["per_window"]["nll"][i] for i in idx) / (n * cont))

    lines = []
    for cell, name, what in (("baseline", "learned", "learned pruners"),
                             ("trivial/recency", "recency", "recency (no training: the two must agree)")):
        vals = [v for v in scores.get(cell, {}).values() if v is not None]
        if not vals:
            continue
        mean, long = statistics.mean(vals), long_ppl(name)
        ratio = long / mean      # perplexity: lower is better, so long run / study
        lines.append(f"| {cell}: {what} | {mean:.3f} (n={len(vals)}) | {long:.3f} | {ratio:.3f} "
                     f"({'>=' if ratio >= CALIBRATION_TARGET else '<'} {CALIBRATION_TARGET}) |")
    return head + [
        f"Mean perplexity at this study's budget against the long-run pruner on the same {n} WikiText-2 test "
        f"windows (every {total // n}th of the {total} in `benchmarks/results/{fname}`, preset `{preset}`: "
        "1500 steps on 32 sequences of each of 1k, 2k and 4k tokens). The budget counts as calibrated when the "
        f"baseline reaches {CALIBRATION_TARGET:.0%} of it (long-run perplexity / study perplexity).\n",
        "| cell | this study | long run | ratio |", "|---|---|---|---|", *lines, ""]


def calibration(scores: dict, method: str) -> list[str]:
    """Markdown lines: baseline / reference mean at this budget vs the long-run benchmark's mean."""
    lines = []
    for cell, key in (("baseline", method), ("reference", "ft")):
        if key not in LONG_RUN or cell not in scores:
            continue
        fname, col = LONG_RUN[key]
        path = common.RESULTS / fname
        if not path.exists():
            lines.append(f"| {cell} ({key}) | - | benchmarks/results/{fname} missing | - |")
            continue
        long_mean = json.loads(path.read_text())["summary"]["dev_accuracy"][col][0]
        vals = [v for v in scores[cell].values() if v is not None]
        mean = statistics.mean(vals)
        ratio = mean / long_mean
        lines.append(f"| {cell} ({key}) | {mean:.4f} (n={len(vals)}) | {long_mean:.4f} | {ratio:.3f} "
                     f"({'>=' if ratio >= CALIBRATION_TARGET else '<'} {CALIBRATION_TARGET}) |")
    if not lines:
        return []
    return ["## Calibration of the budget\n",
            "Mean final dev score at this study's budget against the same method's mean in the long-run "
            "benchmark (`benchmarks/results/apt.json`: 500 steps, 8,000 examples, full dev set, 5 seeds). The "
            f"budget counts as calibrated when both reach {CALIBRATION_TARGET:.0%} of it.\n",
            "| cell | this study | long run | ratio |", "|---|---|---|---|", *lines, ""]


def seeds_ran(store: str, study: str) -> str:
    """'5', or for a study that chose its seeds itself 'auto: 5 (start 3, cap 5, stopped at the cap)'."""
    from prunelab.ablation.adaptive import STOP_TEXT
    from prunelab.ablation.studies import load_study

    meta = load_study(store, study)
    n, ad = len(meta.get("seeds") or []), meta.get("adaptive")
    if not ad:
        return str(n)
    stop = (re.sub(r"\s*\([^)]*\)$", "", f"stopped because {STOP_TEXT[ad['stop']]}") if ad.get("stop") in STOP_TEXT
            else "not finished")
    return f"auto: {n} (start {ad.get('start')}, cap {ad.get('max_seeds')}, {stop})"


def written_by(command: str, rc: int, previous_readme: Path | None = None) -> str:
    """The README's first line. A re-render (--report-only) keeps the command that ran the cells,
    read from the README that command wrote, and says that only the report was rendered again."""
    def status(code) -> str:
        return f"rc {code}" + (": a cell failed; the report says which and why" if str(code) == "1" else "")

    runs = None
    if previous_readme is not None and previous_readme.exists():
        for pat in (r"^Runs by `([^`]+)` \(rc (\d+)", r"^Written by `([^`]+)` \(rc (\d+)"):
            m = re.search(pat, previous_readme.read_text(), re.M)
            if m and "--report-only" not in m.group(1):
                runs = m.groups()
                break
    if runs is None:
        return f"Written by `{command}` ({status(rc)}); nothing here is edited by hand.  "
    return (f"Runs by `{runs[0]}` ({status(runs[1])}); the report rendered again by `{command}` from "
            f"`runs.jsonl`; nothing here is edited by hand.  ")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("plan", help="seed plan number, e.g. 000")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--seeds", default="5", help="a count, or 'auto' (prunelab ablate --seeds)")
    ap.add_argument("--max-seeds", type=int, default=None, help="with --seeds auto: the cap (prunelab ablate --max-seeds)")
    ap.add_argument("--ci-width", default=None, help="with --seeds auto: the interval width (prunelab ablate --ci-width)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--store", default=str(ROOT / "runs" / "studies" / "study.db"))
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--allow-dirty", action="store_true")
    a = ap.parse_args(argv)
    from prunelab.ablation import cli as acli
    from prunelab.ablation.parse import load_plan
    from prunelab.ablation.resolve import resolve_plan

    prov = common.committed_provenance("benchmarks/study.py", a, argv)
    path = plan_path(a.plan)
    study = f"ablation-{a.plan}"
    out_dir = common.RESULTS / study
    Path(a.store).parent.mkdir(parents=True, exist_ok=True)
    seeds = a.seeds if a.seeds == "auto" else int(a.seeds)
    rc = 0
    if a.report_only:
        from prunelab.ablation.studies import import_runs, list_studies

        raw = out_dir / "runs.jsonl"      # the committed raw runs: re-render without the original store
        if study not in list_studies(a.store) and raw.exists():
            import_runs(raw, a.store)
        if study in list_studies(a.store):      # the seeds the study ran, not this command's default
            seeds = seeds_ran(a.store, study)
    else:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        rc = acli.ablate(str(path), preset=a.preset, seeds=seeds, workers=a.workers, store=a.store, study=study,
                         max_seeds=a.max_seeds, ci_width=a.ci_width)
        seeds = seeds_ran(a.store, study)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = acli.report(study, store=a.store, out_dir=str(out_dir))
    method = resolve_plan(load_plan(str(path)), None).method
    scores = cell_scores(a.store, study, method)
    readme = [
        f"# Seed plan {a.plan} ({method}), preset `{a.preset}`\n",
        written_by(prov["command"], rc, out_dir / "README.md" if a.report_only else None),
        f"Plan: `../shared/seeds/{path.name}`  ",
        f"Date: {prov['date']}  ",
        f"git: {prov['git_sha']} (each run's row in the store records its own SHA, versions, seed and config)  ",
        f"Machine: {prov['machine']}  ",
        *run_code(a.store, study),
        f"Seeds: {seeds}; cells and seeds done: "
        + ", ".join(f"{c} {sorted(s)}" for c, s in sorted(scores.items())) + "\n",
        *(sdtp_calibration(a.store, study, scores) if method == "sdtp" else calibration(scores, method)),
        *([BUDGET_NOTES[method]] if method in BUDGET_NOTES else []),
        "Files: `report.md` (tables, paired tests, power, verdicts, then the paper section), `section.md` "
        "(the filled-in section alone), `report.tex`, `results.csv`, `figures/`, `report.html`, `runs.jsonl` (every "
        "run's config, metrics, curve and environment: `--report-only` renders the report from it).\n",
    ]
    (out_dir / "README.md").write_text("\n".join(readme) + "\n")
    print("\n".join(readme))
    print("wrote", out_dir, *files, sep="\n  ")
    return rc


if __name__ == "__main__":
    sys.exit(main())
