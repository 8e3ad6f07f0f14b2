"""Numbers in plan text: values with their units and sense.

'80% of the layer parameters removed' -> sparsity 0.8, 'keep 40% of the prompt' -> keep ratio
0.4, 'r=4, r=8, r=16' -> three cells, 'two fifths' -> 40%, 'two GPUs' -> 2. A value outside its
component's range is a PlanValueError: never rescaled, never skipped. The resolver
(ablation/resolve.py) decides which component a value belongs to; this module only reads it.
"""
from __future__ import annotations

import re

from prunelab.ablation.text import component_names, norm, tokens
from prunelab.errors import PrunelabError

# (a full stop after a value ends a sentence: 'keep 0.5.' and 'retain 60%.' are values; '1.2.3' is not)
NUMBER = re.compile(r"(?<![\w.])(-?(?:\d+(?:\.\d+)?|\.\d+))\s*(%|percent\b|pct\b)?(?!\w|\.\d)", re.IGNORECASE)
NUMBER_WORDS = {"ratio", "rate", "sparsity", "percent", "pct", "value", "keep", "prune", "pruning", "target", "x",
                 "density", "level", "set", "to", "of", "at", "remain", "remaining", "param", "parameter",
                 "parameters", "fraction", "frac", "r", "rank", "step", "steps", "epoch", "epochs", "layer", "layers",
                 "the", "a", "an", "all", "only", "kept", "retain", "retained", "keeping", "removed", "remove",
                 "removing", "pruned", "drop", "dropped", "dropping", "discard", "discarded", "token", "tokens",
                 "prompt", "input", "weights", "weight", "model", "its", "their", "and", "or", "with", "use", "try",
                 "sweep", "over", "about", "approximately", "roughly", "around", "total", "overall", "budget",
                 "compression", "sequence", "context", "non", "embedding", "is", "are", "be", "in", "each", "per",
                 "setting", "run", "variant", "instead", "equal", "equals", "count", "number", "gpus", "devices",
                 # filler and verbs of keeping / dropping that planners wrap a value in ('what about only
                 # tossing 20% of the tokens', 'keep just 30% of the parameters')
                 "just", "what", "how", "if", "we", "us", "then", "so", "it", "this", "that", "from", "into",
                 "across", "down", "away", "out", "toss", "tossing", "tossed", "throw", "throwing", "thrown",
                 "cut", "cutting", "trim", "trimming", "trimmed", "shave", "shaving", "lose", "losing", "evict",
                 "evicting", "leave", "leaving", "left", "survive", "surviving", "preserve", "preserved",
                 "original", "size", "full", "whole", "entire", "share", "portion", "more", "less", "fewer",
                 "gpu", "accelerator", "accelerators", "cards", "stages", "pipeline", "split", "over", "sparse",
                 "way", "gone", "his", "her", "until", "compress", "compressed", "halve", "halved", "every",
                 "which", "where", "in", "survive", "survives", "remains", "kept", "non-embedding",
                 # 'shrink to 75% of the original size', 'r=32 const', 'rank 20 the whole time'
                 "shrink", "shrunk", "shrinking", "reduce", "reduced", "reducing", "by", "const", "constant",
                 "fixed", "static", "time", "throughout",
                 # config-style and sweep remarks around a rank: 'lora_rank: 32 fixed, grow: false',
                 # 'r=4 (still grows adaptively)', 'r_init=2'
                 "still", "grow", "grows", "growing", "growth", "adaptive", "adaptively", "unchanged", "on", "true",
                 "false", "lora", "init", "initial", "start", "starting", "for", "during", "training", "when",
                 # hedges and pronouns around a value ('keeping like a quarter of them')
                 "like", "them", "these", "those", "maybe", "say",
                 # 'one out of every four such parameters', 'just one device, no pipelining'
                 "such", "no", "pipelining", "take", "takes", "taking", "took", "taken",
                 # what is compressed: 'compress the encoder by a factor of 4'
                 "encoder", "decoder", "network", "backbone", "net",
                 # verbs of change and contractions around a value ('only the starting rank moves to 12',
                 # "they're keeping 80 percent of the prompt out there")
                 "move", "moves", "moved", "goes", "becomes", "change", "changes", "changed", "switch", "switched",
                 "raise", "raised", "lower", "lowered", "increase", "increased", "decrease", "decreased", "bump",
                 "bumped", "they", "re", "ll", "ve", "there", "here", "you", "i",
                 # 'leave 90 % of the weights in place', "brings it back to the paper's 60 %"
                 "place", "intact", "back", "paper", "s", "default", "apt", "sdtp", "usual", "bring", "brings", "brought", "he", "she"}
