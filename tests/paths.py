"""Where the shared folder beside the checkout is (../shared), in this tree or a CI clone."""
import os
from pathlib import Path

SHARED = Path(os.environ.get("PRUNELAB_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
SEEDS = SHARED / "seeds"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """benchmarks/NAME.py as a module (benchmark scripts are not a package; they import their
    sibling `common`, so the folder is on sys.path while the script loads)."""
    import importlib.util
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BENCHMARKS))
