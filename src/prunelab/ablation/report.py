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
from prunelab.ablation.adaptive import STOP_TEXT
from prunelab.ablation.stats import MIN_BOOTSTRAP_SEEDS, null_text
from prunelab.store import Store

VERDICT_MARK = {"confirmed": "confirmed", "refuted": "REFUTED", "inconclusive": "inconclusive", "": ""}


# ----------------------------------------------------------------------------- formatting

def fmt(x: float | None, metric: dict, digits: int = 4) -> str:
    if x is None:
        return "--"
    v = x * metric.get("scale", 1.0)
    if abs(v) < 1e-12:      # floating-point residue (a bootstrap bound of exactly 0 came out as 2.2e-17)
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
    if cell.get("kind") == "trivial":
        return f"trivial baseline: {cell.get('option')} ({cell.get('text')})"
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
#
# Each subsection: per variant, the key numbers (means ± std over seeds, Δ with its bootstrap CI
# and p), the direction against the plan's hypothesis / expected effect, significance and power
# (stats.null_text: 'underpowered (MDE x)' / 'no effect larger than x'), and one sentence of
# interpretation chosen by the outcome (confirmed / refuted / underpowered / no effect / effect
# without an expectation). Then a threats-to-validity paragraph built from the study's config and
# a LaTeX table whose numbers are the very strings the prose uses (section_rows).

ALPHA_TEXT = "α = 0.05"


def to_section(res: StudyResult) -> str:
    plan = res.plan
    method = _method_name(res)
    base_cfg = res.meta.get("base") or {}
    n = len(res.meta.get("seeds") or [])
    out = ["### 6. Ablation Studies", ""]
    intro = plan.get("intro") or (
        f"To better understand the contribution of each {method} component, we ablate them one at a time while "
        f"keeping all other components fixed.")
    out.append(f"{intro} All numbers are means ± standard deviations over {n} seed{'s' if n != 1 else ''} on "
               f"{base_cfg.get('model')} / {base_cfg.get('task')}; differences (Δ, variant minus full {method}) are "
               f"paired by seed, with {_ci_clause(res)} and paired t-tests at {ALPHA_TEXT}."
               + _adaptive_sentence(res))
    out.append("")
    by_id = {a.ablation.get("id"): a for a in res.ablations if a.ablation.get("id")}
    sections = plan.get("sections") or []
    k = 0
    if sections:
        for s in sections:
            out += [f"#### {s['number']} {s['title']}", ""]
            body = []
            for i in s["ids"]:
                if i in by_id:
                    body.append(_paragraph(res, by_id[i], k))
                    k += 1
            missing = [i for i in s["ids"] if i not in by_id]
            out += body or ["(no results for this section)"]
            if missing:
                out.append(f"({', '.join(missing)} not run: not resolved against {res.method}'s components.)")
            if "gpu" in (s.get("note") or "").lower() or "communication" in s["title"].lower():
                out.append(_comm_sentence(res))
            out.append("")
    else:
        for k, a in enumerate(res.ablations, start=1):
            out += [f"#### 6.{k} Effect of {_title(a.ablation['ablated_part'])}", "", _paragraph(res, a, k - 1), ""]
    out += ["#### Threats to validity", "", threats_paragraph(res), ""]
    out += [f"Table {_table_ref(res)} lists the same numbers.", "", "```latex", section_latex(res).rstrip(), "```", ""]
    return "\n".join(x for x in out if x is not None).rstrip() + "\n"


def _ci_clause(res: StudyResult) -> str:
    """Bootstrap intervals exist only from MIN_BOOTSTRAP_SEEDS paired seeds up: say so when some lack one."""
    ns = [ln.comparison.n for a in res.ablations for ln in a.lines if ln.comparison.n >= 2]
    if ns and max(ns) < MIN_BOOTSTRAP_SEEDS:
        return (f"no confidence intervals (a bootstrap interval needs at least {MIN_BOOTSTRAP_SEEDS} paired seeds; "
                f"two only give their range)")
    if ns and min(ns) < MIN_BOOTSTRAP_SEEDS:
        return (f"bootstrap 95% confidence intervals where at least {MIN_BOOTSTRAP_SEEDS} paired seeds exist "
                f"(none for fewer)")
    return "bootstrap 95% confidence intervals"


