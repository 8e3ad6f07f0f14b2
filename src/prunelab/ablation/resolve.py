"""Free text of a plan -> (component, option) of a registered method, and metric keys.

Every component and option is described in words (Component.description, aliases,
option_aliases, option_descriptions). Plan text is scored against them two ways: lexically
(text.similarity: token overlap with light stemming and fuzzy token equality) and by the
cosine of all-MiniLM-L6-v2 sentence vectors (ablation.semantic), combined in Matcher.match;
an option's score adds the words only it uses among its component's options and the cosine
after removing what the options share (Matcher.distinct/contrast), since sentence vectors
rate sibling options alike.

The action's meaning decides how: REMOVE of X is X's remove option; a REPLACE text is
matched jointly with the part (a part that clearly names one component has its options
matched first); a replacement that starts with 'no'/'remove'/'without' is a removal only
when that scores better than an option the text describes ('Remove every pruned structure
at step 0' is schedule.init, not pruning.off). Numbers are parsed with their units and sense
('80% of the layer parameters removed' -> sparsity 0.8, 'keep 40% of the prompt' -> keep
ratio 0.4, 'r=4, r=8, r=16' -> three cells; ablation/values.py reads them); values out of a
component's range are errors (PlanValueError, never rescaled and never skipped).

Confidence: below COMPONENT_MIN / JOINT_MIN an item is unresolved with its closest
candidates (below OUT_OF_SCOPE: out of scope); two answers closer than AMBIGUOUS_GAP are
ambiguous; closer than LOW_MARGIN the choice is made but flagged (Choice.flag), and plan
check and the report list it. Unresolved items are errors, or with skip_unresolved=True
entries of Resolution.unresolved. A plan without a method is matched against every
registered method's components (detect_method_from_content).
"""
from __future__ import annotations

import dataclasses
import re
import unicodedata
from dataclasses import dataclass, field

from prunelab.ablation.metrics import MetricRef, default_metrics, resolve_metric
from prunelab.ablation.plan import Ablation, Action, Plan
from prunelab.ablation.scope import INCIDENTAL, foreign_technique, names_technique
from prunelab.ablation.semantic import known_words
from prunelab.ablation.text import (component_names, expand_abbreviations, fix_spelling, norm, phrase_similarity,
                                    similarity, stem, tokens, vocabulary)
# the value readers live in values.py (PlanValueError, expand_values, parse_number, words_to_numbers are
# also imported from here by callers of resolve)
from prunelab.ablation.values import (BRACKETS, KEPT_WORDS, NUMBER, NUMBER_WORDS, REMOVED_WORDS,  # noqa: F401
                                      TIME_NUMBER, PlanValueError, component_sense, expand_values, key_words, numeric_value, parse_number,
                                      value_fits, words_to_numbers)
from prunelab.errors import PrunelabError

# Scores are 0..1: the higher of the lexical match (text.phrase_similarity against names and
# aliases) and SEM_WEIGHT x the cosine of MiniLM sentence vectors (against names, aliases,
# descriptions). Thresholds were tuned on the dev half of ablation/labelled/items.jsonl.
SEM_WEIGHT = 1.0
SEM_CAP = 0.95
SEM_TIE = 0.05
ONE_WORD_CAP = 0.7          # lexical score of a one-word name inside a text of 3+ words
SHARED_WORD_CAP = 0.6       # ...when that word is in other components' names too
DISTINCT_WEIGHT = 0.25      # bonus for words only this option (of its component) uses
LEX_BLEND = 0.2            # share of the lexical score mixed into an embedding match
NEGATED_SEM = 0.85          # embedding weight for text with a negation in it
OPTION_CONTRAST = 0.15  # weight of the option-vs-siblings contrast (Matcher.contrast)
NUMERIC_WEAK_MIN = 0.4    # see _numeric_choice
COMPONENT_MIN = 0.6        # a component must match at least this well on its own
OUT_OF_SCOPE = 0.5         # below this nothing in the method is about the item: out of scope
JOINT_COMPONENT_MIN = 0.3  # ...or this well when the option text matches strongly
OPTION_MIN = 0.5
JOINT_MIN = 0.5            # a (component, option) pair must score this well
STRONG_OPTION = 0.85
AMBIGUOUS_GAP = 0.015      # two different answers closer than this -> unresolved, ask the user
LOW_MARGIN = 0.08          # closer than this -> resolved but flagged in plan check and the report
OTHER_OPTION_LEAD = 0.1  # ...unless another component's option matches the text this much better
COMPONENT_FIRST = 0.1      # a part this far ahead of the next component: its options are matched first
DEFAULT_PENALTY = 0.08     # a REPLACE that names the current default is rarely meant
W_COMPONENT = 0.4          # joint score = W_COMPONENT * component + (1 - W_COMPONENT) * option
WHEN_MATCH = 0.08          # option happens when the text says it does (start / throughout / end of training)
WHICH_MATCH = 0.08         # option holds the value the text says (starting / middle / final rank)
ALIKE_MATCH = 0.08         # option is alike everywhere / differs by place as the text says
NEG_MATCH = 0.08           # option negates what the text negates ('ranking dropped' ~ 'no ranking loss')
NEG_MISMATCH = 0.12       # option negates what the text keeps, or keeps what the text negates
NEGATED_DEFAULT = 0.06     # a text that removes something is not the unchanged default (extra penalty)
WEAK_COMPONENT_LEAD = 0.08  # a REMOVE part below COMPONENT_MIN (>= OUT_OF_SCOPE) this far ahead: chosen, flagged
SUB_OPTION_MIN = 0.65       # REMOVE of a sub-part: "without <part>" must match one option this well (_removed_option)
SUB_OPTION_LEAD = 0.03      # ...and beat the component's own removal by this much (flagged below LOW_MARGIN)

_REMOVE_TEXT = re.compile(r"^\s*(?:none|off|disabled?|removed?|remove|removing|no|without|w/o|drop(?:ped)?|"
                          r"turn(?:ed)? off|switch(?:ed)? off|skip(?:ped)?)\b\s*(.*)$", re.IGNORECASE)
_CLAUSE = re.compile(r"\s(?:that|which|who|where|whose|using|uses|used|informed|based|driven|guided|with|via|by|"
                     r"to|so|because|while|when)\s|[,;:(\u2014\u2013]|\s-\s", re.IGNORECASE)


_NEGATION = re.compile(r"\b(never|not|no|nothing|none|without|cannot|n't)\b|n't\b", re.IGNORECASE)

# negation scope: 'no X' / 'without X' / 'w/o X' (prefix) and 'X dropped' / 'X removed' (postfix),
# each within one clause (',', ';', 'and', 'but', 'only' end it)
_NEG_PREFIX = re.compile(r"\b(?:no|not|without|w/o|never|minus|except|excluding|drop(?:ping)?|remov(?:e|ing)|"
                         r"disabl(?:e|ing)|omit(?:ting)?|skip(?:ping)?)\s+((?:[\w+\-']+\s*){1,3})", re.IGNORECASE)
_NEG_POSTFIX = re.compile(r"((?:[\w+\-']+\s+){1,3}?)(?:is\s+|are\s+|gets\s+|get\s+)?(?:dropped|removed|omitted|excluded|"
                          r"disabled|turned off|switched off|left out|ablated|zeroed|off|gone|deleted)\b",
                          re.IGNORECASE)
_CLAUSE_END = re.compile(r"\s*(?:[,;:.()]|\band\b|\bbut\b|\bonly\b|\bplus\b|\bthen\b|\bwhile\b)\s*", re.IGNORECASE)
_NEG_CUE = re.compile(r"\b(?:never|not|no|none|without|w/o|off|disabled?|remov(?:e|ed|ing)|drop(?:ped|ping)?|"
                      r"omit(?:ted)?|excluded?|skip(?:ped)?|zero(?:ed)?|ablated|left out|minus)\b|n't\b", re.IGNORECASE)
_CUE_WORDS = {stem(w) for w in ("no", "not", "without", "off", "drop", "dropped", "remove", "removed", "disable",
                                 "disabled", "never", "omit", "omitted", "skip", "zero", "zeroed", "ablated", "excluded",
                                 "deleted", "minus", "left", "out", "gone")}
_NEG_STOP = {"loss", "losses", "term", "terms", "signal", "objective", "component", "step", "part", "at", "all",
             "the", "any", "longer", "more", "special", "longer",
             # what the methods themselves drop: 'dropping tokens only in the last layers' negates no component
             "token", "prompt", "input", "block", "only"}


# when in training something happens: 'once before training' (start), 'a little every step' (throughout),
# 'near the end' (end). Sentence vectors rate these alike; the words settle it.
_WHEN = {
    "throughout": re.compile(r"\b(?:every step|each step|gradual\w*|throughout|progressive\w*|bit by bit|a little at a time|"
                             r"continu\w+|over the (?:whole|full|entire) (?:run|training)|until the (?:very )?(?:end|final|last))\b",
                             re.IGNORECASE),
    "start": re.compile(r"\b(?:before (?:any )?(?:training|fine-?tuning)|step (?:0|zero)|(?:very )?first step|at the (?:very )?"
                        r"(?:start|beginning|outset)|initiali[sz]ation|at init\b|up front|upfront|then (?:start )?(?:train|fine-?tun)\w*)",
                        re.IGNORECASE),
    "early": re.compile(r"\b(?:(?:early|earlier)(?!\s+(?:layers?|stages?|blocks?|tokens?|positions?|devices?))|"
                       r"first (?:part|half|third|stretch|phase|portion)|opening (?:stretch|phase|"
                       r"part|portion)|front-?load\w*)\b", re.IGNORECASE),
    "end": re.compile(r"\b(?:(?:near|nearly|towards?|close to|at) (?:the )?end|late\b|(?:final|last) \d+\s*(?:%|percent)|later\b|last quarter|final quarter|"
                      r"almost over|most of (?:the )?training is done|delay\w*|wait\w*|defer\w*|postpon\w*)", re.IGNORECASE),
}


