"""benchmarks/study.py's SDTP calibration on made-up numbers (no training): the study's windows
are picked out of the long-run check's per-window NLLs, and the ratio reads lower-is-better."""
import math

import pytest

from paths import load_benchmark


@pytest.fixture(scope="module")
def study():
    return load_benchmark("study")


def _check(cont=64):
    # window i has NLL i per token (learned) and 2 i (recency): only every 4th enters a 16-window study
    return {"windows": 64, "ctx": 1024, "cont": cont, "presets": {"seed": {
        "learned": {"per_window": {"nll": [float(i * cont) for i in range(64)]}},
        "recency": {"per_window": {"nll": [float(2 * i * cont) for i in range(64)]}}}}}


def test_sdtp_calibration_uses_the_studys_windows_and_perplexity_direction(study):
    args = {"eval_samples": 16, "eval_ctx_len": 1024, "eval_cont_len": 64}
    long_learned = math.exp(sum(range(0, 64, 4)) / 16)       # mean NLL per token over windows 0, 4, ..., 60
    scores = {"baseline": {0: long_learned / 0.9, 1: long_learned / 0.9}, "trivial/recency": {0: long_learned ** 2}}
    text = "\n".join(study.sdtp_calibration_lines(args, _check(), scores))
    assert "every 4th of the 64" in text
    assert "| baseline: learned pruners | " in text and "| 0.900 (< 0.95) |" in text
    assert "| 1.000 (>= 0.95) |" in text                       # recency: exactly the long run's windows


def test_sdtp_calibration_refuses_windows_it_cannot_match(study):
    args = {"eval_samples": 16, "eval_ctx_len": 512, "eval_cont_len": 32}
    text = "\n".join(study.sdtp_calibration_lines(args, _check(), {"baseline": {0: 10.0}}))
    assert "Not comparable" in text and "| cell |" not in text
    args = {"eval_samples": 12, "eval_ctx_len": 1024, "eval_cont_len": 64}
    assert "Not comparable" in "\n".join(study.sdtp_calibration_lines(args, _check(), {"baseline": {0: 10.0}}))
