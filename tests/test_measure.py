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


# -- issue 10: tensor-bytes memory on CPU, a CUDA-synchronised timer --------------------------------
def test_cpu_tensor_memory_counts_live_tensor_bytes_not_the_process():
    from prunelab.train.measure import LiveTensorBytes

    keep = torch.ones(2**20)                                   # 4 MB alive before the phase
    with PeakMemory("cpu", kind="tensors") as pm:
        x = torch.ones(16, 2**20)                              # 64 MB
        y = x[3:5]                                             # a view: no new bytes
        del x, y
        z = torch.ones(2**20)                                  # 4 MB after the 64 MB were freed
    assert pm.kind == "cpu_tensors"
    assert 64 <= pm.rise_mb < 64 + 4 + 1                       # the peak held the 64 MB, once
    assert pm.peak_mb >= pm.rise_mb + 4                        # tensors alive at the start count
    with LiveTensorBytes() as tr:
        start = tr.current
        a = torch.empty(2**18)
        assert tr.current - start == 2**20
        del a
        assert tr.current == start                             # freed storages are uncounted
    del keep, z


def test_cpu_tensor_memory_sees_autograd_activations_and_optimizer_state():
    lin = torch.nn.Linear(512, 512)
    x = torch.randn(256, 512)
    with PeakMemory("cpu", kind="tensors") as fwd:
        lin(x).relu().sum().backward()
    opt = torch.optim.Adam(lin.parameters())
    with PeakMemory("cpu", kind="tensors") as step:
        opt.step()
    assert fwd.rise_mb >= 256 * 512 * 4 / 2**20               # at least one saved activation
    assert step.rise_mb >= 2 * 512 * 512 * 4 / 2**20 * 0.99    # Adam's two moments


def test_memory_kind_comes_from_the_argument_or_the_environment(monkeypatch):
    monkeypatch.setenv("PRUNELAB_CPU_MEMORY", "tensors")
    assert PeakMemory("cpu").kind == "cpu_tensors"
    monkeypatch.delenv("PRUNELAB_CPU_MEMORY")
    assert PeakMemory("cpu").kind == "cpu_rss" and PeakMemory("cpu", kind="tensors").kind == "cpu_tensors"


def test_timer_waits_for_queued_cuda_work(monkeypatch):
    from prunelab.train.measure import Timer

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: calls.append("sync"))
    t = Timer()
    with t:
        calls.append("work")
    assert calls == ["sync", "work", "sync"]


def test_cpu_time_throughput_only_with_one_thread():
    import torch

    from prunelab.train.measure import throughputs

    model = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 16))

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, input_ids):
            return self.m(input_ids)

    batch = {"input_ids": torch.randint(0, 50, (4, 8))}
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = throughputs(Wrap(), [batch], "cpu", warmup=1, repeats=3, min_seconds=0.0)
        assert one["wall"] > 0 and one["cpu"] > 0
        torch.set_num_threads(2)
        assert "cpu" not in throughputs(Wrap(), [batch], "cpu", warmup=1, repeats=3, min_seconds=0.0)
    finally:
        torch.set_num_threads(old)