# which value of a trajectory a fixed setting is held at: 'its starting rank' (first), 'the value the
# run finishes with' (last), 'the intermediate value reached part-way' (middle). 'from step one' says
# when the holding starts, not which value is held: only a value noun or a 'starts/finishes with' counts
_VALUE_NOUN = r"(?:rank|value|size|width|r|setting|budget|capacity|dimension)s?"
_WHICH = {
    "first": re.compile(rf"\b(?:start(?:ing)?|initial|original|beginning|opening|init)\W+(?:adapter\W+|lora\W+)?{_VALUE_NOUN}\b|"
                        rf"\b{_VALUE_NOUN}\s+(?:it|they|each\s+\w+)?\s*(?:was|were|is|are)?\s*(?:initiali[sz]ed|started|created)\s+"
                        r"(?:with|at)\b|"
                        r"\b(?:start(?:s|ed)?|began|begins?)\s+with\b|\blike at the (?:beginning|start)\b|"
                        r"\bwhere (?:it|they) (?:start(?:s|ed)?|beg[ia]n)\b", re.IGNORECASE),
    "last": re.compile(rf"\b(?:final|largest|maximum|max|peak|end(?:-of-training)?|ending|highest|biggest|top)\W+"
                       rf"(?:adapter\W+|lora\W+)?{_VALUE_NOUN}\b|"
                       r"\b(?:finish(?:es|ed)?|ends?|ended|ends? up|winds? up|settles? on)\s+(?:up\s+)?with\b|"
                       r"\breach(?:es|ed)? (?:at|by) the (?:very )?end\b|\bend-of-training\b", re.IGNORECASE),
    "middle": re.compile(rf"\b(?:intermediate|middle|middling|mid|medium|average|moderate|mid-?range)\W+(?:adapter\W+|lora\W+)?"
                         rf"{_VALUE_NOUN}\b|\b(?:part-?way|half-?way|mid-?way|mid-?point|mid-?sized)\b", re.IGNORECASE),
}


# whether a setting is the same everywhere or differs from place to place: 'in equal measure to every
# layer', 'the same widths in every layer' vs 'each layer its own number of heads', 'different widths'
_ALIKE = {
    "same": re.compile(r"(?<!non-)(?<!non)\b(?:same|equal(?:ly)?(?!\s+to\b)|identical(?:ly)?|uniform(?:ly)?|even(?:ly)?|"
                       r"alike|in equal measure|"
                       r"(?:at )?(?:one|a single|a common) (?:pace|rate|width|size))\b", re.IGNORECASE),
    "differ": re.compile(r"\b(?:(?:its|their|his|her) own|different|differ(?:s|ing)?|vary|varies|varying|variable|"
                         r"heterogeneous|non-?uniform(?:ly)?|unequal(?:ly)?|uneven(?:ly)?)\b", re.IGNORECASE),
}


# ...across the model's parts: 'spread uniformly across all training steps' is about time (schedule)
_PLACES = re.compile(r"\b(?:layers?|blocks?|adapters?|modules?|heads?|neurons?)\b", re.IGNORECASE)


def alike_cues(text: str) -> set[str]:
    """{'same'|'differ'}: whether the text says a setting is alike in every layer or differs by layer
    (nothing when it negates, 'not the same in every layer', or names no part of the model)."""
    if _NEGATION.search(text) or not _PLACES.search(text):
        return set()
    return {k for k, rx in _ALIKE.items() if rx.search(text)}


def which_cues(text: str) -> set[str]:
    """{'first'|'middle'|'last'}: which value of a changing setting the text holds it at."""
    return {k for k, rx in _WHICH.items() if rx.search(text)}


def when_cues(text: str) -> set[str]:
    """{'start'|'throughout'|'end'} the text says about timing ('until the end' is throughout, not end)."""
    found = {k for k, rx in _WHEN.items() if rx.search(text)}
    if "throughout" in found and "end" in found:
        if re.search(r"\buntil\b", text, re.IGNORECASE) \
                and not re.search(r"\b(?:wait|delay|defer|postpon)\w*", text, re.IGNORECASE):
            found.discard("end")
        else:
            # 'still progressive, but squeezed into the final 25% of steps': progressive within the end
            found.discard("throughout")
    return found


def negation_scope(text: str) -> tuple[list[frozenset], set[str]]:
    """(negated phrases, affirmed tokens) of a text, as content tokens: 'LM and MSE, ranking dropped'
    -> ([{'rank'}], {'lm', 'mse'}); 'no language-modelling loss' -> ([{'languag', 'modell'}], set())."""
    phrases: list[frozenset] = []
    for clause in (c for c in _CLAUSE_END.split(text) if c and c.strip()):
        for m in list(_NEG_PREFIX.finditer(clause)) + list(_NEG_POSTFIX.finditer(clause)):
            ph = frozenset(t for t in tokens(m.group(1)) if t not in _NEG_STOP and t not in _CUE_WORDS)
            if ph:
                phrases.append(ph)
    negated = set().union(*phrases) if phrases else set()
    affirmed = {t for t in tokens(text) if t not in negated and t not in _CUE_WORDS and t not in _NEG_STOP}
    return phrases, affirmed


def affirmed_text(text: str) -> str:
    """The text without its negated phrases: 'LM + MSE, without the ranking term' -> 'LM + MSE,'."""
    out = _NEG_PREFIX.sub(" ", text)
    out = _NEG_POSTFIX.sub(" ", out)
    return re.sub(r"\s+", " ", out).strip()


@dataclass
class Choice:
    """One variant cell of an ablation: a component set to an option or to a number."""
    component: str
    option: str | None
    value: float | None
    overrides: dict
    text: str                      # what the plan said ('REMOVE' for a removal)
    score: float = 1.0
    flag: str | None = None        # set when the runner-up was close: shown by plan check and the report
    alternatives: list = field(default_factory=list)   # [(score, 'component.option')] runners-up

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
    kind: str = "unresolved"       # unresolved | ambiguous | out_of_scope | metric


@dataclass
class Resolution:
    plan: Plan
    method: str
    items: list[Resolved] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)
    not_run: list[dict] = field(default_factory=list)   # plan rows (side tables) that produce no cell

    def metrics(self) -> list[MetricRef]:
        """Every metric any ablation asked for, first occurrence of each key."""
        seen, out = set(), []
        for r in self.items:
            for m in r.metrics:
                if m.key not in seen:
                    seen.add(m.key)
                    out.append(m)
        return out

    def flagged(self) -> list[tuple[str, Choice]]:
        """(ablation name, choice) for every low-margin mapping: check these by hand."""
        return [(i.ablation.name, c) for i in self.items for c in i.choices if c.flag]


# ----------------------------------------------------------------------------- entry point

def resolve_plan(plan: Plan, method: str | None = None, *, skip_unresolved: bool = False,
                 components: dict | None = None) -> Resolution:
    method = (method or plan.method or "").strip().lower()
    if not method and components is None:
        method = detect_method_from_content(plan) or ""
    if not method and components is not None:
        method = "custom"
    if not method:
        raise PrunelabError(f"plan {plan.name!r}: cannot tell which method it ablates; pass --method "
                            f"(e.g. --method apt)")
    if components is None:
        components = method_components(method)
    if not components:
        raise PrunelabError(f"method {method!r} declares no ablatable components yet")
    matcher = Matcher(components, method=method)
    # embed every text of the plan in batches up front (one model call per 64 texts)
    cleaned = [matcher.clean(a) for a in plan.ablations]
    matcher.sim.prepare([t for a in cleaned for t, _ in _part_texts(a)] + [t for a in cleaned for t in a.replacement])
    res = Resolution(plan=plan, method=method)
    for abl in plan.ablations:
        choices, metrics = [], []
        try:
            cells = resolve_cells(abl, components, matcher=matcher)
        except PlanValueError as e:
            raise PlanValueError(f"{_where(plan, abl)}: {e}") from None
        except PrunelabError as e:
            cells = [e]
        for cell in cells:
            if isinstance(cell, Choice):
                choices.append(cell)
                continue
            if not skip_unresolved:
                raise PrunelabError(f"{_where(plan, abl)}: {cell}") from None
            # with --skip-unresolved the ablation's other cells still run; this one is listed
            res.unresolved.append(Unresolved(abl.name, abl.ablated_part, str(cell), getattr(cell, "kind", "unresolved")))
        for text in abl.metrics or default_metrics(method):
            try:
                metrics.append(resolve_metric(text, method))
            except PrunelabError as e:
                if not skip_unresolved:
                    raise PrunelabError(f"{_where(plan, abl)}: {e}") from None
                res.unresolved.append(Unresolved(abl.name, text, str(e), "metric"))
        if choices:
            res.items.append(Resolved(abl, choices, metrics))
    if not res.items:
        raise PrunelabError(f"plan {plan.name!r}: no ablation could be resolved against the components of "
                            f"{method!r} ({', '.join(components)})")
    res.not_run = uncovered_rows(plan, res, matcher)
    return res


def uncovered_rows(plan: Plan, res: Resolution, matcher: Matcher) -> list[dict]:
    """Side-table rows (seed 004's E2) that no ablation of the plan runs: each with what it would map to."""
    comps = matcher.components
    done = [_effective(res.method, c.overrides) for i in res.items for c in i.choices]
    texts = [t for i in res.items for t in (i.ablation.name, i.ablation.ablated_part, i.ablation.variable or "") if t]
    out = []
    for line, part, change in plan.side_rows:
        removal = re.match(r"^\s*(remove|no|without|drop|disable)\b", change, re.IGNORECASE)
        abl = Ablation(name=f"row {line}", ablated_part=part, action="REMOVE" if removal else "REPLACE",
                       replacement=[] if removal else [change], line=line)
        try:
            choices = resolve_ablation(abl, comps, matcher=matcher)
        except PrunelabError:
            choices = []
        if choices and all(_effective(res.method, ch.overrides) in done for ch in choices):
            continue
        if not choices and max((similarity(f"{part} {change}", t) for t in texts), default=0.0) >= 0.75:
            continue
        maps = [f"{c.component}.{c.label}" if c.option else c.label for c in choices
                if _effective(res.method, c.overrides) not in done]
        out.append({"line": line, "part": part, "change": change, "maps_to": maps})
    return out


def _effective(method: str, overrides: dict):
    """The method config an override set gives (two components may set one config two ways)."""
    try:
        from prunelab.methods.registry import get_method

        return get_method(method).make_config(dict(overrides))
    except Exception:
        return overrides


def detect_method_from_content(plan: Plan) -> str | None:
    """The registered method whose components the plan's ablated parts match best (plans that never
    name their method: 'drop tokens at one layer', 'keep the original rotary ids' -> sdtp)."""
    from prunelab.methods.registry import get_method, list_methods

    scores = []
    for name in list_methods():
        if name.startswith(("fake_", "toy_")):
            continue
        comps = get_method(name).components
        if not comps:
            continue
        m = Matcher(comps)
        per_item = []
        for abl in plan.ablations:
            texts = [abl.ablated_part] + list(abl.replacement)
            per_item.append(max(max(m.component_score(c, [(t, 1.0)]) for t in texts) for c in comps))
        scores.append((sum(per_item) / len(per_item), name))
    scores.sort(reverse=True)
    if not scores or scores[0][0] < COMPONENT_MIN:
        return None
    if len(scores) > 1 and scores[0][0] - scores[1][0] < 0.03:
        return None
    return scores[0][1]


def method_components(method: str) -> dict:
    from prunelab.methods.registry import get_method

    return dict(get_method(method).components)


