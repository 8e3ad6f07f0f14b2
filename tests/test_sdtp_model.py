"""SDTPModel (generate with a GenerationConfig, padding, eos, sampling), pruner save/load, --output-dir."""
import dataclasses
import json

import pytest
import torch
from transformers import GenerationConfig

from prunelab.errors import PrunelabError
from prunelab.methods.sdtp import SDTPModel, generate, load_pruners, make_config, save_pruners
from prunelab.methods.sdtp._load import tiny_llama
from prunelab.methods.sdtp.modules import PrunerStack


@pytest.fixture(scope="module")
def model():
    m = tiny_llama(6)
    m.requires_grad_(False)
    return m


@pytest.fixture(scope="module")
def cfg():
    return make_config("paper", "tiny")


@pytest.fixture(scope="module")
def stack(model, cfg):
    torch.manual_seed(0)
    return PrunerStack(64, cfg.stage_layers(6), cfg.pruner_hidden_frac, cfg.pos_features, cfg.prior_weight).eval()


def test_pruners_and_config_must_agree_on_the_prior(model, cfg):
    other = PrunerStack(64, cfg.stage_layers(6), cfg.pruner_hidden_frac, cfg.pos_features,
                        prior_weight=cfg.prior_weight + 1.0)
    with pytest.raises(PrunelabError, match="prior_weight"):
        SDTPModel(model, other, cfg)


@pytest.fixture(scope="module")
def prompts():
    return torch.randint(0, 1000, (2, 30), generator=torch.Generator().manual_seed(3))


def test_greedy_generate_matches_inference_generate(model, cfg, stack, prompts):
    sdtp = SDTPModel(model, stack, cfg)
    out = sdtp.generate(prompts[:1], max_new_tokens=6, do_sample=False)
    ref = generate(model, cfg, prompts[:1], 6, pruners=stack)
    assert out.shape == (1, 36) and torch.equal(out[:, :30], prompts[:1]) and torch.equal(out[:, 30:], ref)


def test_keep_everything_equals_hf_generate(model, stack, prompts):
    keep_all = make_config("paper", "tiny", keep_ratio=1.0)
    out = SDTPModel(model, stack, keep_all).generate(prompts, max_new_tokens=5, do_sample=False)
    hf = model.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=5, do_sample=False,
                        pad_token_id=0)
    assert torch.equal(out, hf)


def test_padded_batch_rows_match_single_rows(model, cfg, stack, prompts):
    sdtp = SDTPModel(model, stack, cfg)
    short = prompts[1, 8:]                                   # 22 tokens
    ids = torch.stack([prompts[0], torch.cat([short, torch.zeros(8, dtype=torch.long)])])   # right-padded
    mask = torch.ones_like(ids)
    mask[1, 22:] = 0
    out = sdtp.generate(ids, attention_mask=mask, max_new_tokens=4, pad_token_id=0)
    a = sdtp.generate(prompts[:1], max_new_tokens=4)
    b = sdtp.generate(short[None], max_new_tokens=4)
    assert torch.equal(out[0], a[0])
    assert torch.equal(out[1, -26:], b[0]) and (out[1, :8] == 0).all()      # re-packed to left padding


def test_eos_stops_and_pads(model, cfg, stack, prompts):
    sdtp = SDTPModel(model, stack, cfg)
    free = sdtp.generate(prompts[:1], max_new_tokens=6)
    eos = int(free[0, 31])                                   # the second new token
    out = sdtp.generate(prompts[:1], generation_config=GenerationConfig(max_new_tokens=6, eos_token_id=eos,
                                                                         pad_token_id=7))
    assert out.shape[1] == 32 and int(out[0, 31]) == eos     # stops right after eos (batch of one)
    two = sdtp.generate(prompts, max_new_tokens=6, eos_token_id=eos, pad_token_id=7)
    row = two[0, 30:].tolist()
    assert row[:2] == free[0, 30:32].tolist() and all(t == 7 for t in row[2:])


def test_sampling_is_seeded_and_warped(model, cfg, stack, prompts):
    sdtp = SDTPModel(model, stack, cfg)
    kw = dict(max_new_tokens=8, do_sample=True, temperature=5.0, top_k=0, top_p=1.0)
    a = sdtp.generate(prompts[:1], generator=torch.Generator().manual_seed(1), **kw)
    b = sdtp.generate(prompts[:1], generator=torch.Generator().manual_seed(1), **kw)
    c = sdtp.generate(prompts[:1], generator=torch.Generator().manual_seed(2), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    greedy = sdtp.generate(prompts[:1], max_new_tokens=8)
    top1 = sdtp.generate(prompts[:1], generator=torch.Generator().manual_seed(2), max_new_tokens=8,
                         do_sample=True, top_k=1)
    assert torch.equal(top1, greedy)                          # top_k=1 sampling is greedy
    with pytest.raises(PrunelabError):
        sdtp.generate(prompts[:1], max_new_tokens=2, num_beams=2)


def test_save_and_load_round_trip(tmp_path, model, cfg, stack, prompts):
    sdtp = SDTPModel(model, stack, cfg, model_name="tiny-llama")
    sdtp.save_pretrained(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "sdtp_config.json").read_text())
    assert meta["model"] == "tiny-llama" and meta["stage_layers"] == cfg.stage_layers(6)
    assert (tmp_path / "p" / "pruners.safetensors").exists()
    back = SDTPModel.from_pretrained(tmp_path / "p", model=model)
    assert back.sdtp_config == cfg
    assert torch.equal(back.generate(prompts, max_new_tokens=5), sdtp.generate(prompts, max_new_tokens=5))
    thr = SDTPModel.from_pretrained(tmp_path / "p", model=model, selection="threshold")
    assert thr.sdtp_config.selection == "threshold"
    with pytest.raises(PrunelabError):
        SDTPModel.from_pretrained(tmp_path / "p", model=model, keep_ratio=0.5)   # a training field
    with pytest.raises(PrunelabError):
        load_pruners(tmp_path / "missing")


def test_cli_output_dir_saves_loadable_pruners(tmp_path, monkeypatch):
    """`prunelab train --method sdtp --output-dir DIR` (issue 9) leaves pruners + config in DIR."""
    import prunelab.methods.sdtp._load as L
    from prunelab.cli import main

    monkeypatch.setitem(L._MEMO, "tiny-llama", (tiny_llama(6), None))
    monkeypatch.setenv("PRUNELAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    rc = main(["train", "--model", "tiny-llama", "--task", "wikitext2", "--method", "sdtp", "--data-dir", "synthetic",
               "--arg", "preset=tiny", "--arg", "train_steps=2", "--output-dir", str(out),
               "--store", str(tmp_path / "runs.db"), "--json"])
    assert rc == 0
    stack, c, meta = load_pruners(out)
    assert meta["model"] == "tiny-llama" and c.train_steps == 2 and stack.pos_features
    back = SDTPModel.from_pretrained(out, model=L._MEMO["tiny-llama"][0])
    assert back.generate(torch.ones(1, 40, dtype=torch.long), max_new_tokens=3).shape == (1, 43)
