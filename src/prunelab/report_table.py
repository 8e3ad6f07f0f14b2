"""Plain tables of stored runs for the terminal, CSV and Markdown."""
from __future__ import annotations

import csv
import io

COLUMNS = [  # (header, metric key, format)
    ("score", "score", "{:.4f}"),
    ("train s", "train_seconds", "{:.1f}"),
    ("TTA s", "tta_s", "{:.1f}"),
    ("train mem MB", "train_peak_mem_mb", "{:.0f}"),
    ("thr bs32", "throughput_bs32", "{:.1f}"),
    ("thr bs128", "throughput_bs128", "{:.1f}"),
    ("speedup", "speedup", "{:.2f}x"),
    ("inf mem MB", "inf_peak_mem_mb", "{:.0f}"),
    ("params", "params", "{:,}"),
    ("GFLOPs/sample", "flops_per_sample", "{:.3f}"),
]
# A run that has no value under a column's key but the same quantity under its method's own name
# (an SDTP run is scored by perplexity and times its prefill, not a classifier's batch): shown with
# the format here, which names the quantity, instead of a row of dashes.
FALLBACKS = {
    "score": ("ppl", "ppl {:.2f}"),
    "train_seconds": ("train_s", "{:.1f}"),
    "speedup": ("prefill_speedup", "{:.2f}x prefill"),
    "inf_peak_mem_mb": ("peak_mem_mb", "{:.0f}"),
}


def _cell(m: dict, key: str, fmt: str) -> str:
    v = m.get(key)
    if v is None and key in FALLBACKS and m.get(FALLBACKS[key][0]) is not None:
        key, fmt = FALLBACKS[key][0], FALLBACKS[key][1]
        v = m[key]
    if v is None:
        return "-"
    if key == "flops_per_sample":
        v = v / 1e9
    return fmt.format(v)


def rows_for(runs: list[dict], show_status: bool = False) -> tuple[list[str], list[list[str]]]:
    head = ["id", "method", "model", "task", "seed"] + (["status"] if show_status else []) + [h for h, _, _ in COLUMNS]
    body = []
    for r in runs:
        m = r.get("metrics") or {}
        body.append([r["id"][:8], r["method"], r["model"], r["task"], str(r["seed"])]
                    + ([r["status"]] if show_status else []) + [_cell(m, k, f) for _, k, f in COLUMNS])
    return head, body


def format_table(runs: list[dict], show_status: bool = False) -> str:
    head, body = rows_for(runs, show_status)
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def markdown_table(head: list[str], body: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(out)


def to_csv(runs: list[dict]) -> str:
    keys = sorted({k for r in runs for k in (r.get("metrics") or {})})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "method", "model", "task", "seed", "status"] + keys)
    for r in runs:
        m = r.get("metrics") or {}
        w.writerow([r["id"], r["method"], r["model"], r["task"], r["seed"], r["status"]] + [m.get(k, "") for k in keys])
    return buf.getvalue()
