"""SDTP pruned prefill/decoding on a tiny random LLaMA in fp64."""
import dataclasses

import pytest
import torch

from prunelab.methods.sdtp import PrunerStack, decode, generate, make_config, prefill
from prunelab.methods.sdtp._load import tiny_llama
from prunelab.methods.sdtp.masked import policy_forward
from prunelab.methods.sdtp.saliency import prompt_saliency

N = 40


@pytest.fixture(scope="module")
def model():
    return tiny_llama(8, dtype=torch.float64)


@pytest.fixture(scope="module")
def cfg():
    return make_config("seed", "tiny", protect_last=4)


@pytest.fixture(scope="module")
def pruners(model, cfg):
    torch.manual_seed(1)
    return PrunerStack(64, cfg.stage_layers(8)).double()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 1000, (1, N), generator=torch.Generator().manual_seed(2))


def close(a, b, tol=1e-10):
    return (a - b).abs().max().item() < tol


def test_dense_loop_matches_hf(model, cfg, ids):
    lg, st = prefill(model, cfg, ids, prune=False)
    assert close(lg, model(ids).logits[:, -1])
    assert st.layer_tokens == [N] * 8 and st.kept_per_stage == []


def test_physical_removal_matches_masked_reference(model, cfg, pruners, ids):
    lg, st = prefill(model, cfg, ids, pruners=pruners)
    ref, rst = prefill(model, cfg, ids, pruners=pruners, simulate=True)
    assert st.kept_index == rst.kept_index
    assert close(lg, ref)
    assert not close(lg, prefill(model, cfg, ids, prune=False)[0])       # pruning does change the output
    assert st.layer_tokens[-1] < N and rst.layer_tokens == [N] * 8      # removed vs full length
    tok = torch.tensor([[5, 6, 7]])
    assert close(decode(model, st, tok), decode(model, rst, tok))       # multi-token chunk
    assert close(decode(model, st, tok[:, :1]), decode(model, rst, tok[:, :1]))   # then one token


def test_training_simulation_matches_inference(model, cfg, pruners, ids):
    lg, st = prefill(model, cfg, ids, pruners=pruners)

    def on_stage(s, l, h):
        p = torch.zeros(1, N, dtype=h.dtype)
        p[0, st.kept_index[s][0]] = 1.0
        return p

    out = policy_forward(model, ids, cfg.stage_layers(8), on_stage, logits_from=N - 1)
    assert close(out[:, -1], lg)


def test_keep_counts_exact_and_protected_survive(model, cfg, pruners, ids):
    for c in (cfg, make_config("paper", "tiny")):
        lg, st = prefill(model, c, ids, pruners=pruners)
        stages = c.stage_layers(8)
        n_prot = 4 + (4 if c is cfg else 4)                             # paper: ceil(0.1 * 40) = 4
        for s, cum in enumerate(c.cumulative_keep(len(stages))):
            from prunelab.methods.sdtp.config import ceil_count
            want = max(n_prot, ceil_count(cum * N)) if c.count_protected else n_prot + ceil_count(cum * (N - n_prot))
            assert int(st.kept_per_stage[s][0]) == want
            kept = set(st.kept_index[s][0])
            assert {0, 1, 2, 3, N - 4, N - 3, N - 2, N - 1} <= kept
    assert int(prefill(model, cfg, ids, pruners=pruners)[1].kept_per_stage[-1][0]) == 28   # 0.7 overall


def test_generation_and_decode_positions(model, cfg, pruners, ids):
    out = generate(model, cfg, ids, 6, pruners=pruners)
    assert out.shape == (1, 6)
    # greedy tokens equal step-by-step argmax through the masked reference
    lg, rst = prefill(model, cfg, ids, pruners=pruners, simulate=True)
    toks = [lg.argmax(-1, keepdim=True)]
    for _ in range(5):
        toks.append(decode(model, rst, toks[-1])[:, -1].argmax(-1, keepdim=True))
    assert torch.equal(out, torch.cat(toks, 1))
    _, st = prefill(model, cfg, ids, pruners=pruners)
    assert int(st.next_order[0]) == N and all(int(r[0]) == N for r in st.next_rope)


def test_batch_with_left_padding(model, cfg, pruners, ids):
    short = torch.randint(0, 1000, (1, 29), generator=torch.Generator().manual_seed(3))
    batch = torch.zeros(2, N, dtype=torch.long)
    am = torch.zeros(2, N, dtype=torch.long)
    batch[0], am[0] = ids[0], 1
    batch[1, N - 29:], am[1, N - 29:] = short[0], 1
    lgb, stb = prefill(model, cfg, batch, am, pruners=pruners)
    lg0, st0 = prefill(model, cfg, ids, pruners=pruners)
    lg1, st1 = prefill(model, cfg, short, pruners=pruners)
    assert close(lgb[0], lg0[0]) and close(lgb[1], lg1[0])
    assert [int(k[1]) for k in stb.kept_per_stage] == [int(k[0]) for k in st1.kept_per_stage]
    gb = generate(model, cfg, batch, 4, am, pruners=pruners)
    assert torch.equal(gb[0], generate(model, cfg, ids, 4, pruners=pruners)[0])
    assert torch.equal(gb[1], generate(model, cfg, short, 4, pruners=pruners)[0])
    with pytest.raises(Exception):
        prefill(model, cfg, batch, am.flip(1), pruners=pruners)         # right padding is refused


