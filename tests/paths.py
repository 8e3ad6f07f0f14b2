"""Where the shared folder beside the checkout is (../shared), in this tree or a CI clone."""
import os
from pathlib import Path

SHARED = Path(os.environ.get("PRUNELAB_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
SEEDS = SHARED / "seeds"
