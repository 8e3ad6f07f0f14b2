"""Matrix-table plans (seed 004 E3) and paper-section templates (seed 004 E5).

    | Ablation ID | Description | Variable Changed | Hypothesis | Expected Effect |
    | A3 | No ranking loss | loss=LM+MSE | Ranking loss is important | Performance ↓ (moderate) |

A row becomes an Ablation:
  * `key=value` in Variable Changed  -> REPLACE, replacement [`value`], ablated part `key`, or X
    when the Description reads 'No X'/'Remove X' (`key=none|off|false` -> REMOVE);
  * Description 'No X' / 'Remove X' -> REMOVE X (text after an arrow is dropped);
  * Variable 'no X'                  -> REMOVE X;
  * otherwise                        -> REPLACE, ablated part = Description, replacement [Variable].
Hypothesis and Expected Effect are kept verbatim; the report turns them into directions.
Tables with AblationBench columns (Name | Ablated Part | Action | Replacement | Metrics) work too.
Rows repeating an ID already seen (e.g. the Chinese copy of the table) are skipped.
"""
from __future__ import annotations

import re

from prunelab.ablation.plan import Ablation, Action, Section
from prunelab.ablation.text import split_list, strip_markup, strip_symbols
from prunelab.errors import PrunelabError

_COLUMNS = {
    "id": ("id", "ablation id", "消融 id", "消融id", "编号", "#"),
    "description": ("description", "desc", "描述", "ablation", "setting"),
    "variable": ("variable changed", "variable", "change", "变量改变", "变量"),
    "hypothesis": ("hypothesis", "假设"),
    "expected_effect": ("expected effect", "expected effects", "expected", "预期效果", "预期"),
    "name": ("name", "名称"),
    "ablated_part": ("ablated part", "component", "module"),
    "action": ("action",),
    "replacement": ("replacement", "replacements", "options"),
    "metrics": ("metrics", "metric"),
}
_REMOVE_WORDS = re.compile(r"^(?:no|remove|without|w/o|disable|drop)\b[\s:]*(.*)$", re.IGNORECASE)
_KV = re.compile(r"^\s*([A-Za-z_][\w .\-/]*?)\s*[=:]\s*(.+?)\s*$")
_OFF = {"none", "off", "false", "no", "disabled", "removed", "null"}
DEFAULT_METRICS = ("Performance", "Speed")


