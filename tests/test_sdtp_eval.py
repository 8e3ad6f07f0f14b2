"""SDTP token selectors (learned + baselines) and the evaluation suite, on a tiny random LLaMA."""
import dataclasses

import pytest
import torch

from prunelab.methods.sdtp import PrunerStack, generate, make_config, prefill
from prunelab.methods.sdtp import evaluate as E
from prunelab.methods.sdtp._load import tiny_llama
from prunelab.methods.sdtp.config import ceil_count
from prunelab.methods.sdtp.inference import attention_scores, learned_scorer_flops
from prunelab.methods.sdtp.metrics import bootstrap_ci, layer_flops, mean_ci, selector_prefill_flops
from prunelab.methods.sdtp.select import SELECTORS, schedule_tokens, truncate_count

N = 48
DATA = __import__("os").environ.get("PRUNELAB_DATA")


@pytest.fixture(scope="module")
def model():
    return tiny_llama(8, dtype=torch.float64)


@pytest.fixture(scope="module")
def cfg():
    return make_config("paper", "tiny")


@pytest.fixture(scope="module")
def pruners(cfg):
    torch.manual_seed(1)
    return PrunerStack(64, cfg.stage_layers(8)).double()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 1000, (1, N), generator=torch.Generator().manual_seed(2))


def kw(model, cfg, sel, ids, pruners):
    return E.prefill_kwargs(model, cfg, sel, ids, pruners, seed=0, saliency_window=8)


@pytest.mark.parametrize("sel", SELECTORS)
def test_selector_physical_matches_masked_and_keeps_protected(model, cfg, pruners, ids, sel):
    lg, st = prefill(model, cfg, ids, **kw(model, cfg, sel, ids, pruners))
    ref, rst = prefill(model, cfg, ids, simulate=True, **kw(model, cfg, sel, ids, pruners))
    assert st.kept_index == rst.kept_index
    assert (lg - ref).abs().max().item() < 1e-10
    n_prot = 4 + ceil_count(0.1 * N)
    protected = set(range(4)) | set(range(N - ceil_count(0.1 * N), N))
    for kept in st.kept_index:
        assert protected <= set(kept[0])
    if sel == "truncate":
        assert st.stage_layers == [0] and st.layer_tokens == [st.layer_tokens[0]] * 8
    else:   # the learned schedule's layers and exact counts
        assert st.stage_layers == cfg.stage_layers(8)
        want = [n_prot + ceil_count(c * (N - n_prot)) for c in cfg.cumulative_keep(len(st.stage_layers))]
        assert [int(k[0]) for k in st.kept_per_stage] == want


def test_recency_and_truncate_keep_sinks_plus_most_recent(model, cfg, pruners, ids):
    for sel in ("recency", "truncate"):
        _, st = prefill(model, cfg, ids, selector=sel)
        last = st.kept_index[-1][0]
        k = len(last)
        assert last == [0, 1, 2, 3] + list(range(N - (k - 4), N)), sel


def test_truncate_matches_learned_flops(model, cfg):
    mc = model.config
    pf = learned_scorer_flops(model, cfg)
    for n in (N, 300, 1024):
        k = truncate_count(mc, cfg, n, pf)
        toks = schedule_tokens(cfg, 8, n)
        learned = selector_prefill_flops(mc, toks, cfg.stage_layers(8), "learned", "mlp", pf)
        trunc = selector_prefill_flops(mc, [k] * 8, [0], "truncate", "mlp", pf)
        assert trunc <= learned < selector_prefill_flops(mc, [k + 1] * 8, [0], "truncate", "mlp", pf)
        assert toks[-1] < k < n                       # more tokens than the learned schedule's last stage
    assert 8 * layer_flops(mc, 1) > 0