def test_eager_attention_path_agrees(cfg, pruners, ids):
    sd = tiny_llama(8, dtype=torch.float64)
    ea = tiny_llama(8, dtype=torch.float64, attn="eager")
    lg_s, st_s = prefill(sd, cfg, ids, pruners=pruners)
    lg_e, st_e = prefill(ea, cfg, ids, pruners=pruners)
    # eager attention takes its softmax in float32, hence the looser tolerance
    assert st_s.kept_index == st_e.kept_index and close(lg_s, lg_e, 1e-6)
    tok = torch.tensor([[9, 10]])
    assert close(decode(sd, st_s, tok), decode(ea, st_e, tok), 1e-6)


# -- ablation switches: each changes what it should ---------------------------------------
def test_rope_off_reindexes_and_changes_logits(model, cfg, pruners, ids):
    on, st_on = prefill(model, cfg, ids, pruners=pruners)
    off, st_off = prefill(model, dataclasses.replace(cfg, rope_fix=False), ids, pruners=pruners)
    assert st_on.kept_index[0] == st_off.kept_index[0]                  # same first choice
    assert not close(on, off, 1e-6)
    assert int(st_off.next_rope[-1][0]) == int(st_off.layer_alive[-1][0]) < N   # decode at re-indexed n_l


def test_local_vs_cumulative_propagation(model, cfg, pruners, ids):
    _, cum = prefill(model, cfg, ids, pruners=pruners)
    _, loc = prefill(model, dataclasses.replace(cfg, propagation="local"), ids, pruners=pruners)
    assert [len(k[0]) for k in cum.kept_index] == [len(k[0]) for k in loc.kept_index]
    assert cum.kept_index != loc.kept_index
    for a, b in zip(cum.kept_index, cum.kept_index[1:]):                  # cumulative: nested sets
        assert set(b[0]) <= set(a[0])
    assert not all(set(b[0]) <= set(a[0]) for a, b in zip(loc.kept_index, loc.kept_index[1:]))
    assert loc.layer_tokens == [N] * 8                                  # local cannot remove tokens


def test_mask_update_off_keeps_dropped_visible(model, cfg, pruners, ids):
    on, _ = prefill(model, cfg, ids, pruners=pruners)
    c = dataclasses.replace(cfg, mask_update=False)
    off, st = prefill(model, c, ids, pruners=pruners)
    assert not close(on, off, 1e-6) and st.layer_tokens == [N] * 8
    assert all(not hb for hb in st.has_bias)                            # no key is masked out
    decode(model, st, torch.tensor([[3]]))


def test_soft_mask_weights_survivors(model, cfg, pruners, ids):
    hard, st_h = prefill(model, cfg, ids, pruners=pruners)
    soft, st_s = prefill(model, dataclasses.replace(cfg, mask="soft"), ids, pruners=pruners)
    # same first choice (scores see identical hidden states); the soft policy then changes them
    assert st_h.kept_index[0] == st_s.kept_index[0] and not close(hard, soft, 1e-6)
    assert st_h.layer_tokens == st_s.layer_tokens and any(st_s.has_bias)
    _, ref = prefill(model, dataclasses.replace(cfg, mask="soft"), ids, pruners=pruners, simulate=True)
    assert ref.kept_index == st_s.kept_index


def test_head_tail_off_changes_kept_set(model, cfg, pruners, ids):
    _, on = prefill(model, cfg, ids, pruners=pruners)
    _, off = prefill(model, dataclasses.replace(cfg, protect=False), ids, pruners=pruners)
    assert on.kept_index != off.kept_index and (N - 1) in off.kept_index[-1][0]


@pytest.mark.parametrize("selection", ["topp", "threshold"])
def test_other_selection_rules_run(model, cfg, pruners, ids, selection):
    lg, st = prefill(model, dataclasses.replace(cfg, selection=selection, threshold=0.5, top_p=0.6), ids, pruners=pruners)
    _, ref = prefill(model, dataclasses.replace(cfg, selection=selection, threshold=0.5, top_p=0.6), ids,
                     pruners=pruners, simulate=True)
    assert st.kept_index == ref.kept_index
    counts = [int(k[0]) for k in st.kept_per_stage]
    assert counts == sorted(counts, reverse=True) and all(c >= 8 for c in counts)


def test_random_and_saliency_pruners(model, cfg, ids):
    r = dataclasses.replace(cfg, pruner="random")
    _, a = prefill(model, r, ids, generator=torch.Generator().manual_seed(0))
    _, b = prefill(model, r, ids, generator=torch.Generator().manual_seed(1))
    assert a.kept_index != b.kept_index and [len(k[0]) for k in a.kept_index] == [len(k[0]) for k in b.kept_index]
    s = dataclasses.replace(cfg, pruner="saliency")
    sal = prompt_saliency(model, ids, s.stage_layers(8), window=8)
    assert sal.shape == (1, len(s.stage_layers(8)), N) and float(sal.max()) == pytest.approx(1.0)
    _, st = prefill(model, s, ids, saliency=sal)
    top = sal[0, 0].argsort(descending=True).tolist()
    free = [i for i in top if 4 <= i < N - 4][: int(st.kept_per_stage[0][0]) - 8]
    assert set(free) <= set(st.kept_index[0][0])                         # the most salient survive


@pytest.mark.parametrize("ratio", [0.8, 0.7, 0.5, 0.3])
def test_keep_ratio_options_reach_their_counts(model, cfg, pruners, ids, ratio):
    c = dataclasses.replace(cfg, keep_ratio=ratio)
    _, st = prefill(model, c, ids, pruners=pruners)
    from prunelab.methods.sdtp.config import ceil_count
    assert int(st.kept_per_stage[-1][0]) == max(8, ceil_count(ratio * N))   # 8 protected (4 + 4)
    assert st.layer_tokens[-1] == int(st.kept_per_stage[-1][0])
