"""The markdown plan format of the seeds (and of AblationBench's rendering).

    ### Ablation: Static Tuning Rank            (or '### Ablation 1', '### X Ablation', '**Ablation: X**')
    - **Ablated Part**: Adaptive tuning mechanism
    - **Action**: REPLACE
    - **Replacement**:
      - Fixed initial rank
      - Fixed final rank
    - **Metrics**: Avg. Performance, Training Time (min)

Tolerant of `-`/`*`/numbered bullets, bold or plain keys, `Key: value` on one line or a list
below it, nested lists (leaves become 'parent: leaf'), HTML wrappers and mojibake (removed
by text.clean_lines beforehand). A block without an 'Ablated Part' or 'Action' field is prose.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from prunelab.ablation.plan import Ablation, Action
from prunelab.ablation.text import split_list, strip_markup, strip_symbols
from prunelab.errors import PrunelabError

_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_BOLD_LINE = re.compile(r"^\s*(?:\d+[.)]\s*)?(\*\*|__)(.+?)\1\s*:?\s*$")
_BULLET = re.compile(r"^(\s*)(?:[-*+\u2022]|\d+[.)])\s+(.*)$")

_KEYS = {
    "name": "name", "title": "name", "id": "id",
    "ablated part": "ablated_part", "ablatedpart": "ablated_part", "component": "ablated_part",
    "action": "action",
    "replacement": "replacement", "replacements": "replacement", "options": "replacement",
    "settings": "replacement", "values": "replacement", "alternatives": "replacement",
    "metrics": "metrics", "metric": "metrics", "evaluation metrics": "metrics",
    "hypothesis": "hypothesis", "expected effect": "expected_effect", "expected effects": "expected_effect",
    "expected outcome": "expected_effect", "expected result": "expected_effect",
    "variable": "variable", "variable changed": "variable",
}
_FIELD = re.compile(r"^\s*(?:[-*+\u2022]|\d+[.)])?\s*([A-Za-z][A-Za-z _-]{0,30}?)\s*[:\uff1a]\s*(.*)$")
LIST_FIELDS = ("replacement", "metrics")
_GENERIC_NAME = re.compile(r"^ablation\s*#?\s*\d*$", re.IGNORECASE)


@dataclass
class _Record:
    line: int
    name: str = ""
    id: str | None = None
    fields: dict = field(default_factory=dict)
    field_lines: dict = field(default_factory=dict)


def _field(line: str) -> tuple[str, str] | None:
    plain = re.sub(r"(\*\*|__)", "", line)
    m = _FIELD.match(plain)
    if not m:
        return None
    key = re.sub(r"[\s_-]+", " ", m.group(1).strip().lower())
    if key not in _KEYS:
        return None
    return _KEYS[key], m.group(2).strip()


def heading_title(line: str) -> str | None:
    """The text of a markdown heading or of a whole-line bold title, else None."""
    m = _HEADING.match(line)
    if m:
        return strip_symbols(strip_markup(m.group(2), code=True))
    m = _BOLD_LINE.match(line)
    if m and re.search(r"ablation", m.group(2), re.IGNORECASE):
        return strip_symbols(strip_markup(m.group(2), code=True))
    return None


def ablation_name(title: str) -> tuple[str, str | None]:
    """'Ablation: X' -> ('X', None); 'Ablation 1' -> ('Ablation 1', '1'); 'X Ablation' -> ('X', None)."""
    t = title.strip().rstrip(":").strip()
    m = re.match(r"^ablation(?:\s+study)?\s*#?\s*(\d+)?\s*(?:[:.)\-\u2013\u2014]\s*)?(.*)$", t, re.IGNORECASE)
    if m:
        num, rest = m.group(1), m.group(2).strip()
        if rest:
            return rest, num
        return (f"Ablation {num}" if num else "Ablation"), num
    m = re.match(r"^(.*?)\s+ablation(?:\s+study)?$", t, re.IGNORECASE)
    if m and m.group(1).strip():
        return m.group(1).strip(), None
    return t, None


def _list_items(lines: list[str], start: int) -> tuple[list[str], int]:
    """Bullet items from lines[start:] until prose/field/heading; nested items -> 'parent: leaf'."""
    items: list[tuple[int, str]] = []
    i = start
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if heading_title(line) is not None or _field(line) is not None:
            break
        m = _BULLET.match(line)
        if not m:
            break
        indent = len(m.group(1).expandtabs(4))
        text = strip_markup(m.group(2)).strip()
        if text:
            items.append((indent, text))
        i += 1
    return _flatten(items), i


def _flatten(items: list[tuple[int, str]]) -> list[str]:
    out: list[str] = []
    stack: list[tuple[int, str]] = []   # (indent, text) of ancestors
    for k, (indent, text) in enumerate(items):
        while stack and stack[-1][0] >= indent:
            stack.pop()
        has_child = k + 1 < len(items) and items[k + 1][0] > indent
        if not has_child:
            prefix = ": ".join(t.rstrip(":") for _, t in stack)
            out.append(f"{prefix}: {text}" if prefix else text)
        stack.append((indent, text))
    return out


def _scalar_continuation(lines: list[str], start: int) -> tuple[str, int]:
    """The value of 'Key:' written on the next line(s)."""
    i = start
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i < len(lines) and heading_title(lines[i]) is None and _field(lines[i]) is None:
        m = _BULLET.match(lines[i])
        return strip_markup(m.group(2) if m else lines[i]), i + 1
    return "", start


def parse_markdown(lines: list[str], where: str) -> list[Ablation]:
    """Ablations from cleaned lines; `where` prefixes error messages (file name)."""
    records: list[_Record] = []
    cur: _Record | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        title = heading_title(line)
        if title is not None:
            name, num = ablation_name(title)
            cur = _Record(line=i + 1, name=name, id=num)
            records.append(cur)
            i += 1
            continue
        f = _field(line)
        if f is None:
            i += 1
            continue
        key, value = f
        if cur is None or key in cur.fields:
            # a field repeated without a heading between: a new ablation starts here
            cur = _Record(line=i + 1, name="")
            records.append(cur)
        cur.field_lines[key] = i + 1
        i += 1
        if key in LIST_FIELDS:
            items, i = _list_items(lines, i)
            cur.fields[key] = (split_list(value) if value else []) + items
        else:
            if not value:
                value, i = _scalar_continuation(lines, i)
            cur.fields[key] = strip_markup(value)
    ablations = []
    for r in records:
        if "ablated_part" not in r.fields and "action" not in r.fields:
            continue  # prose section (reasoning trace, plan title, baseline description)
        ablations.append(_to_ablation(r, len(ablations) + 1, where))
    return ablations


def _to_ablation(r: _Record, index: int, where: str) -> Ablation:
    f = r.fields
    name = f.get("name") or r.name or f"Ablation {index}"
    part = f.get("ablated_part") or ""
    if not part and not _GENERIC_NAME.match(name):
        part = re.sub(r"^(no|without|remove|w/o)\s+", "", name, flags=re.IGNORECASE)
    action = f.get("action")
    if not action:
        if f.get("replacement"):
            action = Action.REPLACE
        elif re.match(r"^(no|without|remove|w/o)\b", name, re.IGNORECASE):
            action = Action.REMOVE
        else:
            raise PrunelabError(f"{where}:{r.line}: ablation {name!r} has no Action (REMOVE, REPLACE or ADD)")
    try:
        return Ablation(name=name, ablated_part=part, action=action, replacement=f.get("replacement"),
                        metrics=f.get("metrics"), hypothesis=f.get("hypothesis"),
                        expected_effect=f.get("expected_effect"), variable=f.get("variable"),
                        id=f.get("id") or r.id, line=r.line)
    except PrunelabError as e:
        key = "action" if "action" in str(e) else "replacement" if "replacement" in str(e) else None
        raise PrunelabError(f"{where}:{r.field_lines.get(key, r.line)}: {e}") from None