def test_attention_selector_equals_eager_attention_weights(cfg, ids):
    eager = tiny_llama(8, dtype=torch.float64, attn="eager")
    l0 = cfg.stage_layers(8)[0]
    with torch.no_grad():
        out = eager(ids, output_attentions=True, output_hidden_states=True)
    h = out.hidden_states[l0]                         # input of layer l0 (no pruning before it)
    pos = torch.arange(N)[None]
    s = attention_scores(eager.model.layers[l0], h, pos, torch.ones(1, N, dtype=torch.bool), pos, eager, window=5)
    want = out.attentions[l0][0, :, -5:].sum((0, 1))
    assert torch.allclose(s[0].double(), want, atol=1e-5)
    assert float(s.sum().detach()) == pytest.approx(eager.config.num_attention_heads * 5, rel=1e-5)
    _, st = prefill(eager, cfg, ids, selector="attention")              # window 32 (SnapKV's)
    want = out.attentions[l0][0, :, -32:].sum((0, 1))
    free = [i for i in want.argsort(descending=True).tolist() if 4 <= i < N - 5]
    assert set(free[: len(st.kept_index[0][0]) - 9]) <= set(st.kept_index[0][0])


def test_random_selector_seeded(model, cfg, ids):
    a = prefill(model, cfg, ids, selector="random", generator=torch.Generator().manual_seed(0))[1].kept_index
    b = prefill(model, cfg, ids, selector="random", generator=torch.Generator().manual_seed(0))[1].kept_index
    c = prefill(model, cfg, ids, selector="random", generator=torch.Generator().manual_seed(1))[1].kept_index
    assert a == b and a != c
    with pytest.raises(Exception):
        prefill(model, cfg, ids, selector="nope")


def test_lm_quality_is_zero_without_pruning_and_positive_with(model, pruners):
    win = torch.randint(0, 1000, (4, 40), generator=torch.Generator().manual_seed(5))
    none = make_config("paper", "tiny", keep_ratio=1.0)               # keeps every token
    q = E.lm_quality(model, none, win, 32, ["recency", "random"])
    for v in q["by_selector"].values():
        assert abs(v["ppl_rise"]) < 1e-9 and v["kl"] < 1e-9 and v["top1"] == 1.0
        assert v["flops_ratio"] == pytest.approx(1.0)
    q = E.lm_quality(model, make_config("paper", "tiny", keep_ratio=0.7), win, 32, ["recency", "learned"], pruners)
    for v in q["by_selector"].values():
        lo, hi = v["ppl_rise_ci"]
        assert v["kl"] > 0 and lo <= v["ppl_rise"] <= hi and v["kl_ci"][0] <= v["kl"] <= v["kl_ci"][1]
        assert len(v["per_window"]["kl"]) == 4 and v["flops_ratio"] > 1.0


def test_confidence_intervals():
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and hi - m == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-5)
    xs = [float(i % 7) for i in range(50)]
    f, blo, bhi = bootstrap_ci(lambda ix: sum(xs[i] for i in ix) / len(ix), len(xs))
    tm, tlo, thi = mean_ci(xs)
    assert f == pytest.approx(tm) and abs(blo - tlo) < 0.3 and abs(bhi - thi) < 0.3