def split_row(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    cells = re.split(r"(?<!\\)\|", s)
    return [strip_markup(c.replace("\\|", "|")).strip() for c in cells]


def _is_separator(cells: list[str]) -> bool:
    return bool(cells) and all(re.fullmatch(r":?-{2,}:?", c.replace(" ", "")) for c in cells if c) \
        and any(cells)


def tables(lines: list[str]) -> list[tuple[int, list[str], list[tuple[int, list[str]]]]]:
    """(header line number, header cells, [(line number, cells)]) for each markdown table."""
    out = []
    i = 0
    while i < len(lines):
        if lines[i].strip().startswith("|") and i + 1 < len(lines) and _is_separator(split_row(lines[i + 1])):
            header = split_row(lines[i])
            rows = []
            j = i + 2
            while j < len(lines) and lines[j].strip().startswith("|"):
                rows.append((j + 1, split_row(lines[j])))
                j += 1
            out.append((i + 1, header, rows))
            i = j
        else:
            i += 1
    return out


def _column_map(header: list[str]) -> dict[str, int]:
    cols: dict[str, int] = {}
    for idx, h in enumerate(header):
        key = re.sub(r"\s+", " ", h.strip().lower())
        for field, names in _COLUMNS.items():
            if key in names and field not in cols:
                cols[field] = idx
                break
    return cols


def is_plan_table(header: list[str]) -> bool:
    cols = _column_map(header)
    matrix = ("description" in cols or "ablated_part" in cols) and \
        any(k in cols for k in ("variable", "hypothesis", "expected_effect"))
    bench = "ablated_part" in cols and "action" in cols
    return matrix or bench


_SIDE_PART = re.compile(r"module|component|part|ablated|target", re.IGNORECASE)
_SIDE_CHANGE = re.compile(r"ablation|method|change|variant|action|modification", re.IGNORECASE)


# category tags some plans put before the module name ('**Speed** Keep ratio')
_CATEGORY = re.compile(r"^(performance|speed|analysis|memory|accuracy|efficiency|quality|core)\s*[:\-]?\s+(?=\S)",
                       re.IGNORECASE)


def side_rows(lines: list[str]) -> list[tuple[int, str, str]]:
    """Rows of tables that list ablations but are not the plan's matrix (seed 004's E2
    'Module | Ablation Method' tables): (line, part, change). They make no cells themselves;
    the resolver reports those that no matrix row covers."""
    out = []
    for _, header, rows in tables(lines):
        if is_plan_table(header) or len(header) < 2:
            continue
        if not (_SIDE_PART.search(header[0]) and _SIDE_CHANGE.search(header[1])):
            continue
        for lineno, cells in rows:
            if len(cells) < 2 or not cells[0].strip() or not cells[1].strip():
                continue
            part = re.sub(r"^\s*(\*\*|__)[^*_]{1,40}(\*\*|__)\s*", "", cells[0])   # '**Speed** Keep ratio'
            part = strip_symbols(part.replace("**", ""))
            part = _CATEGORY.sub("", part) or part
            change = strip_symbols(cells[1].replace("**", ""))
            if part and change:
                out.append((lineno, part, change))
    return out


def parse_tables(lines: list[str], where: str) -> list[Ablation]:
    ablations: list[Ablation] = []
    seen: set[str] = set()
    for _, header, rows in tables(lines):
        if not is_plan_table(header):
            continue
        cols = _column_map(header)
        for lineno, cells in rows:
            if not any(cells):
                continue
            get = lambda k: cells[cols[k]].strip() if k in cols and cols[k] < len(cells) else ""  # noqa: E731
            rid = get("id") or None
            key = rid or get("description") or get("name")
            if key in seen:
                continue
            seen.add(key)
            try:
                ablations.append(_row_to_ablation(get, rid, lineno))
            except PrunelabError as e:
                raise PrunelabError(f"{where}:{lineno}: {e}") from None
    return ablations


def _row_to_ablation(get, rid: str | None, lineno: int) -> Ablation:
    desc = strip_symbols(get("description") or get("name"))
    var = get("variable")
    metrics = split_list(get("metrics")) if get("metrics") else _metrics_from(get("expected_effect"))
    common = dict(hypothesis=get("hypothesis") or None, expected_effect=get("expected_effect") or None,
                  variable=var or None, id=rid, metrics=metrics, line=lineno)
    if get("ablated_part") or get("action"):  # AblationBench columns
        return Ablation(name=get("name") or desc or get("ablated_part"), ablated_part=get("ablated_part") or desc,
                        action=get("action") or ("REPLACE" if get("replacement") else "REMOVE"),
                        replacement=split_list(get("replacement")), **common)
    if not desc:
        raise PrunelabError(f"row {rid or ''} has no description".replace("  ", " "))
    name = desc
    kv = _KV.match(var) if var else None
    desc_remove = _REMOVE_WORDS.match(desc)
    removed = ""
    if desc_remove and desc_remove.group(1).strip():
        removed = re.split(r"\s*(?:→|->|=>|⇒)\s*", desc_remove.group(1))[0].strip()
    if kv:
        k, v = kv.group(1).strip(), kv.group(2).strip()
        if v.lower() in _OFF:
            return Ablation(name=name, ablated_part=removed or k, action=Action.REMOVE, **common)
        # 'No ranking loss' + 'loss=LM+MSE': the removed thing names the part better than the key
        return Ablation(name=name, ablated_part=removed or k, action=Action.REPLACE, replacement=[v], **common)
    if removed:
        return Ablation(name=name, ablated_part=removed, action=Action.REMOVE, **common)
    var_remove = _REMOVE_WORDS.match(var) if var else None
    if var_remove and var_remove.group(1).strip():
        return Ablation(name=name, ablated_part=var_remove.group(1).strip(), action=Action.REMOVE, **common)
    if not var:
        raise PrunelabError(f"row {rid or desc!r}: cannot tell what changes; fill 'Variable Changed' "
                            f"(e.g. key=value or 'no X')")
    return Ablation(name=name, ablated_part=desc, action=Action.REPLACE, replacement=[var], **common)


def _metrics_from(expected: str) -> list[str]:
    """A matrix row names no metrics: performance and speed, plus any dimension its effect names."""
    out = list(DEFAULT_METRICS)
    low = (expected or "").lower()
    for word, metric in (("memory", "Memory"), ("latency", "Latency"), ("flops", "FLOPs"),
                         ("communication", "Communication")):
        if word in low:
            out.append(metric)
    return out


# ----------------------------------------------------------------------------- sections

_SECTION = re.compile(r"^\s{0,3}#{1,6}\s+(\d+(?:\.\d+)+)\.?\s+(.+?)\s*$")
_TOP = re.compile(r"^\s{0,3}#{1,6}\s+(\d+)\.\s+(.*ablation.*)$", re.IGNORECASE)
_IDS = re.compile(r"\b([A-Z])(\d+)(?:\s*[\u2013\u2014\-~]\s*(?:[A-Z])?(\d+))?")


def expand_ids(text: str) -> list[str]:
    """'A3–A5 results' -> ['A3', 'A4', 'A5']; 'C1–C2 + multi-GPU' -> ['C1', 'C2']."""
    out = []
    for letter, a, b in _IDS.findall(text):
        lo, hi = int(a), int(b) if b else int(a)
        if hi < lo or hi - lo > 50:
            hi = lo
        out.extend(f"{letter}{n}" for n in range(lo, hi + 1))
    return out


def parse_sections(lines: list[str]) -> tuple[list[Section], str]:
    """Numbered subsections ('#### 6.1 Effect of X' + '(A1, A2 results)') and the intro paragraph."""
    sections: list[Section] = []
    seen: set[str] = set()
    intro = ""
    for i, line in enumerate(lines):
        top = _TOP.match(line)
        if top and not intro:
            para = []
            for nxt in lines[i + 1:]:
                if nxt.strip().startswith("#"):
                    break
                if nxt.strip() and not nxt.strip().startswith("---"):
                    para.append(nxt.strip())
            intro = " ".join(para)
        m = _SECTION.match(line)
        if not m or m.group(1) in seen:
            continue
        body = ""
        for nxt in lines[i + 1:i + 6]:
            if nxt.strip().startswith("#"):
                break
            if nxt.strip():
                body = nxt.strip()
                break
        ids = expand_ids(body) if body.startswith("(") else []
        if not ids:
            continue
        note = re.sub(r"[()]", "", body).strip()
        seen.add(m.group(1))
        sections.append(Section(number=m.group(1), title=strip_symbols(strip_markup(m.group(2))), ids=ids,
                                note=note))
    return sections, intro
