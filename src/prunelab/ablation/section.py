"""The paper's ablation section, written from a study's results (section.md / section.tex).

What a reviewer needs from each subsection, and nothing twice:
  - the key numbers: mean ± std over seeds for the full method and the variant, the paired Δ
    with its CI and p, and the number of seeds;
  - the direction against the plan's hypothesis, in one clause;
  - significance and power: a non-significant Δ says whether an effect of a given size would
    have been seen (MDE), and for an underpowered one how many seeds a Δ of the observed size
    would need;
  - one sentence of interpretation, phrased from the action (REMOVE, REPLACE, a value) and the
    outcome, never a sentence every subsection shares.
Values of one numeric component spread over a subsection (seed 004's keep ratios 0.5 / 0.3 / 0.8)
are written as one sweep, ordered by value, with the full method's own setting in its place.

Then a threats-to-validity paragraph (budget against the paper's, seeds, evaluation data, model
scale, timing) and a LaTeX table whose cells are the very strings the prose uses (section_rows).
"""
from __future__ import annotations

import re

from prunelab.ablation.analysis import CONTENTION_LIMIT, AblationResult, Line, StudyResult, disturbed_timings
from prunelab.ablation.fmt import cell_name, exp_text, fmt, fmt_delta, fmt_ms, fmt_p, lower_label, signed, tex
from prunelab.ablation.metrics import is_censored
from prunelab.ablation.stats import EQUIV_REL, MIN_BOOTSTRAP_SEEDS, null_text, seeds_needed

ALPHA_TEXT = "α = 0.05"
BAND = f"±{EQUIV_REL:.0%}"


# ----------------------------------------------------------------------------- numbers

def outcome(ln: Line) -> str:
    """confirmed | refuted | underpowered | no_effect | effect | inconclusive."""
    c = ln.comparison
    if ln.verdict in ("confirmed", "refuted"):
        return ln.verdict
    if c.significant:
        return "effect"
    if c.null in ("underpowered", "no_effect"):
        return c.null
    return "inconclusive"


OUTCOME_TEXT = {"confirmed": "confirmed", "refuted": "refuted", "underpowered": "inconclusive (underpowered)",
                "no_effect": "no effect", "effect": "effect (no expectation)", "inconclusive": "inconclusive"}


def numbers(a: AblationResult, v, ln: Line) -> dict:
    """The formatted strings of one (variant, metric): shared by the prose and the LaTeX table."""
    m, c = ln.metric, ln.comparison
    ci = c.ci
    return {"ablation": a.name, "variant": cell_name(v), "metric": lower_label(m["label"]),
            "unit": m.get("unit") or "", "base": fmt_ms(*ln.base[:2], m), "value": fmt_ms(*ln.value[:2], m),
            "n": c.n, "delta": fmt_delta(ln) if c.mean_diff is not None else "--",
            "ci": f"[{signed(ci[0], m)}, {signed(ci[1], m)}]" if ci else "--",
            "p": _fmt_p(fmt_p(c.p_value)), "power": null_text(c, lambda x, m=m: fmt(abs(x), m, 3)),
            "outcome": outcome(ln) if c.n >= 2 else "inconclusive"}


def _compared(ln: Line) -> bool:
    """A line with numbers on both sides to compare (a time to accuracy that some seed of either
    side never reached has no mean: it is told as counts by _unreached instead)."""
    if is_censored(ln.metric):
        return ln.base[0] is not None and ln.value[0] is not None
    return ln.value[0] is not None


def _unreached(res: StudyResult, v, lines: list[Line], used: dict) -> str:
    """'Time to 97% of FT was reached within the budget by 1/5 seeds of the full method and 0/5 of
    this variant, so it has no mean to compare.' The first time in a section; after that shorter,
    by which side reached the target more often."""
    parts = []
    for ln in lines:
        if not is_censored(ln.metric) or _compared(ln):
            continue
        (kb, nb), (kv, nv) = res.baseline.reach(ln.metric), v.reach(ln.metric)
        label = lower_label(ln.metric["label"])
        target = label[len("time to "):] if label.startswith("time to ") else label
        i = used.get("unreached", 0)
        used["unreached"] = i + 1
        if i == 0:
            parts.append(f"{label[:1].upper() + label[1:]} was reached within the budget by {kb}/{nb} seeds of "
                         f"the full method and {kv}/{nv} of this variant, so it has no mean to compare.")
        elif kv == kb:
            parts.append(f"As many of its seeds reached {target} within the budget as the full method's "
                         f"({kv}/{nv}).")
        elif kv / max(nv, 1) < kb / max(nb, 1):
            parts.append(f"Fewer of its seeds reached {target} within the budget ({kv}/{nv} against {kb}/{nb}).")
        else:
            parts.append(f"More of its seeds reached {target} within the budget than the full method's "
                         f"({kv}/{nv} against {kb}/{nb}).")
    return " ".join(parts)