@pytest.mark.parametrize("kind", ["passkey", "kv"])
def test_retrieval_prompts_and_recency_fails_by_construction(model, cfg, kind):
    enc = E.char_encoder(1000)
    ps = E.retrieval_prompts(enc, [1000], [0.02, 0.95], 1, kind=kind, seed=3)
    early, late = ps
    assert len(early["ids"]) <= 1000 and early["answer"] and (early["depth"], late["depth"]) == (0.02, 0.95)
    assert early["needle_frac"] < 0.2 < 0.8 < late["needle_frac"]
    ans = early["answer"]
    hay = early["ids"]
    at = [i for i in range(len(hay) - len(ans) + 1) if hay[i:i + len(ans)] == ans]
    if kind == "passkey":
        late_at = [i for i in range(1000) if late["ids"][i:i + len(late["answer"])] == late["answer"]]
        assert len(hay) == 1000 and at and at[0] / 1000 < 0.2 and late_at[0] / 1000 > 0.8   # needle at its depth
    else:
        assert at                                                          # the queried value is in the list
    needle = set(range(at[0], at[0] + len(ans)))
    n = len(hay)
    for p, dropped in ((early, True), (late, False)):
        ids = torch.tensor([p["ids"]])
        a = [i for i in range(len(p["ids"]) - len(ans) + 1) if p["ids"][i:i + len(p["answer"])] == p["answer"]][0]
        span = set(range(a, a + len(p["answer"])))
        for sel in ("recency", "truncate"):
            kept = set(prefill(model, cfg, ids, selector=sel)[1].kept_index[-1][0])
            assert (not (span & kept)) == dropped, (kind, sel, p["depth"])
    assert n > 0 and needle
    r = E.retrieval(model, cfg, ps, ["recency", "random"])
    for s in ("dense", "recency", "random"):
        v = r["by_selector"][s]
        assert v["n"] == 2 and v["loglik"] < 0 and 0.0 <= v["em"] <= 1.0 and len(v["cells"]) == 2


def test_teacher_forced_exact_match_equals_greedy(model, cfg, pruners, ids):
    for sel in ("learned", "recency"):
        k = kw(model, cfg, sel, ids, pruners)
        greedy = generate(model, cfg, ids, 3, **k)[0].tolist()
        assert E.answer_scores(model, cfg, ids[0].tolist(), greedy, sel, pruners)["em"] == 1.0
        other = [(greedy[0] + 1) % 1000] + greedy[1:]
        assert E.answer_scores(model, cfg, ids[0].tolist(), other, sel, pruners)["em"] == 0.0


def test_cache_bytes_measured(model, cfg, ids):
    _, st = prefill(model, cfg, ids, selector="recency")
    mc = model.config
    hd = mc.hidden_size // mc.num_attention_heads
    assert E.cache_bytes(st.cache) == sum(st.layer_tokens) * 2 * mc.num_key_value_heads * hd * 8


@pytest.mark.skipif(not DATA, reason="needs PRUNELAB_DATA (L-Eval files)")
def test_leval_items_and_prompts():
    q = E.leval_items(DATA, "quality", max_docs=1)
    assert q and all(set(i["answer"]) <= set("ABCD") for i in q)
    assert len(E.leval_items(DATA, "tpo", max_docs=2, per_doc=3)) == 6
    t = E.leval_items(DATA, "topic_retrieval_longchat", max_docs=1, per_doc=1)[0]
    assert t["answer"] == "The role of art in society"
    enc = E.char_encoder(1000)
    ctx, ans = E.leval_prompt(enc, q[0], 2000)
    assert len(ctx) == 2000 and ans == enc(" " + q[0]["answer"])
    assert ctx[-len(enc("\nAnswer:")):] == enc("\nAnswer:")
    with pytest.raises(Exception):
        E.leval_items(DATA, "narrative_qa")


def test_selector_component_options():
    from prunelab.methods.registry import Component
    from prunelab.methods.sdtp.components import COMPONENTS

    def get_component_option(name, opt):
        return COMPONENTS[name]["options"][opt]
    from prunelab.methods.sdtp.components import SELECTOR_COMPONENT

    fields = {f.name for f in dataclasses.fields(make_config("paper").__class__)} | {"selector"}
    comp = Component(name="selector", **SELECTOR_COMPONENT)
    # every selector is an option, except random: that is the `pruner` component's `random` option
    assert set(SELECTOR_COMPONENT["options"]) == set(SELECTORS) - {"random"}
    assert get_component_option("pruner", "random") == {"pruner": "random"}
    for opt, over in SELECTOR_COMPONENT["options"].items():
        assert set(over) <= fields and over["selector"] == opt and comp.overrides(opt) == over
        # only the learned option trains MLP pruners; the oracle gets prompt saliency from run_sdtp
        assert (over["pruner"] == "mlp") == (opt == "learned") and (over["pruner"] == "saliency") == (opt == "oracle")