KEPT_WORDS = re.compile(r"\b(keep|keeps|kept|keeping|retain|retains|retained|retaining|remain|remains|remaining|survive|"
                        r"survives|surviving|stays|"
                         r"density|preserve|preserved|leave|leaving|left|original)\b", re.IGNORECASE)
REMOVED_WORDS = re.compile(r"\b(prune|pruned|pruning|remove|removed|removing|drop|dropped|dropping|discard|discarded|"
                            r"cut|cutting|sparsity|sparse|zeroed|eliminated?|toss|tossed|tossing|throw|thrown|throwing|"
                            r"trim|trimmed|trimming|shave|shaving|lose|losing|evict|evicting|evicted|gone|"
                            r"(?:take|takes|taking|took|taken)\s+out)\b", re.IGNORECASE)


_SHRINK_TO = re.compile(r"\b(?:shrink\w*|shrunk|reduc\w*|compress\w*|cut|down|trim\w*)\s+(?:\w+\s+){0,3}?to\s+$",
                        re.IGNORECASE)
_SHRINK_BY = re.compile(r"\b(?:shrink\w*|shrunk|reduc\w*|compress\w*|cut|trim\w*)\s+(?:\w+\s+){0,3}?by\s+$",
                        re.IGNORECASE)


class PlanValueError(PrunelabError):
    """A value in the plan that is wrong whatever it maps to (e.g. sparsity 1.5): never skipped."""


_LIST_SPLIT = re.compile(r"\s*(?:,|;|/|\bor\b|\band\b|\bvs\.?\b|\bversus\b)\s*", re.IGNORECASE)


def _two_sided(text: str, clauses: list[str]) -> bool:
    """Two percentages that add up to 100%, one said removed and one said kept, each in its own clause:
    one value from both sides ('remove 40%; retain the remaining 60%'), not a sweep ('20% and 80%')."""
    found = NUMBER.findall(text)
    if len(found) != 2 or not all(f[1] for f in found) or abs(sum(float(f[0]) for f in found) - 100) > 1e-6:
        return False
    senses = [(bool(KEPT_WORDS.search(c)), bool(REMOVED_WORDS.search(c))) for c in clauses if NUMBER.search(c)]
    return len(senses) == 2 and {senses[0], senses[1]} == {(True, False), (False, True)}


def expand_values(text: str) -> list[str]:
    """'r=4, r=8, r=16' -> ['r=4', 'r=8', 'r=16']; '20%, 50% and 80% sparsity' -> three texts.

    Only when every piece carries exactly one number (so 'first 2 layers vs last 2 layers'
    stays one text unless each piece is a value of its own)."""
    text = _SLASH_FRACTION.sub(lambda m: _pct(int(m.group(1)) / int(m.group(2))) + " of", text)   # not a list
    parts = [p for p in _LIST_SPLIT.split(text) if p.strip()]
    if len(parts) < 2 or len(NUMBER.findall(text)) != len(parts):
        return [text]
    if not all(len(NUMBER.findall(p)) == 1 for p in parts):
        return [text]
    if len(parts) == 2 and _two_sided(text, parts):
        return [text]                    # one share from both sides: 'remove 30%; keep the remaining 70%'
    if any(re.search(r"[a-z]", NUMBER.sub(" ", p), re.IGNORECASE) and parse_number(p) is None for p in parts):
        return [text]
    # a shared unit or noun at the end ('20, 50 and 80 percent sparsity') goes to every piece
    tail = NUMBER.split(parts[-1])[-1].strip()
    out = []
    for p in parts:
        out.append(p if NUMBER.split(p)[-1].strip() or not tail else f"{p} {tail}")
    return out


_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
# every cardinal word up to ninety-nine ('nineteen out of every twenty', 'eighty percent', 'thirty-two')
_CARDINAL = {**{w: i for i, w in enumerate(_UNITS)}, **_TENS,
             **{f"{t}-{u}": v + i for t, v in _TENS.items() for i, u in enumerate(_UNITS[1:10], 1)},
             "a": 1, "an": 1}
_CARDINAL_RE = "|".join(sorted((k for k in _CARDINAL if len(k) > 2), key=len, reverse=True))
_DENOMINATOR = {"half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4, "fourth": 4,
                "fourths": 4, "fifth": 5, "fifths": 5, "tenth": 10, "tenths": 10}