def _where(plan: Plan, abl: Ablation) -> str:
    loc = plan.source or plan.name
    if abl.line:
        loc += f":{abl.line}"
    return f"{loc}: ablation {abl.name!r}"


# ----------------------------------------------------------------------------- ablation

class Unclear(PrunelabError):
    def __init__(self, msg: str, kind: str = "unresolved", candidates: list[str] | None = None):
        super().__init__(msg)
        self.kind = kind
        self.candidates = candidates or []      # the tied components of an ambiguous part


_FIELD = re.compile(r"^\s*(?:\*\*|__)(?:ablated part|part|variant|replacement|ablation|change|action|item|"
                    r"description|component)\s*:(?:\*\*|__)\s*", re.IGNORECASE)
_CITATION = re.compile(r"\s*(?:\[[A-Z][^\]]{0,60}?(?:et al\.?|\d{4})[^\]]{0,20}\]|\((?:[A-Z][\w-]+ et al\.?,? ?"
                       r"\d{4}[a-z]?(?:; ?)?)+\))")


def _latex_to_text(t: str) -> str:
    t = _CITATION.sub("", t)
    t = re.sub(r"\\(?:textsc|textbf|textit|emph|texttt|mathrm|text)\{([^}]*)\}", r"\1", t)
    t = re.sub(r"\$([^$]{1,40})\$", r"\1", t)
    return t.replace("\\%", "%").replace("\\_", "_").replace("~", " ")


_KEY_VALUE = re.compile(r"\b([A-Za-z]{1,4}|[A-Za-z]+(?:_[A-Za-z]+)+)(\s*[=:]\s*-?(?:\d|\.\d))")
# an LM planner's structured rationale ('Hypothesis: X matters. Intervention: do Y; Expected outcome:
# Z'): the hypothesis and the expected outcome say why and what may happen, the intervention is the change
_RATIONALE = re.compile(r"\b(?:hypothesis|expected (?:outcome|result|effect)s?|prediction|rationale)\s*:\s*"
                        r"(?:[^.;]|\.\d)*(?:[.;]|$)", re.IGNORECASE)
# a planner's plain field labels ('Variant: two GPUs', 'Component: the ...', an FAQ's 'A: ...') are layout
_INTERVENTION = re.compile(r"\b(?:intervention|manipulation|treatment|variant|component|condition)\s*:\s*|"
                           r"^\s*[QA]\s*:\s*", re.IGNORECASE)
# a config diff's old value ('target_density: 0.4 -> 0.3', 'protect_prefix: 4 -> 0'): the number before
# the arrow is what the setting was, not the variant; only the new value after it is read
_OLD_VALUE = re.compile(r"(?<![\w.])-?(?:\d+(?:\.\d+)?|\.\d+)\s*%?\s*(?:->|\u2192|=>|\u21d2)\s*(?=\S|$)")
# ...and so is one said in words: 'from the usual 60% to 40%', 'try 0.55 instead of the current 0.7'
_NUM = r"-?(?:\d+(?:\.\d+)?|\.\d+)\s*(?:%|percent\b)?"
_NOW = r"(?:(?:the|our|its)\s+)?(?:(?:usual|current|default|original|baseline|present|standard|old)\s+)?(?:value\s+(?:of\s+)?)?"
_OLD_FROM = re.compile(r"\bfrom\s+" + _NOW + _NUM + r"\s+(?=to\s+" + _NUM + ")", re.IGNORECASE)
_OLD_INSTEAD = re.compile(r"(?<=\d|%)(\s*(?:%|percent\b)?)\s*,?\s*\(?(?:instead\s+of|rather\s+than|in\s+place\s+of)\s+" + _NOW
                          + _NUM + r"(?:\s+(?:now|today|currently|by\s+default|we\s+use))?\)?", re.IGNORECASE)
# a replacement that names the default on purpose: a control row, or a return to the original behaviour
_BACK_TO_DEFAULT = re.compile(r"\b(?:go(?:es|ing)?\s+back|back\s+to|revert\w*|restor\w*|as\s+(?:before|usual|today|now)|"
                              r"original\s+(?:behaviou?r|setting|method|recipe)|baseline\s+(?:row|run|setting)|"
                              r"control\s+(?:row|run)|keep\s+\w+ing|(?:as|like)\s+(?:in\s+)?the\s+default|"
                              r"the\s+default\s+(?:recipe|setting|behaviou?r|run|one)|"
                              r"(?:use|keep|with|take)\s+the\s+default|(?:paper|paper's|method's|reference|usual)\s+default|"
                              r"default\s+(?:setting|value|config\w*)|#\s*default|(?:as|like)\s+(?:in\s+)?the\s+paper)\b",
                              re.IGNORECASE)
# pictographs and arrows drawn as emoji ('👉', '✂️', '🚀') are layout; '➡️' is an arrow like '->'
_PICTOGRAPH = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\uFE0F\u200D]")
_INITIAL_R = re.compile(r"\br(?:\u2080|_0|0|_init|_start)(?=\s*[=:]|\b)", re.IGNORECASE)
_RUN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9.]+)+$")


# a unified diff ('- salience: magnitude' / '+ salience: outlier_aware'): the '+' lines are the variant
_DIFF_OLD = re.compile(r"^\s*-(?!-)", re.MULTILINE)
_DIFF_NEW = re.compile(r"^\s*\+(?!\+)\s*", re.MULTILINE)
# a decimal comma ('keep_ratio = 0,35'): only after a leading zero, so '4,8,16' stays a list
_DECIMAL_COMMA = re.compile(r"(?<![\d.,])0,(\d+)(?![\d,])")
# a hedge settled in the text ('keep maybe 80 %, or 85? no - settle on 80 %', 'maybe 12, maybe 16 - go
# with 16'): what comes after the decision is the value, up to the end of its clause
_DECISION = re.compile(r"\b(?:settle[ds]?\s+(?:on|for)|go(?:ing)?\s+with|make\s+it|let'?s\s+say|final\s+answer\s*:?|"
                       r"decided?\s+on|we'?ll\s+take|stick\s+(?:with|to))\s+(?=[^;.!?]*\d)", re.IGNORECASE)


# a thread's numbering ('2/ so what if ...', '3/ same budget') is layout
_THREAD_NUMBER = re.compile(r"(?:^|(?<=\s))\d{1,2}/(?=\s)")
# a sentence that says what to do with the variant, not what it is ('Predict, then measure, the accuracy
# drop.', 'results soon', 'Report the F1.')
_TASK_SENTENCE = re.compile(r"(?:^|(?<=[.!?]\s))(?:predict|measure|report|compare|plot|results?\s+(?:soon|tbd|pending)|"
                            r"we\s+expect|expect\w*|note\s+that)\b[^.!?]*(?:[.!?]|$)", re.IGNORECASE)


_AS_TITLE = re.compile(r"^\W*(?:(?:as|like)\s+(?:in|per|said\s+in)\s+the\s+(?:title|name|heading|item\s+name)|"
                       r"see\s+(?:the\s+)?(?:title|name|heading)|(?:same\s+)?as\s+titled)\W*$", re.IGNORECASE)


def _new_side(t: str) -> str:
    """The variant a plan writer means: a diff's '+' lines, a decimal comma as a point, a settled hedge,
    without a thread's numbering or a sentence that only says what to measure."""
    if _DIFF_NEW.search(t) and _DIFF_OLD.search(t):
        t = " ".join(_DIFF_NEW.sub("", ln) for ln in t.splitlines() if _DIFF_NEW.match(ln))
    t = _DECIMAL_COMMA.sub(r"0.\1", _THREAD_NUMBER.sub(" ", t))
    task = _TASK_SENTENCE.sub(" ", t).strip()
    if task and len(tokens(task)) >= 3:
        t = task
    d = _DECISION.search(t)
    if d and NUMBER.search(t[:d.start()]):
        t = re.split(r"[;!?]|\.(?!\d)", t[d.end():])[0]
    return t


def _unicode_layout(t: str) -> str:
    """Plain text of what a planner drew: '➡️' is '->', other pictographs go, subscripts and
    vulgar fractions become plain characters ('r₀' -> 'r0', '½' -> '1/2'), 'r0' / 'r₀' is the
    initial rank ('r_init'), and a run name alone ('apt_r8_grow') is read as its words."""
    t = t.replace("\u27a1\ufe0f", " -> ").replace("\u27a1", " -> ")
    t = _PICTOGRAPH.sub(" ", t)
    t = unicodedata.normalize("NFKC", t).replace("\u2044", "/")
    t = _INITIAL_R.sub("r_init", t)
    s = t.strip()
    if _RUN_NAME.match(s):
        t = s.replace("_", " ")
    return t


# a command-line flag with its value ('--lora-r 32', '--keep-ratio=0.5') is a config key: 'lora_r=32'
_CLI_FLAG = re.compile(r"(?<![\w-])--?([A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*)(?:\s+|\s*=\s*)(?=-?\.?\d)")
# a config key's namespace ('apt.target_density: 0.3', 'sdtp.keep = 0.6'): the key names the setting
_KEY_NAMESPACE = re.compile(r"\b[A-Za-z]\w*\.(?=[A-Za-z_]\w*\s*(?::|=|->|\u2192))")
# a value said twice ('target density 0.3, i.e. 30% of the weights kept', 'density 35 % (65 % gone)',
# 'keep 40% (default 70%)'): the second saying is a restatement or an aside, not a second variant;
# read as one it made two cells, or no single value at all
_RESTATED = re.compile(r"\s*\([^()]*\)|,?\s*\b(?:i\.\s?e\.?|that is|in other words|meaning)(?=[\s,:])[^;]*",
                       re.IGNORECASE)
# a rank glued to its letter ('r4', 'r16', 'rank8'), as the value reader writes it ('r=4')
# ...but not a reviewer ('R3 asks what happens if...', 'R1: please add', "R2's point")
_GLUED_RANK = re.compile(r"\b(r|rank)(\d{1,2})\b(?!(?:(?<=(?-i:R)\d)|(?<=(?-i:R)\d\d))(?:'s|:|\s+(?:asks?|wants?|wonders?|requests?|suggests?|"
                         r"notes?|says?|points?|raises?|questions?|would|also|is)\b))", re.IGNORECASE)
_FINE_TUNING = re.compile(r"\b(?:the\s+)?fine[\s-]?tuning\b(?!\s+(?:method|scheme|parameters?|rank|adapters?))",
                          re.IGNORECASE)


def _drop_restatement(text: str) -> str:
    """Leave out a parenthesis or an 'i.e.' clause that holds a number when the rest says one too,
    with words around it (a bare '0.3 (30% kept)' needs the clause for what 0.3 measures)."""
    def drop(m: re.Match) -> str:
        rest = text[:m.start()] + text[m.end():]
        worded = re.search(r"[A-Za-z]{2,}", NUMBER.sub(" ", rest))
        return "" if NUMBER.search(m.group(0)) and NUMBER.search(rest) and worded else m.group(0)
    return _RESTATED.sub(drop, text)


