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

from prunelab.ablation.analysis import CONTENTION_LIMIT, AblationResult, Line, StudyResult, analyze, disturbed_timings
from prunelab.ablation.stats import null_text
from prunelab.store import Store

VERDICT_MARK = {"confirmed": "confirmed", "refuted": "REFUTED", "inconclusive": "inconclusive", "": ""}


# ----------------------------------------------------------------------------- formatting

def fmt(x: float | None, metric: dict, digits: int = 4) -> str:
    if x is None:
        return "--"
    v = x * metric.get("scale", 1.0)
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def fmt_ms(mean, std, metric) -> str:
    if mean is None:
        return "--"
    return fmt(mean, metric) + (f" ± {fmt(std, metric, 2)}" if std is not None else "")


def fmt_delta(line: Line) -> str:
    c = line.comparison
    if c.mean_diff is None:
        return "--"
    sign = "+" if c.mean_diff >= 0 else "-"
    rel = f" ({c.rel_diff:+.1%})" if c.rel_diff is not None else ""
    return f"{sign}{fmt(abs(c.mean_diff), line.metric)}{rel}"


def fmt_p(p) -> str:
    return "--" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def metric_header(m: dict) -> str:
    text = m.get("text") or m["label"]
    unit = f" ({m['unit']})" if m.get("unit") and f"({m['unit'].lower()})" not in text.lower() else ""
    arrow = " ↑" if m.get("higher_is_better", True) else " ↓"
    return f"{text}{unit}{arrow}"


def cell_name(c) -> str:
    cell = c.cell
    if cell.get("kind") == "baseline":
        return "baseline (full method)"
    if cell.get("kind") == "reference":
        return "reference (FT)"
    opt = cell.get("option") if cell.get("option") is not None else f"{cell.get('component')}={cell.get('value'):g}"
    text = cell.get("text") or ""
    return f"{opt}" + (f" ({text})" if text and text != "REMOVE" and text != opt else "")


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
               "tested with a paired t-test (p < 0.05), with a bootstrap 95% CI of Δ.")
    out.append("")
    out += _summary_md(res)
    for a in res.ablations:
        out += _ablation_md(res, a)
    if res.unresolved:
        out += ["## Not run (unresolved plan items)", ""]
        out += [f"- {u['ablation']}: {u['item']!r}: {u['reason']}" for u in res.unresolved]
        out.append("")
    for note in res.meta.get("notes") or []:
        out.append(f"Note: {note}")
    out += _contention_md(res)
    out += ["", to_section(res)]
    return "\n".join(out).rstrip() + "\n"


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


def _exp_text(ln: Line) -> str:
    e = ln.expectation
    if e is None:
        return ""
    arrow = {1: "↑", -1: "↓", 0: "≈"}[e.direction] * (e.strength if e.direction else 1)
    return ("crash" if e.crash else arrow) + (" (implied)" if e.implied else "")


def _ablation_md(res: StudyResult, a: AblationResult) -> list[str]:
    abl = a.ablation
    head = f"## {abl.get('id') + ': ' if abl.get('id') else ''}{a.name}"
    comp = a.variants[0].cell.get("component") if a.variants else "?"
    out = [head, "", f"{abl['action']} *{abl['ablated_part']}* (component `{comp}`)."]
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
        out.append(f"| {cell_name(c)} | {len(c.done)} | " + " | ".join(fmt_ms(*_ms(c, m), m) for m in cols) + " |")
    for v in a.variants:
        cells = []
        for m in cols:
            ln = a.line(v.label, m["key"])
            txt = fmt_ms(ln.value[0], ln.value[1], m)
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


def _signed(x: float, metric: dict) -> str:
    return ("-" if x < 0 else "+") + fmt(abs(x), metric, 3)


def _ms(cell, metric):
    from prunelab.ablation.stats import mean_std

    return mean_std(list(cell.values(metric).values()))


# ----------------------------------------------------------------------------- paper section