def _fmt_p(p: str) -> str:
    return p.replace("<", "< ")


def section_rows(res: StudyResult) -> list[dict]:
    """One row per (ablation, variant, metric) with a finished comparison."""
    rows = []
    for a in res.ablations:
        for v in a.variants:
            for ln in a.lines:
                if ln.cell is v and _compared(ln):
                    rows.append(numbers(a, v, ln))
    return rows


def _u(r: dict) -> str:
    return "" if not r["unit"] else (r["unit"] if r["unit"] == "%" else f" {r['unit']}")


def _stats(r: dict, seeds: bool = True) -> str:
    """'Δ +0.50 (+2.6%), 95% CI [+0.44, +0.57], p = 0.006, 3 paired seeds'."""
    out = f"Δ {r['delta']}"
    if r["ci"] != "--":
        out += f", 95% CI {r['ci']}"
    if r["p"] != "--":
        out += f", p {r['p'] if r['p'].startswith('<') else '= ' + r['p']}"
    if seeds:
        out += f", {r['n']} paired seed{'s' if r['n'] != 1 else ''}"
    return out


# ----------------------------------------------------------------------------- the plan's claim

def _claim(abl: dict, ln: Line) -> str:
    """The plan's words for what it expected, quoted once ('“Over-pruning”: Performance ↓, Speed ↑')."""
    e = ln.expectation
    if e is None or e.implied:
        return ""
    hyp, eff = abl.get("hypothesis"), abl.get("expected_effect")
    if hyp and eff:
        return f"“{hyp}”: {eff}"
    return f"“{hyp}”" if hyp else (eff or "")


def _want(ln: Line) -> str:
    e = ln.expectation
    if e.crash:
        return "a collapse"
    if e.direction == 0:
        return "no change"
    return "a rise" if e.direction > 0 else "a fall"


def _stance(ln: Line, abl: dict, r: dict) -> str:
    """How the observed Δ stands against the plan's expectation and how sure it is, as a clause
    that continues the numbers sentence (starts with ', ' or '; ')."""
    e, c = ln.expectation, ln.comparison
    claim = _claim(abl, ln)
    said = f" ({claim})" if claim else (" (implied: the full method is better)" if e and e.implied else "")
    kind = outcome(ln) if c.n >= 2 else "inconclusive"
    if c.n < 2:
        return f"; with {c.n} seed there is no test"
    if kind == "confirmed" and e.direction == 0:
        return f", inside the {BAND} band that counts as no change, as the plan expected{said}"
    if kind == "confirmed":
        return f", as the plan predicted{said}"
    if kind == "refuted":
        return f"; the plan predicted {_want(ln)}{said}"
    if kind == "effect":
        if e is not None and e.direction == 0:
            return (f": significant, yet on average within the {BAND} band the plan's “no change” allows, so "
                    f"that claim is neither confirmed nor refuted{said}")
        return ": a significant change the plan made no prediction about"
    power = r["power"]
    pending = f"the plan predicted {_want(ln)}{said}" if e is not None else "the plan made no prediction"
    if kind == "no_effect":
        return f"; not significant, and {power.replace('no effect', 'any effect is no')}; {pending}"
    if kind == "underpowered":
        mde = power[len("underpowered (MDE "):-1] if power.startswith("underpowered (MDE ") else power
        return f"; not significant, but these seeds only detect changes of {mde} or more; {pending}"
    return f"; not significant; {pending}"


# ----------------------------------------------------------------------------- sentences

def _change(abl: dict, cell: dict) -> str:
    part = abl["ablated_part"]
    if abl["action"] == "REMOVE":
        return f"Removing {part} (`{cell.get('component')}` -> `{cell.get('option')}`)"
    if cell.get("value") is not None:
        return f"Setting {part} to {cell['value']:g}"
    label = cell.get("text") or cell.get("option")
    if label == cell.get("option"):
        return f"Replacing {part} with `{label}`"
    return f"Replacing {part} with {label} (`{cell.get('option')}`)"


def _moves(ln: Line, r: dict, k: int) -> str:
    """'raises perplexity from 18.86 ± 0.07 to 19.36 ± 0'; wording rotates with k."""
    d = ln.comparison.mean_diff or 0.0
    u = _u(r)
    if d == 0:
        return f"leaves {r['metric']} exactly at {r['base']}{u}"
    verb = ("raises", "increases", "lifts")[k % 3] if d > 0 else ("lowers", "reduces", "brings down")[k % 3]
    return f"{verb} {r['metric']} from {r['base']}{u} to {r['value']}{u}"


