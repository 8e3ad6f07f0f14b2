"""Text helpers shared by the plan parsers and the resolver.

Plans arrive as LLM output rendered to HTML-ish markdown: style blocks, div wrappers,
mojibake emoji (UTF-8 read as cp1252), bold markers. These helpers turn that into plain
lines, and turn free text into comparable token sets.
"""
from __future__ import annotations

import difflib
import html
import re
import unicodedata

_BLOCK_TAGS = re.compile(r"<(style|script)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"</?[A-Za-z][\w:-]*(\s[^<>]*)?/?>")
_CP1252_HIGH = ("\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc"
                "\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122")
_MOJIBAKE = re.compile(f"[\u00c2-\u00f4][{_CP1252_HIGH}]+")


def fix_mojibake(line: str) -> str:
    """'ðŸ§\xa0 Reasoning' -> the emoji it was meant to be; runs that do not decode stay as they are."""
    def fix(m: re.Match) -> str:
        run = m.group(0)
        try:
            return run.encode("cp1252").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return run
    return _MOJIBAKE.sub(fix, line)


def strip_html(text: str) -> str:
    """Drop <style>/<script> blocks, comments and tags (keeping their text); unescape entities."""
    text = _BLOCK_TAGS.sub("\n", text)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    text = _TAG.sub("", text)
    return html.unescape(text)


def clean_lines(text: str) -> list[str]:
    """Plain lines of a plan: HTML removed, mojibake fixed, line count kept (for errors)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    # strip_html may remove whole multi-line blocks; keep line numbers stable per line instead
    out = []
    in_block = None
    for raw in text.split("\n"):
        line = raw
        if in_block:
            end = re.search(rf"</{in_block}\s*>", line, re.IGNORECASE)
            if not end:
                out.append("")
                continue
            line = line[end.end():]
            in_block = None
        start = re.search(r"<(style|script)\b[^>]*>", line, re.IGNORECASE)
        if start and not re.search(rf"</{start.group(1)}\s*>", line[start.end():], re.IGNORECASE):
            in_block = start.group(1).lower()
            line = line[:start.start()]
        line = strip_html(line)
        out.append(fix_mojibake(line))
    return out


def strip_symbols(text: str) -> str:
    """Remove emoji and other pictographs, keep letters, digits, punctuation, CJK."""
    keep = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in ("So", "Cs", "Co", "Cn") or ch in "\u200d\ufe0f":
            continue
        keep.append(ch)
    return re.sub(r"\s+", " ", "".join(keep)).strip()


def strip_markup(text: str, code: bool = False) -> str:
    """Markdown emphasis off: '**Action**' -> 'Action' (backticks too when code=True; they pin names)."""
    text = re.sub(r"(\*\*|__|`)" if code else r"(\*\*|__)", "", text)
    return text.strip()


def slug(text: str, max_len: int = 48) -> str:
    s = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    s = re.sub(r"[^a-zA-Z0-9]+", "-", s).strip("-").lower()
    return (s[:max_len].rstrip("-")) or "x"


# ----------------------------------------------------------------------------- matching

STOPWORDS = frozenset(
    "a an the of for in on to with and or by at from into during via as is are be its it this that "
    "based using use mechanism mechanisms method function approach module component strategy apt sdtp".split())

_PREPOSITIONS = (" in ", " of ", " for ", " during ", " with ", " from ", " throughout ", " at ")


def norm(text: str) -> str:
    """Lower-case, '-'/'_'/'/' to spaces, punctuation off, single spaces."""
    t = unicodedata.normalize("NFKC", str(text)).lower()
    t = re.sub(r"[`*_\-/]+", " ", t)
    t = re.sub(r"[^\w\s.%+=]", " ", t)
    return re.sub(r"\s+", " ", t).strip()


def stem(word: str) -> str:
    """A tiny suffix stripper: pruning/prune, scores/score, salience/saliency stay close."""
    w = word
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    for suf, rep in (("ization", "ize"), ("ation", ""), ("ing", ""), ("ed", "")):
        if len(w) > len(suf) + 3 and w.endswith(suf):
            w = w[: -len(suf)] + rep
            break
    if w.endswith("e") and len(w) > 4:
        w = w[:-1]
    return w


def tokens(text: str) -> list[str]:
    return [stem(t) for t in norm(text).replace("+", " ").replace("=", " ").split()
            if t not in STOPWORDS and t not in (".", "%")]


def _token_match(a: str, b: str) -> bool:
    if a == b:
        return True
    if min(len(a), len(b)) >= 5:
        return difflib.SequenceMatcher(None, a, b).ratio() >= 0.8
    return False


def similarity(text: str, name: str) -> float:
    """How well free text matches a name/alias, 0..1.

    Token overlap (how much of the alias the text covers, and the Dice coefficient), with
    fuzzy token equality for spelling variants, or the character ratio of the normalised
    strings (discounted below 0.75), whichever is higher.
    """
    nt, nn = norm(text), norm(name)
    if not nt or not nn:
        return 0.0
    if nt == nn:
        return 1.0
    a, b = tokens(text), tokens(name)
    tok = 0.0
    if a and b:
        used: set[int] = set()
        inter = 0
        for tb in b:
            for i, ta in enumerate(a):
                if i not in used and _token_match(ta, tb):
                    used.add(i)
                    inter += 1
                    break
        cover = inter / len(b)
        dice = 2 * inter / (len(a) + len(b))
        tok = 0.6 * cover + 0.4 * dice
    seq = difflib.SequenceMatcher(None, nt, nn).ratio()
    # the character ratio only vouches for near-identical strings ('selfdistillation'); lower
    # values mostly measure shared letters, so they count half
    return max(tok, seq * 0.95 if seq >= 0.75 else seq * 0.5)


def head_phrase(text: str) -> str:
    """'Parameter sharing in self-distillation' -> 'Parameter sharing' (the part named first)."""
    t = " " + norm(re.sub(r"\(.*?\)", " ", text)) + " "
    cut = min((t.find(p) for p in _PREPOSITIONS if t.find(p) > 0), default=-1)
    return t[:cut].strip() if cut > 0 else t.strip()


def phrase_similarity(text: str, name: str) -> float:
    """similarity() that weighs the head phrase of the text ('X in Y' is about X)."""
    full = similarity(text, name)
    head = head_phrase(text)
    if not head or head == norm(text):
        return full
    return max(full * 0.85, 0.7 * full + 0.3 * similarity(head, name))


def split_list(text: str) -> list[str]:
    """'a, b (x, y); c' -> ['a', 'b (x, y)', 'c']: split on , and ; outside brackets."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        if ch in ",;" and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [s.strip() for s in out if s.strip()]


# ----------------------------------------------------------------------------- spelling and abbreviations
#
# The sentence model reads a misspelt word as WordPiece fragments ('protecton' -> 'protect', '##on')
# and an unknown abbreviation as letters, so 'protecton of first/last tokns' and 'KD' used to come out
# as out of scope. Both fixes look only at words the method's own texts do not use.

_WORD = re.compile(r"[A-Za-z][A-Za-z']*")
# abbreviations planners write for things the components describe in words; expanded only when
# the method's names and descriptions do not use the abbreviation themselves
ABBREVIATIONS = {
    "KD": "knowledge distillation", "FT": "fine-tuning", "LR": "learning rate", "FFN": "feed-forward neurons",
    "MHA": "attention heads", "LM": "language modelling", "MSE": "mean squared error", "KL": "KL divergence", "KR": "keep ratio",
    "KV": "key-value", "RoPE": "rotary position embedding", "PE": "position embedding", "BOS": "first token",
    "EOS": "last token", "PEFT": "parameter-efficient fine-tuning", "CE": "cross-entropy",
}


# shorthand written in lower case (notes, terse plans): replaced outright, not glossed
SHORTHAND = {"attn": "attention", "toks": "tokens", "tok": "token", "seq": "sequence", "seqs": "sequences",
             "ctx": "context", "params": "parameters", "param": "parameter", "clf": "classifier", "thr": "threshold",
             "sched": "schedule", "emb": "embedding", "embs": "embeddings", "approx": "approximately",
             "prob": "probability", "probs": "probabilities", "hparams": "hyperparameters", "w": "weights",
             "grad": "gradient", "grads": "gradients", "distill": "distillation", "rnd": "random", "rand": "random",
             "sal": "salience", "mag": "magnitude", "unif": "uniform", "kd": "knowledge distillation",
             "prec": "precision", "cfg": "config", "init": "initialisation", "pos": "position",
             "act": "activation", "acts": "activations", "lyr": "layer", "lyrs": "layers", "fwd": "forward",
             "bwd": "backward", "obj": "objective", "dens": "density", "tgt": "target", "dflt": "default",
             "def": "default", "kr": "keep ratio", "fn": "function",
             # plain language for a prompt's tokens ('keeps fewer words when reading long prompts')
             "word": "token", "words": "tokens"}


def vocabulary(texts) -> set[str]:
    """Lower-case words of the given texts (a method's component and option texts)."""
    return {w.lower() for t in texts for w in _WORD.findall(str(t))}


def expand_abbreviations(text: str, vocab: set[str]) -> str:
    """'no KD' -> 'no knowledge distillation (KD)' when the method's texts never say 'KD'."""
    def sub(m: re.Match) -> str:
        w = m.group(0)
        if w.islower() and w in SHORTHAND and w not in vocab and len(w) > 1:
            return SHORTHAND[w]
        full = ABBREVIATIONS.get(w)
        if full is None or w.lower() in vocab or full.lower() == w.lower():
            return w
        return f"{full} ({w})"
    return re.sub(r"\b[A-Za-z][A-Za-z]*\b", sub, text)


def fix_spelling(text: str, vocab: set[str], known: frozenset | set = frozenset(), cutoff: float = 0.85) -> str:
    """Replace each word of 4+ letters that neither the method's texts (vocab) nor the sentence
    model's vocabulary (known: words it has a whole token for) contain by the closest vocab word,
    when one is close enough ('protecton' -> 'protection', 'tokns' -> 'tokens'). Known words are
    never touched, so 'learning' does not become 'learned'. A typo rarely hits the first letter or
    changes the length by more than two, so candidates must keep both ('Adafactor' stays)."""
    pool = sorted(w for w in vocab if len(w) >= 3)

    def sub(m: re.Match) -> str:
        w = m.group(0)
        low = w.lower()
        if len(low) < 4 or low in vocab or low in known or low.rstrip("s") in known or low.rstrip("s") in vocab:
            return w
        near = [v for v in pool if v[0] == low[0] and abs(len(v) - len(low)) <= 2]
        best = difflib.get_close_matches(low, near, n=1, cutoff=cutoff)
        if not best:
            # two neighbouring letters swapped ('hlaf', 'rnaking') score low on similarity but are
            # the commonest typing slip: one swap away from exactly one vocab word is that word
            swaps = {low[:i] + low[i + 1] + low[i] + low[i + 2:] for i in range(1, len(low) - 1)}
            hits = [v for v in near if v in swaps]
            best = hits if len(hits) == 1 else []
        return best[0] if best else w
    return _WORD.sub(sub, text)


def component_names(comp) -> list[str]:
    return [comp.name, comp.name.replace("_", " ")] + list(comp.aliases)