def _adaptive_sentence(res: StudyResult) -> str:
    ad = res.meta.get("adaptive")
    if not ad:
        return ""
    if not ad.get("stop"):
        return (f" The number of seeds is being chosen adaptively (up to {ad['max_seeds']}) and the choice is not "
                f"finished at n = {ad['n']}.")
    width = ad["ci_width"] + (" of the baseline mean" if ad["ci_width"].endswith("%") else "")
    why = {"decided": "every interval excluded 0",
           "width": f"every interval excluded 0 or was narrower than {ad['ci_width']}",
           "cap": f"the cap of {ad['max_seeds']} seeds was reached with some intervals still including 0 and "
                  f"wider than {ad['ci_width']}",
           "no data": "no variant had paired values of its primary metric"}[ad["stop"]]
    return (f" The number of seeds was chosen adaptively: starting from {ad['start']} seeds per cell, one seed was "
            f"added to every cell per round until each variant's 95% paired t interval on its primary metric "
            f"excluded 0 or was narrower than {width}, up to {ad['max_seeds']} seeds; the study stopped at "
            f"n = {ad['n']} seeds per cell because {why}.")


def _method_name(res: StudyResult) -> str:
    return (res.method or "").upper().replace("FAKE_", "")


def _title(text: str) -> str:
    t = re.sub(r"\s*\(.*?\)", "", text).strip()
    return t[:1].upper() + t[1:] if t else text


def outcome(ln: Line) -> str:
    """confirmed | refuted | underpowered | no_effect | effect | inconclusive."""
    c = ln.comparison
    if ln.verdict in ("confirmed", "refuted"):
        return ln.verdict
    if c.significant:
        return "effect"
    if c.null in ("underpowered", "no_effect"):
        return c.null
    return "inconclusive"


OUTCOME_TEXT = {"confirmed": "confirmed", "refuted": "refuted", "underpowered": "inconclusive (underpowered)",
                "no_effect": "no effect", "effect": "effect (no expectation)", "inconclusive": "inconclusive"}


def section_rows(res: StudyResult) -> list[dict]:
    """One row per (ablation, variant, metric) with a finished comparison: the formatted numbers
    the prose and the LaTeX table share."""
    rows = []
    for a in res.ablations:
        for v in a.variants:
            for ln in a.lines:
                if ln.cell is not v or ln.value[0] is None:
                    continue
                rows.append(_numbers(a, v, ln))
    return rows


def _numbers(a: AblationResult, v, ln: Line) -> dict:
    m, c = ln.metric, ln.comparison
    ci = c.ci
    return {"ablation": a.name, "variant": cell_name(v), "metric": m["label"].lower(),
            "unit": m.get("unit") or "", "base": fmt_ms(*ln.base[:2], m), "value": fmt_ms(*ln.value[:2], m),
            "n": c.n, "delta": fmt_delta(ln) if c.mean_diff is not None else "--",
            "ci": f"[{_signed(ci[0], m)}, {_signed(ci[1], m)}]" if ci else "--",
            "p": fmt_p(c.p_value).replace("<", "< "), "power": null_text(c, lambda x, m=m: fmt(abs(x), m, 3)),
            "outcome": outcome(ln) if c.n >= 2 else "inconclusive"}


def _paragraph(res: StudyResult, a: AblationResult, k: int = 0) -> str:
    abl = a.ablation
    method = _method_name(res)
    sentences = []
    for j, v in enumerate(a.variants):
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
        nums = _numbers(a, v, main)
        sentences.append(_numbers_sentence(change, nums, method, k + j))
        opt = v.cell.get("option") if v.cell.get("option") is not None else v.label
        direction = _direction_sentence(main, abl, nums, opt)
        if direction:
            sentences.append(direction)
        sentences.append(_significance_sentence(main, nums, opt))
        sentences.append(_interpretation(main, abl, v, nums, k + j))
        if rest:
            parts = []
            for ln in rest:
                r = _numbers(a, v, ln)
                txt = f"{r['metric']} {r['base']} → {r['value']}{(' ' + r['unit']) if r['unit'] else ''} (Δ {r['delta']}"
                txt += f", 95% CI {r['ci']}" if r["ci"] != "--" else ""
                txt += f", p {_p_eq_str(r['p'])}" if r["p"] != "--" else ""
                txt += f"; {r['power']}" if r["power"] and not ln.comparison.significant else ""
                txt += f"; expected {_exp_text(ln)}: {ln.verdict})" if ln.verdict else ")"
                parts.append(txt)
            sentences.append(f"Secondary metrics for `{v.cell.get('option') or v.label}`: " + "; ".join(parts) + ".")
    return " ".join(sentences)


def _numbers_sentence(change: str, r: dict, method: str, k: int) -> str:
    unit = f" {r['unit']}" if r["unit"] and r["unit"] != "%" else r["unit"]
    stat = f"Δ {r['delta']}"
    if r["ci"] != "--":
        stat += f", 95% CI {r['ci']}"
    if r["p"] != "--":
        stat += f", p {_p_eq_str(r['p'])}"
    seeds = f"n = {r['n']} paired seeds"
    if k % 2 == 0:
        return (f"{change} gives {r['metric']} {r['value']}{unit} against {r['base']}{unit} for the full {method} "
                f"({stat}; {seeds}).")
    return (f"{r['metric'][0].upper() + r['metric'][1:]} moves from {r['base']}{unit} (full {method}) to "
            f"{r['value']}{unit} after {_gerund(change)} ({seeds}; {stat}).")


