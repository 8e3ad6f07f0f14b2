"""The runs table: every method's row shows its own quantities, not a row of dashes."""
from prunelab.report_table import rows_for


def _row(method, metrics):
    return {"id": "0123456789abcdef", "method": method, "model": "m", "task": "t", "seed": 0, "metrics": metrics}


def test_classifier_row_uses_the_common_columns():
    head, body = rows_for([_row("apt", {"score": 0.8265, "train_seconds": 344.0, "speedup": 2.57})])
    cells = dict(zip(head, body[0]))
    assert cells["score"] == "0.8265" and cells["train s"] == "344.0" and cells["speedup"] == "2.57x"


def test_sdtp_row_names_its_perplexity_and_prefill_speedup():
    m = {"ppl": 12.3078, "train_s": 5.04, "prefill_speedup": 1.19, "peak_mem_mb": 19.8}
    head, body = rows_for([_row("sdtp", m)])
    cells = dict(zip(head, body[0]))
    assert cells["score"] == "ppl 12.31"
    assert cells["train s"] == "5.0"
    assert cells["speedup"] == "1.19x prefill"
    assert cells["inf mem MB"] == "20"
    assert cells["TTA s"] == "-"


def test_a_common_key_wins_over_its_fallback():
    head, body = rows_for([_row("x", {"score": 0.5, "ppl": 9.0})])
    assert dict(zip(head, body[0]))["score"] == "0.5000"
