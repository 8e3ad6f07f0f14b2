"""End to end with the real methods and --preset tiny: plan -> runs in fresh processes -> report.

The full seed plans run every cell (minutes on 2 cores): set PRUNELAB_E2E=1 to run them.
A two-run smoke test runs by default. Each test skips while its method is not registered.
"""
import glob
import os
from pathlib import Path

import pytest

from prunelab.ablation import cli
from prunelab.errors import PrunelabError
from paths import SEEDS

E2E = os.environ.get("PRUNELAB_E2E") == "1"


def need_method(name: str) -> None:
    from prunelab.methods.registry import get_method

    try:
        if not get_method(name).components:
            pytest.skip(f"method {name!r} declares no components yet")
    except PrunelabError:
        pytest.skip(f"method {name!r} is not registered yet")


def seed(prefix):
    found = glob.glob(f"{SEEDS}/{prefix}_*.txt")
    if not found:
        pytest.skip("seed plans not found")
    return found[0]


def data_for(method: str, sst2_dir: str) -> str:
    if method != "sdtp":
        return sst2_dir
    data = os.environ.get("PRUNELAB_DATA")
    if not data or not Path(data, "wikitext-2").exists():
        pytest.skip("SDTP needs WikiText-2: set PRUNELAB_DATA to the shared data folder")
    return data


@pytest.mark.slow
def test_smoke_one_real_ablation(tmp_path, sst2_dir):
    need_method("apt")
    plan = tmp_path / "plan.md"
    plan.write_text("# smoke/apt\n### Ablation: No Knowledge Distillation\n"
                    "- **Ablated Part**: Efficient self-knowledge distillation\n- **Action**: REMOVE\n"
                    "- **Metrics**: Avg. Performance, Training Time (min)\n")
    store = str(tmp_path / "runs.db")
    code = cli.ablate(str(plan), preset="tiny", seeds=1, store=store, workers=2, progress=False,
                      reference=False, overrides={"data_dir": sst2_dir})
    assert code == 0
    paths = cli.report("smoke-apt-tiny", store, str(tmp_path / "report"))
    md = Path([p for p in paths if p.endswith("report.md")][0]).read_text()
    assert "no-knowledge-distillation" not in md or "pending" not in md
    assert "| baseline (full method) | 1 |" in md


@pytest.mark.slow
@pytest.mark.skipif(not E2E, reason="full seed plans take minutes: set PRUNELAB_E2E=1")
@pytest.mark.parametrize("prefix, method", [("000", "apt"), ("001", "apt"), ("002", "apt"), ("004", "sdtp")])
def test_seed_plan_end_to_end(prefix, method, tmp_path, sst2_dir):
    need_method(method)
    store = str(tmp_path / "runs.db")
    code = cli.ablate(seed(prefix), preset="tiny", seeds=1, store=store, workers=2, method=method, progress=False,
                      overrides={"data_dir": data_for(method, sst2_dir)}, study=f"e2e-{prefix}")
    assert code == 0
    paths = cli.report(f"e2e-{prefix}", store, str(tmp_path / "report"))
    md = Path([p for p in paths if p.endswith("report.md")][0]).read_text()
    assert "pending" not in md and "failed" not in md
    section = Path([p for p in paths if p.endswith("section.md")][0]).read_text()
    assert section.count("#### 6.") >= 4