def _p_eq_str(p: str) -> str:
    return p if p.startswith("<") else f"= {p}"


def _gerund(change: str) -> str:
    return change[0].lower() + change[1:]


def _direction_sentence(ln: Line, abl: dict, r: dict, opt: str) -> str | None:
    e, c = ln.expectation, ln.comparison
    if e is None or c.mean_diff is None:
        return None
    said = []
    if abl.get("hypothesis") and not e.implied:
        said.append(f"hypothesis “{abl['hypothesis']}”")
    if abl.get("expected_effect") and not e.implied:
        said.append(f"expected effect: {abl['expected_effect']}")
    claim = "; ".join(said) if said else "implied: the full method is better"
    if e.crash:
        return f"The plan predicted a collapse with `{opt}` ({claim}); the runs finished with Δ {r['delta']} instead."
    if e.direction == 0:
        want = "no change"
    else:
        want = "an increase" if e.direction > 0 else "a decrease"
    if c.mean_diff == 0:
        got = "no change at all"
    elif e.direction == 0:
        got = f"a {'rise' if c.mean_diff > 0 else 'fall'} of {r['delta']}"
    elif (c.mean_diff > 0) == (e.direction > 0):
        got = "a change in that direction"
    else:
        got = "a change in the opposite direction"
    return f"The plan expects {want} in {r['metric']} ({claim}); `{opt}` shows {got}."


def _significance_sentence(ln: Line, r: dict, opt: str) -> str:
    c = ln.comparison
    if c.n < 2:
        return f"With {c.n} seed there is no test of `{opt}` on {r['metric']}."
    if c.significant:
        return f"For `{opt}` the {r['metric']} difference is significant at {ALPHA_TEXT} (p {_p_eq_str(r['p'])})."
    if r["power"]:
        return (f"For `{opt}` the {r['metric']} difference is not significant (p {_p_eq_str(r['p'])}): "
                f"{r['power']}.")
    return f"For `{opt}` the {r['metric']} difference is not significant (p {_p_eq_str(r['p'])})."


def _interpretation(ln: Line, abl: dict, v, r: dict, k: int) -> str:
    part = abl["ablated_part"]
    opt = v.cell.get("option") if v.cell.get("option") is not None else f"{v.cell.get('component')}={v.cell.get('value'):g}"
    c = ln.comparison
    better = (c.mean_diff or 0) * (1 if ln.metric.get("higher_is_better", True) else -1) > 0
    kind = outcome(ln) if c.n >= 2 else "inconclusive"
    mde = fmt(abs(c.mde), ln.metric, 3) if c.mde is not None else None
    if kind == "confirmed":
        if ln.expectation and ln.expectation.direction == 0:
            return f"So swapping in `{opt}` is harmless here: {part} can be changed this way without a measurable cost."
        return (f"This confirms the plan for `{opt}`: {part} matters, and "
                f"{'keeping' if not better else 'changing'} it is what gives the better {r['metric']}.")
    if kind == "refuted" and ln.expectation and ln.expectation.crash:
        # the plan predicted a collapse: the finished runs refute that, whatever the sign of a small Δ
        return (f"The result for `{opt}` refutes the plan's claim about {part}: it predicted a collapse, and "
                f"{r['metric']} moved by {r['delta']} only.")
    if kind == "refuted":
        return (f"The result for `{opt}` refutes the plan's claim about {part}: the ablated variant is "
                f"{'better' if better else 'worse'} on {r['metric']}, the opposite of what was expected.")
    if kind == "underpowered":
        return (f"Whether {part} matters (`{opt}`) stays open: {len(v.done)} seeds cannot detect a change in "
                f"{r['metric']} smaller than {mde}, so more seeds or a larger budget are needed.")
    if kind == "no_effect":
        return (f"At this budget `{opt}` leaves {r['metric']} unchanged within {mde}, so {part} is not what drives "
                f"the full method's {r['metric']} here.")
    if kind == "effect":
        return (f"With no expectation stated in the plan, `{opt}` still measurably "
                f"{'improves' if better else 'worsens'} {r['metric']}, so {part} does affect it.")
    return f"The {r['metric']} evidence on `{opt}` ({part}) is inconclusive."


