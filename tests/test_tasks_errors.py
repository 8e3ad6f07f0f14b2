"""Bad input gives a one-line PrunelabError that names the problem, never a traceback."""
import sys
import types

import pytest

from prunelab.errors import PrunelabError
from prunelab.tasks import get_task, list_tasks

ALL = {"glue/sst2", "glue/mnli", "glue/qnli", "glue/qqp", "glue/rte", "glue/mrpc", "glue/cola",
       "glue/stsb", "squad", "squad_v2", "cnn_dailymail", "wikitext2"}


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_registry_names_and_aliases():
    assert set(list_tasks()) == ALL
    assert get_task("sst2").name == "glue/sst2"
    assert get_task("stsb").name == "glue/stsb"
    assert get_task(" Glue/MNLI ").name == "glue/mnli"
    # get_task hands out copies: changing one does not leak into the next
    task = get_task("cnn_dailymail")
    task.max_new_tokens = 3
    assert get_task("cnn_dailymail").max_new_tokens == 64


def test_task_attributes():
    assert (get_task("glue/stsb").kind, get_task("glue/stsb").num_labels) == ("regression", 1)
    assert get_task("glue/mnli").num_labels == 3
    assert get_task("glue/cola").metric == "matthews"
    assert get_task("squad").kind == "qa" and get_task("squad").metric == "f1"
    lm = get_task("wikitext2")
    assert (lm.kind, lm.metric, lm.higher_is_better) == ("lm", "perplexity", False)
    assert get_task("cnn_dailymail").metric == "rouge1"
    assert "dev_mismatched" in get_task("mnli").splits


def test_unknown_task_suggests_close_match():
    with pytest.raises(PrunelabError) as err:
        get_task("glue/sst3")
    msg = one_line(err)
    assert "did you mean 'glue/sst2'" in msg
    assert "wikitext2" in msg  # lists the valid choices


def test_unknown_split(tmp_path):
    with pytest.raises(PrunelabError) as err:
        get_task("sst2").load("validation", data_dir=str(tmp_path))
    assert "'validation'" in one_line(err) and "dev" in str(err.value)


def test_missing_data_dir_explicit_and_env(tmp_path, monkeypatch):
    gone = tmp_path / "nope"
    with pytest.raises(PrunelabError) as err:
        get_task("sst2").load("dev", data_dir=str(gone))
    assert str(gone) in one_line(err) and "--data-dir" in str(err.value)
    monkeypatch.setenv("PRUNELAB_DATA", str(gone))
    with pytest.raises(PrunelabError) as err:
        get_task("sst2").load("dev")
    assert "PRUNELAB_DATA" in one_line(err)


def test_missing_task_folder_and_file(tmp_path):
    (tmp_path / "wikitext-2").mkdir()
    with pytest.raises(PrunelabError) as err:
        get_task("mnli").load("dev", data_dir=str(tmp_path))
    msg = one_line(err)
    assert "glue/mnli" in msg and "MNLI" in msg and "wikitext-2" in msg
    (tmp_path / "SST-2").mkdir()
    with pytest.raises(PrunelabError) as err:
        get_task("sst2").load("train", data_dir=str(tmp_path))
    assert "train.tsv" in one_line(err)


def test_wikitext_missing_train_names_present_splits(tmp_path):
    # no train file: valid trains (test_tasks_lm); with valid missing too, the error names both
    write(tmp_path / "wikitext-2" / "wiki.test.tokens", " = B = \n")
    with pytest.raises(PrunelabError) as err:
        get_task("wikitext2").load("train", data_dir=str(tmp_path))
    msg = one_line(err)
    assert "wiki.train.tokens" in msg and "wiki.valid.tokens" in msg and "wiki.test.tokens" in msg


