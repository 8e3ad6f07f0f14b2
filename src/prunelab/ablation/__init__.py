"""The ablation engine: plans written by people or LMs -> resolved cells -> runs -> report.

    plan = load_plan("plan.md")                      # markdown, AblationBench JSONL, YAML, matrix table
    res = resolve_plan(plan)                         # free text -> (component, option), metric keys
    matrix = build_matrix(res, base_config("tiny", res.method), seeds=3,
                          reference=reference_config("tiny", res.method))
    run_matrix(matrix, "runs/prunelab.db", executor="local", workers=2)
    write_report(matrix.study, "runs/prunelab.db")   # md, tex, csv, png, html, paper section
"""
from prunelab.ablation.executors import Summary, run_matrix
from prunelab.ablation.generate import generate_plan
from prunelab.ablation.matrix import Cell, Matrix, build_matrix
from prunelab.ablation.metrics import MetricRef, resolve_metric
from prunelab.ablation.parse import load_plan
from prunelab.ablation.plan import Ablation, Action, Plan, Section
from prunelab.ablation.presets import base_config, reference_config
from prunelab.ablation.report import write_report
from prunelab.ablation.resolve import Resolution, resolve_plan

__all__ = [
    "Ablation", "Action", "Cell", "Matrix", "MetricRef", "Plan", "Resolution", "Section", "Summary",
    "base_config", "build_matrix", "generate_plan", "load_plan", "reference_config", "resolve_metric",
    "resolve_plan", "run_matrix", "write_report",
]