def _better(ln: Line) -> bool:
    return (ln.comparison.mean_diff or 0) * (1 if ln.metric.get("higher_is_better", True) else -1) > 0


def _opt(v) -> str:
    c = v.cell
    return c.get("option") if c.get("option") is not None else f"{c.get('component')}={c.get('value'):g}"


def interpretation(ln: Line, abl: dict, v, r: dict, method: str, k: int = 0) -> str:
    """One sentence on what the result means for the component, by action and outcome."""
    part, opt, metric, c = abl["ablated_part"], _opt(v), r["metric"], ln.comparison
    kind = outcome(ln) if c.n >= 2 else "inconclusive"
    rel = f"{abs(c.rel_diff):.1%}" if c.rel_diff is not None else r["delta"]
    action = "value" if v.cell.get("value") is not None else abl["action"]
    e = ln.expectation
    if kind == "refuted" and e is not None and e.crash:
        return (f"The predicted collapse does not happen: {method} still works with `{opt}`, and {metric} "
                f"moves by {r['delta']} only.")
    if kind == "confirmed" and e is not None and e.direction == 0:
        how = {"REMOVE": "can be left out", "REPLACE": f"can be replaced by `{opt}`"}.get(action, f"can be set to {opt}")
        return f"{part[:1].upper() + part[1:]} {how} at no measurable cost in {metric}."
    alt = k % 3
    if kind in ("confirmed", "refuted", "effect"):
        if _better(ln):
            return {"REMOVE": (f"At this budget {method} does better without {part}, which is therefore not "
                               f"earning its place on {metric}.",
                               f"Dropping {part} helps {metric} here, so its value would have to come from "
                               f"something this study does not measure.",
                               f"The data favour {method} without {part}: {metric} is {rel} better when it is gone."),
                    "REPLACE": (f"At this budget `{opt}` is the better choice for {metric} ({rel} better), so "
                                f"{method}'s own {part} is not what its {metric} rests on here.",
                                f"{method}'s {part} loses to `{opt}` on {metric} by {rel} in this setting.",
                                f"Swapping in `{opt}` would gain {rel} of {metric}, which argues against {method}'s "
                                f"choice of {part} at this scale."),
                    "value": (f"So {opt} is the better setting for {metric} here ({rel}), at whatever it costs "
                              f"in the secondary metrics.",
                              f"On {metric} alone, {opt} beats the full method's setting by {rel}.",
                              f"The full method's {part} is not the {metric}-optimal one: {opt} is {rel} better.")}[action][alt]
        return {"REMOVE": (f"So {part} does real work in {method}: without it {metric} is {rel} worse.",
                           f"{part[:1].upper() + part[1:]} earns its place: taking it out costs {rel} of {metric}.",
                           f"Without {part}, {method} gives up {rel} of {metric}, so the component is needed."),
                "REPLACE": (f"So {method}'s {part} is worth having: `{opt}` in its place costs {rel} of {metric}.",
                            f"{method}'s own {part} beats `{opt}` by {rel} on {metric}.",
                            f"The design choice holds: `{opt}` is {rel} worse on {metric} than {method}'s {part}."),
                "value": (f"So {metric} is sensitive to {part}: moving it to {opt} costs {rel}.",
                          f"Moving {part} to {opt} costs {rel} of {metric}.",
                          f"{metric[:1].upper() + metric[1:]} pays {rel} for {part} = {opt}.")}[action][alt]
    if kind == "no_effect":
        return (f"{part[:1].upper() + part[1:]} makes no difference to {metric} that these seeds could see, "
                f"so the full method's {metric} does not rest on it at this budget.",
                f"Within what {c.n} seeds resolve, {metric} does not depend on {part} at this budget.",
                f"Nothing suggests {part} moves {metric} at this budget.")[alt]
    if kind == "underpowered":
        need = seeds_needed(c)
        more = (f"a Δ of this size would need about {need} seeds" if need and need > c.n
                else "more seeds or a larger budget are needed")
        return (f"Whether {part} matters for {metric} stays open: {more}.",
                f"The role of {part} in {metric} is not settled by {c.n} seeds; {more}.",
                f"This run cannot say whether {part} matters for {metric}; {more}.")[alt]
    return f"The evidence on {part} ({metric}) is inconclusive."