_WORD_FRACTION = re.compile(r"\b(" + _CARDINAL_RE + r"|an|a)[\s-]+(" + "|".join(_DENOMINATOR) + r")\b(\s+of)?",
                            re.IGNORECASE)
_BARE_HALF = re.compile(r"\b(?:half|halve[ds]?|halving)\b(\s+of)?", re.IGNORECASE)
# 'one token in every four', 'keep 8 in 10 tokens', 'three out of ten', 'retain 9 of every 10'
_ONE_IN = re.compile(r"\b(" + _CARDINAL_RE + r"|\d+)\s+(?:\w+\s+)?(?:in|out\s+of|of(?=\s+every\b))\s+"
                     r"(?:every\s+)?(" + _CARDINAL_RE + r"|\d+)\b", re.IGNORECASE)
# 'eighty percent', 'thirty-five per cent'
_PCT_WORD = re.compile(r"\b(" + _CARDINAL_RE + r")[\s-]*(?:percent|per\s+cent|%)", re.IGNORECASE)
# a count only where a unit says it is one ('two GPUs', 'eight-way split'): 'prune at one layer' stays words
# ('two pipeline stages': one word may come between; 'one stage each' is a remark, not a count)
_COUNT = re.compile(r"\b(" + _CARDINAL_RE + r"|a\s+pair\s+of|pair\s+of)(?=[\s-]+(?:pipeline[\s-]+|gpu[\s-]+)?"
                    r"(?:way|gpus?|devices?|accelerators?|cards?|stages?|nodes?)\b(?!\s+each\b))", re.IGNORECASE)


# 'rank sixteen' is rank 16 ('rank one layer' stays words: only numbers a rank takes)
_RANK_WORD = re.compile(r"\b(rank\s+|r\s*=\s*)(two|four|eight|twelve|sixteen|twenty|thirty-two|sixty-four)\b",
                        re.IGNORECASE)
_SLASH_FRACTION = re.compile(r"(?<![\w=./])([1-9])\s*/\s*([2-9]|10)\s+of\b")    # '1/5 of the weights'


def _pct(x: float) -> str:
    return f"{100 * x:.4g}%"


# a compression factor is the share kept: 'four-x compression', 'a 5:1 compression of the prompt',
# '3x fewer tokens', 'compressed by a factor of 4', 'compression ratio of 4' -> 25% / 20% / 33.33% kept
_FACTOR_NUM = r"(" + _CARDINAL_RE + r"|\d+(?:\.\d+)?)"
_FACTOR = re.compile(
    _FACTOR_NUM + r"\s*(?:-\s*)?(?:x|\u00d7|fold|times|:\s*1|to\s*1|-to-1)\s+(?:\w+\s+)?"
    r"(?:compression|compressed|smaller|reduction|shorter|fewer|sparser|less)\b"
    r"|\b(?P<verb>(?:compress\w*|reduc\w*|shrink\w*|shrunk|cut)(?:\s+\w+){0,3}?)\s+(?:by\s+)?"
    r"(?:a\s+factor\s+of\s+" + _FACTOR_NUM + r"|" + _FACTOR_NUM + r"\s*(?:x|\u00d7|-?fold)(?![\w%]))"
    r"|\bcompression\s+(?:ratio|factor|rate)\s+(?:of\s+)?" + _FACTOR_NUM + r"(?:\s*(?:x|\u00d7|:\s*1))?(?!\s*%)",
    re.IGNORECASE)


def _factor_kept(m: re.Match) -> str:
    raw = next(g for k, g in enumerate(m.groups()) if g and k != m.re.groupindex["verb"] - 1)
    n = _CARDINAL.get(raw.lower()) or float(raw)
    if n <= 1:
        return m.group(0)              # 'compression ratio 0.3' is already a share
    if m.group("verb"):                # 'compress the prompt 4x' -> 'compress the prompt to 25%'
        return f"{m.group('verb')} to {_pct(1 / n)}"
    return f"{_pct(1 / n)} kept"