def threats_paragraph(res: StudyResult) -> str:
    """Budget against the paper's, seeds, model scale and CPU timing noise, from the study's config."""
    from prunelab.ablation import presets

    base = res.meta.get("base") or {}
    train = base.get("train") or {}
    method = (res.method or "").replace("fake_", "")
    table = presets._DECODER if method in ("sdtp",) else presets._ENCODER
    paper = table["paper"]
    pt = paper["train"]
    n = len(res.meta.get("seeds") or [])
    steps = train.get("max_steps")
    budget = (f"{steps} optimisation steps of batch {train.get('batch_size')}" if steps
              else f"{train.get('epochs')} epochs of batch {train.get('batch_size')}")
    if train.get("train_limit"):
        budget += f" on {train['train_limit']} training examples"
    paper_budget = (f"{pt['max_steps']} steps" if pt.get("max_steps") else f"{pt.get('epochs')} epochs over the full "
                    f"training set") + f" of batch {pt.get('batch_size')}"
    s = [f"Budget: each run here trains for {budget} (preset `{res.meta.get('preset') or '?'}`), against "
         f"{paper_budget} in the paper's setting, so components whose benefit builds up over a long run "
         f"(schedules, rank growth, distillation) are tested far from their operating point."]
    seeds = (f"Seeds: {n} seed{'s' if n != 1 else ''} per cell; non-significant differences are reported with "
             f"their minimum detectable effect rather than read as absent, and no correction for the "
             f"{sum(len([ln for ln in a.lines]) for a in res.ablations)} comparisons is applied.")
    if res.meta.get("adaptive"):
        seeds += (" The seed count was chosen by looking at the results after each round (optional stopping), "
                  "which makes an interval that excludes 0 by chance somewhat more likely than the nominal 5%.")
    s.append(seeds)
    s.append(f"Model scale: {base.get('model')} on {base.get('task')} stands in for the paper's {paper['model']} "
             f"on {paper['task']}; effects at this scale need not transfer.")
    disturbed = disturbed_timings(res)
    meas = base.get("measure") or {}
    timing = (f"Timing: wall-clock metrics come from a shared CPU ({meas.get('repeats', '?')} timing "
              f"repeat{'s' if meas.get('repeats') != 1 else ''}, {meas.get('warmup', '?')} warm-up)")
    if disturbed:
        timing += (f" and {len(disturbed)} run{'s' if len(disturbed) != 1 else ''} waited for the CPU (wall/CPU time "
                   f"over {CONTENTION_LIMIT}x the median), so speed and time differences are less reliable than "
                   f"the score differences.")
    else:
        timing += "; no run's wall time was stretched by other processes, but small speed differences remain noisy."
    s.append(timing)
    return " ".join(s)


def _table_ref(res: StudyResult) -> str:
    return f"\\ref{{tab:section-{re.sub(r'[^a-z0-9]+', '-', res.study.lower())}}}"


def section_latex(res: StudyResult) -> str:
    """The section's numbers as a booktabs table: the same strings as the prose (section_rows)."""
    esc = _tex
    method = _method_name(res)
    out = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{lllllllll}", r"\toprule",
           rf"Ablation & Variant & Metric & Full {esc(method)} & Variant & $\Delta$ & 95\% CI & $p$ & Outcome \\",
           r"\midrule"]
    for r in section_rows(res):
        out.append(" & ".join(esc(x) for x in (r["ablation"], r["variant"], r["metric"], r["base"], r["value"],
                                              r["delta"], r["ci"], r["p"], OUTCOME_TEXT[r["outcome"]])) + r" \\")
    n = len(res.meta.get("seeds") or [])
    out += [r"\bottomrule", r"\end{tabular}",
            rf"\caption{{Ablations of {esc(method)}: mean $\pm$ std over {n} seeds{_tex_adaptive(res)}; $\Delta$ is "
            rf"paired by seed, with a bootstrap 95\% CI (from {MIN_BOOTSTRAP_SEEDS} paired seeds up) and a paired "
            r"t-test.}",
            rf"\label{{tab:section-{re.sub(r'[^a-z0-9]+', '-', res.study.lower())}}}", r"\end{table}", ""]
    return "\n".join(out)


def _change(abl: dict, cell: dict) -> str:
    part = abl["ablated_part"]
    if abl["action"] == "REMOVE":
        return f"Removing {part} (`{cell.get('component')}` -> `{cell.get('option')}`)"
    if cell.get("value") is not None:
        return f"Setting {part} to {cell['value']:g}"
    label = cell.get("text") or cell.get("option")
    return f"Replacing {part} with {label} (`{cell.get('option')}`)"


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
                txt = _tex_ms(ln.value[:2], m)
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
    pngs = figures.make_figures(res, out / "figures")
    paths += pngs
    paths.append(figures.write_html(res, out / "report.html", pngs))
    return paths


def _p_eq(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"
