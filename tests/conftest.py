import os
from pathlib import Path

import pytest
import torch

# tiny models: one thread avoids OpenMP barrier stalls when the two cores are shared
torch.set_num_threads(1)

DATA = os.environ.get("PRUNELAB_DATA")


@pytest.fixture
def data_dir():
    if not DATA or not Path(DATA, "sst2", "train.tsv").exists():
        pytest.skip("real data not found: set PRUNELAB_DATA to the shared data folder")
    return DATA


@pytest.fixture
def sst2_dir(tmp_path):
    """A small SST-2 in the GLUE layout, written by the test (no shared data needed)."""
    d = tmp_path / "data" / "sst2"
    d.mkdir(parents=True)
    pos = ["a great , moving film", "wonderful acting and a smart script", "i loved every minute",
           "funny and warm", "a delight from start to finish", "beautifully made"]
    neg = ["a dull , lifeless mess", "boring and far too long", "i hated it", "flat and lazy",
           "an awful waste of time", "poorly written"]
    rows = [(s, 1) for s in pos] + [(s, 0) for s in neg]
    for split, reps in (("train", 8), ("dev", 1)):
        with open(d / f"{split}.tsv", "w") as f:
            f.write("sentence\tlabel\n")
            for i in range(reps):
                for s, y in rows:
                    f.write(f"{s}{' .' * (i % 3)}\t{y}\n")
    return str(tmp_path / "data")