def words_to_numbers(text: str) -> str:
    """Number words where they are a value: 'prune half the weights' -> 'prune 50% the weights', 'two
    fifths of the tokens' -> '40% of the tokens', 'one token in every four' -> '25%', 'two GPUs' ->
    '2 GPUs'."""
    def frac(m):
        return _pct(_CARDINAL[m.group(1).lower()] / _DENOMINATOR[m.group(2).lower()]) + (" of" if m.group(3) else "")

    def one_in(m):
        k, d = (_CARDINAL.get(g.lower()) or float(g) for g in m.group(1, 2))
        # 'layer 4 in 12' is a place, not a share
        if re.search(r"\b(?:layers?|stages?|steps?|epochs?|ranks?|blocks?)\s*$", m.string[:m.start()], re.I):
            return m.group(0)
        return _pct(k / d) if 0 < k <= d else m.group(0)
    text = _SLASH_FRACTION.sub(lambda m: _pct(int(m.group(1)) / int(m.group(2))) + " of", text)
    text = _FACTOR.sub(_factor_kept, text)
    text = _PCT_WORD.sub(lambda m: f"{_CARDINAL[m.group(1).lower()]}%", text)
    text = _WORD_FRACTION.sub(frac, text)
    text = _ONE_IN.sub(one_in, text)
    text = _BARE_HALF.sub(lambda m: "50%" + (" of" if m.group(1) else ""), text)
    text = _RANK_WORD.sub(lambda m: m.group(1) + str(_CARDINAL[m.group(2).lower()]), text)
    return _COUNT.sub(lambda m: "2" if "pair" in m.group(1).lower() else str(_CARDINAL[m.group(1).lower()]), text)


# a number after these is a moment of training, not a setting: 'fixed from step 0', 'after epoch 2'
TIME_NUMBER = re.compile(r"\b(?:step|steps|epoch|epochs|iteration|iter)\s+(?:number\s+)?(-?\d+)\b", re.IGNORECASE)


# ...and one after 'layer' / 'stage' is a place: 'at layer 4 only' names where, not how much
_PLACE_NUMBER = re.compile(r"\b(?:layer|stage|block)\s+(?:number\s+|no\.\s*)?(\d+)\b(?!\s*%)", re.IGNORECASE)


# ...and so is a share of the run: '0% of training', 'the final 25% of steps'
_TIME_SHARE = re.compile(r"-?\d+(?:\.\d+)?\s*(?:%|percent\b)\s+of\s+(?:the\s+)?(?:\w+\s+)?(?:training|steps|run|"
                         r"iterations|epochs)\b", re.IGNORECASE)


BRACKETS = re.compile(r"\([^()]*\)")
_CLAUSE = re.compile(r"[;,]|\.(?!\d)")     # where a clause ends (not inside '0.5')


def parse_number(text: str, comp=None) -> tuple[float, bool] | None:
    """'0.2' -> (0.2, False); '50%' -> (0.5, True); 'keep ratio 0.5' -> (0.5, False); 'prune only L4' -> None."""
    text = TIME_NUMBER.sub(lambda m: m.group(0)[:m.start(1) - m.start(0)] + "when", words_to_numbers(text))
    text = _PLACE_NUMBER.sub(lambda m: m.group(0)[:m.start(1) - m.start(0)] + "where", text)
    text = _TIME_SHARE.sub("when", text)
    found = NUMBER.findall(text)
    if len(found) == 2 and _two_sided(text, _CLAUSE.split(text)):
        # one value said from both sides ('remove 40% of the parameters; retain the remaining 60%'): the
        # first, in its own clause
        text = _CLAUSE.split(text[NUMBER.search(text).start():])[0]
        found = NUMBER.findall(text)
    bare = BRACKETS.sub(" ", text)         # a remark in brackets is not part of the value
    if len(found) != 1:
        # ...nor a second value: '1 (whole model on one GPU)'
        if len(found) < 2 or len(NUMBER.findall(bare)) != 1:
            return None
        text, found = bare, NUMBER.findall(bare)
    num, pct = found[0]
    rest = NUMBER.sub(" ", text)
    allowed = set(NUMBER_WORDS)
    if comp is not None:
        for n in component_names(comp) + [comp.numeric or ""]:
            allowed.update(tokens(n))
            allowed.update(norm(n).split())
    def plain(words: str) -> bool:
        rest_tokens = [t for t in norm(words).replace("=", " ").split() if t not in ("%", ".", "~", "x")]
        return not any(t not in allowed and t.rstrip("s") not in allowed and not any(
            t.startswith(a) for a in allowed if len(a) >= 4) for t in rest_tokens)
    # ...nor words beside it: 'r=64 (the cap)'
    if not plain(rest) and not (NUMBER.search(bare) and plain(NUMBER.sub(" ", bare))):
        # a long sentence around the value ('an aggressive setting in which only 10% of the weights
        # survive'): the words next to the number decide (3 before it, 6 after)
        m = NUMBER.search(text)
        # ...within its own clause: 'In the second configuration, only 10% of them survive'
        before = re.split(r"[,;:\u2014\u2013]|\s-\s|[.!?](?=\s)", text[:m.start()])[-1].split()[-3:]
        # (after it only a comma, a dash or a sentence's end ends it: '0; optimizer only sees the head'
        # still qualifies it, 'only 1 in 10 weights survives. lol.' does not go on)
        after = re.split(r"[,\u2014\u2013]|\s-\s|[.!?](?=\s|$)", text[m.end():])[0].split()[:6]
        if len(text.split()) <= len(before) + len(after) + 1 or not plain(" ".join(before + after)):
            return None
    value = float(num)
    return (value / 100.0, True) if pct else (value, False)