def _secondary(a: AblationResult, v, lines: list[Line], k: int) -> str:
    """The variant's other metrics. Those that move significantly, or that the plan made a claim
    about, get their numbers ('It also lowers prefill speedup from ... (...)'); the rest share one
    clause with the smallest change their seeds could have shown, because a run of non-significant
    'raises ... from ... to ...' reads as findings when it is noise (the table keeps every number)."""
    loud, quiet = [], []
    for j, ln in enumerate(lines):
        r = numbers(a, v, ln)
        claimed = ln.expectation is not None and not ln.expectation.implied
        if not (ln.comparison.significant or claimed):
            quiet.append(r)
            continue
        txt = f"{_moves(ln, r, k // 3 + j)} ({_stats(r, seeds=False)}"
        if r["power"] and not ln.comparison.significant:
            txt += f"; {r['power']}"
        if ln.verdict:
            txt += f"; expected {exp_text(ln)}: {ln.verdict}"
        loud.append(txt + ")")
    out = []
    if loud:
        out.append(f"{('It also', 'In addition it', 'At the same time it')[k % 3]} {_and(loud)}.")
    if quiet:
        out.append(_quiet(quiet, k))
    return " ".join(out)


def _quiet(rows: list[dict], k: int) -> str:
    """'Training time and inference speedup do not change significantly (training time: MDE
    0.225 min; inference speedup: no effect larger than 0.04 x).'"""
    def power(r: dict) -> str:
        pw = r["power"]
        if pw.startswith("underpowered (MDE "):
            pw = "MDE " + pw[len("underpowered (MDE "):-1]
        return f"{pw}{_u(r)}" if len(rows) == 1 else f"{r['metric']}: {pw}{_u(r)}"
    names = _and([r["metric"] for r in rows])
    detail = "; ".join(power(r) for r in rows if r["power"])
    verb = "does" if len(rows) == 1 else "do"
    lead = (f"{names[:1].upper() + names[1:]} {verb} not change significantly",
            f"No significant difference shows in {names}",
            f"Differences in {names} stay below what these seeds resolve")[k % 3]
    return f"{lead}{f' ({detail})' if detail else ''}."


def _variant(res: StudyResult, a: AblationResult, v, k: int, used: dict | None = None) -> list[str]:
    """Sentences for one variant; `used` counts interpretations of each kind already written in
    the section, so two variants with the same outcome are not read in the same words."""
    abl, method = a.ablation, _method_name(res)
    change = _change(abl, v.cell)
    if not v.done:
        if v.failed and not v.pending:
            err = (v.errors() or ["no error recorded"])[0]
            crash = any(ln.expectation and ln.expectation.crash for ln in a.lines if ln.cell is v)
            tail = "as the plan predicted (a collapse)" if crash else "so it has no numbers"
            return [f"{change} made every run fail ({err}), {tail}."]
        return [f"{change}: results pending ({len(v.done)}/{len(v.seeds)} seeds finished)."]
    lines = [ln for ln in a.lines if ln.cell is v and _compared(ln)]
    if not lines:
        return [f"{change}: the requested metrics were not recorded."]
    main, rest = lines[0], lines[1:]
    r = numbers(a, v, main)
    out = [f"{change} {_moves(main, r, k)} ({_stats(r)}){_stance(main, abl, r)}."]
    if rest:
        out.append(_secondary(a, v, rest, k))
    used = {} if used is None else used
    unreached = _unreached(res, v, [ln for ln in a.lines if ln.cell is v], used)
    if unreached:
        out.append(unreached)
    kind = (abl["action"] if v.cell.get("value") is None else "value", outcome(main), _better(main))
    out.append(interpretation(main, abl, v, r, method, used.get(kind, 0)))
    used[kind] = used.get(kind, 0) + 1
    return out


# ----------------------------------------------------------------------------- sweeps

def _sweep_items(ablations: list[AblationResult]) -> list[tuple] | None:
    """(ablation, variant) pairs when they are >= 2 finished values of one numeric component."""
    items = [(a, v) for a in ablations for v in a.variants]
    if len(items) < 2 or any(v.cell.get("value") is None or not v.done for _, v in items):
        return None
    if len({v.cell.get("component") for _, v in items}) != 1:
        return None
    return sorted(items, key=lambda av: av[1].cell["value"])


def method_config(res: StudyResult):
    """The full method's config object (its preset, then the study's method_args), or None."""
    try:
        from prunelab.methods.registry import get_method

        cls = get_method(res.method).config_cls
        args = dict((res.meta.get("base") or {}).get("method_args") or {})
        preset = args.pop("preset", None)
        full = dict((getattr(cls, "PRESETS", {}) or {}).get(preset, {}))
        full.update(args)
        return cls(**full)
    except Exception:  # noqa: BLE001 - the section reads on without it
        return None


def base_value(res: StudyResult, component: str) -> float | None:
    """The full method's own setting of a numeric component, if it can be read."""
    try:
        from prunelab.methods.registry import components

        return float(getattr(method_config(res), components(res.method)[component].numeric))
    except Exception:  # noqa: BLE001 - the sweep reads without the full method's value
        return None