class Matcher:
    """Scores free text against components and options: lexical and embedding similarity."""

    def __init__(self, components: dict, method: str | None = None):
        from prunelab.ablation.semantic import Similarity, get_embedder

        self.components = components
        # the learned second opinion (ablation/second.py) needs the method's labelled cells; the
        # resolution benchmark leaves out the split it is scoring (second_exclude)
        self.method = method
        self.second_exclude: frozenset = frozenset()
        self.sim = Similarity(get_embedder())
        self._ctexts = {n: component_texts(c) for n, c in components.items()}
        self._otexts = {(n, o): option_texts(c, o) for n, c in components.items() for o in c.options}
        # option names and aliases: a technique they name is in scope (scope.foreign_technique)
        self.own_texts = [t for names, _ in self._otexts.values() for t in names]
        self._alias_set = {t.strip().lower() for t in self.own_texts}
        every = [t for names, descs in self._ctexts.values() for t in names + descs]
        every += [t for names, descs in self._otexts.values() for t in names + descs]
        self.sim.prepare(every)
        self._memo: dict = {}
        self._centre: dict = {}
        self._own_words: dict = {}
        # words in the names of more than one component: on their own they identify none of them
        seen: dict = {}
        for n, c in components.items():
            for w in {t for x in component_names(c) for t in tokens(x)}:
                seen[w] = seen.get(w, 0) + 1
        self._shared_words = {w for w, k in seen.items() if k > 1}
        # the method's own words, and the words values are said in ('precent' -> 'percent')
        self.vocab = vocabulary(every + [n for n in components]) | NUMBER_WORDS | {
            "percent", "percentage", "half", "third", "quarter", "fifth", "tenth", "thirds", "quarters", "fifths"}
        self.known = known_words()

    def clean(self, abl: Ablation) -> Ablation:
        """The ablation with misspelt words and unknown abbreviations fixed (text.fix_spelling,
        text.expand_abbreviations): what the matcher scores. The plan itself is not changed."""
        def fix(t):
            if t is None:
                return t
            # a planner's field labels ('**Variant:** ...') are layout, not content; so are LaTeX
            # markup ('$r=8$', '60\\%', '\\textsc{SDTP}') and citations ('[Zhao et al.]')
            t = _FIELD.sub("", _new_side(_unicode_layout(t)))
            if _INTERVENTION.search(t) or _RATIONALE.search(t):
                t = _INTERVENTION.sub("", _RATIONALE.sub(" ", t)).strip(" ;") or t
            t = _latex_to_text(t)
            t = _KEY_NAMESPACE.sub("", _OLD_VALUE.sub("", t))
            t = _OLD_INSTEAD.sub(lambda m: m.group(1), _OLD_FROM.sub("", t))
            t = _CLI_FLAG.sub(lambda m: m.group(1).replace("-", "_") + "=", t)
            t = _drop_restatement(_GLUED_RANK.sub(lambda m: f"{m.group(1)}={m.group(2)}", t))
            # the training regime is not the tuning component: 'pruning during fine-tuning' is during training
            t = _FINE_TUNING.sub("training", t)
            t = self.expand_keys(t)
            # a bare 'r' ('stays at the r it started with') is the rank; 'r=8' is left to the value reader
            t = re.sub(r"\br\b(?!\s*[=:]?\s*\d)(?!\s*[=:])", "rank", t)
            # 'act*grad', 'activation×gradient': a product, as the options write it ('activation x gradient')
            t = re.sub(r"(?<=[A-Za-z])(?:\s*[*\u00d7\u00b7]\s*|[\s-]times[\s-]|\s+multiplied\s+(?:with|by)\s+)(?=[A-Za-z])",
                       " x ", t)
            return fix_spelling(expand_abbreviations(t, self.vocab), self.vocab, self.known)
        name = fix(abl.name)
        # 'as in the title': the item's name says the variant
        repl = [name if name and _AS_TITLE.match(r) else fix(r) for r in abl.replacement]
        new = (name, fix(abl.ablated_part), repl, fix(abl.variable))
        if new == (abl.name, abl.ablated_part, abl.replacement, abl.variable):
            return abl
        return dataclasses.replace(abl, name=new[0], ablated_part=new[1], replacement=new[2], variable=new[3])

    def option_words(self, name: str, option: str) -> list[str]:
        """An option's names, aliases and descriptions."""
        return sum(self._otexts[(name, option)], [])

    def expand_keys(self, text: str) -> str:
        """'sp=.4' -> 'sparsity=.4', 'kr=.3' -> 'keep_ratio=.3': a short key before '=' and a number
        that is the initials or a prefix of exactly one numeric component's name (or of its number's
        name) is that component. Keys the method's texts use themselves ('r=8') are left alone."""
        def names(key: str, n: str) -> bool:
            words = [w for w in re.split(r"[_\s]+", n.lower()) if w]
            return (key == "".join(w[0] for w in words) and len(words) > 1) or (len(key) >= 2 and n.lower().startswith(key))

        def sub(m: re.Match) -> str:
            key = m.group(1).lower()
            if len(key) == 1:
                # 'r=8': one letter is the number's own name ('rank'), not its component's
                fields = {c.numeric for c in self.components.values() if c.numeric and " " not in c.numeric
                          and "_" not in c.numeric and c.numeric[0].lower() == key}
                return f"{fields.pop()}{m.group(2)}" if len(fields) == 1 else m.group(0)
            if key in self.components or ("_" not in key and key in self.vocab):
                return m.group(0)
            # 'lora_rank: 32', 'r_init=2': a config key of several words, one of which names the number
            parts = [p for p in key.split("_") if p] if "_" in key else [key]
            hits = set()
            for name, comp in self.components.items():
                if not comp.numeric:
                    continue
                for n in (name, comp.numeric):
                    # (one letter only inside a longer key: 'r_init' is the rank, a bare 'r=8' is read as it is)
                    if any(names(p, n) or (len(parts) > 1 and len(p) == 1 and n.lower().startswith(p)) for p in parts):
                        hits.add(name)
            return f"{hits.pop()}{m.group(2)}" if len(hits) == 1 else m.group(0)
        if text.strip().lower() in self._alias_set:
            return text                  # an option's own alias ('r=20' is static_intermediate)
        return _KEY_VALUE.sub(sub, text)

    def match(self, text: str, names: list[str], descs: list[str] = (), phrase: bool = True) -> float:
        key = (text, tuple(names), tuple(descs), phrase)
        if key in self._memo:
            return self._memo[key]
        lexical = phrase_similarity if phrase else similarity
        long_text = len(tokens(text)) >= 3
        # one shared word ('mask') is weak evidence that a longer text is about that name
        # (weaker still when other components' names use that word too: 'mask' for mask / mask_propagation)
        two_words = len(tokens(text)) >= 2
        lex = max((min(lexical(text, n), SHARED_WORD_CAP if tokens(n)[0] in self._shared_words else ONE_WORD_CAP)
                   if long_text and len(tokens(n)) == 1 else
                   min(lexical(text, n), SHARED_WORD_CAP) if two_words and len(tokens(n)) == 1
                   and tokens(n)[0] in self._shared_words else lexical(text, n) for n in names), default=0.0)
        sem = 0.0
        if self.sim.embedder is not None and norm(text):
            self.sim.prepare([text])
            # ...and so is its sentence vector: a one-word name is compared by words only
            sem_names = [n for n in names if not long_text or len(tokens(n)) != 1]
            sem = max((self.sim(text, t) for t in sem_names + list(descs)), default=0.0)
        # a paraphrase (embedding only) scores at most SEM_CAP, so an exact name or alias still wins,
        # and the raw cosine breaks ties between paraphrases
        para = 1.0 if sem >= 0.97 else min(SEM_CAP, SEM_WEIGHT * sem)
        if sem < 0.97 and _NEGATION.search(text):
            para *= NEGATED_SEM    # sentence vectors barely see 'never'/'not': trust the words more
        if sem < 0.97:
            # sentence vectors rate every option of a component alike ('prune once before training'
            # is as close to 'prune gradually throughout training' as to 'prune at step 0'): the
            # words shared with the option's names settle it
            para = (1 - LEX_BLEND) * para + LEX_BLEND * lex
        out = (1 - SEM_TIE) * max(lex, para) + SEM_TIE * (sem if self.sim.embedder is not None else lex)
        self._memo[key] = out
        return out

    def component_score(self, name: str, texts: list[tuple[str, float]]) -> float:
        names, descs = self._ctexts[name]
        best = 0.0
        for text, weight in texts:
            if f"`{name}`" in text:
                return 1.0
            best = max(best, self.match(text, names, descs) * weight)
        return best

    def option_score(self, name: str, option: str, text: str) -> float:
        if f"`{option}`" in text or f"`{name}.{option}`" in text:
            return 1.0
        names, descs = self._otexts[(name, option)]
        raw = self.match(text, names, descs, phrase=False)
        said = affirmed_text(text)
        if said != text and not self._negates(name, option) and tokens(said):
            # 'LM + MSE, without the ranking term' does not say 'ranking' for an option that keeps it
            # ('LM + MSE + Ranking'): its words are matched without what the text negates
            raw = min(raw, self.match(said, names, descs, phrase=False))
        base = raw + DISTINCT_WEIGHT * self.distinct(name, option, text)
        if self.sim.embedder is not None and len(self.components[name].options) >= 2:
            base = (1 - OPTION_CONTRAST) * base + OPTION_CONTRAST * max(0.0, self.contrast(name, option, text))
        if raw < 0.97:      # an exact name or alias is taken as said
            base += self.polarity(name, option, text) + self.timing(name, option, text) \
                + self.which(name, option, text) + self.alike(name, option, text)
        return max(0.0, min(1.0, base))

    def _negates(self, name: str, option: str) -> bool:
        """Whether any of the option's own texts negates something ('no ranking loss')."""
        key = ("negates", name, option)
        if key not in self._memo:
            self._memo[key] = any(negation_scope(t)[0] for t in sum(self._otexts[(name, option)], []))
        return self._memo[key]

    def option_cues(self, cues, name: str, option: str) -> list[set]:
        """What one cue reader (when_cues, which_cues, alike_cues) finds in each of the option's own
        texts that says anything to it: the option's timing, held value or sameness, in its own words."""
        key = (cues.__name__, name, option)
        if key not in self._memo:
            self._memo[key] = [c for c in (cues(t) for t in sum(self._otexts[(name, option)], [])) if c]
        return self._memo[key]

    def timing(self, name: str, option: str, text: str) -> float:
        """+ when the option happens when the text says (start / throughout / end of training), - when
        the option's own words put it at another time; 0 when either says nothing about timing."""
        said = when_cues(text)
        if not said:
            return 0.0
        own = self.option_cues(when_cues, name, option)
        if not own:
            return 0.0
        # an option one of whose texts says just what the text says: 'progressively, in the first part
        # of training' is early pruning, 'a bit at every step' (throughout alone) is not
        if said in own:
            return WHEN_MATCH
        return -WHEN_MATCH if len(said) == 1 and not said <= set().union(*own) else 0.0

    def which(self, name: str, option: str, text: str) -> float:
        """+ when the option holds the value the text says (the starting / a middle / the final one),
        - when the option's own words hold another; 0 when either says nothing of it. Sentence vectors
        rate 'held at the value the run finishes with' closest to 'starting rank held throughout'."""
        said = which_cues(text)
        # ...a text that gives the value itself ('the initial rank is put to 16') sets a number, not this
        # (one in brackets restates it: 'the top rank (32)')
        # (nor is a moment of training: 'from step 0')
        if len(said) != 1 or NUMBER.search(words_to_numbers(TIME_NUMBER.sub(" ", BRACKETS.sub(" ", text)))):
            return 0.0
        own = set().union(*self.option_cues(which_cues, name, option))
        if not own:
            return 0.0
        return WHICH_MATCH if said <= own else -WHICH_MATCH

    def alike(self, name: str, option: str, text: str) -> float:
        """+ when the option makes a setting alike everywhere / different by place as the text says, -
        when it does the other; only in a component whose options differ in just that ('equal widths
        in every layer' vs 'each layer its own number of heads'), 0 elsewhere."""
        said = alike_cues(text)
        if len(said) != 1:
            return 0.0
        key = ("alike", name)
        if key not in self._memo:
            own = {o: set().union(*self.option_cues(alike_cues, name, o)) for o in self.components[name].options}
            split = any(c == {"same"} for c in own.values()) and any(c == {"differ"} for c in own.values())
            self._memo[key] = own if split else {}
        own = self._memo[key].get(option)
        if not own or len(own) != 1:
            return 0.0
        return ALIKE_MATCH if said == own else -ALIKE_MATCH

    def polarity(self, name: str, option: str, text: str) -> float:
        """Negation scope, which sentence vectors barely see: + when the option negates what the text
        negates ('ranking dropped' ~ 'no ranking loss'), - when one negates what the other keeps
        ('language-modelling loss by itself' is not 'no language-modelling loss'; 'LM and MSE, ranking
        dropped' is not 'LM + MSE + Ranking')."""
        key = ("polarity", name, option)
        if key not in self._memo:
            neg, aff = [], set()
            for t in sum(self._otexts[(name, option)], []):
                n, a = negation_scope(t)
                neg += n
                aff |= a
            self._memo[key] = (neg, aff - set().union(*neg) if neg else aff)
        o_neg, o_aff = self._memo[key]
        o_neg_all = set().union(*o_neg) if o_neg else set()
        q_neg, q_aff = negation_scope(text)
        # a negated phrase counts when all its content words are said the other way; an option that
        # keeps a thing of two or more words the text removes is not it, whatever else both remove
        # ('gradient only, no activation product, no kurtosis' is not 'activation x gradient without
        # kurtosis'); one word ('distillation') is too loose a handle to overrule a match
        if any(len(ph) >= 2 and ph <= o_aff - o_neg_all for ph in q_neg):
            return -NEG_MISMATCH
        if any(ph <= o_neg_all for ph in q_neg):
            return NEG_MATCH
        if any(ph <= q_aff for ph in o_neg) or any(ph <= o_aff for ph in q_neg):
            return -NEG_MISMATCH
        return 0.0

    def distinct(self, name: str, option: str, text: str) -> float:
        """Share of the text's words that only this option's names/descriptions use among the
        component's options ('before', 'start' for schedule.init; 'throughout' for gradual)."""
        if name not in self._own_words:
            comp = self.components[name]
            words = {o: {t for x in sum(self._otexts[(name, o)], []) for t in tokens(x)} for o in comp.options}
            self._own_words[name] = {o: w - set().union(*(words[p] for p in comp.options if p != o))
                                     for o, w in words.items()}
        own = self._own_words[name][option]
        said = set(tokens(text))
        return len(said & own) / len(said) if said else 0.0

    def contrast(self, name: str, option: str, text: str) -> float:
        """Cosine after removing what all the component's options share (the mean of their vectors):
        'once before training' vs 'gradually during training' differ in what is left."""
        import numpy as np

        key = ("contrast", name, option, text)
        if key in self._memo:
            return self._memo[key]
        if name not in self._centre:
            vecs = [self.sim.vector(t) for o in self.components[name].options
                    for t in sum(self._otexts[(name, o)], [])]
            self._centre[name] = np.mean(vecs, axis=0)
        mu = self._centre[name]
        q = self.sim.vector(text) - mu
        best = -1.0
        for t in sum(self._otexts[(name, option)], []):
            v = self.sim.vector(t) - mu
            d = float(np.linalg.norm(q) * np.linalg.norm(v))
            if d > 1e-9:
                best = max(best, float(np.dot(q, v)) / d)
        self._memo[key] = best
        return best

    def rank(self, abl: Ablation) -> list[tuple[float, str]]:
        texts = _part_texts(abl)
        pinned = {n for n in self.components if any(f"`{n}`" in t for t, _ in texts)}
        return sorted(((1.0 if n in pinned else self.component_score(n, texts) * (0.8 if pinned else 1.0), n)
                       for n in self.components), reverse=True)


