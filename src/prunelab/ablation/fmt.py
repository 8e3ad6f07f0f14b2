"""Number and name formatting shared by the report (report.py) and the paper section (section.py)."""
from __future__ import annotations

from prunelab.ablation.analysis import Line


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


def fmt_cell(cell, metric: dict) -> str:
    """A cell's mean ± std; for a censored metric (time to accuracy) that some seed never reached
    within the budget, how many reached it instead ('1/5 reached'; the median once most did)."""
    if cell.complete(metric):
        return fmt_ms(*cell.summary(metric), metric)
    k, n = cell.reach(metric)
    if k == 0:
        return f"not reached ({k}/{n})"
    from prunelab.derived import tta_aggregate

    med = tta_aggregate(list(cell.values(metric).values()) + [None] * (n - k))["median"]
    return f"{k}/{n} reached" + (f", median {fmt(med, metric)}" if med is not None else "")


def lower_label(label: str) -> str:
    """'Time to 97% of FT' -> 'time to 97% of FT': lower case inside a sentence, acronyms kept."""
    return " ".join(w if len(w) > 1 and w.isupper() else w.lower() for w in str(label).split(" "))


def fmt_delta(line: Line) -> str:
    c = line.comparison
    if c.mean_diff is None:
        return "--"
    sign = "+" if c.mean_diff >= 0 else "-"
    rel = f" ({c.rel_diff:+.1%})" if c.rel_diff is not None else ""
    return f"{sign}{fmt(abs(c.mean_diff), line.metric)}{rel}"


def fmt_p(p) -> str:
    return "--" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


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


def exp_text(ln: Line) -> str:
    e = ln.expectation
    if e is None:
        return ""
    arrow = {1: "↑", -1: "↓", 0: "≈"}[e.direction] * (e.strength if e.direction else 1)
    return ("crash" if e.crash else arrow) + (" (implied)" if e.implied else "")


def signed(x: float, metric: dict) -> str:
    return ("-" if x < 0 else "+") + fmt(abs(x), metric, 3)


def tex(s: str) -> str:
    rep = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
           "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "↑": r"$\uparrow$",
           "↓": r"$\downarrow$", "±": r"$\pm$", "≈": r"$\approx$", "→": r"$\rightarrow$", "Δ": r"$\Delta$"}
    return "".join(rep.get(ch, ch) for ch in str(s))