def _sweep(res: StudyResult, items: list[tuple]) -> list[str]:
    method = _method_name(res)
    a0, v0 = items[0]
    part = a0.ablation["ablated_part"]
    mains = []
    for a, v in items:
        lines = [ln for ln in a.lines if ln.cell is v and _compared(ln)]
        mains.append((a, v, lines))
    if any(not lines for _, _, lines in mains):
        return [s for a, v in items for s in _variant(res, a, v, 0)]
    ref = numbers(a0, v0, mains[0][2][0])
    bval = base_value(res, v0.cell.get("component"))
    vals = [v.cell["value"] for _, v, _ in mains]
    # the curve, in value order, with the full method in its place
    pts = [(v.cell["value"], numbers(a, v, lines[0])["value"]) for a, v, lines in mains]
    full = f"{ref['base']} (full {method}{', ' + format(bval, 'g') if bval is not None else ''})"
    u = _u(ref)
    if bval is not None:
        curve = sorted(pts + [(bval, None)], key=lambda p: p[0])
        seq = [full if y is None else f"{y} ({x:g})" for x, y in curve]
        first = (f"Across {part} = {', '.join(f'{x:g}' for x, _ in curve)}, {ref['metric']} goes "
                 f"{' → '.join(seq)}{u}")
    else:
        first = (f"Setting {part} to {', '.join(f'{x:g}' for x in vals)} gives {ref['metric']} "
                 f"{', '.join(y for _, y in pts)}{u} against {full}")
    stats = "; ".join(f"{_stats(numbers(a, v, lines[0]), seeds=False)} at {v.cell['value']:g}"
                      for a, v, lines in mains)
    out = [f"{first} ({stats}; {ref['n']} paired seeds)."]
    # the plan's claims, grouped by outcome
    groups: dict[str, list[str]] = {}
    for a, v, lines in mains:
        ln = lines[0]
        r = numbers(a, v, ln)
        claim = _claim(a.ablation, ln)
        key = outcome(ln) if ln.comparison.n >= 2 else "inconclusive"
        if key == "effect" and ln.expectation is not None and ln.expectation.direction == 0:
            key = "inside_band"
        what = f"{v.cell['value']:g}" + (f" ({claim})" if claim else "")
        if key in ("underpowered", "no_effect"):
            what += f", {r['power']}"
        groups.setdefault(key, []).append(what)
    said = {"confirmed": "The plan's predictions hold at {}", "refuted": "The plan's predictions fail at {}",
            "underpowered": "Too few seeds to tell at {}", "no_effect": "No effect at {}",
            "effect": "A change the plan did not predict at {}", "inconclusive": "Inconclusive at {}",
            "inside_band": f"A significant change, yet inside the {BAND} band a “no change” allows (so that claim "
                           "is neither confirmed nor refuted), at {}"}
    claims = [said[k].format(_and(ws)) for k, ws in groups.items()]
    out.append("; ".join(c if i == 0 else c[:1].lower() + c[1:] for i, c in enumerate(claims)) + ".")
    # secondary metrics as curves too
    for ln0 in mains[0][2][1:]:
        key = ln0.metric["key"]
        seq = []
        for a, v, lines in mains:
            ln = next((x for x in lines if x.metric["key"] == key), None)
            if ln is not None:
                r = numbers(a, v, ln)
                seq.append(f"{r['value']} at {v.cell['value']:g} ({_stats(r, seeds=False)}"
                           + (f"; expected {exp_text(ln)}: {ln.verdict}" if ln.verdict else "") + ")")
        r0 = numbers(a0, v0, ln0)
        out.append(f"{r0['metric'][:1].upper() + r0['metric'][1:]} is {r0['base']}{_u(r0)} for the full method and "
                   f"{'; '.join(seq)}.")
    out.append(_sweep_reading(mains, bval, part))
    return out


def _and(xs: list[str]) -> str:
    return xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + " and " + xs[-1]


def _curve(mains, key: str, bval) -> list[tuple]:
    """(setting, mean, line) of one metric over the sweep, in setting order; the full method's
    own setting (line None) in its place when known."""
    pts = []
    for _, v, lines in mains:
        ln = next((x for x in lines if x.metric["key"] == key), None)
        if ln is not None:
            pts.append((v.cell["value"], ln.value[0], ln))
    if bval is not None and pts:
        pts.append((bval, pts[0][2].base[0], None))
    return sorted(pts, key=lambda p: p[0])


def _direction(pts: list[tuple]) -> str | None:
    """'up' / 'down' when the means never fall / never rise along the setting, else None."""
    ys = [p[1] for p in pts]
    if all(y2 >= y1 for y1, y2 in zip(ys, ys[1:])):
        return "up"
    if all(y2 <= y1 for y1, y2 in zip(ys, ys[1:])):
        return "down"
    return None


