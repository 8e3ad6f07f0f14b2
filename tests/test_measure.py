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
