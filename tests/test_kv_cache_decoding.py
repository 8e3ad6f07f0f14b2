"""Decoding through the KV cache gives the logits of a full forward, for pruned LLaMA and T5.

transformers 5.x renamed the cache argument of attention modules (past_key_values -> cache); an
override that read only the old name computed T5's relative position bias as if nothing were
cached, and a headless LLaMA layer 0 left an entry of length 0, so positions restarted at 0.
Both gave plausible but wrong tokens from generate()."""
import pytest
import torch

from prunelab.models.compat import cache_kw, output_cache
from prunelab.models.family import get_family
from prunelab.models.hf_t5 import make_prunable
from types import SimpleNamespace

from prunelab.models.load import load_model

LM, SEQ2SEQ = SimpleNamespace(kind="lm"), SimpleNamespace(kind="seq2seq")


def _prune_heads(model, blocks: dict[int, int]):
    fam = get_family(model)
    for b, keep in blocks.items():
        fam.prune_heads(b, list(range(keep)))
    return model


def _llama(blocks):
    m = load_model("tiny-llama", LM).model.eval()
    return _prune_heads(m, blocks)


@pytest.mark.parametrize("blocks", [{}, {0: 0}, {1: 0}, {0: 1, 1: 0}], ids=["dense", "l0-headless", "l1-headless", "mixed"])
def test_llama_cached_decoding_matches_full_forward(blocks):
    torch.manual_seed(0)
    m = _llama(blocks)
    ids = torch.randint(5, m.config.vocab_size, (2, 12))
    full = m(ids).logits[:, -3:]
    out = m(ids[:, :9], use_cache=True)
    inc = m(ids[:, 9:], use_cache=True, **{cache_kw(type(m).forward): output_cache(out)}).logits
    torch.testing.assert_close(inc, full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("decoder_blocks", [None, {}, {0: 0, 1: 1}], ids=["stock", "prunable", "headless"])
def test_t5_cached_decoding_matches_full_forward(decoder_blocks):
    """None: transformers' own T5; {}: every attention made prunable, nothing pruned;
    {0: 0, 1: 1}: the decoder's first self-attention loses every head, the next keeps one."""
    torch.manual_seed(0)
    m = load_model("tiny-t5", SEQ2SEQ).model.eval()
    if decoder_blocks is not None:
        make_prunable(m)
        n_enc = len(m.encoder.block)           # attention blocks count the encoder's first
        _prune_heads(m, {n_enc + b: keep for b, keep in decoder_blocks.items()})
    ids = torch.randint(5, m.config.vocab_size, (2, 10))
    dec = torch.randint(5, m.config.vocab_size, (2, 7))
    full = m(input_ids=ids, decoder_input_ids=dec).logits[:, -2:]
    out = m(input_ids=ids, decoder_input_ids=dec[:, :-2], use_cache=True)
    inc = m(input_ids=ids, decoder_input_ids=dec[:, -2:], use_cache=True,
            **{cache_kw(type(m).forward): output_cache(out)}).logits
    torch.testing.assert_close(inc, full, atol=1e-5, rtol=1e-4)