def component_texts(comp) -> tuple[list[str], list[str]]:
    # a description of several sentences is matched sentence by sentence (sentence vectors of one long
    # text blur what each sentence says)
    descs = [x.strip() for d in _as_list(comp.description) for x in re.split(r"(?<=[\w)])\.\s+(?=[A-Z])", d)
             if x.strip()]
    # ...and so is each clause of a sentence ('the fraction of prompt tokens kept after pruning (1 minus the
    # fraction dropped); how aggressively the sequence is shortened'), with its asides left out
    clauses = [re.sub(r"\s*\([^)]*\)", "", c).strip() for d in descs for c in re.split(r"\s*[;:]\s+", d)]
    descs += [c for c in clauses if len(c.split()) >= 3 and c not in descs]
    return component_names(comp), descs


def option_texts(comp, option: str) -> tuple[list[str], list[str]]:
    names = [option, option.replace("_", " ")] + list(comp.option_aliases.get(option, []))
    descs = _as_list(getattr(comp, "option_descriptions", {}).get(option))
    return names, descs


def _as_list(v) -> list[str]:
    if not v:
        return []
    if isinstance(v, str):
        return [v]
    return [str(x) for x in v if x]


def head_clause(text: str) -> str | None:
    """'The adaptive pruning module that uses binary masks ...' -> 'The adaptive pruning module'."""
    m = _CLAUSE.search(" " + text + " ")
    if not m:
        return None
    head = (" " + text)[:m.start()].strip()
    return head if len(norm(head).split()) >= 2 and norm(head) != norm(text) else None


_QUESTION = re.compile(r"^\s*(?:does|do|did|is|are|was|were|would|will|can|could|should|how much does|how much do)\s+"
                       r"(?P<body>.+?)\s+(?:actually\s+|really\s+|even\s+)?(?:matter|help|hurt|count|work|contribute|"
                       r"make a difference|necessary|needed|important|required)\s*\??\s*$", re.IGNORECASE)


_WITHOUT = re.compile(r"\b(?:without|w/o|no longer|minus)\s+(.+?)(?:\s+(?:from|with|by|via|in|on|at|for|of|during)\b|"
                      r"[?.,;:]|$)", re.IGNORECASE)


_FRAMING = re.compile(r"^\s*(?:it|this|that)\s+(?:really\s+|actually\s+|truly\s+|even\s+)?(?:necessary|needed|"
                      r"important|required|essential|useful|worth it|worthwhile|helpful)\s+(?:to\s+|that\s+)?",
                      re.IGNORECASE)


def question_body(text: str) -> str | None:
    """A reviewer's question about a part: 'Does protecting the first tokens actually matter?' ->
    'protecting the first tokens'; 'Is it really necessary to shield the first tokens?' -> 'shield
    the first tokens'."""
    m = _QUESTION.match(text)
    body = m.group("body").strip() if m else None
    if body is None:
        m2 = re.match(r"^\s*(?:is|was|would it be)\s+(?P<body>.+?)\s*\??\s*$", text, re.IGNORECASE)
        body = m2.group("body") if m2 and _FRAMING.match(m2.group("body")) else None
    if body:
        body = _FRAMING.sub("", body).strip()
    return body if body and len(norm(body).split()) >= 2 else None


def _part_texts(abl: Ablation) -> list[tuple[str, float]]:
    texts = [(abl.ablated_part, 1.0)]
    body = question_body(abl.ablated_part)
    # a question's head clause is its framing ('Is it really necessary'): the body's head is the part
    head = head_clause(body) if body else head_clause(abl.ablated_part)
    if head:
        texts = [(head, 1.0), (abl.ablated_part, 0.92)]
    if body:
        texts.append((body, 1.0))
    # 'would the gains hold without distilling from the teacher?': what the sentence removes
    gone = _WITHOUT.search(abl.ablated_part)
    if gone and norm(gone.group(1)) != norm(abl.ablated_part):
        texts.append((gone.group(1), 1.0))
    if abl.variable:
        m = re.match(r"^\s*([^=:]+?)\s*[=:]", abl.variable)
        texts.append((m.group(1) if m else abl.variable, 0.9))
    if abl.name and not re.match(r"^ablation\s*#?\s*\d*$", abl.name, re.IGNORECASE):
        texts.append((abl.name, 0.8))
    return texts


def rank_components(abl: Ablation, components: dict) -> list[tuple[float, str]]:
    return Matcher(components).rank(abl)


def _closest(scores: list[tuple[float, str]], n: int = 3) -> str:
    return ", ".join(f"{name} ({s:.2f})" for s, name in scores[:n])


# ----------------------------------------------------------------------------- ablation

def resolve_ablation(abl: Ablation, components: dict, *, matcher: Matcher | None = None) -> list[Choice]:
    """Every cell of the ablation, or the first reason one has none (Unclear)."""
    cells = resolve_cells(abl, components, matcher=matcher)
    for c in cells:
        if isinstance(c, Unclear):
            raise c
    return cells