def _sweep_reading(mains, bval, part: str) -> str:
    """The one interpretation of a sweep: is the main metric monotone in the setting, and what
    does the first secondary metric gain for it."""
    metric = mains[0][2][0].metric
    hib = metric.get("higher_is_better", True)
    name = lower_label(metric["label"])
    pts = _curve(mains, metric["key"], bval)
    way = _direction(pts)
    if way is None:
        best = max(pts, key=lambda p: p[1] if hib else -p[1])
        return (f"{name[:1].upper() + name[1:]} is not monotone in {part}: it is best at {best[0]:g} among the "
                f"settings run, so the full method's setting is {'the best' if best[2] is None else 'not the best'} "
                f"one here.")
    better_when = "larger" if ((way == "up") == hib) else "smaller"
    trade = ""
    if mains[0][2][1:]:
        sec = mains[0][2][1].metric
        s_way = _direction(_curve(mains, sec["key"], bval))
        if s_way and ((s_way == "up") == sec.get("higher_is_better", True)) != (better_when == "larger"):
            trade = (f", and {lower_label(sec['label'])} moves the other way, so {part} is a trade-off "
                     f"rather than a setting to maximise")
    return f"{name[:1].upper() + name[1:]} improves steadily as {part} gets {better_when}{trade}."


# ----------------------------------------------------------------------------- the section

def to_section(res: StudyResult) -> str:
    plan = res.plan
    method = _method_name(res)
    base_cfg = res.meta.get("base") or {}
    n = len(res.meta.get("seeds") or [])
    out = ["### 6. Ablation Studies", ""]
    intro = plan.get("intro") or (
        f"To better understand the contribution of each {method} component, we ablate them one at a time while "
        f"keeping all other components fixed.")
    out.append(f"{intro} All numbers are means ± standard deviations over {n} seed{'s' if n != 1 else ''} on "
               f"{base_cfg.get('model')} / {base_cfg.get('task')}; differences (Δ, variant minus full {method}) are "
               f"paired by seed, with {_ci_clause(res)} and paired t-tests at {ALPHA_TEXT}. A non-significant Δ "
               f"comes with the smallest effect its seeds would have detected (MDE, power 0.8); “no change” "
               f"means the 90% interval of Δ lies within {BAND} of the full method." + _adaptive_sentence(res))
    out.append("")
    by_id = {a.ablation.get("id"): a for a in res.ablations if a.ablation.get("id")}
    sections = plan.get("sections") or []
    groups = []
    if sections:
        for s in sections:
            groups.append((f"{s['number']} {s['title']}", [by_id[i] for i in s["ids"] if i in by_id],
                           [i for i in s["ids"] if i not in by_id], s))
    else:
        for j, a in enumerate(res.ablations, start=1):
            groups.append((f"6.{j} Effect of {_title(a.ablation['ablated_part'])}", [a], [], {}))
    k, used = 0, {}
    for title, ablations, missing, s in groups:
        out += [f"#### {title}", ""]
        sweep = _sweep_items(ablations)
        if sweep:
            body = _sweep(res, sweep)
        else:
            body = []
            for a in ablations:
                for v in a.variants:
                    body += _variant(res, a, v, k, used)
                    k += 1
        out.append(" ".join(body) if body else "(no results for this section)")
        if missing:
            out.append(f"({', '.join(missing)} not run: not resolved against {res.method}'s components.)")
        if "gpu" in (s.get("note") or "").lower() or "communication" in title.lower():
            out.append(_comm_sentence(res))
        out.append("")
    cheap = _cheapest(res)
    if cheap:
        out += ["#### Against the cheapest alternatives (not in the plan)", "", cheap, ""]
    out += ["#### Threats to validity", "", threats_paragraph(res), ""]
    out += [f"Table {_table_ref(res)} lists the same numbers.", "", "```latex", section_latex(res).rstrip(), "```", ""]
    return "\n".join(x for x in out if x is not None).rstrip() + "\n"


