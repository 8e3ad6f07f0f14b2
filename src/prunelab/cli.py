"""`prunelab <verb>`: train, eval, bench, runs, demo, plan, ablate, report.

Bad input (names, keys, values, files) prints one line naming the thing and the valid
choices and exits 2. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from prunelab.errors import PrunelabError

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
    for flag, key in TRAIN_FLAGS.items():
        if getattr(args, flag, None) is not None:
            set_dotted(d, key, getattr(args, flag))
    for text in args.set or []:
        set_dotted(d, *parse_override(text))
    for text in args.arg or []:
        k, v = parse_override(text)
        set_dotted(d, "method_args." + k, v)
    return RunConfig.from_dict(d)


def add_run_flags(p):
    p.add_argument("--config", help="YAML RunConfig; flags override it")
    p.add_argument("--model")
    p.add_argument("--task")
    p.add_argument("--method")
    p.add_argument("--seed", type=int)
    p.add_argument("--data-dir", dest="data_dir")
    p.add_argument("--output-dir", dest="output_dir", help="save the final model (loads with from_pretrained)")
    p.add_argument("--tensorboard", dest="log_dir", metavar="DIR", help="write TensorBoard scalars to DIR")
    for flag in TRAIN_FLAGS:
        typ = float if flag in ("lr", "epochs") else int
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, type=typ)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="dotted override, e.g. train.warmup_ratio=0.1")
    p.add_argument("--arg", action="append", metavar="KEY=VALUE", help="method argument, e.g. r=16 or preset=paper")
    p.add_argument("--store", default=os.environ.get("PRUNELAB_STORE", "runs/prunelab.db"))
    p.add_argument("--force", action="store_true", help="re-run even if an identical run is done")
    p.add_argument("--json", action="store_true", help="print the stored record as JSON")


def cmd_train(args):
    from prunelab.progress import progress_bar
    from prunelab.run import run

    config = build_config(args)
    if args.json or not sys.stderr.isatty():
        row = run(config, args.store, force=args.force)
    else:
        with progress_bar(f"{config.method} {config.model} {config.task}") as bar:
            row = run(config, args.store, force=args.force, progress=bar)
    if args.json:
        print(json.dumps(row, indent=2, sort_keys=True, default=str))
    else:
        print_row(row)
    return 0 if row["status"] == "done" else 1


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
                       skip_unresolved=args.skip_unresolved, method=args.method, rerun=args.rerun)


def cmd_report(args):
    from prunelab.ablation import cli as acli

    for path in acli.report(args.study, store=args.store, out_dir=args.out):
        print(path)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prunelab", description="prune + tune language models; run ablation plans")
    sub = p.add_subparsers(dest="verb", required=True)

    t = sub.add_parser("train", help="train one run and store its record")
    add_run_flags(t)
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("eval", help="evaluate a saved model on a task's dev split")
    e.add_argument("--model", required=True)
    e.add_argument("--task", required=True)
    e.add_argument("--split", default="dev")
    e.add_argument("--data-dir", dest="data_dir")
    e.add_argument("--eval-limit", type=int)
    e.add_argument("--max-length", type=int, default=128)
    e.add_argument("--json", action="store_true")
    e.set_defaults(fn=cmd_eval)

    b = sub.add_parser("bench", help="inference throughput / memory / FLOPs of a model")
    b.add_argument("--model", required=True)
    b.add_argument("--task", default="glue/sst2")
    b.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    b.add_argument("--seq-len", type=int, default=128)
    b.add_argument("--json", action="store_true")
    b.set_defaults(fn=cmd_bench)

    r = sub.add_parser("runs", help="list, show or export stored runs")
    r.add_argument("action", choices=["ls", "show", "export"])
    r.add_argument("id", nargs="?")
    r.add_argument("--status", choices=["running", "done", "failed"])
    r.add_argument("--format", choices=["csv", "json"], default="csv")
    r.add_argument("--store", default=os.environ.get("PRUNELAB_STORE", "runs/prunelab.db"))
    r.add_argument("--json", action="store_true")
    r.set_defaults(fn=cmd_runs)

    d = sub.add_parser("demo", help="prune while fine-tuning (APT), drop prompt tokens (SDTP), run an ablation plan")
    d.add_argument("--store", default=os.environ.get("PRUNELAB_STORE", "runs/prunelab.db"))
    d.add_argument("--out", help="exports, SDTP pruners and reports (default: demo/ next to the store)")
    d.add_argument("--smoke", action="store_true", help="the same code on tiny random models, in seconds")
    d.add_argument("--parts", default="123", help="which parts to run, e.g. 13 (default: all three)")
    d.add_argument("--verbose", action="store_true", help="keep transformers' load reports and warnings")
    d.set_defaults(fn=cmd_demo)

    pl = sub.add_parser("plan", help="check or generate an ablation plan")
    pl.add_argument("action", choices=["check", "generate"])
    pl.add_argument("plan", nargs="?")
    pl.add_argument("--method")
    pl.add_argument("--json", action="store_true")
    pl.add_argument("--skip-unresolved", action="store_true")
    pl.set_defaults(fn=cmd_plan)

    a = sub.add_parser("ablate", help="run an ablation plan: baseline + variants x seeds")
    a.add_argument("plan")
    a.add_argument("--preset", default="tiny", choices=["tiny", "cpu", "paper"])
    a.add_argument("--seeds", type=int, default=3)
    a.add_argument("--executor", default="local", choices=["local", "ray"])
    a.add_argument("--workers", type=int, default=1)
    a.add_argument("--study")
    a.add_argument("--method")
    a.add_argument("--skip-unresolved", action="store_true")
    a.add_argument("--store", default=os.environ.get("PRUNELAB_STORE", "runs/prunelab.db"))
    a.add_argument("--rerun", action="append", default=[], metavar="CELL[:SEED]",
                   help="run this done cell again (all seeds, or one), replacing its result; repeatable")
    a.set_defaults(fn=cmd_ablate)

    rp = sub.add_parser("report", help="tables, plots and the paper section of a study")
    rp.add_argument("study")
    rp.add_argument("--out", default=None)
    rp.add_argument("--store", default=os.environ.get("PRUNELAB_STORE", "runs/prunelab.db"))
    rp.set_defaults(fn=cmd_report)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except PrunelabError as e:
        print(f"prunelab: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