def resolve_cells(abl: Ablation, components: dict, *, matcher: Matcher | None = None) -> list:
    """One entry per cell (one per replacement value; one for a REMOVE): its Choice, or the Unclear
    saying why it has none, so one unclear replacement does not cost the ablation its other cells."""
    m = matcher or Matcher(components)
    raw, abl = abl, m.clean(abl)
    scores = m.rank(abl)
    if abl.action is Action.REMOVE:
        # 'REMOVE dropout' asks for something no component sets (read on the raw text: the spelling
        # fixer would turn 'alibi' into a word it knows)
        try:
            cell = _remove(abl, m, scores)
        except Unclear as e:
            # an ambiguous part may be settled by what it describes, but only among the tied components
            cell = _described(abl, m, scores, e.candidates if e.kind == "ambiguous" else None) or e
        return [_second_opinion(_in_scope(cell, raw.ablated_part, m), raw, None, m)]
    out = []
    for said, text in zip(raw.replacement, abl.replacement):
        for part in expand_values(text):
            try:
                cell = _replacement(abl, part, m, scores)
            except PlanValueError as e:
                # name the value as the plan wrote it ('r_init=128'), not as the matcher read it
                raise PlanValueError(str(e).replace(repr(part), repr(said), 1)) from None
            except Unclear as e:
                added = _added(abl, part, m, scores)
                cell = e if added is None else added
            out.append(_second_opinion(_in_scope(cell, said, m), raw, said, m))
    return out


def _second_opinion(cell, raw: Ablation, said: str | None, m: Matcher):
    """Flag an unflagged choice that the learned second opinion (ablation/second.py), confidently,
    reads otherwise; the choice itself never changes. A cell the rules could not settle takes the
    second opinion's option when it is confident (second.fill), flagged."""
    if isinstance(cell, Unclear):
        return _second_fill(cell, raw, said, m)
    if not isinstance(cell, Choice) or cell.flag is not None or not m.method or "`" in (said or raw.ablated_part):
        return cell
    from prunelab.ablation import second

    op = _ask_second(raw, said, m)
    if op is None or op[1] < second.MIN_PROB:
        return cell
    label, p = op
    if label == second.label_of(f"{cell.component}={cell.value:g}" if cell.option is None
                                else f"{cell.component}.{cell.option}"):
        return cell
    comp, _, opt = label.partition(".")
    if opt and comp in m.components and opt in m.components[comp].options \
            and m.components[comp].options[opt] == cell.overrides:
        return cell                      # another name for the same setting
    what = "out of scope" if label == second.OOS else label
    cell.flag = (f"second opinion: a classifier trained on labelled plan items reads this as {what} "
                 f"(p {p:.2f}), not {cell.label if cell.option is None else f'{cell.component}.{cell.option}'}; check it")
    return cell


def _ask_second(raw: Ablation, said: str | None, m: Matcher):
    """(answer, p) of the learned second opinion for one cell, or None when it cannot say."""
    from prunelab.ablation import second

    try:
        return second.opinion(m.method, raw.action.value, raw.ablated_part, said, m.second_exclude)
    except Exception:  # noqa: BLE001 - a second opinion must never break resolution
        return None


def _second_fill(cell: Unclear, raw: Ablation, said: str | None, m: Matcher):
    """An unresolved, ambiguous or out-of-scope cell becomes the second opinion's choice when that is
    an option (a number is the rules' to parse; 'out of scope' changes nothing) read with p >= MIN_PROB.
    It is always flagged, so it is shown for checking and never counts as a confident choice."""
    from prunelab.ablation import second

    op = _ask_second(raw, said, m) if m.method else None
    if op is None or op[1] < second.MIN_PROB or op[0] == second.OOS or "." not in op[0]:
        return cell
    comp, _, opt = op[0].partition(".")
    if comp not in m.components or opt not in m.components[comp].options:
        return cell
    return Choice(comp, opt, None, m.components[comp].overrides(opt), said or "REMOVE", op[1],
                  flag=f"the rules left this {cell.kind} ({cell}); a classifier trained on labelled plan "
                       f"items reads it as {op[0]} (p {op[1]:.2f}): check it")


def _in_scope(cell, said: str, m: Matcher):
    """The cell, or out of scope when the text asks for a technique no component implements
    (scope.FOREIGN) and the cell is not a confident choice: an unflagged match of an option wins
    over a passing mention ('rank 0; the optimizer only sees the classifier' is tuning.none)."""
    if isinstance(cell, Unclear) and cell.kind == "out_of_scope":
        return cell
    technique = foreign_technique(said, m.own_texts)
    if technique is None:
        return cell
    if isinstance(cell, Choice) and cell.flag is None:
        # a confident choice keeps a passing mention ('the optimizer only sees the head'); a named
        # technique ('H2O KV-cache eviction') is the point of the text unless the option is about it
        if technique in INCIDENTAL or (cell.option is not None
                                       and names_technique(technique, m.option_words(cell.component, cell.option))):
            return cell
    return Unclear(f"{said!r} asks for {technique}, which no component of this method implements "
                   f"(components: {', '.join(m.components)})", "out_of_scope")


def _added(abl: Ablation, text: str, m: Matcher, scores) -> Choice | None:
    """ADD of a component that is off by default is its one enabling option, as a REMOVE is its
    remove option: 'ADD distillation from the unpruned model: KL between pruned and full outputs'
    -> distillation.on, when the part clearly names that component and the replacement's words
    did not settle it. Flagged, since the replacement text was not matched."""
    if abl.action is not Action.ADD or not scores:
        return None
    top, name = scores[0]
    second = scores[1][0] if len(scores) > 1 else 0.0
    comp = m.components[name]
    if top < COMPONENT_MIN or top - second < COMPONENT_FIRST or comp.remove is None or comp.numeric:
        return None
    if comp.options[comp.default] != comp.options[comp.remove]:
        return None                      # on by default: adding it changes nothing
    enabling = [o for o in comp.options if comp.options[o] != comp.options[comp.default]]
    if len(enabling) != 1:
        return None
    opt = enabling[0]
    flag = (f"weak match: the replacement {text!r} matches no option well; ADD of {name} (off by default) "
            f"taken as its one enabling option {name}.{opt}")
    return Choice(name, opt, None, comp.overrides(opt), text, top, flag)