def to_section(res: StudyResult) -> str:
    plan = res.plan
    method = (res.method or "").upper().replace("FAKE_", "")
    base_cfg = res.meta.get("base") or {}
    n = len(res.meta.get("seeds") or [])
    out = ["### 6. Ablation Studies", ""]
    intro = plan.get("intro") or (
        f"To better understand the contribution of each {method} component, we ablate them one at a time while "
        f"keeping all other components fixed.")
    out.append(f"{intro} All numbers are means over {n} seed{'s' if n != 1 else ''} on {base_cfg.get('model')} / {base_cfg.get('task')}; "
               f"differences are paired by seed against the full {method}.")
    out.append("")
    by_id = {a.ablation.get("id"): a for a in res.ablations if a.ablation.get("id")}
    sections = plan.get("sections") or []
    if sections:
        for s in sections:
            out += [f"#### {s['number']} {s['title']}", ""]
            body = [_paragraph(res, by_id[i]) for i in s["ids"] if i in by_id]
            missing = [i for i in s["ids"] if i not in by_id]
            out += body or ["(no results for this section)"]
            if missing:
                out.append(f"({', '.join(missing)} not run: not resolved against {res.method}'s components.)")
            if "gpu" in (s.get("note") or "").lower() or "communication" in s["title"].lower():
                out.append(_comm_sentence(res))
            out.append("")
    else:
        for k, a in enumerate(res.ablations, start=1):
            out += [f"#### 6.{k} Effect of {_title(a.ablation['ablated_part'])}", "", _paragraph(res, a), ""]
    return "\n".join(x for x in out if x is not None).rstrip() + "\n"


def _title(text: str) -> str:
    t = re.sub(r"\s*\(.*?\)", "", text).strip()
    return t[:1].upper() + t[1:] if t else text


def _paragraph(res: StudyResult, a: AblationResult) -> str:
    abl = a.ablation
    sentences = []
    for v in a.variants:
        change = _change(abl, v.cell)
        if not v.done:
            if v.failed and not v.pending:
                err = (v.errors() or ["no error recorded"])[0]
                crash = any(ln.expectation and ln.expectation.crash for ln in a.lines if ln.cell is v)
                tail = "as the plan expected (model crashes)" if crash else "so no numbers are reported"
                sentences.append(f"{change} made every run fail ({err}), {tail}.")
            else:
                sentences.append(f"{change}: results pending ({len(v.done)}/{len(v.seeds)} seeds finished).")
            continue
        lines = [ln for ln in a.lines if ln.cell is v and ln.value[0] is not None]
        if not lines:
            sentences.append(f"{change}: the requested metrics were not recorded.")
            continue
        main, rest = lines[0], lines[1:]
        sentences.append(f"{change} {_move(main)}{_verdict_clause(main, abl)}.")
        if rest:
            parts = [f"{ln.metric['label'].lower()} {_arrow(ln)}" + (f" (expected {_exp_text(ln)}: {ln.verdict})"
                                                                     if ln.verdict else "") for ln in rest]
            sentences.append("Also: " + "; ".join(parts) + ".")
    return " ".join(sentences)


def _change(abl: dict, cell: dict) -> str:
    part = abl["ablated_part"]
    if abl["action"] == "REMOVE":
        return f"Removing {part} (`{cell.get('component')}` -> `{cell.get('option')}`)"
    if cell.get("value") is not None:
        return f"Setting {part} to {cell['value']:g}"
    label = cell.get("text") or cell.get("option")
    return f"Replacing {part} with {label} (`{cell.get('option')}`)"


def _move(ln: Line) -> str:
    m = ln.metric
    c = ln.comparison
    unit = f" {m['unit']}" if m.get("unit") and m["unit"] != "%" else (m.get("unit") or "")
    stat = ""
    if c.n >= 2:
        ci = c.ci
        stat = (f"; paired t-test, n = {c.n}" + (f", bootstrap 95% CI [{_signed(ci[0], m)}, {_signed(ci[1], m)}]" if ci else "")
                + (f", p {_p_eq(c.p_value)}" if c.p_value is not None else ""))
    return (f"changes {m['label'].lower()} from {fmt_ms(*ln.base[:2], m)} to {fmt_ms(*ln.value[:2], m)}{unit} "
            f"(Δ {fmt_delta(ln)}{stat})")