@pytest.mark.parametrize("task, folder, filename, text, line, words", [
    ("sst2", "SST-2", "train.tsv", "sentence\tlabel\ngood\t1\nbad\n", 3, "columns"),
    ("sst2", "SST-2", "train.tsv", "sentence\tlabel\ngood\t1\nbad\tneg\n", 3, "not a number"),
    ("sst2", "SST-2", "train.tsv", "sentence\tlabel\ngood\t7\n", 2, "outside"),
    ("cola", "CoLA", "train.tsv", "src\t1\t\tok .\nsrc\t0\tbad .\n", 2, "columns"),
    ("mnli", "MNLI", "dev_matched.tsv",
     "sentence1\tsentence2\tgold_label\na\tb\tentailment\na\tb\tmaybe\n", 3, "'maybe'"),
    ("stsb", "STS-B", "dev.tsv", "sentence1\tsentence2\tscore\na\tb\t4.5\na\tb\thigh\n", 3,
     "not a number"),
])
def test_malformed_tsv_row_names_file_and_line(tmp_path, task, folder, filename, text, line, words):
    path = write(tmp_path / folder / filename, text)
    split = "train" if filename == "train.tsv" else "dev"
    with pytest.raises(PrunelabError) as err:
        get_task(task).load(split, data_dir=str(tmp_path))
    msg = one_line(err)
    assert f"{path}:{line}:" in msg
    assert words in msg


def test_unlabelled_glue_test_file(tmp_path):
    write(tmp_path / "SST-2" / "test.tsv", "index\tsentence\n0\tfine film\n")
    with pytest.raises(PrunelabError) as err:
        get_task("sst2").load("test", data_dir=str(tmp_path))
    assert "'label'" in one_line(err) and "no labels" in str(err.value)


@pytest.mark.parametrize("limit", [0, -3, 2.5, True])
def test_bad_limit(tmp_path, limit):
    write(tmp_path / "sst2" / "dev.tsv", "sentence\tlabel\na\t1\nb\t0\n")
    with pytest.raises(PrunelabError):
        get_task("sst2").load("dev", data_dir=str(tmp_path), limit=limit)


def test_hub_fallback_when_datasets_fails(monkeypatch):
    monkeypatch.delenv("PRUNELAB_DATA", raising=False)
    broken = types.ModuleType("datasets")

    def load_dataset(*args, **kwargs):
        raise ConnectionError("no route to host\nsecond line of detail")

    broken.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", broken)
    with pytest.raises(PrunelabError) as err:
        get_task("squad").load("dev")
    msg = one_line(err)
    assert "ConnectionError" in msg and "PRUNELAB_DATA" in msg and "--data-dir" in msg


def test_hub_fallback_maps_rows(monkeypatch):
    monkeypatch.delenv("PRUNELAB_DATA", raising=False)
    calls = []
    rows = {
        ("glue", "mnli"): [{"premise": "p", "hypothesis": "h", "label": 2, "idx": 0}],
        ("glue", "stsb"): [{"sentence1": "a", "sentence2": "b", "label": 3.2, "idx": 0}],
        ("squad_v2",): [{"id": "q1", "title": "T", "context": "ctx", "question": "q?",
                         "answers": {"text": [], "answer_start": []}}],
        ("cnn_dailymail", "3.0.0"): [{"article": "art", "highlights": "hi", "id": "x"}],
        ("wikitext", "wikitext-2-raw-v1"): [{"text": " = T = \n"}, {"text": ""}],
    }
    fake = types.ModuleType("datasets")

    def load_dataset(*args, split):
        calls.append((args, split))
        return rows[args]

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)

    mnli = get_task("mnli").load("dev_mismatched")
    assert mnli[0]["text_a"] == "p" and mnli[0]["text_b"] == "h" and mnli[0]["label"] == 2
    assert calls[-1] == (("glue", "mnli"), "validation_mismatched")
    assert get_task("stsb").load("dev")[0]["label"] == pytest.approx(3.2)
    assert get_task("squad_v2").load("dev")[0]["is_impossible"] is True
    assert calls[-1] == (("squad_v2",), "validation")
    assert get_task("cnn_dailymail").load("test")[0]["highlights"] == "hi"
    assert len(get_task("wikitext2").load("test")) == 2


def test_hub_test_split_without_labels(monkeypatch):
    monkeypatch.delenv("PRUNELAB_DATA", raising=False)
    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda *a, split: [{"sentence": "x", "label": -1, "idx": 0}]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(PrunelabError) as err:
        get_task("sst2").load("test")
    assert "no labels" in one_line(err)


def test_evaluate_with_no_features():
    model = types.SimpleNamespace(training=False, eval=lambda: None, train=lambda mode=True: None)
    with pytest.raises(PrunelabError) as err:
        get_task("sst2").evaluate(model, [], tokenizer=None, batch_size=8, device="cpu")
    assert "nothing to evaluate" in one_line(err)
