"""Techniques no registered component implements, named by the words planners use for them.

Sentence vectors place 'swap RoPE for ALiBi biases' near rope_fix.off and 'prefix tuning' near
the tuning options: the text is about a component, but asks for something the component cannot
be set to. Similarity alone then reports such an item as merely unclear, or worse picks the
nearest option. A plan item whose *new* setting (what comes before 'instead of' / 'rather than')
names one of these techniques is out of scope, unless the method's own options use the same
words (a method with an unstructured-pruning option would claim that phrase itself).

The list names families of techniques, not phrases from any benchmark set: it is what a
reviewer would recognise as "not something APT or SDTP can be switched to".
"""
from __future__ import annotations

import re

# (what to call it in the message, pattern over the raw plan text)
FOREIGN = [
    ("quantization", r"\bquanti[sz]\w*|\bint[48]\b|\b[48]-?bits?\b|\bfp8\b|\bgptq\b|\bawq\b"),
    ("another numeric precision (mixed precision, bf16, fp16)", r"\bmixed[- ]precision\b|\bbf16\b|\bfp(?:16|32)\b|"
                                                              r"\bhalf[- ]precision\b|\bfloat16\b"),
    ("ALiBi position biases", r"\balibi\b"),
    ("RoPE scaling / position interpolation", r"\bntk\b|rope[_ ]scaling|\byarn\b|position interpolation"),
    ("prefix or prompt tuning", r"\bprefix[- ]?tun\w*|\bprompt[- ]tun\w*|\bp-tuning\b|virtual tokens"),
    ("bottleneck adapters", r"\bhoulsby\b|\bbottleneck adapters?\b|\badapterfusion\b|\(?ia\)?(?:3|³)\b"),
    ("unstructured pruning", r"\bunstructured\b|\bindividual weights\b|\bweight-level\b|\belement-?wise pruning\b"),
    ("KV-cache eviction during decoding", r"\bevict\w*|\bkv[- ]cache (?:compression|eviction|pruning)\b"),
    ("vocabulary / embedding pruning", r"\bvocabulary pruning\b|\bembedding (?:table|matrix)\b|\bprune\w* (?:the )?"
                                       r"(?:rows of the )?(?:token )?embeddings?\b"),
    ("a recurrent or attention-based token scorer", r"\blstm\b|\bgru\b|\brecurrent\b|\btransformer encoder\b|"
                                                   r"\bself-attention (?:predictor|scorer)\b"),
    ("another attribution method", r"\bintegrated gradients?\b|\bshap\b|\blime\b|\battention rollout\b"),
    ("learned gates (L0 / hard-concrete masks)", r"\blearned gates?\b|\bl0\b|\bhard[- ]concrete\b"),
    ("another tokenizer", r"\btokeni[sz]er\b"),
    ("a training hyperparameter (learning rate, batch size, optimizer, warm-up, dropout, weight decay)",
     r"\blearning[- ]rate\b|\bbatch[- ]size\b|\boptimi[sz]er\b|\badamw?\b|\bsgd\b|\bwarm-?up\b|\bdropout\b|"
     r"\bweight decay\b"),
    ("another training dataset", r"\bc4\b|\bthe pile\b|\bredpajama\b|\bopenwebtext\b|\bslimpajama\b|\bfineweb\b|"
                                 r"\banother (?:training )?(?:dataset|corpus)\b|\bdifferent (?:training )?(?:data|dataset|corpus)\b"),
    ("the token scorer's own size", r"\b(?:hidden (?:size|width|dim\w*)|width|depth|capacity|number of layers)\b"
                                    r"[^.]{0,40}\b(?:predictor|scorer)\b|\b(?:predictor|scorer)\b[^.]{0,20}"
                                    r"\b(?:hidden (?:size|width)|width|depth|capacity)\b"),
]
_COMPILED = [(name, re.compile(rx, re.IGNORECASE)) for name, rx in FOREIGN]

# what follows these is the setting being replaced, not the new one
_OLD_SIDE = re.compile(r"\b(?:instead of|rather than|in place of|replacing|versus|vs\.?|compared (?:to|with))\b", re.IGNORECASE)


def new_side(text: str) -> str:
    """'integrated gradients instead of plain gradient saliency' -> 'integrated gradients'."""
    m = _OLD_SIDE.search(text)
    return text[:m.start()] if m and m.start() > 0 else text


# settings a text often mentions in passing ('the optimizer only sees the head'): they make an item
# out of scope only when nothing else in it was matched confidently; the rest are the point of any
# text that names them
INCIDENTAL = {"a training hyperparameter (learning rate, batch size, optimizer, warm-up, dropout, weight decay)",
              "another tokenizer"}


def foreign_technique(text: str, own_texts: list[str] = ()) -> str | None:
    """The name of a technique the text's new setting asks for that no option provides, or None.
    own_texts: the method's option names and aliases; a pattern they match is in scope."""
    if not text or "`" in text:          # a backticked name pins a registered option
        return None
    said = new_side(text)
    for name, rx in _COMPILED:
        if rx.search(said) and not any(rx.search(t) for t in own_texts):
            return name
    return None


def names_technique(technique: str, texts: list[str]) -> bool:
    """Whether any of texts (a chosen option's names and descriptions) names the technique itself."""
    rx = dict(_COMPILED)[technique]
    return any(rx.search(t) for t in texts)
