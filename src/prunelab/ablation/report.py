"""`prunelab report STUDY`: Markdown, LaTeX (booktabs), CSV, figures, one HTML page, and the
paper's ablation section with the numbers filled in, all regenerated from the store.

Layout of the section: a plan that names its sections (seed 004 E5: '6.1 Effect of the
Learnable Pruner' -> A1, A2) gets exactly those; other plans get one subsection per
ablation, in plan order.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from prunelab.ablation.analysis import CONTENTION_LIMIT, AblationResult, StudyResult, analyze, disturbed_timings
from prunelab.ablation.adaptive import STOP_TEXT
from prunelab.ablation.fmt import cell_name, fmt, fmt_cell, fmt_delta, fmt_ms, fmt_p  # noqa: F401
from prunelab.ablation.fmt import exp_text as _exp_text, signed as _signed, tex as _tex  # noqa: F401
from prunelab.ablation.section import section_latex, section_rows, to_section  # noqa: F401 (section_rows: API)
from prunelab.ablation.stats import MIN_BOOTSTRAP_SEEDS, null_text
from prunelab.store import Store

VERDICT_MARK = {"confirmed": "confirmed", "refuted": "REFUTED", "inconclusive": "inconclusive", "": ""}


# ----------------------------------------------------------------------------- formatting

def metric_header(m: dict) -> str:
    text = m.get("text") or m["label"]
    unit = f" ({m['unit']})" if m.get("unit") and f"({m['unit'].lower()})" not in text.lower() else ""
    arrow = " ↑" if m.get("higher_is_better", True) else " ↓"
    return f"{text}{unit}{arrow}"


def status_note(c) -> str:
    parts = []
    if c.failed:
        parts.append(f"{len(c.failed)} failed")
    if c.pending:
        parts.append(f"{len(c.pending)} pending")
    return ", ".join(parts)


# ----------------------------------------------------------------------------- markdown

def to_markdown(res: StudyResult) -> str:
    out = [f"# Ablation study: {res.study}", ""]
    plan = res.plan
    base_cfg = res.meta.get("base") or {}
    out.append(f"Plan: {plan.get('name', '?')} (method `{res.method}`), preset `{res.meta.get('preset')}`, "
               f"model `{base_cfg.get('model')}`, task `{base_cfg.get('task')}`, seeds {res.meta.get('seeds')}.")
    out.append("Values are mean ± std over seeds; Δ is the mean paired difference to the baseline (same seed), "
               f"tested with a paired t-test (p < 0.05), with a bootstrap 95% CI of Δ (only from "
               f"{MIN_BOOTSTRAP_SEEDS} paired seeds up: with fewer, none is given).")
    out.append("")
    out += _adaptive_md(res)
    out += _summary_md(res)
    for a in res.ablations:
        out += _ablation_md(res, a)
    if res.trivial:
        out += _ablation_md(res, res.trivial)
    if res.unresolved:
        out += ["## Not run (unresolved plan items)", ""]
        out += [f"- {u['ablation']}: {u['item']!r}: {u['reason']}" for u in res.unresolved]
        out.append("")
    for note in res.meta.get("notes") or []:
        out.append(f"Note: {note}")
    out += _contention_md(res)
    out += ["", to_section(res)]
    return "\n".join(out).rstrip() + "\n"


def _adaptive_md(res: StudyResult) -> list[str]:
    """`--seeds auto`: that the seeds were chosen adaptively, the rule, n per cell, why it stopped."""
    ad = res.meta.get("adaptive")
    if not ad:
        return []
    out = ["## Seeds (chosen adaptively)", "",
           f"The number of seeds was chosen adaptively (`--seeds auto --ci-width {ad['ci_width']} "
           f"--max-seeds {ad['max_seeds']}`). Rule: {ad['rule']}. The interval is the paired t interval (it "
           f"excludes 0 exactly when the paired t-test has p < 0.05), not the bootstrap CI shown below.", ""]
    if ad.get("stop"):
        out.append(f"Stopped at n = {ad['n']} seeds per cell because {STOP_TEXT[ad['stop']]}.")
    else:
        out.append(f"Not finished: the last round (n = {ad['n']}) has not been evaluated; re-run the same "
                   f"`prunelab ablate` command to continue.")
    rounds = ad.get("rounds") or []
    if rounds:
        out.append("Rounds: " + "; ".join(
            f"n = {r['n']}: " + ", ".join(f"{r[k]} {k}" for k in ("decided", "narrow", "open", "no data") if r.get(k))
            for r in rounds) + ".")
    out += ["", "| Cell | n (seeds done) |", "|---|---|"]
    cells = res.cells() + ([res.reference] if res.reference is not None else [])
    out += [f"| {c.label} | {len(c.done)}" + (f" ({status_note(c)})" if status_note(c) else "") + " |" for c in cells]
    checks = ad.get("checks") or []
    if checks:
        by_key = {m["key"]: m for m in res.all_metrics()}
        out += ["", "| Variant | Primary metric | n | Δ | 95% t interval | width | narrower than | status |",
                "|---|---|---|---|---|---|---|---|"]
        for c in checks:
            m = by_key.get(c["metric"], {"key": c["metric"]})
            shown = c["n"] >= MIN_BOOTSTRAP_SEEDS and c["lo"] is not None
            iv = f"[{_signed(c['lo'], m)}, {_signed(c['hi'], m)}]" if shown else f"-- (< {MIN_BOOTSTRAP_SEEDS} seeds)"
            out.append(f"| {c['cell']} | {m.get('text') or c['metric']} | {c['n']} | "
                       f"{_signed(c['mean'], m) if c['mean'] is not None else '--'} | {iv} | "
                       f"{fmt(c['width'], m, 3) if shown else '--'} | "
                       f"{fmt(c['limit'], m, 3) if c['limit'] is not None else '--'} | {c['status']} |")
    return out + [""]


def _contention_md(res: StudyResult) -> list[str]:
    bad = disturbed_timings(res)
    if not bad:
        return []
    lines = ["## Timing check", "",
             f"Training wall / CPU time is {bad[0]['median']:.2f} for the median run of this study; these runs "
             f"waited for the CPU (ratio > {CONTENTION_LIMIT:g}x the median), so their wall-clock metrics "
             "(training time, TTA, in-run throughput) are inflated by other processes. Their scores are "
             "unaffected. To compare times, re-run them on a quiet machine: `prunelab ablate PLAN ... "
             + " ".join(f"--rerun {b['cell']}:{b['seed']}" for b in bad) + "`.", "",
             "| cell | seed | train wall s | train CPU s | wall / CPU |", "|---|---|---|---|---|"]
    lines += [f"| {b['cell']} | {b['seed']} | {b['wall']:.1f} | {b['cpu']:.1f} | {b['ratio']:.2f} |" for b in bad]
    return lines + [""]


def _summary_md(res: StudyResult) -> list[str]:
    rows = []
    for a in res.ablations:
        for v in a.variants:
            for ln in [x for x in a.lines if x.cell is v and x.expectation is not None]:
                rows.append(f"| {a.name} | {cell_name(v)} | {ln.metric['text']} | "
                            f"{_exp_text(ln)} | {fmt_delta(ln)} | {VERDICT_MARK[ln.verdict]} |")
    if not rows:
        return []
    return ["## Summary", "", "| Ablation | Variant | Metric | Expected | Δ vs baseline | Verdict |",
            "|---|---|---|---|---|---|", *rows, ""]


def _ablation_md(res: StudyResult, a: AblationResult) -> list[str]:
    abl = a.ablation
    head = f"## {abl.get('id') + ': ' if abl.get('id') else ''}{a.name}"
    comp = a.variants[0].cell.get("component") if a.variants else "?"
    out = [head, "", f"{abl['action']} *{abl['ablated_part']}*" + (f" (component `{comp}`)." if comp else ".")]
    if abl.get("hypothesis"):
        out.append(f"Hypothesis: {abl['hypothesis']}.")
    if abl.get("expected_effect"):
        out.append(f"Expected effect: {abl['expected_effect']}.")
    out.append("")
    cols = a.metrics
    out.append("| Setting | n | " + " | ".join(metric_header(m) for m in cols) + " |")
    out.append("|---|---|" + "---|" * len(cols))
    b = res.baseline
    for c in [b] + ([res.reference] if res.reference is not None and res.reference.done else []):
        out.append(f"| {cell_name(c)} | {len(c.done)} | " + " | ".join(fmt_cell(c, m) for m in cols) + " |")
    for v in a.variants:
        cells = []
        for m in cols:
            ln = a.line(v.label, m["key"])
            txt = fmt_cell(v, m)
            if ln.comparison.mean_diff is not None:
                txt += f" (Δ {fmt_delta(ln)})"
            cells.append(txt)
        note = status_note(v)
        out.append(f"| {cell_name(v)}{' [' + note + ']' if note else ''} | {len(v.done)} | " + " | ".join(cells) + " |")
    out.append("")
    tested = [ln for ln in a.lines if ln.comparison.n >= 2]
    if tested:
        out += ["| Setting | Metric | Δ | bootstrap 95% CI | p (paired t) | n | power | expected | verdict |",
                "|---|---|---|---|---|---|---|---|---|"]
        for ln in tested:
            ci = ln.comparison.ci
            ci_txt = f"[{_signed(ci[0], ln.metric)}, {_signed(ci[1], ln.metric)}]" if ci else "-- (< 3 seeds)"
            power = null_text(ln.comparison, lambda x, m=ln.metric: fmt(abs(x), m, 3)) or (
                f"MDE {fmt(abs(ln.comparison.mde), ln.metric, 3)}" if ln.comparison.mde is not None else "--")
            out.append(f"| {cell_name(ln.cell)} | {ln.metric['text']} | {fmt_delta(ln)} | {ci_txt} | "
                       f"{fmt_p(ln.comparison.p_value)} | {ln.comparison.n} | {power} | {_exp_text(ln)} | "
                       f"{VERDICT_MARK[ln.verdict]} |")
        out.append("")
    for v in a.variants:
        for e in sorted(set(v.errors()))[:3]:
            out.append(f"- `{cell_name(v)}` failed: {e}")
    out.append("")
    return out


# ----------------------------------------------------------------------------- LaTeX / CSV

def to_latex(res: StudyResult) -> str:
    metrics = res.all_metrics()
    esc = _tex
    cols = "l" + "r" * len(metrics)
    out = [r"% requires \usepackage{booktabs}", r"\begin{table}[t]", r"\centering", r"\small",
           rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
           "Setting & " + " & ".join(esc(metric_header(m)) for m in metrics) + r" \\", r"\midrule"]
    b = res.baseline
    out.append(esc(f"{res.method.upper()} (full)") + " & " + " & ".join(
        _tex_cell(b, m) for m in metrics) + r" \\")
    # the trivial baselines are not plan items, but a reader of the table needs them beside the
    # variants: they say whether the full method beats the cheapest alternative at all
    for a in res.ablations + ([res.trivial] if res.trivial else []):
        out.append(r"\midrule")
        out.append(rf"\multicolumn{{{len(metrics) + 1}}}{{l}}{{\emph{{{esc(a.name)}}}}} \\")
        for v in a.variants:
            cells = []
            for m in metrics:
                ln = a.line(v.label, m["key"])
                if ln is None:
                    cells.append("--")
                    continue
                txt = _tex_cell(v, m)
                if ln.comparison.significant:
                    txt += r"$^{*}$"
                cells.append(txt)
            out.append(r"\quad " + esc(cell_name(v)) + " & " + " & ".join(cells) + r" \\")
    n = len(res.meta.get("seeds") or [])
    out += [r"\bottomrule", r"\end{tabular}",
            rf"\caption{{Ablations of {esc(res.method.upper())}: mean $\pm$ std over {n} seeds{_tex_adaptive(res)}. "
            r"$^{*}$: the paired difference to the full method is significant (paired t-test over seeds, "
            r"$p<0.05$).}",
            rf"\label{{tab:ablation-{re.sub(r'[^a-z0-9]+', '-', res.study.lower())}}}", r"\end{table}", ""]
    return "\n".join(out)


def _tex_adaptive(res: StudyResult) -> str:
    ad = res.meta.get("adaptive")
    if not ad:
        return ""
    return " (chosen adaptively" + (f", stopped: {_tex(ad['stop'])}" if ad.get("stop") else ", not finished") + ")"


def _tex_cell(cell, m) -> str:
    return _tex_ms(cell.summary(m), m) if cell.complete(m) else _tex(fmt_cell(cell, m))


def _tex_ms(ms, m) -> str:
    mean, std = ms
    if mean is None:
        return "--"
    return fmt(mean, m) + (rf" $\pm$ {fmt(std, m, 2)}" if std is not None else "")


CSV_FIELDS = ["study", "ablation", "id", "action", "ablated_part", "cell", "component", "option", "value", "metric",
              "metric_text", "unit", "n_base", "base_mean", "base_std", "n", "mean", "std", "delta", "rel_delta",
              "ci_lo", "ci_hi", "p_value", "test", "mde", "null", "expected", "verdict", "failed", "pending"]


def to_csv(res: StudyResult) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    w.writeheader()
    for a in res.ablations + ([res.trivial] if res.trivial else []):   # trivial rows: action COMPARE
        for ln in a.lines:
            m, c, cell = ln.metric, ln.comparison, ln.cell.cell
            s = m.get("scale", 1.0)
            sc = lambda x: None if x is None else x * s  # noqa: E731
            w.writerow({
                "study": res.study, "ablation": a.name, "id": a.ablation.get("id"), "action": a.ablation["action"],
                "ablated_part": a.ablation["ablated_part"], "cell": cell["label"], "component": cell.get("component"),
                "option": cell.get("option"), "value": cell.get("value"), "metric": m["key"],
                "metric_text": m.get("text"), "unit": m.get("unit"), "n_base": ln.base[2], "base_mean": sc(ln.base[0]),
                "base_std": sc(ln.base[1]), "n": ln.value[2], "mean": sc(ln.value[0]), "std": sc(ln.value[1]),
                "delta": sc(c.mean_diff), "rel_delta": c.rel_diff, "ci_lo": sc(c.ci[0]) if c.ci else None,
                "ci_hi": sc(c.ci[1]) if c.ci else None, "p_value": c.p_value, "test": c.test,
                "mde": sc(c.mde) if c.mde is not None else None, "null": c.null,
                "expected": _exp_text(ln), "verdict": ln.verdict, "failed": len(ln.cell.failed),
                "pending": len(ln.cell.pending)})
    return buf.getvalue()


# ----------------------------------------------------------------------------- entry point

def write_report(study: str, store: Store | str, out_dir: str | Path | None = None) -> list[Path]:
    from prunelab.ablation import figures

    store = store if isinstance(store, Store) else Store(store)
    res = analyze(store, study)
    out = Path(out_dir) if out_dir else Path(store.path).parent / "reports" / study
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (("report.md", to_markdown(res)), ("section.md", to_section(res)), ("section.tex", section_latex(res)),
                       ("report.tex", to_latex(res)), ("results.csv", to_csv(res))):
        p = out / name
        p.write_text(text, encoding="utf-8")
        paths.append(p)
    from prunelab.ablation.studies import export_runs

    export_runs(store.path, study, out / "runs.jsonl")   # the raw runs: the report can be rendered again
    paths.append(out / "runs.jsonl")
    pngs = figures.make_figures(res, out / "figures")
    paths += pngs
    paths.append(figures.write_html(res, out / "report.html", pngs))
    return paths