def _arrow(ln: Line) -> str:
    m = ln.metric
    return f"{fmt(ln.base[0], m)} -> {fmt(ln.value[0], m)}{(' ' + m['unit']) if m.get('unit') else ''}"


def _verdict_clause(ln: Line, abl: dict) -> str:
    if not ln.verdict:
        return ""
    word = {"confirmed": "which supports", "refuted": "which contradicts",
            "inconclusive": "which is inconclusive about"}[ln.verdict]
    if ln.expectation and ln.expectation.implied:
        return f", {word} the implied claim that the full method performs better"
    parts = []
    if abl.get("hypothesis"):
        parts.append(f"the hypothesis “{abl['hypothesis']}”")
    if abl.get("expected_effect"):
        parts.append(f"the expected effect ({abl['expected_effect']})")
    return f", {word} " + " and ".join(parts)


def _comm_sentence(res: StudyResult) -> str | None:
    vals = res.baseline.values({"key": "comm_bytes", "keys": ["comm_bytes"]})
    if not vals:
        return "Communication volume was not recorded by these runs (comm_bytes)."
    mean = sum(vals.values()) / len(vals)
    return f"The full method moves {mean / 2 ** 20:.3g} MB across pipeline-stage boundaries per prompt."


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
        _tex_ms(_ms(b, m), m) for m in metrics) + r" \\")
    for a in res.ablations:
        out.append(r"\midrule")
        out.append(rf"\multicolumn{{{len(metrics) + 1}}}{{l}}{{\emph{{{esc(a.name)}}}}} \\")
        for v in a.variants:
            cells = []
            for m in metrics:
                ln = a.line(v.label, m["key"])
                if ln is None:
                    cells.append("--")
                    continue
                txt = _tex_ms(ln.value[:2], m)
                if ln.comparison.significant:
                    txt += r"$^{*}$"
                cells.append(txt)
            out.append(r"\quad " + esc(cell_name(v)) + " & " + " & ".join(cells) + r" \\")
    n = len(res.meta.get("seeds") or [])
    out += [r"\bottomrule", r"\end{tabular}",
            rf"\caption{{Ablations of {esc(res.method.upper())}: mean $\pm$ std over {n} seeds. "
            r"$^{*}$: the paired difference to the full method is significant (paired t-test over seeds, "
            r"$p<0.05$).}",
            rf"\label{{tab:ablation-{re.sub(r'[^a-z0-9]+', '-', res.study.lower())}}}", r"\end{table}", ""]
    return "\n".join(out)


def _tex_ms(ms, m) -> str:
    mean, std = ms
    if mean is None:
        return "--"
    return fmt(mean, m) + (rf" $\pm$ {fmt(std, m, 2)}" if std is not None else "")


def _tex(s: str) -> str:
    rep = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
           "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "↑": r"$\uparrow$",
           "↓": r"$\downarrow$", "±": r"$\pm$", "≈": r"$\approx$", "→": r"$\rightarrow$", "Δ": r"$\Delta$"}
    return "".join(rep.get(ch, ch) for ch in str(s))


CSV_FIELDS = ["study", "ablation", "id", "action", "ablated_part", "cell", "component", "option", "value", "metric",
              "metric_text", "unit", "n_base", "base_mean", "base_std", "n", "mean", "std", "delta", "rel_delta",
              "ci_lo", "ci_hi", "p_value", "test", "mde", "null", "expected", "verdict", "failed", "pending"]


def to_csv(res: StudyResult) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    w.writeheader()
    for a in res.ablations:
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
    for name, text in (("report.md", to_markdown(res)), ("section.md", to_section(res)),
                       ("report.tex", to_latex(res)), ("results.csv", to_csv(res))):
        p = out / name
        p.write_text(text, encoding="utf-8")
        paths.append(p)
    pngs = figures.make_figures(res, out / "figures")
    paths += pngs
    paths.append(figures.write_html(res, out / "report.html", pngs))
    return paths


def _p_eq(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"
