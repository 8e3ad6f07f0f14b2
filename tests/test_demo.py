"""`prunelab demo --smoke`: the demo's own code on tiny random models, as `make demo` runs it
(a subprocess without a TTY), plus its plan-subset and quiet helpers."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prunelab.demo import PLAN_ABLATIONS, plan_subset, seed_plan_path
from prunelab.errors import PrunelabError

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _seed_plan(data_dir):
    path = seed_plan_path(data_dir)
    if path is None:
        pytest.skip("seed plan 000 not found next to the data folder (../shared/seeds)")
    return path


def test_demo_smoke_runs_all_three_parts(data_dir, tmp_path):
    _seed_plan(data_dir)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
               PRUNELAB_DATA=data_dir, OMP_NUM_THREADS="1")
    for key in ("TRANSFORMERS_VERBOSITY", "PYTHONWARNINGS"):    # the demo must silence them itself
        env.pop(key, None)
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "prunelab.cli", "demo", "--smoke",
                           "--store", str(tmp_path / "runs" / "prunelab.db")],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=900)
    seconds = time.time() - t0
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    assert "Traceback" not in out + err
    # transformers' load reports, progress bars and warnings are silenced
    assert "LOAD REPORT" not in out + err and "MISSING" not in out + err
    assert "Loading weights" not in err and "Warning" not in err, err[-2000:]

    # 1. prune while fine-tuning: accuracy, reloaded accuracy, parameters, speedup vs FLOPs limit, path
    assert "== 1. Prune while fine-tuning" in out
    assert re.search(r"dev accuracy \(SST-2\)\s+0\.\d{3}\s+0\.\d{3} \(\d\.\d\d of FT\)", out)
    assert re.search(r"dev accuracy, reloaded\s+0\.\d{3} \(\w+ForSequenceClassification, fresh process\)", out)
    assert re.search(r"parameters\s+[\d.]+ M\s+[\d.]+ M \(0\.\d\d of FT\)", out)
    assert re.search(r"\d+\.\d\dx measured \(FLOPs limit \d+\.\d\dx\)", out)
    ckpt = re.search(r"pruned checkpoint: (\S+)", out).group(1)
    assert (Path(ckpt) / "config.json").exists() and list(Path(ckpt).glob("*.safetensors"))

    # 2. drop prompt tokens: prefill times, perplexity rise learned vs recency at the same counts
    assert "== 2. Drop prompt tokens: SDTP on tiny-llama" in out
    assert re.search(r"prefill time, \d+ tokens\s+\d+\.\d\d s\s+\d+\.\d\d s \(\d+\.\d\dx; FLOPs limit \d+\.\d\dx\)", out)
    m = re.search(r"perplexity\s+([\d.]+)\s+([\d.]+) \(([+-][\d.]+)%\)\s+([\d.]+) \(([+-][\d.]+)%\)", out)
    assert m, out
    kept = re.search(r"prompt tokens after the last stage\s+(\d+)\s+(\d+) \(\d+%\)\s+(\d+) \(\d+%\)", out)
    assert kept and kept.group(2) == kept.group(3) and int(kept.group(2)) < int(kept.group(1))

    # 3. the ablation plan: both variants with verdicts, the paper section, the HTML report
    assert "== 3. Run an ablation plan" in out
    for label in ("none", "fixed"):
        assert re.search(rf"\b{label}\s+0\.\d{{3}}\s+0\.\d{{3}}\s+(confirmed|refuted|inconclusive)", out), label
    assert "6 run(s) done" in out       # baseline + 2 variants x 2 seeds, no FT reference cell
    assert "  | ### 6. Ablation Studies" in out and ", 2 paired seeds" in out and "Threats to validity" in out
    html = re.search(r"HTML report: (\S+report\.html)", out).group(1)
    assert Path(html).stat().st_size > 1000

    # the summary: a few rows and the next steps
    summary = out.split("== Summary ==", 1)[1]
    assert "1. prune while fine-tuning" in summary and "2. drop prompt tokens" in summary
    assert "3. ablation plan" in summary and "next steps" in summary
    print(f"demo --smoke: {seconds:.0f} s")


def test_plan_subset_keeps_only_the_chosen_ablations(data_dir):
    text = _seed_plan(data_dir).read_text(encoding="utf-8")
    sub = plan_subset(text)
    assert sub.count("### Ablation:") == len(PLAN_ABLATIONS)
    for name in PLAN_ABLATIONS:
        assert f"### Ablation: {name}\n" in sub
    assert "### Ablation: Late Pruning" not in sub and "### Ablation: Static Tuning Rank" not in sub
    assert sub.startswith(text.split("### Ablation:")[0])
    with pytest.raises(PrunelabError, match="lacks the ablations"):
        plan_subset(text, names=("No Knowledge Distillation", "No Such Ablation"))


def _without_and_with_quiet(code: str, unset: str):
    """Run `code` in fresh processes with argv[1] '0' (quiet off) and '1' (quiet on), the
    variable that quiet() would set removed from the inherited environment."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    env.pop(unset, None)
    return [subprocess.run([sys.executable, "-c", code, flag], capture_output=True, text=True, env=env)
            for flag in ("0", "1")]


def test_quiet_silences_transformers_load_report(monkeypatch):
    code = ("import logging, sys; from prunelab.quiet import quiet; quiet(sys.argv[1] == '1');"
            "from transformers.utils import logging as hl;"
            "hl.get_logger('transformers.modeling_utils').warning('LOAD REPORT demo')")
    loud, silent = _without_and_with_quiet(code, "TRANSFORMERS_VERBOSITY")
    assert "LOAD REPORT demo" in loud.stderr
    assert silent.returncode == 0 and "LOAD REPORT demo" not in silent.stderr


def test_quiet_silences_plain_tqdm_bars():
    """transformers' GGUF loader (SmolLM2) draws a plain tqdm bar, which hf logging does not
    control: without a TTY it printed every step into the demo's output."""
    code = ("import sys; from prunelab.quiet import quiet; quiet(sys.argv[1] == '1');"
            "from tqdm.auto import tqdm; [None for _ in tqdm(range(3), desc='GGUF bar')]")
    loud, silent = _without_and_with_quiet(code, "TQDM_DISABLE")
    assert "GGUF bar" in loud.stderr
    assert silent.returncode == 0 and "GGUF bar" not in silent.stderr