def component_sense(comp) -> str | None:
    """'kept' for a keep ratio, 'removed' for a sparsity; None for other numbers."""
    key = norm((comp.numeric or "") + " " + comp.name)
    if re.search(r"\b(keep|density|retain)", key):
        return "kept"
    if re.search(r"\b(sparsity|prune|pruning|drop|compression)", key):
        return "removed"
    return None


def value_fits(comp, text: str) -> bool:
    parsed = parse_number(text, comp)
    if parsed is None:
        return False
    try:
        numeric_value(text, comp, parsed)
        return True
    except PlanValueError:
        return False


def key_words(text: str) -> str:
    """A config key's words as words: 'drop_frac=0.75' -> 'drop frac=0.75' (so 'drop' is found)."""
    return re.sub(r"(?<=[A-Za-z])_(?=[A-Za-z])", " ", text)


def text_sense(text: str) -> tuple[bool, bool]:
    """(kept, removed): what the text says its value measures. When it says both ('keep just 30% of
    the parameters and cut the rest'), the verb right before the value decides (then the one right
    after it: '30% of the weights removed')."""
    # a config key says it too ('--target_density 0.35', 'drop_frac=.2'): its words count
    text = _FACTOR.sub(_factor_kept, key_words(text))     # '4x compression' says what is kept
    kept, removed = bool(KEPT_WORDS.search(text)), bool(REMOVED_WORDS.search(text))
    m = NUMBER.search(words_to_numbers(text))
    if m is not None:
        # 'shrink to 75%' is what is left, 'shrink by 25%' what goes
        lead = words_to_numbers(text)[:m.start()]
        shrink = _SHRINK_TO.search(lead)
        # ...unless what shrinks is the setting itself: 'bring the target down to 40%' is the new target
        if shrink and not re.search(r"\b(?:target|ratio|rate|sparsity|density|level|setting|amount)\b", lead, re.I):
            return True, False
        if _SHRINK_BY.search(lead):
            return False, True
    if not (kept and removed) or m is None:
        return kept, removed
    t = words_to_numbers(text)
    before = [(w.end(), "kept") for w in KEPT_WORDS.finditer(t[:m.start()])] + \
             [(w.end(), "removed") for w in REMOVED_WORDS.finditer(t[:m.start()])]
    if before:
        return (True, False) if max(before)[1] == "kept" else (False, True)
    after = [(w.start(), "kept") for w in KEPT_WORDS.finditer(t, m.end())] + \
            [(w.start(), "removed") for w in REMOVED_WORDS.finditer(t, m.end())]
    first = min(after)[1]
    return (True, False) if first == "kept" else (False, True)


def numeric_value(text: str, comp, parsed: tuple[float, bool]) -> float:
    """The value for the component, with the text's sense ('keep 40%' for a sparsity -> 0.6)."""
    value, was_pct = parsed
    sense = component_sense(comp)
    lo, hi = comp.numeric_range or (float("-inf"), float("inf"))
    if sense and hi <= 1.0 and 0.0 <= value <= 1.0:
        said_kept, said_removed = text_sense(text)
        if sense == "removed" and said_kept and not said_removed:
            value = round(1.0 - value, 6)
        elif sense == "kept" and said_removed and not said_kept and not re.search(r"\bratio\b", text, re.I):
            value = round(1.0 - value, 6)
    if not lo <= value <= hi:
        what = "a fraction" if hi <= 1.0 else "a value"
        hint = " (write a fraction like 0.5, or a percentage like 50%)" if hi <= 1.0 and not was_pct else ""
        raise PlanValueError(f"value {text!r} for {comp.name} is {value:g}, out of range [{lo:g}, {hi:g}]: "
                             f"{comp.name} is {what}{hint}; values are never rescaled")
    return value
