"""A standard evaluator on an export: lm-eval-harness' `hf` model, offline, in a process
that never imports prunelab."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from prunelab.config import MeasureConfig, RunConfig, TrainConfig
from prunelab.run import run

pytest.importorskip("lm_eval")

TASK = """
task: prunelab_capitals
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
"""

EVAL = """
import json, sys
import lm_eval
from lm_eval.tasks import TaskManager
# a layout=uniform export is a stock LlamaConfig checkpoint: no trust_remote_code. (tiny-llama
# borrows a BERT tokenizer with no BOS/EOS, so name the prefix token, [CLS]; a real LLaMA
# tokenizer needs no such argument.) Free per-layer widths add trust_remote_code=True.
args = f"pretrained={sys.argv[1]},dtype=float32,prefix_token_id=101"
out = lm_eval.simple_evaluate(model="hf", model_args=args,
                              tasks=["prunelab_capitals"], task_manager=TaskManager(include_path=sys.argv[2]),
                              device="cpu", batch_size=4)
assert "prunelab" not in sys.modules
print(json.dumps(out["results"]["prunelab_capitals"]))
"""


def test_lm_eval_harness_scores_an_apt_export_offline(tmp_path, data_dir):
    out = tmp_path / "apt-llama"
    cfg = RunConfig(model="tiny-llama", task="wikitext2", method="apt", data_dir=data_dir,
                    method_args={"sparsity": 0.3, "layout": "uniform"}, output_dir=str(out),
                    train=TrainConfig(batch_size=2, max_steps=4, eval_points=1, train_limit=8, eval_limit=2),
                    measure=MeasureConfig(throughput=False, flops=False))
    row = run(cfg, tmp_path / "r.db")
    assert row["status"] == "done" and row["metrics"]["export_format"] == "stock"
    docs = [{"question": f"Question {i}: the capital of country {i} is", "choices": ["Paris", "Rome", "Oslo"],
             "answer": i % 3} for i in range(6)]
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "capitals.yaml").write_text(TASK.format(data=tmp_path / "mc.jsonl"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(EVAL), str(out), str(tasks)],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert 0.0 <= result["acc,none"] <= 1.0
