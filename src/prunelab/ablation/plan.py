"""Plan / Ablation schema: the five AblationBench fields plus what matrix-style plans add.

An Ablation is `name, ablated_part, action, replacement[], metrics[]` (AblationBench's
`AblationSuggestion`), plus optional `hypothesis`, `expected_effect`, `variable` and `id`
from matrix tables. Everything is validated on construction, with PrunelabError messages.
"""
from __future__ import annotations

import enum
import json
from collections import Counter
from dataclasses import asdict, dataclass, field

from prunelab.errors import PrunelabError


class Action(str, enum.Enum):
    REMOVE = "REMOVE"
    REPLACE = "REPLACE"
    ADD = "ADD"

    @classmethod
    def parse(cls, value) -> "Action":
        if isinstance(value, Action):
            return value
        text = str(value or "").strip().strip("*`'\"").upper()
        word = text.split()[0] if text.split() else ""
        word = word.strip(".,:;")
        if word in cls.__members__:
            return cls[word]
        for action, words in _ACTION_WORDS.items():
            if word in words:
                return action
        raise PrunelabError(f"unknown action {value!r}; valid: REMOVE, REPLACE, ADD")


_ACTION_WORDS = {
    Action.REMOVE: {"DELETE", "DISABLE", "DROP", "ABLATE", "WITHOUT", "REMOVAL", "REMOVED", "NO"},
    Action.REPLACE: {"SWAP", "SUBSTITUTE", "CHANGE", "REPLACED", "REPLACEMENT", "VARY", "MODIFY"},
    Action.ADD: {"ADDED", "ADDITION", "EXTEND", "SWEEP", "INSERT"},
}


def _str_list(value, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, dict):  # AblationBench allows a dict of options: "option: detail"
        return [f"{k}: {v}" if v not in (None, "", [], {}) else str(k) for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            if isinstance(v, (dict, list, tuple)):
                out.extend(_str_list(v, what))
            elif v is not None and str(v).strip():
                out.append(str(v).strip())
        return out
    raise PrunelabError(f"{what} must be a list of strings, got {type(value).__name__}")


def _opt_str(value, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list, tuple)):
        raise PrunelabError(f"{what} must be text, got {type(value).__name__}")
    text = str(value).strip()
    return text or None


@dataclass
class Ablation:
    name: str
    ablated_part: str
    action: Action
    replacement: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    hypothesis: str | None = None
    expected_effect: str | None = None
    variable: str | None = None
    id: str | None = None
    line: int | None = None          # where it starts in the source (for error messages)

    def __post_init__(self):
        self.name = _opt_str(self.name, "ablation name") or ""
        self.ablated_part = _opt_str(self.ablated_part, "ablated_part") or ""
        label = f"ablation {self.name!r}" if self.name else "ablation"
        if not self.name:
            raise PrunelabError("an ablation has no name")
        if not self.ablated_part:
            raise PrunelabError(f"{label} has no ablated part")
        self.action = Action.parse(self.action)
        self.replacement = _str_list(self.replacement, f"{label}: replacement")
        self.metrics = _str_list(self.metrics, f"{label}: metrics")
        self.hypothesis = _opt_str(self.hypothesis, f"{label}: hypothesis")
        self.expected_effect = _opt_str(self.expected_effect, f"{label}: expected_effect")
        self.variable = _opt_str(self.variable, f"{label}: variable")
        self.id = _opt_str(self.id, f"{label}: id")
        if self.action in (Action.REPLACE, Action.ADD) and not self.replacement:
            raise PrunelabError(f"{label}: action {self.action.value} needs a replacement list")
        if self.line is not None and (not isinstance(self.line, int) or isinstance(self.line, bool)):
            self.line = None

    def to_dict(self, full: bool = True) -> dict:
        d = {"name": self.name, "ablated_part": self.ablated_part, "action": self.action.value,
             "replacement": list(self.replacement), "metrics": list(self.metrics)}
        if full:
            for k in ("hypothesis", "expected_effect", "variable", "id"):
                if getattr(self, k) is not None:
                    d[k] = getattr(self, k)
        return d


