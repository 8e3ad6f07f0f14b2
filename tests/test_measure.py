import torch

from prunelab.train.measure import PeakMemory, count_params, flops_per_sample, time_to_accuracy


def test_time_to_accuracy():
    curve = [{"seconds": 1, "score": 0.5}, {"seconds": 2, "score": 0.9}, {"seconds": 3, "score": 0.95}]
    assert time_to_accuracy(curve, 0.95) == 3     # 0.97 * 0.95 = 0.9215
    assert time_to_accuracy(curve, 0.92) == 2
    assert time_to_accuracy(curve, 1.0) is None
    ppl = [{"seconds": 1, "score": 30.0}, {"seconds": 2, "score": 20.5}]
    assert time_to_accuracy(ppl, 20.0, higher_is_better=False) == 2   # 20 / 0.97 = 20.6


def test_peak_memory_sees_allocation():
    with PeakMemory("cpu") as small:
        pass
    with PeakMemory("cpu") as big:
        x = torch.ones(64, 2**20)                  # 256 MB
        del x
    assert big.kind == "cpu_rss" and big.peak_mb > small.peak_mb + 200


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(100, 8)
        self.lin = torch.nn.Linear(8, 4)

    def forward(self, input_ids, attention_mask=None):
        return self.lin(self.emb(input_ids))


def test_params_and_flops():
    m = Tiny()
    c = count_params(m)
    assert c["params"] == 800 + 36 and c["params_nonemb"] == 36
    f = flops_per_sample(m, {"input_ids": torch.zeros(2, 10, dtype=torch.long)})
    assert f == 2 * 10 * 8 * 4                     # one matmul per token, 2 FLOPs per MAC


def test_inference_memory_on_cpu_is_the_models_bytes_plus_its_activations():
    # training leftovers that glibc keeps in the heap must not count as the model's memory
    from types import SimpleNamespace

    from prunelab.config import MeasureConfig
    from prunelab.models.load import load_model
    from prunelab.run import measure_inference
    from prunelab.tasks import get_task
    from prunelab.train.measure import model_memory_mb

    task = get_task("glue/sst2")
    config = SimpleNamespace(measure=MeasureConfig(batch_sizes=(4,), seq_len=16, warmup=0, repeats=1,
                                                   real_lengths=False, flops=False))
    dense = load_model("tiny-bert", task)
    small = load_model("tiny-bert", task)
    for b in range(small.family.num_layers):
        small.family.prune_neurons(b, [0, 1])          # keep 2 neurons per layer
    leftovers = [torch.ones(2**20) for _ in range(64)]  # 256 MB, then freed
    del leftovers
    a = measure_inference(dense.model.eval(), task, dense.tokenizer, [], config, "cpu")
    b = measure_inference(small.model.eval(), task, small.tokenizer, [], config, "cpu")
    assert a["inf_peak_mem_kind"] == "cpu_model+activations"
    assert model_memory_mb(dense.model) <= a["inf_peak_mem_mb"] < model_memory_mb(dense.model) + 100
    assert b["inf_peak_mem_mb"] < a["inf_peak_mem_mb"] and a["inf_peak_rss_mb"] > a["inf_peak_mem_mb"]


def test_memory_ratios_compare_like_with_like():
    from prunelab.derived import with_derived
    from prunelab.store import Store

    import tempfile
    with tempfile.TemporaryDirectory() as d:
        store = Store(f"{d}/r.db")
        cfg = {"method": "ft", "model": "m", "task": "glue/sst2", "seed": 0, "train": {}}
        store.start("ref", cfg, {})
        store.finish("ref", {"score": 0.9, "higher_is_better": True, "inf_peak_mem_mb": 1000.0,
                             "inf_peak_mem_kind": "cpu_rss"}, [])
        store.start("x", {**cfg, "method": "apt"}, {})
        store.finish("x", {"score": 0.9, "higher_is_better": True, "inf_peak_mem_mb": 50.0,
                           "inf_peak_mem_kind": "cpu_model+activations"}, [])
        assert "inf_peak_mem_ratio" not in with_derived(store.get("x"), store)["metrics"]
        store.start("y", {**cfg, "method": "lora"}, {})
        store.finish("y", {"score": 0.9, "higher_is_better": True, "inf_peak_mem_mb": 500.0,
                           "inf_peak_mem_kind": "cpu_rss"}, [])
        assert with_derived(store.get("y"), store)["metrics"]["inf_peak_mem_ratio"] == 0.5
