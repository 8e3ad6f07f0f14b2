"""Resolution benchmark: how often free-text plan items map to the right component/option.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/resolution.py [--items FILE] [--no-write]

Items (src/prunelab/ablation/labelled/items.jsonl, written for this benchmark in wordings unlike the
seed plans: terse, verbose, reviewer-like, with typos) each carry the expected
'component.option', 'component=value' or OUT_OF_SCOPE for every replacement (one for a
REMOVE), and a split: 'dev' (thresholds in ablation/resolve.py were tuned on it) or
'heldout' (never used for tuning). Each expected cell is counted as

  right       mapped to the expected answer (an out-of-scope item reported as out of scope)
  flagged     mapped wrongly but flagged low-margin (shown by plan check and the report)
  wrong       mapped wrongly and not flagged: a silent wrong mapping, the number that must be 0
  unresolved  reported unresolved/ambiguous (the user is asked; no run is made)

Accuracy = right / cells, per split and overall. Writes benchmarks/results/resolution.json
and .md with the command, date, machine and git SHA (a dirty tree is recorded as such).

Later held-out sets are reported on their own (not part of 'all', which stays the items.jsonl
splits so earlier results compare); EXTRA_SETS says how each was written and what was changed
after it was first measured.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, provenance, write

LABELLED = ROOT / "src" / "prunelab" / "ablation" / "labelled"   # also the second opinion's training data

ITEMS = LABELLED / "items.jsonl"
# later held-out sets: (split, file, how it was written and what happened after its first measurement)
EXTRA_SETS = [
    ("heldout2", LABELLED / "heldout2.jsonl",
     "written fresh in round three, after the resolver's rules and aliases were final (terse, verbose, "
     "reviewer-like and misspelt wordings; APT and SDTP; some out of scope). Its first measurement was 30 of 33 "
     "right (90.9%). Round four (misspelt words and unknown abbreviations, ablation/text.py fix_spelling and "
     "expand_abbreviations) was written after reading two of its misses (h2-000 'KD', h2-017 'protecton of "
     "first/last tokns'); the rules are general, not item strings, but read this set's number as optimistic now."),
    ("heldout3", LABELLED / "heldout3.jsonl",
     "written after round four by a separate helper that saw only a catalogue of what each component and "
     "option means (not the resolver, its aliases or the other item sets): terse, verbose, reviewer-like, "
     "informal and misspelt wordings, numbers in several phrasings, replacements that start with 'remove'/'no' "
     "but name another option, out-of-scope items. Its first measurement (at 02ad1a5) was 50 of 70 right "
     "(71.4%), 2 flagged, 5 silently wrong (2 of them this script's scoring: 'pipeline_devices.2' is "
     "'pipeline_devices=2'), 13 unresolved. Round five was written after reading those misses: filler words "
     "around values, 'density' for sparsity, a REMOVE of a sub-part is the option that leaves it out, an ADD of "
     "an off-by-default component is its enabling option, one unclear replacement no longer costs the "
     "ablation's other cells, question framing and purpose clauses set aside, descriptions for the selector "
     "options. The rules are general, but read this set's number now as optimistic."),
    ("heldout4", LABELLED / "heldout4.jsonl",
     "written after round five by a second helper that saw only the component catalogue (not the resolver, "
     "its aliases or the other sets), as five kinds of author: a formal LM planner, a terse engineer, a "
     "sceptical reviewer, a non-native speaker, a typist making typos. Its first measurement (at 23316c7) was "
     "57 of 75 right (76.0%), 6 flagged, 3 silently wrong, 9 unresolved. Round six was written after reading "
     "those misses: number words where a unit or fraction makes them values, lower-case shorthand (attn, toks), "
     "'percent' in the spelling vocabulary, description clauses matched one by one, only a negated alias can "
     "read as 'no <part>', better teacher and protected-token wording. Read this set's number now as optimistic."),
    ("heldout5", LABELLED / "heldout5.jsonl",
     "written by a third helper that saw only the component catalogue (not the resolver, its aliases or the "
     "other sets), as five other kinds of author: lab-notebook fragments, a paper's ablation-table row labels, "
     "a programme-committee reviewer, a planner wording hypotheses, an engineer writing config changes. Its "
     "first measurement (at 6c6fd2a, after round six) was 63 of 74 right (85.1%), 4 flagged, 1 silently wrong, "
     "6 unresolved. Round seven was written after reading those misses ('No X: Y' reads Y as the replacement, "
     "slash fractions, values inside long sentences, negated words left out of an option's lexical match). "
     "Read this set's number now as optimistic."),
    ("heldout6", LABELLED / "heldout6.jsonl",
     "written by a fourth helper that saw only the component catalogue (not the resolver, its aliases or the "
     "other sets): an LM planner restating the mechanism in long ablated parts, a cost-minded practitioner, a "
     "statistician-reviewer, a translator's unusual word choices, terse ticket titles. Its first measurement (at "
     "fe84c48, after round seven) was 63 of 72 right (87.5%), 2 flagged, 1 silently wrong, 6 unresolved. Round "
     "eight was written after reading those misses (ticket shorthand such as 'sal'/'mag', leading-dot values, "
     "planners' bold field labels, 'during fine-tuning' read as during training, 'importance' for salience, "
     "the hidden-state wording of distillation.no_layer_loss). Read this set's number now as optimistic."),
    ("heldout7", LABELLED / "heldout7.jsonl",
     "written by a fifth helper that saw only the component catalogue (not the resolver, its aliases or the "
     "other sets): paper-vocabulary JSON planners, hurried students, a senior researcher's email, YAML-minded "
     "engineers, writers who name the effect rather than the mechanism. Its first measurement (at 6675928, after "
     "round eight) was 57 of 73 right (78.1%), 2 flagged, 3 silently wrong, 11 unresolved. Round nine was "
     "written after reading those misses (the verb next to a value decides whether it is kept or removed when "
     "a text says both, 'dropping tokens' is the method's own action rather than a negation, 'objective' "
     "names the SDTP losses). Read this set's number now as optimistic."),
    ("heldout8", LABELLED / "heldout8.jsonl",
     "written by a sixth helper that saw only the component catalogue, as a realistic mix of what the tool "
     "receives (about 40% LM-planner items for the APT and SDTP papers, 30% human researchers, 30% edge "
     "cases). Its first measurement (at a5c47f2, after round nine) was 62 of 75 right (82.7%), 1 silently "
     "wrong, 3 flagged, 9 unresolved. Rounds ten and eleven were written after reading its misses (and those "
     "of heldout9 and 10), so read its current number as optimistic."),
    ("heldout9", LABELLED / "heldout9.jsonl",
     "written by a seventh helper that saw only the component catalogue (`prunelab list components`), "
     "in five styles: LM planners paraphrasing at length, hurried humans with abbreviations and typos, "
     "reviewers' questions, authors who name the effect or goal instead of the mechanism, and every kind of "
     "numeric phrasing. Its first measurement (at b3a3b66, after round ten's out-of-scope lexicon and before "
     "anything was read from this set) was 66 of 78 right (84.6%), 1 silently wrong, 4 flagged, 7 "
     "unresolved. Round ten's later rules (short keys before a value: 'sp=.4', 'kr=.3'; 'shrink to' / "
     "'shrink by'; 'rank sixteen'; a number that is one option's setting) were written after reading its "
     "misses, so read its current number as optimistic. One expected cell was corrected after that "
     "measurement: h9-047's 'r=32 const' was labelled tuning=32, an initial rank of 32 that still grows; a "
     "constant rank of 32 is tuning.static_final (the catalogue the helper saw did not say that a number "
     "sets the initial rank; `prunelab list components apt` says so now)."),
    ("heldout10", LABELLED / "heldout10.jsonl",
     "written by an eighth helper that saw only the component catalogue, in five further voices: a paper's "
     "methods section with LaTeX and citations, engineers' issues with config keys ('lora_rank: 32 fixed, "
     "grow: false'), LM planners that put the new setting in the ablated part, a non-native speaker, and "
     "sweeps. Its first measurement (at 5e2e61a, after round ten, before anything was read from it) was 61 "
     "of 78 right (78.2%), 4 silently wrong, 3 flagged, 10 unresolved. Round eleven (LaTeX and citations "
     "stripped; config keys of several words; a named technique overrides a confident choice unless the "
     "option is about it; a REMOVE part that another component's option leaves out exactly) was written "
     "after reading its misses, so read its current number as optimistic. Of its remaining misses, 5 cells "
     "are REPLACE items with no replacement, which the plan format rejects with a one-line error, and 3 are "
     "a sweep whose rank 128 is out of range, which fails the whole item by design (values are never "
     "rescaled or skipped)."),
    ("heldout11", LABELLED / "heldout11.jsonl",
     "written by a ninth helper that saw only the component catalogue, in five more voices: spreadsheet rows "
     "('KD | off', 'keep | .9'), a sceptical reviewer's long hedged sentences, an LM planner naming components "
     "by their role in the pipeline, vocabulary borrowed from neighbouring fields, and negations of defaults. "
     "Its first measurement (at b3ea004, after round eleven, before anything was read from it) was 58 of 75 "
     "right (77.3%), 3 silently wrong, 2 flagged, 12 unresolved: the rules of rounds ten and eleven did not "
     "raise the untuned figure. Round twelve (a number after 'step' / 'epoch' is a time, not a value; a bare "
     "value under a part whose best match is that numeric component, well ahead of the rest, is taken and "
     "flagged) was written after reading its misses."),
    ("heldout12", LABELLED / "heldout12.jsonl",
     "written by a tenth helper that saw only the component catalogue, in five more voices: a lab notebook "
     "(dated fragments, abbreviations, arrows), a grant proposal's work packages, a student's forum "
     "questions, an LM planner's 'Hypothesis / Intervention / Expected outcome' fields, and a code reviewer "
     "naming invented config keys. Its first measurement (at a3c49b2, before anything was read from it) "
     "was 52 of 75 right (69.3%), 4 silently wrong, 3 flagged, 16 unresolved. Measured once more at "
     "a170f62, with the second opinion filling the cells the rules leave open (resolve._second_fill, "
     "decided on heldout9's and heldout11's first-measured misses before this set was scored): 55 of 75 "
     "(73.3%), the 3 filled cells all right, still 4 silently wrong. Round thirteen ('k in n' shares, "
     "'KR' / 'dens' / 'tgt' shorthand, a config key's words give a value its sense ('--target_density "
     "0.35'), a planner's Hypothesis / Expected outcome fields set aside) was written after reading its "
     "misses, so read its current number as optimistic."),
    ("heldout13", LABELLED / "heldout13.jsonl",
     "written by an eleventh helper that saw only the component catalogue, in six more voices: slide "
     "bullets, a peer review, two students chatting (lower case, typos), table captions ('w/o X'), an "
     "engineer's ticket with config diffs ('target_density: 0.4 -> 0.3'), and a non-native writer's long "
     "sentences. Its first measurement (at 8dbd5bf, before anything was read from it) was 52 of 76 right "
     "(68.4%), 4 silently wrong, 6 flagged, 14 unresolved; the brief had spelt the out-of-scope label "
     "'out_of_scope', which was corrected to this file's 'OUT_OF_SCOPE' before that count, and two of its "
     "ADD items came without the replacement list the AblationBench schema requires (the brief's mistake: "
     "the plan loader rejects them with one line, as it should); they were given one after the first "
     "measurement. Round fourteen (a config diff's old value before '->' is not the variant; a config key's "
     "namespace ('apt.', 'sdtp.') is dropped; 'frac' is a value word; a config key's words say kept or "
     "removed in the weak-match test too) was written after reading its misses, so read its current number "
     "as optimistic."),
    ("heldout14", LABELLED / "heldout14.jsonl",
     "written by a twelfth helper that saw only the component catalogue, in six more voices: dated "
     "lab-notebook entries, FAQ questions and answers, a progress report in the passive voice, "
     "spreadsheet-style headers ('sal_fn=const', 'kr 0.5'), an LM planner's 'Hypothesis / Variant' prose "
     "and a manager's plain request without jargon ('keeps fewer words when reading long prompts'). Its "
     "first measurement (at 5b52aa9, before anything was read from it) was 56 of 78 right (71.8%), 3 "
     "silently wrong, 8 flagged, 11 unresolved. Round fifteen (a value said twice, in brackets or after "
     "'i.e.', is one value; a rank glued to its letter, 'r4', is rank 4; a component whose options are sets "
     "of terms, SDTP's losses, is read from the terms a text keeps or drops, 'MSE + ranking only', "
     "'without the LM term'), round sixteen (plain field labels, 'Variant:', 'Component:', an FAQ's "
     "'A:', are layout) and round seventeen (a plain 'word' is a token; 'kr' is the keep ratio) were "
     "written after reading its misses, so read its current number as optimistic."),
    ("heldout15", LABELLED / "heldout15.jsonl",
     "written by a thirteenth helper that saw only the component catalogue, in more voices: a rebuttal "
     "letter's reviewer requests, feature requests and tickets, a commit message, an email to an advisor, a "
     "voice memo, terse chat with typos, table-row captions ('w/o L_layer'), a to-do checklist, "
     "command-line flags ('--lora-r 32'), comparison questions, and numbers in words ('nineteen out of "
     "every twenty', 'a pair of GPUs'). Its first measurement (at 4fa1d1f, before anything was read from "
     "it) was 96 of 119 right (80.7%), 3 silently wrong, 8 flagged, 12 unresolved. Round eighteen (every "
     "cardinal word is a number, 'k of every n' is a share, the old value in 'from 60% to 40%' / '0.55 "
     "instead of the current 0.7' is not the variant, a command-line flag is a config key, a remark in "
     "brackets or a leading clause does not hide a value, a replacement that says it goes back to the "
     "default is not penalised for naming it) was written after reading its misses, so read its current "
     "number as optimistic."),
    ("heldout16", LABELLED / "heldout16.jsonl",
     "written by a fourteenth helper that saw only the component catalogue, to measure round eighteen on "
     "fresh wording, in more voices: notebook cells, a talk transcript ('so, um'), patent claims "
     "('wherein ...'), OKRs, a teaching assistant, experiment run names ('apt_r8_grow'), British idiom, a "
     "pre-registration, emoji bullets with arrows ('r\u2080: 8 \u27a1\ufe0f'), double negatives, vague "
     "pointers ('the thing from section 3.2') and analogies ('like SnapKV'). Its first measurement (at "
     "601f860, after round eighteen, before anything was read from it) was 86 of 104 right (82.7%), 4 "
     "silently wrong, 4 flagged, 10 unresolved. Round nineteen (pictographs are layout and '\u27a1\ufe0f' an "
     "arrow, 'r\u2080' is the initial rank, '\u00bd' a half, a run name alone is read as its words, 'per "
     "cent' in words, a clause after a value is not part of it, 'take out' removes, a number after 'layer' "
     "is a place, a remark in brackets is not a second value, a part that names the run it starts from "
     "('the frozen-mask variant') makes that option, not the default, the one a replacement rarely means) "
     "was written after reading its misses, so read its current number as optimistic."),
    ("heldout17", LABELLED / "heldout17.jsonl",
     "written by a fifteenth helper that saw only the component catalogue, in voices no earlier set used: "
     "English shaped by German or Chinese word order, a grant proposal's aims, meeting minutes, unified config "
     "diffs ('- sparsity: 0,60' / '+ sparsity: 0,50') and SQL-like lines with decimal commas, a tweet thread, "
     "a textbook exercise, a licence's clauses, settled hedges ('maybe 12, maybe 16 - go with 16'), ratios "
     "('1 in 10', '5:1'), percentages with a space, a supervisor's margin notes, a reproducibility checklist, "
     "a weather forecast and a play's stage directions. Its first measurement (at 58ff602, after round twenty "
     "and before anything was read from it) was 72 of 102 right (70.6%), 4 silently wrong, 9 flagged, 17 "
     "unresolved; the same set at 2d0af37, before round twenty, was 69 right and 5 silently wrong, so round "
     "twenty's rules (written from heldout15 and 16) carried over to unseen wording. Round twenty-one (a "
     "diff's '+' lines are the variant, a decimal comma after a leading zero, a settled hedge, a sentence's "
     "end closes a value, 'two pipeline stages', 'X still, but Y' changes Y, 'early' and 'the final 25%' as "
     "times, a removed part that says the removal itself, 'as in the paper' goes back to the default) was "
     "written after reading its misses, so read its current number as optimistic."),
    ("heldout18", LABELLED / "heldout18.jsonl",
     "written by a sixteenth helper that saw only the component catalogue, to measure round twenty-one on fresh "
     "wording, in more new voices: Python dict and JSON fragments, Makefile variables, docstrings, chat with "
     "@mentions, forum questions, abstract and limitations sentences, a changelog, an exam question, a "
     "prescription and a recipe parody, sports commentary, job-queue log lines, a pasted error message, a "
     "chatbot dialogue, markdown tables, ranges ('r \u2208 {4, 8}'), negated defaults ('not the default 0.7 "
     "but 0.5') and items whose replacement only says 'as in the title'. Its first measurement (at 8e93d3b, "
     "after round twenty-one, before anything was read from it) was 84 of 102 right (82.4%), none silently "
     "wrong, 6 flagged, 12 unresolved: the first fresh set with no silent wrong mapping. Round twenty-two "
     "('as in the title' reads the item's name, a value followed by a full stop is a value, one share said "
     "from both sides ('remove 40% ...; retain the remaining 60%') is one value, verbs of change and "
     "contractions around a value, 'retention' for the keep ratio, 'the rank it was initialised with', "
     "another training corpus ('C4') is out of scope) was written after reading its misses, so read its "
     "current number as optimistic."),
    ("heldout19", LABELLED / "heldout19.jsonl",
     "written by a seventeenth helper that saw only the component catalogue, asked this time for the ordinary "
     "way working researchers write plans rather than for new voices: six imagined authors (a PhD student, a "
     "PI, an industry engineer, an LM planner writing JSON, a reviewer, a student reproducing the paper), "
     "short and long items, defaults restated before the change, figure and section pointers, occasional "
     "typos, and close pairs of options. Its first measurement (at 8346f54, after round twenty-two, before "
     "anything was read from it) was 96 of 99 right (97.0%), 1 silently wrong, 1 flagged, 1 unresolved. It "
     "is plainer than the sets before it by design, so read it as the figure for an ordinary plan, not as "
     "a rise on unusual wording. Round twenty-three (a rank said to keep growing, 'initial rank 32, still "
     "allowed to grow', is an initial rank, not the fixed option holding that number) was written after "
     "reading its one silent miss."),
]
OOS = "OUT_OF_SCOPE"

# each fresh set's first measurement, before anything was read from it (copied from the notes
# above, where each was recorded when it was taken): the resolver's accuracy on plans it has not
# seen, which is what a new user's plan meets. (set, commit, right, cells, silently wrong)
FIRST_MEASURED = [("heldout3", "02ad1a5", 50, 70, 5), ("heldout4", "23316c7", 57, 75, 3),
                  ("heldout5", "6c6fd2a", 63, 74, 1), ("heldout6", "fe84c48", 63, 72, 1),
                  ("heldout7", "6675928", 57, 73, 3), ("heldout8", "a5c47f2", 62, 75, 1),
                  ("heldout9", "b3a3b66", 66, 78, 1), ("heldout10", "5e2e61a", 61, 78, 4),
                  ("heldout11", "b3ea004", 58, 75, 3), ("heldout12", "a3c49b2", 52, 75, 4),
                  ("heldout13", "8dbd5bf", 52, 76, 4), ("heldout14", "5b52aa9", 56, 78, 3),
                  ("heldout15", "4fa1d1f", 96, 119, 3), ("heldout16", "601f860", 86, 104, 4),
                  ("heldout17", "58ff602", 72, 102, 4), ("heldout18", "8e93d3b", 84, 102, 0),
                  ("heldout19", "8346f54", 96, 99, 1)]
# sets whose helper was asked for ordinary wording, not for voices no earlier set used: kept apart, so the
# estimate for unusual wording is not raised by a plainer set
PLAIN = {"heldout19"}


def first_measured_markdown() -> list[str]:
    lines = ["## Untuned: each fresh set's first measurement", "",
             "Every later set was written by a helper that never saw the resolver, and measured once before "
             "any of its misses were read; the rules each round added afterwards raise that set's current "
             "figure below, not this one. This table is the honest estimate for a plan nobody here has seen.", "",
             "| set | at commit | right | cells | accuracy | silently wrong |", "|---|---|---|---|---|---|"]
    for split, sha, right, cells, wrong in FIRST_MEASURED:
        lines.append(f"| {split} | {sha} | {right} | {cells} | {right / cells:.1%} | {wrong} |")
    unusual = [x for x in FIRST_MEASURED if x[0] not in PLAIN]
    plain = [x for x in FIRST_MEASURED if x[0] in PLAIN]
    r, c, w = (sum(x[i] for x in unusual) for i in (2, 3, 4))
    r4, c4, w4 = (sum(x[i] for x in unusual[-4:]) for i in (2, 3, 4))
    lines += [f"| all written for unusual wording | | {r} | {c} | {r / c:.1%} | {w} ({w / c:.1%}) |",
              f"| last four of those ({unusual[-4][0]}-{unusual[-1][0]}) | | {r4} | {c4} | {r4 / c4:.1%} | "
              f"{w4} ({w4 / c4:.1%}) |"]
    if plain:
        rp, cp, wp = (sum(x[i] for x in plain) for i in (2, 3, 4))
        lines.append(f"| written for ordinary wording ({', '.join(x[0] for x in plain)}) | | {rp} | {cp} | "
                     f"{rp / cp:.1%} | {wp} ({wp / cp:.1%}) |")
    lines += ["", f"So on unseen plans in unusual wording about {r4 / c4:.0%} of cells resolve right and about "
              f"{w4 / c4:.0%} resolve wrong without a flag"
              + (f"; on an ordinary plan (measured on {len(plain)} set of {cp} cells, so roughly) about "
                 f"{rp / cp:.0%} and {wp / cp:.0%}" if plain else "")
              + ". The target (>= 95%, none silently wrong) is met on the sets the rules were written from and "
              "nearly on ordinary wording, not on unusual wording. A cell that is not right is mostly an explicit "
              "question (unresolved, or chosen with a flag in `plan check` and the report).", ""]
    return lines


def load_items(path: Path) -> list[dict]:
    items = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            d = json.loads(line)
            d["line"] = i
            items.append(d)
    return items


def components_of(method: str) -> dict:
    from prunelab.methods.registry import get_method

    return dict(get_method(method).components)


def label(choice) -> str:
    if choice.option is None:
        return f"{choice.component}={choice.value:g}"
    return f"{choice.component}.{choice.option}"


def same(got: str, expected: str, components: dict, method: str | None = None) -> bool:
    """The expected answer, or another (component, option) that sets the very same overrides
    (SDTP's `losses.lm_only` is `saliency_supervision.off`)."""
    if got == expected:
        return True
    # a numeric component's listed value is an option named by its number: 'pipeline_devices.2' is '=2'
    from prunelab.ablation.second import label_of

    got, expected = label_of(got), label_of(expected)
    if got == expected:
        return True
    if "." in got and "." in expected and "=" not in got + expected:
        (gc, go), (ec, eo) = got.split(".", 1), expected.split(".", 1)
        try:
            a, b = components[gc].options[go], components[ec].options[eo]
        except KeyError:
            return False
        return a == b or (method is not None and _config(method, a) == _config(method, b))
    if "=" in got and "=" in expected:
        (gc, gv), (ec, ev) = got.split("=", 1), expected.split("=", 1)
        return gc == ec and abs(float(gv) - float(ev)) < 1e-9
    return False


def _config(method: str, overrides: dict):
    from prunelab.methods.registry import get_method

    try:
        return get_method(method).make_config(dict(overrides))
    except Exception:
        return None


def evaluate(items: list[dict]) -> list[dict]:
    from prunelab.ablation.plan import Ablation
    from prunelab.ablation.resolve import Matcher, resolve_cells
    from prunelab.errors import PrunelabError

    matchers: dict[str, Matcher] = {}
    rows = []
    for it in items:
        m = matchers.get(it["method"])
        if m is None:
            m = matchers[it["method"]] = Matcher(components_of(it["method"]), method=it["method"])
        # the learned second opinion is trained on every labelled set but the one being scored
        m.second_exclude = frozenset({it["split"]})
        expected = it["expected"]
        # each cell on its own (resolve_cells): one unclear replacement does not cost the others; an
        # item the plan model itself rejects (REPLACE with no replacement) is unresolved, as in a plan
        try:
            abl = Ablation(name=it["name"], ablated_part=it["ablated_part"], action=it["action"],
                           replacement=it.get("replacement") or [])
            cells = resolve_cells(abl, m.components, matcher=m)
        except PrunelabError as e:
            cells = [e] * len(expected)
        errors = [c for c in cells if isinstance(c, PrunelabError)]
        choices = [c for c in cells if not isinstance(c, PrunelabError)]
        for k, exp in enumerate(expected):
            row = {"id": it["id"], "split": it["split"], "method": it["method"], "expected": exp,
                   "part": it["ablated_part"], "text": (it.get("replacement") or ["REMOVE"])[min(k, len(it.get("replacement") or [1]) - 1)]}
            cell = cells[k] if len(cells) == len(expected) else None
            if isinstance(cell, PrunelabError) or (cell is None and errors):
                e = cell if cell is not None else errors[0]
                kind = getattr(e, "kind", "error")
                row["got"] = kind
                row["outcome"] = "right" if exp == OOS and kind == "out_of_scope" else "unresolved"
                row["detail"] = str(e)
            elif len(cells) != len(expected):
                row["got"] = " + ".join(label(c) for c in choices)
                row["outcome"] = "flagged" if any(c.flag for c in choices) else "wrong"
                row["detail"] = f"{len(choices)} cells for {len(expected)} expected"
            else:
                ch = cell
                row["got"] = label(ch)
                row["score"] = round(ch.score, 3)
                row["flag"] = ch.flag
                if exp != OOS and same(row["got"], exp, m.components, it["method"]):
                    row["outcome"] = "right"
                else:
                    row["outcome"] = "flagged" if ch.flag else "wrong"
            rows.append(row)
    return rows


def summarise(rows: list[dict], splits=("dev", "heldout", "all")) -> dict:
    out = {}
    for split in splits:
        sel = [r for r in rows if split == "all" or r["split"] == split]
        n = len(sel)
        counts = {k: sum(r["outcome"] == k for r in sel) for k in ("right", "flagged", "wrong", "unresolved")}
        # right answers the learned second opinion flagged anyway: the price of its catches, a check
        # for the user, not an error
        second = sum(r["outcome"] == "right" and (r.get("flag") or "").startswith("second opinion") for r in sel)
        out[split] = {"cells": n, **counts, "accuracy": round(counts["right"] / n, 4) if n else None,
                      "second_opinion_on_right": second}
    return out


def summary_line(split: str, s: dict) -> str:
    acc = f"{s['accuracy']:.1%}" if s["accuracy"] is not None else "--"
    return (f"{split:8s} cells {s['cells']:3d}  right {s['right']:3d}  flagged-wrong {s['flagged']:2d}  "
            f"silently-wrong {s['wrong']:2d}  unresolved {s['unresolved']:2d}  accuracy {acc}")


def extra_markdown(split: str, note: str, s: dict, rows: list[dict], path: str) -> list[str]:
    lines = [f"## Held-out set `{split}`", "",
             f"Items: `{path}`: {s['cells']} cells, {note} Not part of 'all' above.", "",
             "| set | cells | right | flagged wrong | silently wrong | unresolved | accuracy | right, flagged by the second opinion |",
             "|---|---|---|---|---|---|---|---|",
             f"| {split} | {s['cells']} | {s['right']} | {s['flagged']} | {s['wrong']} | {s['unresolved']} | "
             f"{s['accuracy']:.1%} | {s['second_opinion_on_right']} |", ""]
    bad = [r for r in rows if r["outcome"] != "right"]
    if bad:
        lines += ["| id | expected | got | outcome | detail |", "|---|---|---|---|---|"]
        for r in bad:
            detail = (r.get("flag") or r.get("detail") or "").replace("|", "/")[:160]
            lines.append(f"| {r['id']} | {r['expected']} | {r['got']} | {r['outcome']} | {detail} |")
        lines.append("")
    return lines


def markdown(summary: dict, rows: list[dict], prov: dict, items_path: str) -> str:
    lines = ["# Plan-item resolution benchmark", "",
             f"Command: `{prov['command']}`  ", f"Date: {prov['date']}  ",
             f"Git SHA: {prov['git_sha']}{' (dirty tree)' if prov.get('dirty') else ''}  ",
             f"Machine: {prov['machine'].get('cpu')} ({prov['machine'].get('cores')} cores)  ",
             f"Items: `{items_path}`; embeddings: {prov.get('semantic')}", "",
             "| split | cells | right | flagged wrong | silently wrong | unresolved | accuracy | right, flagged by the second opinion |",
             "|---|---|---|---|---|---|---|---|"]
    for split, s in summary.items():
        lines.append(f"| {split} | {s['cells']} | {s['right']} | {s['flagged']} | {s['wrong']} | {s['unresolved']} | "
                     f"{s['accuracy']:.1%} | {s['second_opinion_on_right']} |")
    lines += ["", "Each cell is also read by the learned second opinion (ablation/second.py: a logistic regression "
              "over sentence vectors of the labelled cells in src/prunelab/ablation/labelled/), trained on every "
              "set except the one being scored; where it confidently disagrees with an unflagged choice, the "
              "choice is flagged. It never changes an answer."]
    lines += [""] + first_measured_markdown()
    lines += ["", "Thresholds in ablation/resolve.py were tuned on the dev split. The held-out misses were printed "
              "once, by the first run before any tuning, and not used afterwards; apt-001 (the issue's own example) "
              "was then moved to dev and a new held-out item (apt-100) written in its place. Caveat (second round, branch "
              "i12-resolve2): the held-out misses of the first round were in the committed results and two of them "
              "(sdtp-069 'ranking dropped', sdtp-083 'FlashAttention-2') were named in the brief; the changes made "
              "are general rules (negation scope, names with glued numbers, weak-lead flags, question parts, timing "
              "cues), not item strings, but the held-out split is no longer untouched: the timing-cue phrases "
              "(resolve._WHEN) were written after reading the held-out misses apt-003 and apt-100, so read the "
              "held-out number as optimistic and judge the resolver on new plans.", ""]
    bad = [r for r in rows if r["outcome"] != "right"]
    if bad:
        lines += ["## Not right", "", "| id | split | expected | got | outcome | detail |", "|---|---|---|---|---|---|"]
        for r in bad:
            detail = (r.get("flag") or r.get("detail") or "").replace("|", "/")[:160]
            lines.append(f"| {r['id']} | {r['split']} | {r['expected']} | {r['got']} | {r['outcome']} | {detail} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", default=str(ITEMS))
    ap.add_argument("--no-extra", action="store_true", help="skip the later held-out sets (EXTRA_SETS)")
    ap.add_argument("--split", choices=("dev", "heldout", "all"), default="all", help="only print this split's misses")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write benchmarks/results")
    args = ap.parse_args(argv)
    from prunelab.ablation.semantic import why_disabled

    t0 = time.process_time()
    items = load_items(Path(args.items))
    rows = evaluate(items)
    summary = summarise(rows)
    extra = [] if args.no_extra else [(split, path, note, evaluate(load_items(path)))
                                      for split, path, note in EXTRA_SETS]
    cpu = time.process_time() - t0
    prov = provenance()
    prov["dirty"] = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                        capture_output=True, text=True).stdout.strip())
    prov["semantic"] = "off (" + why_disabled() + ")" if why_disabled() else "all-MiniLM-L6-v2"
    prov["cpu_seconds"] = round(cpu, 1)
    for split, s in summary.items():
        print(summary_line(split, s))
    for r in rows:
        if r["outcome"] != "right" and (args.split == "all" or r["split"] == args.split):
            print(f"  {r['outcome']:10s} {r['id']} [{r['split']}] expected {r['expected']} got {r['got']}  "
                  f"{(r.get('flag') or r.get('detail') or '')[:200]}")
    for split, path, _, rows_x in extra:
        print(f"held-out set {split} ({path.name}; not in 'all'):")
        print(summary_line(split, summarise(rows_x, (split,))[split]))
        for r in rows_x:
            if r["outcome"] != "right":
                print(f"  {r['outcome']:10s} {r['id']} expected {r['expected']} got {r['got']}  "
                      f"{(r.get('flag') or r.get('detail') or '')[:200]}")
    if not args.no_write:
        rel = str(Path(args.items).resolve().relative_to(ROOT)) if Path(args.items).resolve().is_relative_to(ROOT) \
            else args.items
        md = markdown(summary, rows, prov, rel)
        data = {"provenance": prov, "summary": summary, "rows": rows,
                "first_measured": [dict(zip(("set", "commit", "right", "cells", "silently_wrong"), x))
                                   for x in FIRST_MEASURED]}
        for split, path, note, rows_x in extra:
            s = summarise(rows_x, (split,))[split]
            rel_x = str(path.relative_to(ROOT))
            md += "\n" + "\n".join(extra_markdown(split, note, s, rows_x, rel_x))
            data[split] = {"items": rel_x, "note": note, "summary": s, "rows": rows_x}
        write("resolution", data, md)
    wrong = summary["all"]["wrong"] + sum(summarise(r, (sp,))[sp]["wrong"] for sp, _, _, r in extra)
    return 0 if wrong == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
