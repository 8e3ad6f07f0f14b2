"""load_plan: any supported plan format -> Plan, or a one-line PrunelabError.

Formats (auto-detected unless `format` is given):
  markdown  the seeds' '### Ablation: X' blocks (HTML wrappers, mojibake and all)
  jsonl     AblationBench predictions: one {"name", "ablated_part", "action", "replacement",
            "metrics"} object per line (also a JSON list, {"ablations": [...]}, or a
            <predictions>...</predictions> block of LM output)
  yaml      {name, method, ablations: [{name, ablated_part, action, replacement, metrics}]}
  table     a markdown table: ID | Description | Variable Changed | Hypothesis | Expected Effect
            (seed 004 E3), with the paper-section slots of E5 when present
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from prunelab.ablation.markdown import parse_markdown
from prunelab.ablation.plan import ABLATION_KEYS, Ablation, Plan
from prunelab.ablation.table import is_plan_table, parse_sections, parse_tables, side_rows, tables
from prunelab.ablation.text import clean_lines, strip_symbols
from prunelab.errors import PrunelabError, close_matches

FORMATS = ("markdown", "jsonl", "yaml", "table")
_FORMAT_ALIASES = {"md": "markdown", "markdown": "markdown", "txt": "markdown", "jsonl": "jsonl",
                   "json": "jsonl", "ablationbench": "jsonl", "yaml": "yaml", "yml": "yaml",
                   "table": "table", "matrix": "table"}
KNOWN_METHODS = ("apt", "sdtp", "cofi", "masktune", "lora_prune", "prune_distill", "lora", "ft")
_KEY_ALIASES = {"ablatedpart": "ablated_part", "ablated part": "ablated_part", "ablated-part": "ablated_part",
                "component": "ablated_part", "replacements": "replacement", "options": "replacement",
                "metric": "metrics", "expected": "expected_effect", "expected effect": "expected_effect",
                "expectedeffect": "expected_effect", "variable_changed": "variable", "title": "name"}


def load_plan(path_or_text: str | os.PathLike, format: str | None = None, method: str | None = None) -> Plan:
    """Read a plan from a file path or from the text itself."""
    text, where, stem = _read(path_or_text)
    fmt = _format(format, where, text)
    lines = clean_lines(text) if fmt in ("table", "markdown") else []
    if fmt == "jsonl":
        ablations, title, meta_method = _parse_json(text, where), None, None
    elif fmt == "yaml":
        ablations, title, meta_method = _parse_yaml(text, where)
    elif fmt == "table":
        ablations, title, meta_method = parse_tables(lines, where), _title(lines), None
    else:
        ablations, title, meta_method = parse_markdown(lines, where), _title(lines), None
    if not ablations:
        raise PrunelabError(
            f"{where}: no ablations found (expected '### Ablation: <name>' blocks with '- **Ablated Part**:' and "
            f"'- **Action**:' lines, AblationBench JSONL, YAML with 'ablations:', or a table with columns "
            f"ID | Description | Variable Changed | Hypothesis | Expected Effect)")
    ablations = _unique_names(ablations)
    sections, intro = parse_sections(lines) if fmt in ("table", "markdown") else ([], "")
    chosen = method or meta_method or detect_method(title or stem or "", text) or None
    return Plan(name=title or stem or "plan", method=chosen, ablations=ablations,
                source=where if where != "<text>" else None, sections=sections, intro=intro,
                side_rows=side_rows(lines) if fmt in ("table", "markdown") else [])


# ----------------------------------------------------------------------------- reading

def _read(path_or_text) -> tuple[str, str, str | None]:
    if isinstance(path_or_text, os.PathLike):
        return _read_file(Path(path_or_text))
    if not isinstance(path_or_text, str):
        raise PrunelabError(f"a plan must be a path or text, got {type(path_or_text).__name__}")
    s = path_or_text
    if "\n" not in s and len(s) < 4096:
        p = Path(s.strip()).expanduser()
        try:
            is_file = p.is_file()
        except (OSError, ValueError):
            is_file = False
        if is_file:
            return _read_file(p)
        if re.search(r"\.(md|txt|jsonl?|ya?ml|markdown)$", s.strip(), re.IGNORECASE):
            raise PrunelabError(f"plan file {s.strip()!r} not found")
    return s, "<text>", None


def _read_file(p: Path) -> tuple[str, str, str]:
    try:
        data = p.read_bytes()
    except OSError as e:
        raise PrunelabError(f"cannot read plan {str(p)!r}: {e.strerror or e}") from None
    return data.decode("utf-8", errors="replace"), str(p), p.stem


def _format(fmt: str | None, where: str, text: str) -> str:
    if fmt:
        key = str(fmt).strip().lower()
        if key not in _FORMAT_ALIASES:
            from prunelab.errors import unknown

            raise unknown("plan format", fmt, FORMATS)
        return _FORMAT_ALIASES[key]
    ext = Path(where).suffix.lower().lstrip(".") if where != "<text>" else ""
    if ext in ("jsonl", "json"):
        return "jsonl"
    if ext in ("yaml", "yml"):
        return "yaml"
    return sniff(text)


def sniff(text: str) -> str:
    """Guess the format from the content."""
    body = text.lstrip("\ufeff \t\r\n")
    if body.startswith(("{", "[")) or re.search(r"<predictions>", text, re.IGNORECASE) \
            or re.match(r"```(json|jsonl)\b", body):
        return "jsonl"
    lines = clean_lines(text)
    if any(re.search(r"ablated[\s_*]*part", ln, re.IGNORECASE) for ln in lines):
        return "markdown"
    if any(is_plan_table(h) for _, h, _ in tables(lines)):
        return "table"
    if re.search(r"^ablations\s*:", text, re.MULTILINE) or re.match(r"^-\s+\w+\s*:", body):
        return "yaml"
    return "markdown"


def _title(lines: list[str]) -> str | None:
    for ln in lines:
        m = re.match(r"^\s{0,3}#\s+(.+?)\s*#*\s*$", ln)
        if m:
            t = strip_symbols(m.group(1).replace("**", ""))
            if t:
                return t
    return None


def detect_method(title: str, text: str) -> str | None:
    """'lm-planner/gemini-25-flash/apt' -> 'apt'; 'Phase E: SDTP Ablation Study' -> 'sdtp'."""
    names = list(KNOWN_METHODS)
    try:
        from prunelab.methods.registry import _METHODS

        names += [n for n in _METHODS if n not in names]
    except ImportError:  # pragma: no cover
        pass
    words = re.findall(r"[a-z0-9]+", title.lower()) + re.findall(r"[a-z0-9_]+", title.lower())
    for w in reversed(words):
        if w in names:
            return w
    counted = [n for n in names if n not in ("ft", "lora")]
    counts = dict.fromkeys(counted, 0)
    if counted:   # one pass over the text, whatever its size
        pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted(counted, key=len, reverse=True)) + r")\b",
                             re.IGNORECASE)
        for m in pattern.finditer(text):
            counts[m.group(1).lower()] = counts.get(m.group(1).lower(), 0) + 1
    best = sorted(counts.items(), key=lambda kv: -kv[1])
    if best and best[0][1] > 0 and (len(best) == 1 or best[0][1] > best[1][1]):
        return best[0][0]
    return None


def _unique_names(ablations: list[Ablation]) -> list[Ablation]:
    seen: dict[str, int] = {}
    for a in ablations:
        if a.name in seen:
            seen[a.name] += 1
            a.name = f"{a.name} ({a.id or seen[a.name]})"
        seen.setdefault(a.name, 1)
    return ablations


# ----------------------------------------------------------------------------- JSON / YAML

def _ablation_from_mapping(d, where: str) -> Ablation:
    if not isinstance(d, dict):
        raise PrunelabError(f"{where}: expected an object with name, ablated_part, action, replacement, "
                            f"metrics; got {type(d).__name__}")
    kwargs = {}
    for raw_key, value in d.items():
        key = str(raw_key).strip()
        key = _KEY_ALIASES.get(key.lower(), key.lower())
        if key in ABLATION_KEYS:
            kwargs[key] = value
            continue
        near = close_matches(key, ABLATION_KEYS, n=1)
        if near:
            raise PrunelabError(f"{where}: unknown field {raw_key!r}; did you mean {near[0]!r}?")
        # other fields (e.g. a rationale) are ignored
    for k in ("name", "ablated_part", "action"):
        if kwargs.get(k) in (None, ""):
            if k == "name" and kwargs.get("ablated_part"):
                kwargs["name"] = kwargs["ablated_part"]
                continue
            raise PrunelabError(f"{where}: missing field {k!r}")
    try:
        return Ablation(**kwargs)
    except PrunelabError as e:
        raise PrunelabError(f"{where}: {e}") from None


def _strip_fences(text: str) -> str:
    m = re.search(r"<predictions>(.*?)(</predictions>|$)", text, re.IGNORECASE | re.DOTALL)
    if m:
        text = m.group(1)
    return re.sub(r"^\s*```[\w-]*\s*$", "", text, flags=re.MULTILINE)


def _parse_json(text: str, where: str) -> list[Ablation]:
    body = _strip_fences(text)
    stripped = body.strip()
    if not stripped:
        return []
    try:
        whole = json.loads(stripped)
    except (json.JSONDecodeError, RecursionError):
        whole = None
    if isinstance(whole, dict) and "ablations" not in whole:
        return [_ablation_from_mapping(whole, where)]
    if whole is not None:
        items = whole.get("ablations") if isinstance(whole, dict) else whole
        if not isinstance(items, list):
            raise PrunelabError(f"{where}: expected a list of ablations")
        return [_ablation_from_mapping(d, f"{where}: ablation #{i + 1}") for i, d in enumerate(items)]
    out = []
    for i, line in enumerate(body.split("\n"), start=1):
        s = line.strip().rstrip(",")
        if not s:
            continue
        try:
            d = json.loads(s)
        except json.JSONDecodeError as e:
            raise PrunelabError(f"{where}:{i}: invalid JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise PrunelabError(f"{where}:{i}: JSON nested too deeply") from None
        abl = _ablation_from_mapping(d, f"{where}:{i}")
        abl.line = i
        out.append(abl)
    return out


def _parse_yaml(text: str, where: str) -> tuple[list[Ablation], str | None, str | None]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise PrunelabError(f"{where}{line}: invalid YAML ({problem})") from None
    except RecursionError:
        raise PrunelabError(f"{where}: YAML nested too deeply") from None
    title = method = None
    if isinstance(data, dict):
        title = data.get("name") if isinstance(data.get("name"), str) else None
        method = data.get("method") if isinstance(data.get("method"), str) else None
        items = data.get("ablations")
        if items is None:
            raise PrunelabError(f"{where}: a YAML plan needs an 'ablations:' list")
    else:
        items = data
    if not isinstance(items, list):
        raise PrunelabError(f"{where}: 'ablations' must be a list, got {type(items).__name__}")
    ablations = [_ablation_from_mapping(d, f"{where}: ablation #{i + 1}") for i, d in enumerate(items)]
    return ablations, title, method

