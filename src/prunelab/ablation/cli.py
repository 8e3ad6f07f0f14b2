"""What `prunelab plan check|generate`, `prunelab ablate` and `prunelab report` call.

Exit codes: plan_check returns 0 (everything resolved), 1 (some items skipped with
skip_unresolved) or 2 (error, text is the one-line message); ablate returns 0 when every
run is done, 1 when some failed (re-run the same command to retry them), and raises
PrunelabError on bad input (the CLI prints it as one line).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from prunelab.ablation import adaptive
from prunelab.ablation import presets as presets_mod
from prunelab.ablation.adaptive import AUTO_START, parse_seed_options
from prunelab.ablation.executors import run_matrix
from prunelab.ablation.generate import generate_plan
from prunelab.ablation.matrix import build_matrix, study_name
from prunelab.ablation.parse import load_plan
from prunelab.ablation.report import write_report
from prunelab.ablation.resolve import Resolution, resolve_plan
from prunelab.ablation.studies import save_study, study_meta
from prunelab.errors import PrunelabError
from prunelab.store import DEFAULT_PATH, Store


def _fmt_value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def describe_resolution(res: Resolution) -> str:
    plan = res.plan
    n_cells = sum(len(i.choices) for i in res.items)
    out = [f"plan: {plan.name}" + (f" ({plan.source})" if plan.source else ""),
           f"method: {res.method}; {len(plan.ablations)} ablations -> baseline + {n_cells} variant cells"]
    for item in res.items:
        a = item.ablation
        out.append(f"  [{a.action.value}] {a.name}" + (f" ({a.id})" if a.id else "") + f": {a.ablated_part!r}")
        for ch in item.choices:
            ov = ", ".join(f"{k}={_fmt_value(v)}" for k, v in ch.overrides.items()) or "(defaults)"
            out.append(f"      -> {ch.component}.{ch.label}  [{ov}]  match {ch.score:.2f}  <- {ch.text!r}")
            if ch.flag:
                out.append(f"         CHECK: {ch.flag}; pin it with backticks if wrong")
        out.append("      metrics: " + ", ".join(f"{m.text} -> {m.key}" + (f" ({m.spec.unit})" if m.spec.unit else "")
                                              for m in item.metrics))
        if a.hypothesis or a.expected_effect:
            out.append(f"      hypothesis: {a.hypothesis or '-'}; expected: {a.expected_effect or '-'}")
    flagged = res.flagged()
    if flagged:
        out.append(f"low-margin mappings ({len(flagged)}): check them, or name the option in backticks")
        out += [f"  {name}: {ch.text!r} -> {ch.component}.{ch.label}: {ch.flag}" for name, ch in flagged]
    if res.unresolved:
        out.append(f"unresolved ({len(res.unresolved)}, skipped):")
        out += [f"  {u.ablation}: {u.item!r}: " + ("OUT OF SCOPE: " if u.kind == "out_of_scope" else "") + u.reason
                for u in res.unresolved]
    if res.not_run:
        out.append(f"plan rows that produce no cell ({len(res.not_run)}; add them to the matrix to run them):")
        out += [f"  line {r['line']}: {r['part']}: {r['change']}" + (f" (would be {', '.join(r['maps_to'])})"
                                                                      if r["maps_to"] else "") for r in res.not_run]
    if plan.sections:
        out.append("paper sections: " + "; ".join(f"{s.number} {s.title} [{', '.join(s.ids)}]" for s in plan.sections))
    return "\n".join(out)


def resolution_json(res: Resolution) -> dict:
    return {
        "plan": res.plan.to_dict(),
        "method": res.method,
        "ablations": [{"name": i.ablation.name, "action": i.ablation.action.value,
                       "choices": [{"component": c.component, "option": c.option, "value": c.value,
                                    "overrides": c.overrides, "score": round(c.score, 3), "text": c.text,
                                    "flag": c.flag}
                                   for c in i.choices],
                       "metrics": [m.to_dict() for m in i.metrics]} for i in res.items],
        "unresolved": [vars(u) for u in res.unresolved],
        "not_run": res.not_run,
    }


def plan_check(path, method: str | None = None, as_json: bool = False,
               skip_unresolved: bool = False) -> tuple[str, int]:
    try:
        plan = load_plan(path, method=method)
        res = resolve_plan(plan, method, skip_unresolved=skip_unresolved)
    except PrunelabError as e:
        if as_json:
            return json.dumps({"error": str(e)}), 2
        return f"error: {e}", 2
    code = 1 if res.unresolved else 0
    if as_json:
        return json.dumps(resolution_json(res), indent=2, ensure_ascii=False, default=str), code
    return describe_resolution(res), code


def plan_generate(method: str) -> str:
    return generate_plan(method)


def ablate(path, preset: str = "tiny", seeds=3, executor: str = "local", workers: int = 1,
           store: str | None = None, study: str | None = None, skip_unresolved: bool = False,
           method: str | None = None, *, runner=None, overrides: list | dict | None = None,
           progress: bool = True, retry_failed: bool = True, force: bool = False, reference: bool = True,
           out=None, rerun: list[str] | None = None, ci_width=None, max_seeds=None) -> int:
    """seeds: a count, a list of seeds, or 'auto' (ablation/adaptive.py: from 3 seeds per cell, one
    more per round until every comparison can tell; ci_width and max_seeds apply to it only)."""
    out = out or sys.stdout
    check_run_options(executor, workers)
    seed_plan = parse_seed_options(seeds, ci_width, max_seeds)   # before anything is loaded or written
    plan = load_plan(path, method=method)
    res = resolve_plan(plan, method, skip_unresolved=skip_unresolved)
    base = presets_mod.base_config(preset, res.method, overrides)
    ref = presets_mod.reference_config(preset, res.method, overrides) if reference else None
    triv = presets_mod.trivial_cells(res.method) if reference else {}
    study = study or f"{study_name(plan.name)}-{preset}"
    matrix = build_matrix(res, base, AUTO_START if seed_plan.auto else seed_plan.fixed, study=study, reference=ref,
                          trivial=triv)
    # a bad --rerun fails before the study is registered; with --seeds auto it may name any seed up to the cap
    whole = (build_matrix(res, base, seed_plan.max_seeds, study=study, reference=ref, trivial=triv)
             if seed_plan.auto else matrix)
    forced = rerun_ids(whole, rerun or [])
    store_path = store or DEFAULT_PATH
    st = Store(store_path)
    run = dict(executor=executor, workers=workers, runner=runner, progress=progress, retry_failed=retry_failed,
               force=force)
    if seed_plan.auto:
        return _ablate_auto(res, base, ref, study, preset, seed_plan, st, forced, run, out, triv)
    save_study(st.path, study_meta(matrix, preset))
    n_links = len(matrix.links())
    print(f"study {study}: {len(matrix.cells)} cells x {len(matrix.seeds)} seeds = {n_links} "
          f"({len(matrix.runs)} distinct runs), preset {preset} ({base.model} on {base.task}), store {st.path}",
          file=out)
    _print_notes(matrix, res, out)
    summary = run_matrix(matrix, st, rerun=forced, **run)
    _print_summary(summary, summary.done, summary.skipped, out)
    print(f"report: prunelab report {study} --store {st.path}", file=out)
    return 0 if summary.ok else 1


def _print_notes(matrix, res: Resolution, out) -> None:
    for note in matrix.notes:
        print(f"note: {note}", file=out)
    for u in res.unresolved:
        print(f"skipped: {u.ablation}: {u.item!r}: {u.reason}", file=out)


def _print_summary(summary, done: int, skipped: int, out, seconds: float | None = None) -> None:
    print(f"{done} run(s) done, {skipped} already done, {summary.failed} failed"
          + (f", {summary.elsewhere} running elsewhere" if summary.elsewhere else "")
          + f" in {summary.seconds if seconds is None else seconds:.0f}s", file=out)
    for cells, run_id, err in summary.failures[:10]:
        print(f"  failed {cells} ({run_id[:8]}): {err.strip().splitlines()[0] if err.strip() else ''}", file=out)
    if summary.failed:
        print("re-run the same command to retry the failed runs (done runs are kept)", file=out)


def _ablate_auto(res: Resolution, base, ref, study: str, preset: str, seed_plan, st: Store, forced: set,
                 run: dict, out, trivial: dict | None = None) -> int:
    """Rounds of run_matrix with 3, 4, ... seeds per cell until adaptive.stop_reason says stop.

    Each round is a matrix whose seeds extend the last one's, so its done runs are skipped; the
    rule is evaluated from the store after each round. A re-run of the same command (after a crash
    or failed runs) replays the rounds from 3 seeds on the stored results and goes on from there."""
    from prunelab.ablation.analysis import analyze

    width, cap = seed_plan.width, seed_plan.max_seeds
    record = {"rule": adaptive.rule_text(width.text, cap), "start": AUTO_START, "ci_width": width.text,
              "max_seeds": cap, "n": AUTO_START, "stop": None, "checks": [], "rounds": []}
    # force (Python API): each run once, in the round that adds it, not again in every later round
    force = run.pop("force", False)
    pending_forced = set(forced)
    seen: set[str] = set()
    done = skipped = prev_runs = 0
    seconds = 0.0
    n = AUTO_START
    while True:
        matrix = build_matrix(res, base, n, study=study, reference=ref, trivial=trivial)
        if n == AUTO_START:
            print(f"study {study}: {len(matrix.cells)} cells, seeds chosen adaptively "
                  f"(--ci-width {width.text}, --max-seeds {cap}), preset {preset} ({base.model} on {base.task}), "
                  f"store {st.path}", file=out)
            print(f"rule: {record['rule']}", file=out)
            _print_notes(matrix, res, out)
        ids = {r.run_id for r in matrix.runs}
        now, pending_forced = pending_forced & ids, pending_forced - ids
        if force:
            now |= ids - seen
        seen |= ids
        record.update(n=n, stop=None)
        save_study(st.path, {**study_meta(matrix, preset), "adaptive": record})
        summary = run_matrix(matrix, st, rerun=now, **run)
        done += summary.done
        skipped += summary.skipped - prev_runs     # earlier rounds' runs are all done (else we stopped)
        seconds += summary.seconds
        prev_runs = len(matrix.runs)
        if not summary.ok:
            _print_summary(summary, done, skipped, out, seconds)
            print(f"seeds auto: stopped at n = {n} with runs not done; re-run the same command to retry them "
                  "and continue choosing seeds", file=out)
            return 1
        checks = adaptive.check_study(analyze(st, study), width)
        counts = {k: sum(c["status"] == k for c in checks) for k in ("decided", "narrow", "open", "no data")}
        record["rounds"].append({"n": n, **counts})
        record["checks"] = checks
        reason = adaptive.stop_reason(checks, n, cap)
        if reason is not None:
            record["stop"] = reason
            save_study(st.path, {**study_meta(matrix, preset), "adaptive": record})
            break
        still = [c["cell"] for c in checks if c["status"] == "open"]
        print(f"seeds auto: n = {n}: {len(still)} comparison(s) cannot tell yet ({', '.join(still[:5])}"
              f"{', ...' if len(still) > 5 else ''}); adding seed {n}", file=out)
        n += 1
    _print_summary(summary, done, skipped, out, seconds)
    print(adaptive.describe(record), file=out)
    print(f"report: prunelab report {study} --store {st.path}", file=out)
    return 0


def check_run_options(executor: str, workers) -> None:
    """Bad --executor / --workers are errors before anything is loaded or registered."""
    from prunelab.ablation.executors import EXECUTORS
    from prunelab.errors import unknown

    if executor not in EXECUTORS:
        raise unknown("executor", executor, EXECUTORS)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise PrunelabError(f"--workers must be a whole number >= 1, got {workers!r}")
    if executor == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise PrunelabError("--executor ray needs Ray: pip install 'prunelab[ray]' (or pip install ray)")


def rerun_ids(matrix, specs: list[str]) -> set[str]:
    """'CELL' (every seed) or 'CELL:SEED' -> the run ids to run again even though they are done."""
    links = matrix.links()
    cells = sorted({c for c, _, _ in links})
    out = set()
    for spec in specs:
        cell, _, seed = str(spec).rpartition(":") if ":" in str(spec) else (str(spec), "", "")
        if cell not in cells:
            from prunelab.errors import unknown

            raise unknown("cell to re-run", cell, cells)
        if seed and not seed.isdigit():
            raise PrunelabError(f"--rerun {spec!r}: the seed after ':' must be a whole number")
        hits = [rid for c, s, rid in links if c == cell and (not seed or s == int(seed))]
        if not hits:
            raise PrunelabError(f"--rerun {spec!r}: cell {cell!r} has no seed {seed}; seeds: "
                                f"{', '.join(str(s) for c, s, _ in links if c == cell)}")
        out.update(hits)
    return out


def report(study: str, store: str | None = None, out_dir: str | None = None) -> list[str]:
    return [str(p) for p in write_report(study, store or DEFAULT_PATH, Path(out_dir) if out_dir else None)]
