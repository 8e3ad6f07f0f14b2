"""Free text of a plan -> (component, option) of a registered method, and metric keys.

A component is found from the ablated part (then the matrix 'variable' key, then the
ablation name) by matching its name and aliases: token overlap with light stemming and
fuzzy token equality, or difflib's ratio on the normalised strings (text.similarity). An
option is found from the replacement text by its name and option_aliases. For REPLACE/ADD
the component and option are scored jointly, so a clear option ('random scoring') can
rescue a vague part ('Dynamic parameter addition'). Numbers ('0.2', '50%', 'ratio=0.5')
go to the component's numeric argument. Anything unclear is an error naming the closest
candidates, or, with skip_unresolved=True, an entry in Resolution.unresolved.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from prunelab.ablation.metrics import MetricRef, default_metrics, resolve_metric
from prunelab.ablation.plan import Ablation, Action, Plan
from prunelab.ablation.text import norm, phrase_similarity, similarity, tokens
from prunelab.errors import PrunelabError

COMPONENT_MIN = 0.5        # a component must match at least this well on its own
JOINT_COMPONENT_MIN = 0.3  # ...or this well when the option text matches strongly
OPTION_MIN = 0.5
STRONG_OPTION = 0.85
AMBIGUOUS_GAP = 0.04       # two different answers closer than this -> ask the user

_NUMBER = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)\s*(%?)(?![\w.])")
_NUMBER_WORDS = {"ratio", "rate", "sparsity", "percent", "value", "keep", "prune", "pruning", "target", "x",
                 "density", "level", "set", "to", "of", "at", "remain", "remaining", "param", "parameter",
                 "parameters", "fraction", "r", "rank", "step", "steps", "epoch", "epochs", "layer", "layers"}
_REMOVE_TEXT = re.compile(r"^\s*(?:none|off|disabled?|removed?|no|without|w/o|drop(?:ped)?)\b\s*(.*)$",
                          re.IGNORECASE)


@dataclass
class Choice:
    """One variant cell of an ablation: a component set to an option or to a number."""
    component: str
    option: str | None
    value: float | None
    overrides: dict
    text: str                      # what the plan said ('REMOVE' for a removal)
    score: float = 1.0

    def __post_init__(self):
        if (self.option is None) == (self.value is None):
            raise ValueError("a choice sets either an option or a numeric value")

    @property
    def label(self) -> str:
        return self.option if self.option is not None else f"{self.component}={self.value:g}"


@dataclass
class Resolved:
    ablation: Ablation
    choices: list[Choice]
    metrics: list[MetricRef]


@dataclass
class Unresolved:
    ablation: str
    item: str                      # the text that did not resolve
    reason: str


@dataclass
class Resolution:
    plan: Plan
    method: str
    items: list[Resolved] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)

    def metrics(self) -> list[MetricRef]:
        """Every metric any ablation asked for, first occurrence of each key."""
        seen, out = set(), []
        for r in self.items:
            for m in r.metrics:
                if m.key not in seen:
                    seen.add(m.key)
                    out.append(m)
        return out


# ----------------------------------------------------------------------------- entry point

def resolve_plan(plan: Plan, method: str | None = None, *, skip_unresolved: bool = False,
                 components: dict | None = None) -> Resolution:
    method = (method or plan.method or "").strip().lower()
    if not method:
        raise PrunelabError(f"plan {plan.name!r}: cannot tell which method it ablates; pass --method "
                            f"(e.g. --method apt)")
    if components is None:
        components = method_components(method)
    if not components:
        raise PrunelabError(f"method {method!r} declares no ablatable components yet")
    res = Resolution(plan=plan, method=method)
    for abl in plan.ablations:
        choices, metrics = [], []
        try:
            choices = resolve_ablation(abl, components)
        except PrunelabError as e:
            if not skip_unresolved:
                raise PrunelabError(f"{_where(plan, abl)}: {e}") from None
            res.unresolved.append(Unresolved(abl.name, abl.ablated_part, str(e)))
        for text in abl.metrics or default_metrics(method):
            try:
                metrics.append(resolve_metric(text, method))
            except PrunelabError as e:
                if not skip_unresolved:
                    raise PrunelabError(f"{_where(plan, abl)}: {e}") from None
                res.unresolved.append(Unresolved(abl.name, text, str(e)))
        if choices:
            res.items.append(Resolved(abl, choices, metrics))
    if not res.items:
        raise PrunelabError(f"plan {plan.name!r}: no ablation could be resolved against the components of "
                            f"{method!r} ({', '.join(components)})")
    return res


def method_components(method: str) -> dict:
    from prunelab.methods.registry import get_method

    return dict(get_method(method).components)


def _where(plan: Plan, abl: Ablation) -> str:
    loc = plan.source or plan.name
    if abl.line:
        loc += f":{abl.line}"
    return f"{loc}: ablation {abl.name!r}"


# ----------------------------------------------------------------------------- ablation

def resolve_ablation(abl: Ablation, components: dict) -> list[Choice]:
    scores = rank_components(abl, components)
    if abl.action is Action.REMOVE:
        return [_remove(abl, components, scores)]
    out = []
    for text in abl.replacement:
        out.append(_replacement(abl, text, components, scores))
    return out


def _part_texts(abl: Ablation) -> list[tuple[str, float]]:
    texts = [(abl.ablated_part, 1.0)]
    if abl.variable:
        m = re.match(r"^\s*([^=:]+?)\s*[=:]", abl.variable)
        texts.append((m.group(1) if m else abl.variable, 0.9))
    if abl.name and not re.match(r"^ablation\s*#?\s*\d*$", abl.name, re.IGNORECASE):
        texts.append((abl.name, 0.85))
    return texts


def component_names(comp) -> list[str]:
    return [comp.name, comp.name.replace("_", " ")] + list(comp.aliases)


def component_score(comp, texts: list[tuple[str, float]]) -> float:
    best = 0.0
    for text, weight in texts:
        if f"`{comp.name}`" in text:
            return 1.0
        for name in component_names(comp):
            best = max(best, phrase_similarity(text, name) * weight)
    return best


def rank_components(abl: Ablation, components: dict) -> list[tuple[float, str]]:
    texts = _part_texts(abl)
    return sorted(((component_score(c, texts), name) for name, c in components.items()), reverse=True)


def option_score(comp, option: str, text: str) -> float:
    if f"`{option}`" in text:
        return 1.0
    names = [option, option.replace("_", " ")] + list(comp.option_aliases.get(option, []))
    return max(similarity(text, n) for n in names)


def _closest(scores: list[tuple[float, str]], n: int = 3) -> str:
    return ", ".join(f"{name} ({s:.2f})" for s, name in scores[:n])


def _remove(abl: Ablation, components: dict, scores) -> Choice:
    # "no ranking loss" may be an option alias of a loss component (unless a component is pinned)
    phrase = f"no {abl.ablated_part}"
    pinned = any(f"`{n}`" in abl.ablated_part for n in components)
    best_opt = max(((option_score(c, o, phrase), name, o) for name, c in components.items() for o in c.options),
                   default=(0, None, None))
    if best_opt[0] >= 0.9 and not pinned:
        _, name, opt = best_opt
        return Choice(name, opt, None, components[name].overrides(opt), "REMOVE", best_opt[0])
    top, name = scores[0]
    if top < COMPONENT_MIN:
        raise PrunelabError(f"ablated part {abl.ablated_part!r} matches no component well; closest: "
                            f"{_closest(scores)}")
    rivals = [(s, n) for s, n in scores[1:] if s > top - AMBIGUOUS_GAP and s >= COMPONENT_MIN
              and not _same_removal(components[name], components[n])]
    if rivals:
        raise PrunelabError(f"ablated part {abl.ablated_part!r} is ambiguous: {_closest([scores[0]] + rivals)}; name the "
                            f"component in backticks, e.g. `{name}`")
    comp = components[name]
    if comp.remove is None:
        raise PrunelabError(f"component {name!r} cannot be removed; REPLACE it with one of: "
                            f"{', '.join(o for o in comp.options if o != comp.default)}")
    return Choice(name, comp.remove, None, comp.overrides(comp.remove), "REMOVE", top)


def _same_removal(a, b) -> bool:
    """Two components whose removal sets the same overrides are one answer, not a tie."""
    return a.remove is not None and b.remove is not None and a.options[a.remove] == b.options[b.remove]


def parse_number(text: str, comp=None) -> tuple[float, bool] | None:
    """'0.2' -> (0.2, False); '50%' -> (0.5, True); 'keep ratio 0.5' -> (0.5, False); 'prune only L4' -> None."""
    found = _NUMBER.findall(text)
    if len(found) != 1:
        return None
    num, pct = found[0]
    rest = _NUMBER.sub(" ", text)
    allowed = set(_NUMBER_WORDS)
    if comp is not None:
        for n in component_names(comp) + [comp.numeric or ""]:
            allowed.update(tokens(n))
            allowed.update(norm(n).split())
    rest_tokens = [t for t in norm(rest).replace("=", " ").split() if t not in ("%", ".", "~", "x")]
    if any(t not in allowed and t.rstrip("s") not in allowed and not any(
            t.startswith(a) for a in allowed if len(a) >= 4) for t in rest_tokens):
        return None
    value = float(num)
    return (value / 100.0, True) if pct else (value, False)


def _numeric_choice(abl, text, components, scores) -> Choice | None:
    numeric = [(s, n) for s, n in scores if components[n].numeric]
    top, top_name = scores[0]
    for s, name in numeric:
        parsed = parse_number(text, components[name])
        if parsed is None:
            continue
        if top_name != name and top >= COMPONENT_MIN and s < top - 0.1:
            raise PrunelabError(f"value {text!r}: {abl.ablated_part!r} matches component {top_name!r}, which takes "
                                f"no number (options: {', '.join(components[top_name].options)}); numeric "
                                f"components: {_closest(numeric)}")
        if s < COMPONENT_MIN:
            raise PrunelabError(f"value {text!r}: ablated part {abl.ablated_part!r} matches no numeric component "
                                f"well; closest: {_closest(numeric)}")
        comp = components[name]
        value, was_pct = parsed
        lo, hi = comp.numeric_range or (float("-inf"), float("inf"))
        if not lo <= value <= hi and not was_pct and 1 < value <= 100 and lo <= value / 100 <= hi:
            value = value / 100  # '50' for a ratio in [0, 1] means 50%
        return Choice(name, None, value, comp.numeric_overrides(value), text, s)
    return None


def _replacement(abl: Ablation, text: str, components: dict, scores) -> Choice:
    if parse_number(text) is not None or _NUMBER.search(text) and any(components[n].numeric for _, n in scores):
        choice = _numeric_choice(abl, text, components, scores)
        if choice is not None:
            return choice
    comp_score = {n: s for s, n in scores}
    removal = _REMOVE_TEXT.match(text)
    if removal:
        top, name = scores[0]
        rest = removal.group(1).strip()
        comp = components[name]
        if comp.remove and (not rest or similarity(rest, abl.ablated_part) > 0.5 or
                            max(similarity(rest, n) for n in component_names(comp)) > 0.5):
            if top >= COMPONENT_MIN:
                return Choice(name, comp.remove, None, comp.overrides(comp.remove), text, top)
    texts = [text]
    if abl.variable and len(abl.replacement) == 1:
        texts.append(abl.variable)       # matrix rows: 'loss=LM+MSE' may be an option alias itself
    cands = []
    for name, comp in components.items():
        cs = comp_score[name]
        for opt in comp.options:
            os_ = max(option_score(comp, opt, t) for t in texts)
            if os_ < OPTION_MIN:
                continue
            if cs < JOINT_COMPONENT_MIN and os_ < STRONG_OPTION:
                continue
            cands.append((0.45 * cs + 0.55 * os_, name, opt, os_))
    cands.sort(reverse=True)
    if not cands:
        near = sorted(((option_score(components[n], o, text), f"{n}.{o}") for _, n in scores[:3]
                       for o in components[n].options), reverse=True)[:4]
        hint = ", ".join(f"{k} ({s:.2f})" for s, k in near)
        raise PrunelabError(f"replacement {text!r} for {abl.ablated_part!r} matches no option; closest: {hint}")
    best = cands[0]
    same = components[best[1]].options[best[2]]
    rivals = [c for c in cands[1:] if c[0] > best[0] - AMBIGUOUS_GAP and components[c[1]].options[c[2]] != same]
    if rivals:
        alts = ", ".join(f"{n}.{o} ({s:.2f})" for s, n, o, _ in [best] + rivals[:2])
        raise PrunelabError(f"replacement {text!r} is ambiguous: {alts}; name the option in backticks, "
                            f"e.g. `{best[2]}`")
    _, name, opt, _ = best
    return Choice(name, opt, None, components[name].overrides(opt), text, best[0])
