"""`make demo`: full fine-tuning vs LoRA on MiniLM-L6 / SST-2 (real data), printed as a table."""
from __future__ import annotations

import os

from prunelab.errors import PrunelabError


def main(store: str = "runs/prunelab.db", train_limit: int = 2000, max_steps: int = 120) -> int:
    from prunelab.config import RunConfig, TrainConfig
    from prunelab.derived import with_derived
    from prunelab.report_table import format_table
    from prunelab.run import run
    from prunelab.store import Store

    if not os.environ.get("PRUNELAB_DATA"):
        raise PrunelabError("the demo reads GLUE SST-2 from $PRUNELAB_DATA (e.g. PRUNELAB_DATA=../shared/data)")
    st = Store(store)
    rows = []
    for method, lr in (("ft", 5e-5), ("lora", 5e-4)):
        cfg = RunConfig(model="minilm-l6", task="glue/sst2", method=method, seed=0,
                        train=TrainConfig(lr=lr, batch_size=32, max_steps=max_steps, train_limit=train_limit,
                                          eval_points=6))
        print(f"[demo] {method}: {max_steps} steps on {train_limit} SST-2 examples ...", flush=True)
        rows.append(run(cfg, st))
    rows = [with_derived(st.get(r["id"]), st) for r in rows]
    print()
    print(format_table(rows))
    print(f"\nstore: {store}  (prunelab runs ls --store {store})")
    return 0 if all(r["status"] == "done" for r in rows) else 1