def _cheapest(res: StudyResult) -> str:
    """The method's trivial baselines (presets.TRIVIAL: recency, FLOPs-matched truncation) against
    the full method on its first metric: does the method beat the cheapest way to do the same?"""
    t = res.trivial
    if t is None or not t.variants:
        return ""
    method = _method_name(res)
    wins, losses, ties, parts = [], [], [], []
    for v in t.variants:
        ln = next((x for x in t.lines if x.cell is v and _compared(x)), None)
        if ln is None:
            continue
        r = numbers(t, v, ln)
        name = f"{v.cell.get('option')} ({v.cell.get('text')})" if v.cell.get("text") else f"{v.cell.get('option')}"
        parts.append(f"{name} gives {r['metric']} {r['value']}{_u(r)} ({_stats(r, seeds=False)})")
        if not ln.comparison.significant:
            ties.append(v.cell.get("option"))
        elif _better(ln):
            losses.append(v.cell.get("option"))
        else:
            wins.append(v.cell.get("option"))
    if not parts:
        return ""
    r0 = numbers(t, t.variants[0], next(x for x in t.lines if x.cell is t.variants[0]))
    verdict = []
    if wins:
        verdict.append(f"{method} beats {_and(wins)}")
    if losses:
        verdict.append(f"loses to {_and(losses)}" if verdict else f"{method} loses to {_and(losses)}")
    if ties:
        verdict.append(f"cannot be told apart from {_and(ties)} with these seeds")
    return (f"Against the full {method}'s {r0['base']}{_u(r0)}, " + "; ".join(parts) + ". So " + ", ".join(verdict)
            + f" on {r0['metric']} at equal cost.")


def _ci_clause(res: StudyResult) -> str:
    """Bootstrap intervals exist only from MIN_BOOTSTRAP_SEEDS paired seeds up: say so when some lack one."""
    ns = [ln.comparison.n for a in res.ablations for ln in a.lines if ln.comparison.n >= 2]
    if ns and max(ns) < MIN_BOOTSTRAP_SEEDS:
        return (f"no confidence intervals (a bootstrap interval needs at least {MIN_BOOTSTRAP_SEEDS} paired seeds; "
                f"two only give their range)")
    if ns and min(ns) < MIN_BOOTSTRAP_SEEDS:
        return (f"bootstrap 95% confidence intervals where at least {MIN_BOOTSTRAP_SEEDS} paired seeds exist "
                f"(none for fewer)")
    return "bootstrap 95% confidence intervals"


def _adaptive_sentence(res: StudyResult) -> str:
    ad = res.meta.get("adaptive")
    if not ad:
        return ""
    if not ad.get("stop"):
        return (f" The number of seeds is being chosen adaptively (up to {ad['max_seeds']}) and the choice is not "
                f"finished at n = {ad['n']}.")
    width = ad["ci_width"] + (" of the baseline mean" if ad["ci_width"].endswith("%") else "")
    why = {"decided": "every interval excluded 0",
           "width": f"every interval excluded 0 or was narrower than {ad['ci_width']}",
           "cap": f"the cap of {ad['max_seeds']} seeds was reached with some intervals still including 0 and "
                  f"wider than {ad['ci_width']}",
           "no data": "no variant had paired values of its primary metric"}[ad["stop"]]
    return (f" The number of seeds was chosen adaptively: starting from {ad['start']} seeds per cell, one seed was "
            f"added to every cell per round until each variant's 95% paired t interval on its primary metric "
            f"excluded 0 or was narrower than {width}, up to {ad['max_seeds']} seeds; the study stopped at "
            f"n = {ad['n']} seeds per cell because {why}.")


def _method_name(res: StudyResult) -> str:
    return (res.method or "").upper().replace("FAKE_", "")


def _title(text: str) -> str:
    t = re.sub(r"\s*\(.*?\)", "", text).strip()
    return t[:1].upper() + t[1:] if t else text


# ----------------------------------------------------------------------------- threats

# what, per method, builds up over a long run and so is tested far from its operating point
LONG_RUN_PARTS = {"apt": "schedules, rank growth, distillation",
                  "sdtp": "the learned ranking and the losses that shape it"}


def _method_budget(res: StudyResult) -> tuple[str, str] | None:
    """(this study's budget, the paper's) when the method trains on a budget of its own (SDTP:
    pruners fitted to cached features), else None: the run config's steps are the budget."""
    cfg = method_config(res)
    if not hasattr(cfg, "budget_text"):
        return None
    return cfg.budget_text(), getattr(type(cfg), "PAPER_BUDGET", "the paper's budget")


