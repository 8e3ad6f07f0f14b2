"""`prunelab <verb>`: train, eval, bench, runs, list, demo, plan, ablate, report.

Bad input (names, keys, values, files) prints one line naming the thing and the valid
choices and exits 2. Anything else is a bug: one line naming the verb, the exception and the
log file holding its full traceback, exit 1; `--debug` prints the traceback too.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback

from prunelab.errors import PrunelabError

STORE_DEFAULT = os.environ.get("PRUNELAB_STORE", "runs/prunelab.db")
STORE_HELP = "SQLite results store (default: $PRUNELAB_STORE or runs/prunelab.db); failure logs go to logs/ beside it"

# flag -> dotted config key
TRAIN_FLAGS = {"lr": "train.lr", "batch_size": "train.batch_size", "epochs": "train.epochs",
               "max_steps": "train.max_steps", "train_limit": "train.train_limit",
               "eval_limit": "train.eval_limit", "eval_points": "train.eval_points",
               "max_length": "train.max_length"}


def build_config(args):
    import yaml

    from prunelab.config import RunConfig, parse_override, set_dotted

    d = RunConfig().to_dict()
    if getattr(args, "config", None):
        if not os.path.exists(args.config):
            raise PrunelabError(f"config file not found: {args.config}")
        with open(args.config) as f:
            try:
                loaded = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise PrunelabError(f"config {args.config} is not valid YAML: {str(e).splitlines()[0]}") from None
        d = RunConfig.from_dict(loaded).to_dict() if loaded else d
    for flag in ("model", "task", "method", "seed", "data_dir", "output_dir", "log_dir"):
        if getattr(args, flag, None) is not None:
            d[flag] = getattr(args, flag)
    columns = {k: getattr(args, k + "_column", None) for k in ("text", "text_pair", "label")}
    if any(columns.values()):
        if not str(d["task"]).startswith("file:"):
            raise PrunelabError(f"--text-column/--text-pair-column/--label-column apply to --task file:PATH, not {d['task']!r}")
        from prunelab.tasks.custom import file_spec

        d["task"] = file_spec(d["task"][len("file:"):], columns["text"] or "text", columns["text_pair"],
                              columns["label"] or "label")
    for flag, key in TRAIN_FLAGS.items():
        if getattr(args, flag, None) is not None:
            set_dotted(d, key, getattr(args, flag))
    for text in args.set or []:
        set_dotted(d, *parse_override(text))
    for text in args.arg or []:
        k, v = parse_override(text)
        set_dotted(d, "method_args." + k, v)
    return RunConfig.from_dict(d)


TRAIN_HELP = {
    "lr": "peak learning rate (linear warm-up, then linear decay)",
    "batch_size": "training batch size",
    "epochs": "passes over the training set (fractions allowed); ignored when --max-steps is set",
    "max_steps": "stop after this many optimizer steps",
    "train_limit": "use only the first N training examples (after a seeded shuffle)",
    "eval_limit": "use only the first N dev examples",
    "eval_points": "number of dev evaluations spread evenly over training",
    "max_length": "truncate inputs to this many tokens",
}


def add_run_flags(p):
    p.add_argument("--config", help="YAML RunConfig; flags override it")
    p.add_argument("--model", help="model alias or path; see `prunelab list models`")
    p.add_argument("--task", help="task name (see `prunelab list tasks`), or file:PATH for your own jsonl/csv/tsv "
                                  "file or folder of train/dev files")
    p.add_argument("--text-column", dest="text_column", metavar="NAME", help="with --task file:PATH: the text column (default text)")
    p.add_argument("--text-pair-column", dest="text_pair_column", metavar="NAME",
                   help="with --task file:PATH: a second text column (sentence pairs)")
    p.add_argument("--label-column", dest="label_column", metavar="NAME", help="with --task file:PATH: the label column (default label)")
    p.add_argument("--method", help="method name; see `prunelab list methods`")
    p.add_argument("--seed", type=int, help="random seed (data order, initialisation)")
    p.add_argument("--data-dir", dest="data_dir", help="folder with the task data (default: $PRUNELAB_DATA, else the HF hub)")
    p.add_argument("--output-dir", dest="output_dir", help="save the final model (loads with from_pretrained)")
    p.add_argument("--tensorboard", dest="log_dir", metavar="DIR", help="write TensorBoard scalars to DIR")
    for flag in TRAIN_FLAGS:
        typ = float if flag in ("lr", "epochs") else int
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, type=typ, help=TRAIN_HELP[flag])
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="dotted override, e.g. train.warmup_ratio=0.1")
    p.add_argument("--arg", action="append", metavar="KEY=VALUE", help="method argument, e.g. r=16 or preset=paper")
    p.add_argument("--store", default=STORE_DEFAULT, help=STORE_HELP)
    p.add_argument("--force", action="store_true", help="re-run even if an identical run is done")
    p.add_argument("--json", action="store_true", help="print the stored record as JSON")
    p.add_argument("--log-every", dest="log_every", type=int, metavar="N",
                   help="without a terminal, log a progress line every N steps (default: about 20 lines per run)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")


def cmd_train(args):
    from prunelab.progress import LogProgress, Progress, progress_bar
    from prunelab.run import run
    from prunelab.store import Store

    config = build_config(args)
    run_id = config.resolve().hash()          # the id run() will use: names the row and its log
    store = Store(args.store)                 # after resolve(): bad names create no store
    args.log_path = store.log_path(run_id)
    label = f"{config.method} {config.model} {config.task}"
    if sys.stderr.isatty() and not args.json and not args.quiet:
        with progress_bar(label) as bar:
            row = run(config, store, force=args.force, progress=bar.attach(store, run_id))
    else:
        # no terminal (CI, nohup, a pipe): log lines on stderr, stdout keeps only the result
        progress = Progress() if args.quiet else LogProgress(label, every=args.log_every)
        row = run(config, store, force=args.force, progress=progress.attach(store, run_id))
    if args.json:
        print(json.dumps(row, indent=2, sort_keys=True, default=str))
    if row["status"] != "done":
        # e.g. a diverged run: run() recorded it as failed and returned instead of raising
        error = row.get("error") or "unknown error"
        if args.debug:
            print(error, file=sys.stderr)
        where = f" (log: {row['log']})" if row.get("log") else ""
        print(f"prunelab: train failed: run {row['id']}: {error.splitlines()[0]}{where}", file=sys.stderr)
        return 1
    if not args.json:
        print_row(row)
    return 0


def print_row(row):
    from prunelab.report_table import format_table

    print(f"run {row['id']}  {row['status']}  {row['method']} {row['model']} {row['task']} seed={row['seed']}")
    if row.get("error"):
        print("error:", row["error"].splitlines()[0])
    if row.get("metrics"):
        print(format_table([row]))


def cmd_runs(args):
    from prunelab.derived import with_derived
    from prunelab.report_table import format_table, to_csv
    from prunelab.store import Store

    store = Store(args.store)
    if args.action == "ls":
        rows = [with_derived(r, store) for r in store.runs(status=args.status)]
        if args.json:
            print(json.dumps(rows, indent=2, default=str))
        else:
            print(format_table(rows, show_status=True) if rows else "no runs")
            running = [r for r in rows if r["status"] == "running"]
            if running:
                print("\nrunning:")
                for r in running:
                    print("  " + running_line(r))
        return 0
    if args.action == "show":
        if not args.id:
            raise PrunelabError("runs show needs a run id (see `prunelab runs ls`)")
        row = store.find(args.id)
        if row is None:
            raise PrunelabError(f"no single run matches id {args.id!r}; see `prunelab runs ls`")
        print(json.dumps(with_derived(row, store), indent=2, sort_keys=True, default=str))
        return 0
    rows = [with_derived(r, store) for r in store.runs(status=args.status)]
    if args.format == "json":
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(to_csv(rows), end="")
    return 0


def running_line(row: dict) -> str:
    """How far a running row is: phase, step, loss, dev score, ETA, age of the news."""
    from prunelab.progress import step_line

    head = f"{row['id'][:8]} {row['method']} {row['model']} {row['task']} seed={row['seed']}"
    p = row.get("progress") or {}
    if not p:
        return f"{head}  starting (no step yet)"
    text = f"phase {p.get('phase') or 'train'}"
    if p.get("step") is not None:
        text += "  " + step_line(p)
    if p.get("updated"):
        text += f"  (updated {time.time() - p['updated']:.0f}s ago)"
    return f"{head}  {text}"


def cmd_list(args):
    from prunelab import catalog

    if args.what == "components":
        if not args.method:
            from prunelab.methods.registry import list_methods

            raise PrunelabError(f"list components needs a METHOD; valid: {', '.join(list_methods())}")
        rows = catalog.components(args.method)
        if not rows and not args.json:
            print(f"method {args.method!r} has no ablatable components")
            return 0
    elif args.method:
        raise PrunelabError(f"only `list components` takes a METHOD, not `list {args.what}`")
    else:
        rows = {"methods": catalog.methods, "models": catalog.models, "tasks": catalog.tasks}[args.what]()
    print(json.dumps(dict(rows), indent=2) if args.json else catalog.format_rows(rows))
    return 0


def cmd_eval(args):
    from prunelab.models.load import load_model
    from prunelab.tasks import get_task

    import torch

    task = get_task(args.task)
    loaded = load_model(args.model, task)
    dev = task.encode(task.load(args.split, args.data_dir, limit=args.eval_limit), loaded.tokenizer, args.max_length)
    metrics = task.evaluate(loaded.model.eval(), dev, loaded.tokenizer, 64, torch.device("cpu"))
    print(json.dumps(metrics, indent=2) if args.json else "  ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return 0


def cmd_bench(args):
    import torch

    from prunelab.config import MeasureConfig, RunConfig
    from prunelab.models.load import load_model
    from prunelab.run import measure_inference
    from prunelab.tasks import get_task

    task = get_task(args.task)
    loaded = load_model(args.model, task)
    cfg = RunConfig(model=args.model, task=args.task, measure=MeasureConfig(batch_sizes=tuple(args.batch_sizes),
                                                                             seq_len=args.seq_len, real_lengths=False))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = measure_inference(loaded.model.to(device).eval(), task, loaded.tokenizer, [], cfg, device)
    print(json.dumps(out, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


def cmd_demo(args):
    from prunelab.quiet import quiet

    quiet(not args.verbose)          # before prunelab.demo imports torch / transformers
    from prunelab.demo import main as demo

    return demo(store=args.store, smoke=args.smoke, verbose=args.verbose, out=args.out, parts=args.parts)


def cmd_plan(args):
    from prunelab.ablation import cli as acli

    if args.action == "check":
        text, code = acli.plan_check(args.plan, method=args.method, as_json=args.json,
                                     skip_unresolved=args.skip_unresolved)
        print(text)
        return code
    print(acli.plan_generate(args.method or "apt"))
    return 0


def cmd_ablate(args):
    from prunelab.ablation import cli as acli

    return acli.ablate(args.plan, preset=args.preset, seeds=args.seeds, executor=args.executor,
                       workers=args.workers, store=args.store, study=args.study,
                       skip_unresolved=args.skip_unresolved, method=args.method, rerun=args.rerun,
                       ci_width=args.ci_width, max_seeds=args.max_seeds)


def cmd_report(args):
    from prunelab.ablation import cli as acli

    for path in acli.report(args.study, store=args.store, out_dir=args.out):
        print(path)
    return 0


class Parser(argparse.ArgumentParser):
    """Usage errors are bad input too: one line, exit 2 (argparse prints the usage block first)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} -h`)\n")


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="prunelab", description="prune + tune language models; run ablation plans",
                                epilog="`prunelab list methods|models|tasks` and `prunelab list components METHOD` "
                                       "show the choices; `prunelab VERB -h` the flags of a verb")
    p.add_argument("--debug", action="store_true", help="on failure, print the full traceback too")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB",
                           help="what to do; `prunelab VERB -h` lists its flags")

    t = sub.add_parser("train", help="train one run and store its record")
    add_run_flags(t)
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("eval", help="evaluate a saved model on a task's dev split")
    e.add_argument("--model", required=True, help="model alias or path of a saved model")
    e.add_argument("--task", required=True, help="task name; see `prunelab list tasks`")
    e.add_argument("--split", default="dev", help="data split to score (default: dev)")
    e.add_argument("--data-dir", dest="data_dir", help="folder with the task data (default: $PRUNELAB_DATA, else the HF hub)")
    e.add_argument("--eval-limit", type=int, help="score only the first N examples")
    e.add_argument("--max-length", type=int, default=128, help="truncate inputs to this many tokens (default: 128)")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    e.set_defaults(fn=cmd_eval)

    b = sub.add_parser("bench", help="inference throughput / memory / FLOPs of a model")
    b.add_argument("--model", required=True, help="model alias or path of a saved model")
    b.add_argument("--task", default="glue/sst2", help="task whose head the model gets (default: glue/sst2)")
    b.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128], help="batch sizes to time (default: 32 128)")
    b.add_argument("--seq-len", type=int, default=128, help="sequence length of the dummy inputs (default: 128)")
    b.add_argument("--json", action="store_true", help="print the measurements as JSON")
    b.set_defaults(fn=cmd_bench)

    r = sub.add_parser("runs", help="list, show or export stored runs")
    r.add_argument("action", choices=["ls", "show", "export"],
                   help="ls: a table (running rows also show their step and score); show: one run as JSON; "
                        "export: every run as CSV or JSON")
    r.add_argument("id", nargs="?", help="run id or a unique prefix of it (for show)")
    r.add_argument("--status", choices=["running", "done", "failed"], help="only runs with this status")
    r.add_argument("--format", choices=["csv", "json"], default="csv", help="export format (default: csv)")
    r.add_argument("--store", default=STORE_DEFAULT, help=STORE_HELP)
    r.add_argument("--json", action="store_true", help="ls: print the rows as JSON")
    r.set_defaults(fn=cmd_runs)

    ls = sub.add_parser("list", help="the methods, models, tasks or a method's components, one line each")
    ls.add_argument("what", choices=["methods", "models", "tasks", "components"], help="what to list")
    ls.add_argument("method", nargs="?", metavar="METHOD", help="the method whose components to list (with `components`)")
    ls.add_argument("--json", action="store_true", help="print {name: description} as JSON")
    ls.set_defaults(fn=cmd_list)

    d = sub.add_parser("demo", help="prune while fine-tuning (APT), drop prompt tokens (SDTP), run an ablation plan")
    d.add_argument("--store", default=os.environ.get("PRUNELAB_STORE", "runs/prunelab.db"))
    d.add_argument("--out", help="exports, SDTP pruners and reports (default: demo/ next to the store)")
    d.add_argument("--smoke", action="store_true", help="the same code on tiny random models, in seconds")
    d.add_argument("--parts", default="123", help="which parts to run, e.g. 13 (default: all three)")
    d.add_argument("--verbose", action="store_true", help="keep transformers' load reports and warnings")
    d.set_defaults(fn=cmd_demo)

    pl = sub.add_parser("plan", help="check or generate an ablation plan")
    pl.add_argument("action", choices=["check", "generate"],
                    help="check: resolve a plan and show its cells; generate: print a plan template")
    pl.add_argument("plan", nargs="?", help="plan file (markdown or YAML) to check")
    pl.add_argument("--method", help="method the plan ablates, when the plan does not say (generate: default apt)")
    pl.add_argument("--json", action="store_true", help="check: print the resolution as JSON")
    pl.add_argument("--skip-unresolved", action="store_true",
                    help="skip plan items that match no component instead of failing (exit 1)")
    pl.set_defaults(fn=cmd_plan)

    a = sub.add_parser("ablate", help="run an ablation plan: baseline + variants x seeds")
    a.add_argument("plan", help="plan file (markdown or YAML)")
    a.add_argument("--preset", default="tiny", choices=["tiny", "cpu", "paper"],
                   help="model / task / budget of every cell: tiny (random model, seconds), cpu (real small model), "
                        "paper (the paper's setting); default tiny")
    # strings, checked by ablation/adaptive.parse_seed_options: one line naming the flag and what it takes
    a.add_argument("--seeds", default="3", metavar="N|auto",
                   help="seeds per cell (default: 3), or auto: start with 3 and add one seed to every cell per "
                        "round until each variant's 95%% interval of the paired difference to the baseline (primary "
                        "metric: the ablation's first) excludes 0 or is narrower than --ci-width, or --max-seeds "
                        "is reached")
    a.add_argument("--ci-width", dest="ci_width", default=None, metavar="W|P%",
                   help="with --seeds auto: an interval narrower than this is precise enough; a number in the "
                        "primary metric's units as the report shows them (e.g. 0.01 accuracy), or a percentage "
                        "of the baseline mean (default: 2%%, the report's no-change margin)")
    a.add_argument("--max-seeds", dest="max_seeds", default=None, metavar="N",
                   help="with --seeds auto: at most this many seeds per cell (default: 8; at least 3)")
    a.add_argument("--executor", default="local", choices=["local", "ray"], help="where cells run (default: local): local processes, or Ray tasks on the "
                        "cluster at $RAY_ADDRESS (else a fresh local Ray instance), one process per cell, "
                        "retried when a worker dies")
    a.add_argument("--workers", type=int, default=1, help="cells run at once (default: 1)")
    a.add_argument("--study", help="study name (default: the plan's name + preset)")
    a.add_argument("--method", help="method the plan ablates, when the plan does not say")
    a.add_argument("--skip-unresolved", action="store_true",
                   help="skip plan items that match no component instead of failing")
    a.add_argument("--store", default=STORE_DEFAULT, help=STORE_HELP)
    a.add_argument("--rerun", action="append", default=[], metavar="CELL[:SEED]",
                   help="run this done cell again (all seeds, or one), replacing its result; repeatable")
    a.set_defaults(fn=cmd_ablate)

    rp = sub.add_parser("report", help="tables, plots and the paper section of a study")
    rp.add_argument("study", help="study name (printed by `prunelab ablate`)")
    rp.add_argument("--out", default=None, help="folder for the report files (default: beside the store)")
    rp.add_argument("--store", default=STORE_DEFAULT, help=STORE_HELP)
    rp.set_defaults(fn=cmd_report)

    # --debug also after the verb (`prunelab train ... --debug`); SUPPRESS keeps the global value
    for verb in sub.choices.values():
        verb.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help="on failure, print the full traceback too")
    return p


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (pytest and callers may swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def setup_logging(debug: bool) -> None:
    """Progress and phase lines: `HH:MM:SS prunelab ...` on stderr, once per process."""
    log = logging.getLogger("prunelab")
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    if not any(isinstance(h, _Stderr) for h in log.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(asctime)s prunelab %(message)s", datefmt="%H:%M:%S"))
        log.addHandler(handler)


def failure_log(args) -> str:
    """logs/<run id>.log beside the store for a run, else logs/<time>-<verb>-<pid>.log."""
    from pathlib import Path

    from prunelab.store import log_dir

    if getattr(args, "log_path", None):
        return str(args.log_path)
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{args.verb}-{os.getpid()}.log"
    return str(log_dir(getattr(args, "store", None) or STORE_DEFAULT) / name)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    debug = args.debug or os.environ.get("PRUNELAB_DEBUG") == "1"
    args.debug = debug
    setup_logging(debug)
    from prunelab.quiet import quiet

    quiet(not (debug or getattr(args, "verbose", False)))   # no load reports / library warnings unless asked
    try:
        return args.fn(args)
    except PrunelabError as e:
        if debug:
            traceback.print_exc()
        print(f"prunelab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"prunelab: {args.verb} interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        from prunelab.store import write_log

        text = traceback.format_exc()
        command = "prunelab " + " ".join(sys.argv[1:] if argv is None else map(str, argv))
        path = write_log(failure_log(args), f"{command}\n{time.strftime('%Y-%m-%d %H:%M:%S %Z')}", text)
        if debug:
            print(text, file=sys.stderr, end="")
        msg = (str(e).strip().splitlines() or [""])[0][:300]
        print(f"prunelab: {args.verb} failed: {type(e).__name__}: {msg} (traceback: {path or 'not written'})",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
