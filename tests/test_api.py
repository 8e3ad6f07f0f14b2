"""The Python API and user data: a jsonl of (text, label) -> an APT-pruned, exported model."""
import json
import subprocess
import sys

import pytest

from prunelab.errors import PrunelabError
from prunelab.tasks import get_task

POSITIVE = ["a wonderful film", "great acting and a lovely story", "I loved it", "superb and moving",
            "brilliant fun", "a delight from start to end"]
NEGATIVE = ["a dull mess", "boring and far too long", "I hated it", "awful script", "tedious and flat",
            "a waste of time"]


def reviews(n=96):
    rows = []
    for i in range(n):
        pos = i % 2 == 0
        text = (POSITIVE if pos else NEGATIVE)[i % 6]
        rows.append({"review": f"{text} ({i})", "stars": "good" if pos else "bad"})
    return rows


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in reviews()))
    return path


def test_file_task_maps_string_labels_and_holds_out_a_fixed_dev_split(jsonl):
    task = get_task(f"file:{jsonl}?text=review&label=stars")
    assert task.kind == "classification" and task.num_labels == 2 and task.label_names == ["bad", "good"]
    dev_a = task.load("dev", seed=0)
    dev_b = task.load("dev", seed=7)
    train = task.load("train")
    assert [e["text_a"] for e in dev_a] == [e["text_a"] for e in dev_b]      # does not move with the seed
    assert len(dev_a) == 10 and len(train) == 86
    assert not {e["text_a"] for e in dev_a} & {e["text_a"] for e in train}
    assert {e["label"] for e in train} == {0, 1}


@pytest.mark.parametrize("spec, message", [
    ("file:{d}/nope.jsonl", "does not exist"),
    ("file:{d}/reviews.jsonl?txt=review", "unknown option"),
    ("file:{d}/reviews.jsonl", "lack column"),             # default columns text/label are absent
    ("file:{d}/reviews.xml", "unknown data file type"),
])
def test_bad_file_specs_are_one_line_errors(jsonl, spec, message):
    with pytest.raises(PrunelabError, match=message) as err:
        get_task(spec.format(d=jsonl.parent))
    assert "\n" not in str(err.value)


def test_folder_with_train_and_dev_files(tmp_path):
    rows = reviews(20)
    for name, part in (("train.tsv", rows[:14]), ("dev.tsv", rows[14:])):
        lines = ["review\tstars"] + [f"{r['review']}\t{r['stars']}" for r in part]
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    task = get_task(f"file:{tmp_path}?text=review&label=stars")
    assert len(task.load("train")) == 14 and len(task.load("dev")) == 6


def test_ten_lines_of_python_give_an_apt_pruned_exported_model(jsonl, tmp_path):
    # the acceptance: a user with a jsonl of (text, label) pairs, <= 10 lines
    import prunelab
    from prunelab.methods.apt import APTConfig

    result = prunelab.prune("tiny-bert", method="apt", config=APTConfig(sparsity=0.5),
                            train_data=str(jsonl), text="review", label="stars",
                            max_steps=8, batch_size=8, lr=1e-3, eval_points=2,
                            store=str(tmp_path / "r.db"), measure=False)
    result.save_pretrained(str(tmp_path / "mine"))

    assert result.record["status"] == "done" and 0 <= result.metrics["score"] <= 1
    # pruned to its budget, within two hidden dims of tiny-bert (hidden 64: ~1.6% of its layer parameters each)
    assert abs(result.metrics["apt_nonemb_param_ratio"] - 0.5) < 0.035
    check = ("import sys, torch; from transformers import AutoModelForSequenceClassification as M, AutoTokenizer as T;"
             "m = M.from_pretrained(sys.argv[1], trust_remote_code=True).eval(); t = T.from_pretrained(sys.argv[1]);"
             "print(m(**t(['I loved it'], return_tensors='pt')).logits.shape[-1]);"
             "assert 'prunelab' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", check, str(tmp_path / "mine")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "2"


def test_in_memory_rows_with_a_user_metric_and_a_model_object(tmp_path):
    import prunelab
    from prunelab.models.load import load_model

    calls = []

    def balanced_hits(preds, labels):
        calls.append(len(preds))
        return sum(p == y for p, y in zip(preds, labels)) / len(labels)

    loaded = load_model("tiny-bert", get_task("glue/sst2"))
    rows = reviews(40)
    result = prunelab.prune(loaded.model, loaded.tokenizer, method="ft", train_data=rows[:30], eval_data=rows[30:],
                            text="review", label="stars", metric=balanced_hits, max_steps=3, batch_size=8,
                            eval_points=1, store=str(tmp_path / "r.db"), measure=False)
    assert calls and calls[-1] == 10                                   # our metric scored the 10 dev rows
    assert result.metrics["metric"] == "balanced_hits"
    assert result.model is not None and result.model.config.num_labels == 2


def test_api_errors_name_the_problem(tmp_path):
    import prunelab

    with pytest.raises(PrunelabError, match="needs task="):
        prunelab.prune("tiny-bert", method="ft")
    with pytest.raises(PrunelabError, match="unknown train key 'max_step'"):
        prunelab.prune("tiny-bert", method="ft", task="glue/sst2", max_step=3, store=str(tmp_path / "r.db"))
    with pytest.raises(PrunelabError, match="tokenizer="):
        from prunelab.models.load import load_model

        prunelab.prune(load_model("tiny-bert").model, method="ft", task="glue/sst2")


def test_cli_trains_on_a_user_file_with_column_flags(jsonl, tmp_path):
    env = {**__import__("os").environ}
    cmd = [sys.executable, "-m", "prunelab.cli", "train", "--method", "ft", "--model", "tiny-bert",
           "--task", f"file:{jsonl}", "--text-column", "review", "--label-column", "stars", "--max-steps", "3",
           "--batch-size", "8", "--set", "measure.throughput=false", "--store", str(tmp_path / "r.db"), "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr[-2000:]
    row = json.loads(res.stdout)
    assert row["status"] == "done" and row["config"]["task"] == f"file:{jsonl}?text=review&label=stars"
    bad = subprocess.run(cmd[:6] + ["--task", "glue/sst2", "--label-column", "x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "apply to --task file:PATH" in bad.stderr