def _distinct(components, a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Two (component, option) answers that set different overrides."""
    return components[a[0]].options[a[1]] != components[b[0]].options[b[1]]


def _remove(abl: Ablation, m: Matcher, scores) -> Choice:
    components = m.components
    # "no ranking loss" may be an option alias of a loss component (unless a component is pinned)
    phrase = f"no {abl.ablated_part}"
    pinned = any(f"`{n}`" in abl.ablated_part for n in components)
    # only a negated alias can be 'no <part>' ('no layer loss'); 'per-layer widths', an alias of layout.free,
    # is what 'no heterogeneous per-layer widths' removes, not what it asks for
    best_opt = max(((max((similarity(phrase, t) for t in option_texts(c, o)[0] if _NEG_CUE.search(t)), default=0.0),
                     name, o) for name, c in components.items() for o in c.options), default=(0, None, None))
    if best_opt[0] >= 0.9 and not pinned:
        _, name, opt = best_opt
        return Choice(name, opt, None, components[name].overrides(opt), "REMOVE", best_opt[0])
    top, name = scores[0]
    if top < OUT_OF_SCOPE:
        raise Unclear(f"ablated part {abl.ablated_part!r} is out of scope: no component covers it; closest: "
                      f"{_closest(scores)}", "out_of_scope")
    comp = components[name]
    sub = _removed_option(abl, m, name)
    if sub is not None:
        return sub
    # 'The layer-wise (hidden-state) distillation loss is dropped': 'layer-wise' ranks the layout
    # component first, but a runner-up has an option that leaves out exactly this part, by far
    for s, n in scores[1:4]:
        if top - s > 0.2:
            break
        other = _removed_option(abl, m, n)
        if other is not None and other.score >= STRONG_OPTION and other.score > top + LOW_MARGIN:
            other.flag = (f"the part ranks {name} first ({top:.2f}), but reads as {n}.{other.option} "
                          f"({other.score:.2f})" + (f"; {other.flag}" if other.flag else ""))
            return other
    rivals = [(s, n) for s, n in scores[1:] if not _same_removal(comp, components[n])]
    gap = top - rivals[0][0] if rivals else 1.0
    weak = top < COMPONENT_MIN
    if weak and gap < WEAK_COMPONENT_LEAD:
        raise Unclear(f"ablated part {abl.ablated_part!r} matches no component well; closest: {_closest(scores)}")
    if gap < AMBIGUOUS_GAP:
        tied = [name] + [n for s, n in rivals if top - s < LOW_MARGIN]
        raise Unclear(f"ablated part {abl.ablated_part!r} is ambiguous: {_closest([scores[0]] + rivals)}; name the "
                      f"component in backticks, e.g. `{name}`", "ambiguous", tied)
    if comp.remove is None:
        raise PrunelabError(f"component {name!r} cannot be removed; REPLACE it with one of: "
                            f"{', '.join(o for o in comp.options if o != comp.default)}")
    flag = None
    if gap < LOW_MARGIN:
        flag = f"low margin: {name} ({top:.2f}) vs {rivals[0][1]} ({rivals[0][0]:.2f})"
    if weak:
        # no component matches well, but one clearly leads the rest: chosen, never silently
        flag = f"weak match: {name} ({top:.2f}) leads {rivals[0][1] if rivals else 'nothing'} " \
               f"({rivals[0][0] if rivals else 0.0:.2f}) but is below {COMPONENT_MIN}"
    return Choice(name, comp.remove, None, comp.overrides(comp.remove), "REMOVE", top, flag,
                  [(round(s, 3), n) for s, n in rivals[:2]])


def _described(abl: Ablation, m: Matcher, scores, among: list[str] | None = None) -> Choice | None:
    """A REMOVE whose part names no component but describes a setting: the variant ('the model keeps
    all its heads and is only fine-tuned with the adapters' -> pruning.off) or what goes ('the extra
    credit given to blocks with heavy-tailed outliers' -> salience.standard). The part is matched as
    a replacement, as it is and as 'without <part>'; the better non-default choice is taken, always
    flagged, since the plan never named what it removes."""
    found = []
    for text in (abl.ablated_part, f"without {abl.ablated_part}"):
        try:
            c = _replacement(abl, text, m, scores)
        except Unclear:
            continue
        if c.option is not None and c.option != m.components[c.component].default and c.score >= JOINT_MIN \
                and (among is None or c.component in among):
            found.append(c)
    if not found or (among is not None and (len(found) < 2 or len({(c.component, c.option) for c in found}) > 1)):
        return None                   # an ambiguous part is settled only when both readings agree
    best = max(found, key=lambda c: c.score)
    if len({(c.component, c.option) for c in found}) > 1 and min(c.score for c in found) > best.score - LOW_MARGIN:
        return None                   # the two readings disagree and neither is clearly better
    best.text = "REMOVE"
    best.flag = (f"the ablated part names no component; read as a description of {best.component}.{best.option} "
                 f"({best.score:.2f})" + (f"; {best.flag}" if best.flag else ""))
    return best


def _removed_option(abl: Ablation, m: Matcher, name: str) -> Choice | None:
    """REMOVE of a sub-part that one option of the component leaves out ('the hidden-state term of
    the KD loss' -> distillation.no_layer_loss, not distillation.none): 'without <part>' read against
    the component's options, and a non-default option that matches it clearly better than the
    component's own remove option wins."""
    comp = m.components[name]
    if comp.remove is None:
        return None
    def rate(phrase):
        scored = sorted(((m.option_score(name, o, phrase), o) for o in comp.options
                         if o != comp.default and comp.options[o] != comp.options[comp.default]), reverse=True)
        removal = max((s for s, o in scored if comp.options[o] == comp.options[comp.remove]), default=0.0)
        return scored, removal

    scored, removal = rate(f"without {abl.ablated_part}")
    if not scored:
        return None
    best, opt = scored[0]
    if comp.options[opt] == comp.options[comp.remove] or best < SUB_OPTION_MIN or best - removal < SUB_OPTION_LEAD:
        if not _NEGATION.search(abl.ablated_part):
            return None
        # a part that says the removal itself ('shall attach no LoRA adapters of any rank') is read as it
        # is: an option it describes clearly better than the component's removal
        scored, removal = rate(abl.ablated_part)
        best, opt = scored[0]
        if comp.options[opt] == comp.options[comp.remove] or best < OPTION_MIN or best - removal < LOW_MARGIN:
            return None
    flag = None
    if best - removal < LOW_MARGIN:
        flag = f"low margin: {name}.{opt} ({best:.2f}) vs {name}.{comp.remove} ({removal:.2f}), the removal of all of {name}"
    return Choice(name, opt, None, comp.overrides(opt), "REMOVE", best, flag,
                  [(round(removal, 3), f"{name}.{comp.remove}")])


def _same_removal(a, b) -> bool:
    """Two components whose removal sets the same overrides are one answer, not a tie."""
    return a.remove is not None and b.remove is not None and a.options[a.remove] == b.options[b.remove]


def _numeric_choice(abl, text, m: Matcher, scores) -> Choice | None:
    components = m.components
    numeric = [(s, n) for s, n in scores if components[n].numeric]
    if not numeric:
        return None
    # the value text itself may name the component ('80% of the layer parameters removed')
    text_scores = {n: m.component_score(n, [(text, 0.95)]) for _, n in numeric}
    numeric = sorted(((max(s, text_scores[n]), n) for s, n in numeric), reverse=True)
    top, top_name = scores[0]
    for s, name in numeric:
        parsed = parse_number(text, components[name])
        if parsed is None:
            continue
        comp = components[name]
        # a value that only one numeric component can take, said as a kept/removed share, needs a
        # weaker match ('token budget: keep 40% of the prompt' -> keep_ratio), and is flagged
        fits = [n for _, n in numeric if value_fits(components[n], text)]
        # (a config key's words count: 'drop_frac=0.75' says dropped, as text_sense reads it)
        words = key_words(text)
        weak = fits == [name] and component_sense(comp) and (KEPT_WORDS.search(words) or REMOVED_WORDS.search(words))
        if top_name != name and top >= COMPONENT_MIN and s < top - 0.1 and text_scores[name] < COMPONENT_MIN \
                and not (weak and s >= NUMERIC_WEAK_MIN):
            # ('token pruning rate: drop 50%' names the pruner, which takes no number; the share can
            # only be the keep ratio, so that one is taken, flagged, rather than asked about)
            raise Unclear(f"value {text!r}: {abl.ablated_part!r} matches component {top_name!r}, which takes "
                          f"no number (options: {', '.join(components[top_name].options)}); numeric "
                          f"components: {_closest(numeric)}")
        # ...as does a bare value under a terse part whose best match, well ahead of the rest, is this
        # very component ('keep | .9', 'sp. (target) | 40%')
        second = scores[1][0] if len(scores) > 1 else 0.0
        leads = top_name == name and top - second >= COMPONENT_FIRST and fits == [name]
        if s < COMPONENT_MIN and not ((weak or leads) and s >= NUMERIC_WEAK_MIN):
            raise Unclear(f"value {text!r}: ablated part {abl.ablated_part!r} matches no numeric component "
                          f"well; closest: {_closest(numeric)}")
        value = round(numeric_value(text, comp, parsed), 6)
        flag = None
        if s < COMPONENT_MIN or (top_name != name and s < top - 0.1):
            flag = f"weak match: {name} ({s:.2f}) is the only numeric component taking {value:g}" + \
                (f" (the part names {top_name}, which takes no number)" if top_name != name else "")
        others = [(x, n) for x, n in numeric if n != name and parse_number(text, components[n]) is not None]
        if others and s - others[0][0] < LOW_MARGIN:
            flag = f"low margin: {name} ({s:.2f}) vs {others[0][1]} ({others[0][0]:.2f})"
        return Choice(name, None, value, comp.numeric_overrides(value), text, s, flag)
    return None


# ----------------------------------------------------------------------------- replacement

_PURPOSE = re.compile(r"\s(?:so that|so|because|since|in order to|which means|such that)\s|[;\u2014]|\s-\s", re.IGNORECASE)
# the setting a replacement moves away from: 'distil from that checkpoint instead of from the model
# itself', 'rather than having the student taught by itself' (up to the end of its clause)
_INSTEAD_CLAUSE = re.compile(r",?\s*\(?\b(?:instead\s+of|rather\s+than|in\s+place\s+of)\b[^.;,:)?!\u2014]*\)?", re.IGNORECASE)
# 'still progressive, but squeezed into the final 25% of steps', 'keep the learned pruner, but every stage
# decides from scratch': what stays comes before 'but', the change after it
_KEPT_BUT = re.compile(r"^[^.;]*?\b(?:still|keep\w*|same|unchanged|as before|as usual|as is)\b[^.;]*?,?\s+but\s+(?=\S)",
                       re.IGNORECASE)
_NAME_NUMBER = re.compile(r"\b([A-Za-z][A-Za-z]+)-(\d+(?:\.\d+)?)\b(?!\s*%)")


# an ablated part that names the run it starts from: 'the pruning timing in the gradual-schedule variant'
_BASE_CUE = re.compile(r"\b(?:of|in|from)\s+the\s+(?:[\w-]+\s+){1,3}(?:variant|run|version|ablation|arm|condition|"
                       r"setting|model)\b", re.IGNORECASE)
# ...or says what the setting is now ('teacher_weights (set to a separate full copy for the memory test)',
# 'the current config prunes in the last quarter', 'still wearing the same-width constraint'): the whole
# part is then read for that option
_NOW_CUE = re.compile(r"\b(?:currently|(?:the\s+)?current\s+(?:config\w*|setting|run)|at\s+present|presently|"
                      r"right\s+now|set\s+to|still\s+(?:wearing|using|on|with|set))\b", re.IGNORECASE)
BASE_OPTION_MIN = 0.6        # the part must describe that option this well


def _base_option(abl: Ablation, m: Matcher, scores) -> tuple[str, str] | None:
    """(component, option) when the ablated part says the ablation starts from a non-default option of
    its best component ('rank policy of the static-rank run'), else None."""
    part = abl.ablated_part or ""
    cue = _BASE_CUE.search(part)
    now = _NOW_CUE.search(part)
    if (cue is None and now is None) or not scores or scores[0][0] < COMPONENT_MIN:
        return None
    name = scores[0][1]
    comp = m.components[name]
    said = [cue.group(0)] if cue is not None else []
    if now is not None:
        said.append(part)
    rated = sorted(((max(m.option_score(name, o, t) for t in said), o) for o in comp.options
                    if comp.options[o] != comp.options[comp.default]), reverse=True)
    if not rated or rated[0][0] < BASE_OPTION_MIN or (len(rated) > 1 and rated[0][0] - rated[1][0] < LOW_MARGIN):
        return None
    return name, rated[0][1]


def _replacement(abl: Ablation, text: str, m: Matcher, scores) -> Choice:
    components = m.components
    # a number glued to a name ('FlashAttention-2', 'Llama-2') is part of the name, not a value
    said, text = text, _NAME_NUMBER.sub(r"\1\2", text)
    comp_score = {n: s for s, n in scores}
    # what the replacement is, without what it replaces ('... instead of from the model itself')
    moved = _INSTEAD_CLAUSE.sub(" ", text).strip()
    what = moved if moved != text.strip() and len(tokens(moved)) >= 3 else text
    kept = _KEPT_BUT.match(what)
    if kept and len(tokens(what[kept.end():])) >= 3:
        what = what[kept.end():]
    texts = [what]
    purpose = _PURPOSE.search(what)
    if purpose and len(norm(what).split()) >= 12 and len(norm(what[:purpose.start()]).split()) >= 3:
        texts.append(what[:purpose.start()])   # a long replacement with a purpose clause: what it does comes first
    if abl.variable and len(abl.replacement) == 1:
        texts.append(abl.variable)       # matrix rows: 'loss=LM+MSE' may be an option alias itself
    removal = _REMOVE_TEXT.match(text)
    if removal:
        # 'No preference for salient layers: all adapters gain rank at one pace': what follows the
        # colon (or dash, semicolon) says what replaces the removed thing, and is matched as such. Not a
        # comma: 'Remove every pruned structure at step 0, then fine-tune' goes on about the same thing
        tail = re.split(r"\s*(?:[:;\u2014]|\s-\s)\s*", removal.group(1), maxsplit=1)
        if len(tail) == 2 and len(norm(tail[1]).split()) >= 3:
            texts = [tail[1]]
            removal = None
    cands = []                           # (joint, component, option, option score, how)
    base = _base_option(abl, m, scores)
    for name, comp in components.items():
        cs = comp_score[name]
        for opt in comp.options:
            os_ = max(m.option_score(name, opt, t) for t in texts)
            if base is not None and name == base[0]:
                # the part says the ablation starts from another option ('mask policy of the frozen-mask
                # variant'): that option is what does not change, and the default is a real variant
                unchanged = opt == base[1]
            else:
                # replacing a component by its own default changes nothing: only when nothing else fits,
                # unless the text says it goes back to it ('go back to the original behaviour', 'keep
                # recomputing (baseline row)'): a plan's control row
                unchanged = opt == comp.default and f"`{opt}`" not in text and not _BACK_TO_DEFAULT.search(text)
            pen = DEFAULT_PENALTY if unchanged else 0.0
            cands.append((W_COMPONENT * cs + (1 - W_COMPONENT) * os_ - pen, name, opt, os_, "option"))
    if removal:
        # 'no X' / 'without X': the REMOVE option of the component X names (or of the part itself)
        rest = removal.group(1).strip()
        for name, comp in components.items():
            if comp.remove is None:
                continue
            rs = m.component_score(name, [(rest, 1.0)]) if norm(rest) else comp_score[name]
            cs = max(comp_score[name], rs)
            cands.append((W_COMPONENT * cs + (1 - W_COMPONENT) * rs, name, comp.remove, rs, "remove"))
    top, top_name = scores[0]
    if removal and top >= COMPONENT_MIN:
        # 'Remove every pruned structure at step 0' for the pruning schedule describes one of the
        # schedule's own options: it is not the REMOVE of another component
        own = max((c[3] for c in cands if c[1] == top_name and c[4] == "option"), default=0.0)
        if own >= OPTION_MIN:
            cands = [c for c in cands if c[4] == "option" or c[1] == top_name]
    if removal:
        # ...and whatever the part: a text that describes a (non-default) option about as well as
        # it names a component to remove is that option
        opts = [c for c in cands if c[4] == "option" and c[2] != components[c[1]].default]
        rems = [c for c in cands if c[4] == "remove"]
        if opts and rems:
            bo = max(opts, key=lambda c: c[3])
            if bo[3] >= OPTION_MIN and bo[3] >= max(c[3] for c in rems) - 0.05:
                # ...even over the REMOVE of its own component: 'No LoRA updates; only the classifier is
                # trained' is tuning.none, which says more than tuning's generic removal
                same = [c for c in rems if c[1] == bo[1]]
                keep_rem = not same or same[0][3] > bo[3]
                cands = [c for c in cands if c[4] == "option" or (c[1] == bo[1] and keep_rem)]
    best_option = max((c for c in cands), key=lambda c: c[3], default=None)

    number = NUMBER.search(words_to_numbers(text))
    valued = _valued_option(text, m, scores) if number else None
    if valued is not None:
        return valued
    if number and (parse_number(text) is not None or any(components[n].numeric for _, n in scores)):
        strong = best_option is not None and best_option[3] >= 0.9 and best_option[4] == "option" \
            and (not components[best_option[1]].numeric
                 or (best_option[3] >= 0.99 and components[best_option[1]].numeric
                     not in components[best_option[1]].options[best_option[2]]))
        if not strong:
            choice = _numeric_choice(abl, text, m, scores)
            if choice is not None:
                return choice

    # a component whose options are sets of terms, named by the part: the set the text says
    for cname in dict.fromkeys(n for n in (scores[0][1], best_option and best_option[1]) if n):
        comp = components[cname]
        opt = _term_option(text, comp) if comp.terms and comp_score[cname] >= COMPONENT_MIN else None
        if opt is not None:
            return Choice(cname, opt, None, comp.overrides(opt), said, comp_score[cname], None)

    cands.sort(key=lambda c: c[0], reverse=True)
    # a part that clearly names one component: its options first
    top, top_name = scores[0]
    second = scores[1][0] if len(scores) > 1 else 0.0
    if top >= COMPONENT_MIN and top - second >= COMPONENT_FIRST:
        own = [c for c in cands if c[1] == top_name]
        if own and own[0][3] >= OPTION_MIN:
            others = [c for c in cands if c[1] != top_name and c[3] >= own[0][3] + OTHER_OPTION_LEAD]
            if not others:
                cands = own + [c for c in cands if c[1] != top_name]
    best = cands[0]
    if best[0] < JOINT_MIN or best[3] < OPTION_MIN or (comp_score[best[1]] < JOINT_COMPONENT_MIN
                                                          and best[3] < STRONG_OPTION):
        # nothing in the method is about the part, and no option is said outright: out of scope
        kind = "out_of_scope" if best[0] < OUT_OF_SCOPE or (top < OUT_OF_SCOPE and best[3] < STRONG_OPTION) \
            or (top < COMPONENT_MIN and best[3] < OPTION_MIN) \
            else "unresolved"
        near = ", ".join(f"{n}.{o} ({s:.2f})" for s, n, o, _, _ in _dedupe(components, cands)[:4])
        what = "is out of scope: no option covers it" if kind == "out_of_scope" else "matches no option"
        raise Unclear(f"replacement {text!r} for {abl.ablated_part!r} {what}; closest: {near}", kind)
    rivals = [c for c in _dedupe(components, cands)[1:] if _distinct(components, best[1:3], c[1:3])]
    gap = best[0] - rivals[0][0] if rivals else 1.0
    if gap < AMBIGUOUS_GAP:
        alts = ", ".join(f"{n}.{o} ({s:.2f})" for s, n, o, _, _ in [best] + rivals[:2])
        raise Unclear(f"replacement {text!r} is ambiguous: {alts}; name the option in backticks, "
                      f"e.g. `{best[2]}`", "ambiguous")
    _, name, opt, _, _ = best
    flag = None
    if gap < LOW_MARGIN:
        flag = f"low margin: {name}.{opt} ({best[0]:.2f}) vs {rivals[0][1]}.{rivals[0][2]} ({rivals[0][0]:.2f})"
    elif comp_score[name] < COMPONENT_MIN and best[3] < STRONG_OPTION:
        # chosen by the replacement's words alone: the part names no component, so say so
        flag = (f"weak match: {abl.ablated_part!r} matches no component well ({name} {comp_score[name]:.2f}); "
                f"{name}.{opt} chosen from the replacement text alone ({best[3]:.2f})")
    return Choice(name, opt, None, components[name].overrides(opt), said, best[0], flag,
                  [(round(c[0], 3), f"{c[1]}.{c[2]}") for c in rivals[:2]])


# a term said dropped: 'without the LM term', 'no MSE', 'regression term dropped', 'LM (removed)'
_TERM_DROPPED_BEFORE = re.compile(r"\b(?:without|no|drop(?:ping|s)?|remov(?:e|es|ing)|omit(?:s|ting)?|minus|except|"
                                  r"excluding|w/o|leav(?:e|ing) out|not)\W+"
                                  r"(?:(?:the|a|an|any|its|their|explicit)\W+){0,2}$")
_TERM_DROPPED_AFTER = re.compile(r"^\W*(?:(?:term|terms|loss|losses|part|component|objective|is|was|are|be|being|"
                                 r"gets|got|now)\W+){0,3}(?:dropped|removed|gone|off|disabled|left out|switched off|"
                                 r"turned off|zeroed|excluded|omitted|not anymore|not any more|no longer)\b")
_TERM_ONLY = re.compile(r"\b(?:only|alone|just|solely|becomes|exclusively)\b|\+")


def _term_option(text: str, comp) -> str | None:
    """The option of a term-set component (Component.terms) whose set of terms the text says:
    'MSE + ranking only' and 'without the LM term' are both SDTP's losses.no_lm. None when the text
    names no term, or names the terms kept without saying they are the only ones."""
    t = text.lower()
    said: dict[str, bool] = {}                  # option key -> dropped?
    named = 0                                   # phrases said kept ('saliency' alone is one, not two)
    for phrase, keys in comp.terms.items():
        pattern = r"(?<![\w-])" + r"[\s-]".join(map(re.escape, phrase.split())) + r"(?![\w-])"
        for hit in re.finditer(pattern, t):
            dropped = bool(_TERM_DROPPED_BEFORE.search(t[max(0, hit.start() - 40):hit.start()])
                           or _TERM_DROPPED_AFTER.search(t[hit.end():hit.end() + 30]))
            named += not dropped
            for k in keys:
                said[k] = said.get(k, False) or dropped
    if not said:
        return None
    every = {k for ks in comp.terms.values() for k in ks}
    dropped = {k for k, d in said.items() if d}
    kept_said = set(said) - dropped
    if dropped:
        kept = every - dropped
        if not kept_said <= kept:
            return None
    elif _TERM_ONLY.search(t) or named >= 2:
        kept = kept_said
    else:
        return None
    found = [o for o, ov in comp.options.items() if {k for k in every if ov.get(k)} == kept]
    # every term kept is the default: a text meant to change it said a term this reader missed
    return found[0] if len(found) == 1 and found[0] != comp.default else None


# a setting said to keep changing ('still allowed to grow', 'growth still on', 'ranks keep growing')
_STILL_CHANGES = re.compile(r"\b(?:still|keeps?|keeping|continu\w*)\b[^.;]{0,25}\b(?:grow\w*|growth|expand\w*|adaptiv\w*)|"
                            r"\b(?:growth|growing)\s+(?:is\s+)?(?:still\s+)?(?:on|enabled|allowed|kept|untouched)\b|"
                            r"\ballowed\s+to\s+grow\b", re.IGNORECASE)


def _valued_option(text: str, m: Matcher, scores) -> Choice | None:
    """'static rank 20 the whole time' is tuning.static_intermediate (a static rank of 20), not an
    initial rank of 20 that still grows: a number that is the setting of exactly one option of the
    part's component is that option when the rest of the text describes its family (the options
    that differ from it only in numbers: static_initial / _intermediate / _final) better than any
    other option. A bare 'r=32' says nothing more and stays the component's number."""
    top, name = scores[0]
    comp = m.components[name]
    if top < COMPONENT_MIN or _STILL_CHANGES.search(text):
        return None                      # 'initial rank 32, still allowed to grow' is a number, not a fixed rank

    def is_num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    # every number in the text ('fixed r=32 from step 0' has two): exactly one option must hold one
    said = [float(n) for n, pct in NUMBER.findall(words_to_numbers(text)) if not pct]
    holders = {o for o, ov in comp.options.items() for v in ov.values() if is_num(v) and v in said}
    if len(holders) != 1:
        return None
    (opt,) = holders
    shape = {k: v for k, v in comp.options[opt].items() if not is_num(v) and v is not None}
    family = [o for o, ov in comp.options.items() if all(ov.get(k) == v for k, v in shape.items())]
    rest = re.sub(r"\br\b\s*=?", " rank ", NUMBER.sub(" ", words_to_numbers(text)))
    if comp.numeric:                     # 'tuning: 32 fixed' (a config key read as the component) is its rank
        rest = re.sub(rf"\b{re.escape(name)}\b", comp.numeric, rest)
    if not set(tokens(rest)) - {"rank", "r"}:
        return None                      # 'rank 32', 'r=32': the number alone
    rated = {o: m.option_score(name, o, rest) for o in comp.options}
    inside = max(rated[o] for o in family)
    outside = max((v for o, v in rated.items() if o not in family), default=0.0)
    if inside < OPTION_MIN or inside - outside < LOW_MARGIN:
        return None
    return Choice(name, opt, None, comp.overrides(opt), text, W_COMPONENT * top + (1 - W_COMPONENT) * inside)


def _dedupe(components, cands):
    """Best candidate per distinct (component, option)."""
    seen, out = set(), []
    for c in cands:
        if (c[1], c[2]) in seen:
            continue
        seen.add((c[1], c[2]))
        out.append(c)
    return out