def threats_paragraph(res: StudyResult) -> str:
    """Budget against the paper's, seeds, evaluation data, model scale and CPU timing noise."""
    from prunelab.ablation import presets

    base = res.meta.get("base") or {}
    train = base.get("train") or {}
    method = (res.method or "").replace("fake_", "")
    table = presets._DECODER if method in ("sdtp",) else presets._ENCODER
    paper = table["paper"]
    pt = paper["train"]
    n = len(res.meta.get("seeds") or [])
    own = _method_budget(res)
    if own:
        budget, paper_budget = own
    else:
        steps = train.get("max_steps")
        budget = (f"{steps} optimisation steps of batch {train.get('batch_size')}" if steps
                  else f"{train.get('epochs')} epochs of batch {train.get('batch_size')}")
        if train.get("train_limit"):
            budget += f" on {train['train_limit']} training examples"
        paper_budget = (f"{pt['max_steps']} steps" if pt.get("max_steps") else f"{pt.get('epochs')} epochs over the "
                        f"full training set") + f" of batch {pt.get('batch_size')}"
    long_run = LONG_RUN_PARTS.get(method, "components that need long training")
    s = [f"Budget: each run here trains for {budget} (preset `{res.meta.get('preset') or '?'}`), against "
         f"{paper_budget} in the paper's setting, so {long_run} are tested far from their operating point."]
    comparisons = sum(len(a.lines) for a in res.ablations)
    seeds = (f"Seeds: {n} seed{'s' if n != 1 else ''} per cell; non-significant differences are reported with "
             f"their minimum detectable effect rather than read as absent, and no correction for the "
             f"{comparisons} comparisons is applied (at α = 0.05 about {comparisons * 0.05:.1f} of them would be "
             f"significant by chance if nothing mattered).")
    if res.meta.get("adaptive"):
        seeds += (" The seed count was chosen by looking at the results after each round (optional stopping), "
                  "which makes an interval that excludes 0 by chance somewhat more likely than the nominal 5%.")
    s.append(seeds)
    s.append("Evaluation data: seeds vary the training only; every run is scored on the same evaluation data, so "
             "the intervals do not include the sampling noise of the evaluation set, and a Δ smaller than that "
             "noise may not survive a different sample.")
    s.append(f"Model scale: {base.get('model')} on {base.get('task')} stands in for the paper's {paper['model']} "
             f"on {paper['task']}; effects at this scale need not transfer.")
    disturbed = disturbed_timings(res)
    meas = base.get("measure") or {}
    timing = (f"Timing: wall-clock metrics come from a shared CPU ({meas.get('repeats', '?')} timing "
              f"repeat{'s' if meas.get('repeats') != 1 else ''}, {meas.get('warmup', '?')} warm-up)")
    if disturbed:
        timing += (f" and {len(disturbed)} run{'s' if len(disturbed) != 1 else ''} waited for the CPU (wall/CPU time "
                   f"over {CONTENTION_LIMIT}x the median), so speed and time differences are less reliable than "
                   f"the score differences.")
    else:
        timing += "; no run's wall time was stretched by other processes, but small speed differences remain noisy."
    s.append(timing)
    return " ".join(s)


# ----------------------------------------------------------------------------- LaTeX

def _table_ref(res: StudyResult) -> str:
    return f"\\ref{{tab:section-{re.sub(r'[^a-z0-9]+', '-', res.study.lower())}}}"


def section_latex(res: StudyResult) -> str:
    """The section's numbers as a booktabs table: the same strings as the prose (section_rows)."""
    esc = tex
    method = _method_name(res)
    out = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{lllllllll}", r"\toprule",
           rf"Ablation & Variant & Metric & Full {esc(method)} & Variant & $\Delta$ & 95\% CI & $p$ & Outcome \\",
           r"\midrule"]
    for r in section_rows(res):
        out.append(" & ".join(esc(x) for x in (r["ablation"], r["variant"], r["metric"], r["base"], r["value"],
                                              r["delta"], r["ci"], r["p"], OUTCOME_TEXT[r["outcome"]])) + r" \\")
    n = len(res.meta.get("seeds") or [])
    ad = res.meta.get("adaptive")
    adaptive = "" if not ad else (" (chosen adaptively" + (f", stopped: {esc(ad['stop'])}" if ad.get("stop")
                                                            else ", not finished") + ")")
    out += [r"\bottomrule", r"\end{tabular}",
            rf"\caption{{Ablations of {esc(method)}: mean $\pm$ std over {n} seeds{adaptive}; $\Delta$ is "
            rf"paired by seed, with a bootstrap 95\% CI (from {MIN_BOOTSTRAP_SEEDS} paired seeds up) and a paired "
            rf"t-test; ``no change'' is confirmed when the 90\% t interval of $\Delta$ lies within "
            rf"{esc(BAND)} of the full method.}}",
            rf"\label{{tab:section-{re.sub(r'[^a-z0-9]+', '-', res.study.lower())}}}", r"\end{table}", ""]
    return "\n".join(out)


def _comm_sentence(res: StudyResult) -> str | None:
    vals = res.baseline.values({"key": "comm_bytes", "keys": ["comm_bytes"]})
    if not vals:
        return "Communication volume was not recorded by these runs (comm_bytes)."
    mean = sum(vals.values()) / len(vals)
    return f"The full method moves {mean / 2 ** 20:.3g} MB across pipeline-stage boundaries per prompt."
