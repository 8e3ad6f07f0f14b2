"""A README.md beside every export: what was removed, how it scored, how to load it, and the
command that made it. Written from the run's store row, so every figure is a measured one."""
from __future__ import annotations

import json
from pathlib import Path

from prunelab.config import RunConfig

LOADERS = {"classification": "AutoModelForSequenceClassification", "regression": "AutoModelForSequenceClassification",
           "qa": "AutoModelForQuestionAnswering", "seq2seq": "AutoModelForSeq2SeqLM", "lm": "AutoModelForCausalLM"}


def command_for(config: dict) -> str:
    """The `prunelab train` command that reproduces a stored run's config."""
    cfg = RunConfig.from_dict({k: v for k, v in config.items() if k in RunConfig.__dataclass_fields__})
    default = RunConfig(method=cfg.method)
    parts = ["prunelab train", f"--method {cfg.method}", f"--model {cfg.model}", f"--task '{cfg.task}'"]
    if cfg.seed:
        parts.append(f"--seed {cfg.seed}")
    try:
        defaults = default.resolve().method_args
    except Exception:                     # a method that is no longer registered: list every arg
        defaults = {}
    for k, v in sorted(cfg.method_args.items()):
        if defaults.get(k, object()) != v:
            parts.append(f"--arg {k}={json.dumps(v) if not isinstance(v, str) else v}")
    for section in ("train", "measure"):
        mine, base = getattr(cfg, section).__dict__, getattr(default, section).__dict__
        for k, v in mine.items():
            if base.get(k) != v:
                value = json.dumps(list(v) if isinstance(v, tuple) else v)
                parts.append(f"--set {section}.{k}={value}")
    if cfg.output_dir:
        parts.append(f"--output-dir {cfg.output_dir}")
    return " \\\n    ".join(parts)


def _fmt(value, spec=".4f") -> str:
    return "n/a" if value is None else format(value, spec) if isinstance(value, (int, float)) else str(value)


def render(row: dict, export: dict | None, kind: str | None = None) -> str:
    m, cfg = row.get("metrics") or {}, row["config"]
    loader = LOADERS.get(kind or "", "AutoModel")
    remote = (export or {}).get("format") == "prunelab"
    widths = (export or {}).get("widths") or {}
    lines = [
        "---", "library_name: transformers", f"tags: [prunelab, {cfg['method']}, pruned]", "---", "",
        f"# {cfg['model']} pruned with {cfg['method']} on {cfg['task']}", "",
        f"Made by prunelab run `{row['id']}` (seed {row.get('seed', cfg.get('seed'))}, "
        f"git {(row.get('env') or {}).get('git_sha', 'unknown')}).", "",
        "| | this model | dense |", "|---|---|---|",
        f"| parameters | {_fmt(m.get('params'), ',')} | {_fmt(m.get('dense_params'), ',')} |",
        f"| parameter ratio | {_fmt(m.get('param_ratio'), '.3f')} | 1 |",
        f"| FLOPs per sample | {_fmt(m.get('flops_per_sample'), '.3g')} | |",
        f"| dev {m.get('metric', 'score')} | {_fmt(m.get('score'))} | |",
    ]
    if m.get("rel_acc") is not None:
        lines.append(f"| score relative to full fine-tuning | {_fmt(m.get('rel_acc'), '.3f')} | 1 |")
    if m.get("speedup_bs32") is not None:
        lines.append(f"| inference speedup vs FT (bs 32) | {_fmt(m.get('speedup_bs32'), '.2f')}x | 1x |")
    lines += ["", "Method settings: " + ", ".join(f"{k}={v}" for k, v in sorted(cfg.get("method_args", {}).items())
                                              if k in ("sparsity", "salience", "distill", "tuning", "rank", "constraint",
                                                       "base", "keep_ratio")) or "defaults", ""]
    if widths:
        lines += ["## What is left", "", "| per-layer widths | |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in widths.items()]
        lines.append("")
    lines += ["## Load it", "", "```python", f"from transformers import {loader}, AutoTokenizer",
              f"model = {loader}.from_pretrained(\"PATH\"{', trust_remote_code=True' if remote else ''})",
              "tokenizer = AutoTokenizer.from_pretrained(\"PATH\")", "```", ""]
    if remote:
        lines += ["Layers keep different widths, so the folder carries its own modeling file: loaders outside "
                  "prunelab need `trust_remote_code=True` (lm-eval-harness: `--model_args pretrained=PATH,"
                  "trust_remote_code=True`).", ""]
    lines += ["## Reproduce", "", "```bash", command_for(cfg), "```", ""]
    return "\n".join(lines)


def write_model_card(out_dir: str, row: dict, kind: str | None = None) -> Path:
    """Write out_dir/README.md for the export of `row` (a store row with derived metrics)."""
    out = Path(out_dir)
    meta = out / "prunelab_export.json"
    export = json.loads(meta.read_text()) if meta.exists() else None
    path = out / "README.md"
    path.write_text(render(row, export, kind))
    return path
