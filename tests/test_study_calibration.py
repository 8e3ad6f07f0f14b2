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


def test_a_rerender_keeps_the_command_that_ran_the_cells(tmp_path):
    study = load_benchmark("study")
    first = study.written_by("python benchmarks/study.py 004 --seeds 3 --workers 2", 1)
    assert first.startswith("Written by `python benchmarks/study.py 004 --seeds 3 --workers 2` (rc 1: a cell failed")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n" + first + "\n")
    again = study.written_by("python benchmarks/study.py 004 --report-only", 0, readme)
    assert again.startswith("Runs by `python benchmarks/study.py 004 --seeds 3 --workers 2` (rc 1")
    assert "rendered again by `python benchmarks/study.py 004 --report-only` from `runs.jsonl`" in again
    readme.write_text(again + "\n")      # a second re-render still names the run
    assert "Runs by `python benchmarks/study.py 004 --seeds 3" in study.written_by("x --report-only", 0, readme)
    # no earlier README: the re-render is all there is to say
    assert study.written_by("y --report-only", 0, tmp_path / "none.md").startswith("Written by `y --report-only` (rc 0)")