@dataclass
class Section:
    """A paper-section slot from a plan (seed 004 E5: '6.1 Effect of the Learnable Pruner' -> A1, A2)."""
    number: str
    title: str
    ids: list[str] = field(default_factory=list)
    note: str = ""

    def __post_init__(self):
        self.number, self.title = str(self.number).strip(), str(self.title).strip()
        if not self.title:
            raise PrunelabError("a plan section has no title")
        self.ids = [str(i).strip() for i in self.ids if str(i).strip()]


@dataclass
class Plan:
    name: str
    method: str | None
    ablations: list[Ablation]
    source: str | None = None
    sections: list[Section] = field(default_factory=list)
    intro: str = ""
    # (line, part, change) rows of side tables that are not ablations of the plan themselves
    # (seed 004 E2); the resolver lists the ones no ablation covers
    side_rows: list = field(default_factory=list)

    def __post_init__(self):
        self.name = (str(self.name).strip() if self.name is not None else "") or "plan"
        self.method = str(self.method).strip().lower() if self.method else None
        if not isinstance(self.ablations, list) or not self.ablations:
            raise PrunelabError(f"plan {self.name!r} has no ablations")
        for a in self.ablations:
            if not isinstance(a, Ablation):
                raise PrunelabError(f"plan {self.name!r}: ablations must be Ablation objects")
        counts = Counter(a.name for a in self.ablations)   # linear: 200k-line plans load in seconds
        dupes = sorted(n for n, k in counts.items() if k > 1)
        if dupes:
            raise PrunelabError(f"plan {self.name!r}: duplicate ablation names: {', '.join(dupes)}")

    def ablation(self, key: str) -> Ablation:
        for a in self.ablations:
            if key in (a.name, a.id):
                return a
        raise PrunelabError(f"plan {self.name!r} has no ablation {key!r}")

    def to_dict(self) -> dict:
        d = {"name": self.name, "method": self.method, "source": self.source,
             "ablations": [a.to_dict() for a in self.ablations]}
        if self.sections:
            d["sections"] = [asdict(s) for s in self.sections]
        if self.intro:
            d["intro"] = self.intro
        if self.side_rows:
            d["side_rows"] = [list(r) for r in self.side_rows]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        if not isinstance(d, dict):
            raise PrunelabError("a plan must be a mapping")
        abl = d.get("ablations")
        if not isinstance(abl, list):
            raise PrunelabError("a plan needs an 'ablations' list")
        ablations = []
        for i, a in enumerate(abl):
            if not isinstance(a, dict):
                raise PrunelabError(f"ablation #{i + 1} must be a mapping")
            ablations.append(Ablation(**{k: a.get(k) for k in ABLATION_KEYS if k in a}))
        sections = [Section(**s) for s in d.get("sections") or [] if isinstance(s, dict)]
        return cls(name=d.get("name"), method=d.get("method"), ablations=ablations,
                   source=d.get("source"), sections=sections, intro=d.get("intro") or "",
                   side_rows=[tuple(r) for r in d.get("side_rows") or [] if isinstance(r, (list, tuple)) and len(r) == 3])

    def to_jsonl(self) -> str:
        """AblationBench predictions: one JSON object per line, the five fields (plus extras when set)."""
        return "\n".join(json.dumps(a.to_dict(), ensure_ascii=False) for a in self.ablations) + "\n"

    def to_yaml(self) -> str:
        import yaml

        d = self.to_dict()
        d.pop("source", None)
        return yaml.safe_dump(d, sort_keys=False, allow_unicode=True)


ABLATION_KEYS = ("name", "ablated_part", "action", "replacement", "metrics", "hypothesis",
                 "expected_effect", "variable", "id")
