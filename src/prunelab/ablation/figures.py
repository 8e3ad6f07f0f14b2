"""Figures (matplotlib, Agg) and the self-contained HTML page of a study report."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from prunelab.ablation.analysis import StudyResult
from prunelab.ablation.metrics import SPECS
from prunelab.ablation.stats import mean_std

PERF_KEYS = ("score", "accuracy", "perplexity")
SPEED_KEYS = ("speedup", "prefill_speedup", "e2e_speedup", "throughput_bs32")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _short(label: str, n: int = 38) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def make_figures(res: StudyResult, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in res.all_metrics():
        p = _bars(res, m, out_dir / f"metric_{m['key']}.png")
        if p:
            paths.append(p)
    p = _tradeoff(res, out_dir / "accuracy_vs_speedup.png")
    if p:
        paths.append(p)
    return paths


def _reach_note(cell, metric: dict) -> str:
    if cell.complete(metric):
        return ""
    k, n = cell.reach(metric)
    return f"reached by {k}/{n} seeds only"


def _bars(res: StudyResult, metric: dict, path: Path) -> Path | None:
    labels, means, stds, colors, notes = [], [], [], [], []
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974"]
    base_mean, base_std = res.baseline.summary(metric)     # None when some seed never reached a TTA
    labels.append("baseline")
    means.append(base_mean)
    stds.append(base_std)
    colors.append("#333333")
    notes.append(_reach_note(res.baseline, metric))
    for k, a in enumerate(res.ablations):
        if metric["key"] not in {m["key"] for m in a.metrics}:
            continue
        for v in a.variants:
            mean, std = v.summary(metric)
            labels.append(_short(f"{a.ablation.get('id') or a.name}: {v.cell.get('option') or v.cell.get('value')}"))
            means.append(mean)
            stds.append(std)
            colors.append(palette[k % len(palette)])
            notes.append("failed" if v.failed and not v.done else ("pending" if not v.done else _reach_note(v, metric)))
    if all(x is None for x in means):
        return None
    plt = _plt()
    s = metric.get("scale", 1.0)
    fig, ax = plt.subplots(figsize=(7, 0.38 * len(labels) + 1.2))
    ys = list(range(len(labels)))[::-1]
    vals = [(x or 0) * s for x in means]
    errs = [(e or 0) * s for e in stds]
    ax.barh(ys, vals, xerr=errs, color=colors, alpha=0.85, capsize=3)
    if base_mean is not None:
        ax.axvline(base_mean * s, color="#333333", ls="--", lw=1)
    for y, note in zip(ys, notes):
        if note:
            ax.text(0, y, f" {note}", va="center", fontsize=8, color="#aa0000")
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=8)
    unit = f" ({metric['unit']})" if metric.get("unit") else ""
    better = "higher is better" if metric.get("higher_is_better", True) else "lower is better"
    ax.set_xlabel(f"{metric['label']}{unit}, {better}; mean ± std over seeds")
    ax.set_title(f"{res.study}: {metric.get('text') or metric['label']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _pick(res: StudyResult, keys) -> dict | None:
    requested = {m["key"]: m for m in res.all_metrics()}
    for k in keys:
        m = requested.get(k) or (SPECS[k].__dict__ | {"keys": list(SPECS[k].keys), "text": SPECS[k].label}
                                 if k in SPECS else None)
        if m and any(c.values(m) for c in res.cells()):
            return m
    return None


def _tradeoff(res: StudyResult, path: Path) -> Path | None:
    perf, speed = _pick(res, PERF_KEYS), _pick(res, SPEED_KEYS)
    if perf is None or speed is None:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ps, ss = perf.get("scale", 1.0), speed.get("scale", 1.0)
    for c in res.cells():
        pv, sv = c.values(perf), c.values(speed)
        if not pv or not sv:
            continue
        pm, pstd = mean_std(list(pv.values()))
        sm, sstd = mean_std(list(sv.values()))
        is_base = c.cell.get("kind") == "baseline"
        ax.errorbar(sm * ss, pm * ps, xerr=(sstd or 0) * ss, yerr=(pstd or 0) * ps, fmt="s" if is_base else "o",
                    color="#333333" if is_base else "#4c72b0", capsize=3, ms=7 if is_base else 5)
        label = "baseline" if is_base else (c.cell.get("option") or str(c.cell.get("value")))
        ax.annotate(_short(label, 24), (sm * ss, pm * ps), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(f"{speed['label']} ({speed.get('unit') or ''})")
    ax.set_ylabel(f"{perf['label']}" + (" (lower is better)" if not perf.get("higher_is_better", True) else ""))
    ax.set_title(f"{res.study}: {perf['label'].lower()} vs {speed['label'].lower()}", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- HTML

_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#1a1a1a;line-height:1.45}table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left;vertical-align:top}th{background:#f2f2f2}
code{background:#f4f4f4;padding:0 .2em}img{max-width:100%;margin:.5em 0;border:1px solid #eee}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}h4{margin-bottom:.3em}"""


def _inline(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)
    t = re.sub(r"(?<![\w*])\*([^*]+)\*(?!\w)", r"<em>\1</em>", t)
    return t.replace("REFUTED", "<strong style='color:#b00'>REFUTED</strong>").replace(
        "confirmed", "<span style='color:#070'>confirmed</span>")


def md_to_html(md: str) -> str:
    """The small markdown subset the report uses: headings, tables, bullets, paragraphs."""
    out, i, lines = [], 0, md.split("\n")
    while i < len(lines):
        line = lines[i]
        h = re.match(r"^(#{1,6})\s+(.*)$", line)
        if h:
            n = len(h.group(1))
            out.append(f"<h{n}>{_inline(h.group(2))}</h{n}>")
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split(" | ")])
                i += 1
            body = [r for r in rows[1:] if not all(re.fullmatch(r":?-+:?", c) for c in r)]
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in rows[0]) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body]
            out.append("</table>")
        elif line.startswith("- "):
            out.append("<ul>")
            while i < len(lines) and lines[i].startswith("- "):
                out.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("</ul>")
        elif line.strip():
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#|\||- )", lines[i]):
                para.append(lines[i])
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
        else:
            i += 1
    return "\n".join(out)


def write_html(res: StudyResult, path: Path, pngs: list[Path]) -> Path:
    from prunelab.ablation.report import to_markdown

    imgs = []
    for p in pngs:
        data = base64.b64encode(Path(p).read_bytes()).decode("ascii")
        imgs.append(f'<img alt="{html.escape(p.stem)}" src="data:image/png;base64,{data}">')
    page = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
            f"<title>Ablation study {html.escape(res.study)}</title>", f"<style>{_CSS}</style></head><body>",
            md_to_html(to_markdown(res))]
    if imgs:
        page += ["<h2>Figures</h2>", *imgs]
    page.append("</body></html>")
    path.write_text("\n".join(page), encoding="utf-8")
    return path
