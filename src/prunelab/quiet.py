"""Silence what transformers and its dependencies print while models load.

Loading MiniLM with a fresh classifier head prints a "LOAD REPORT" table
("classifier.weight | MISSING"), a "Loading weights" progress bar and, depending on the
version, deprecation/advisory warnings, once per model load. None of it is actionable for a
prunelab user. `quiet()` turns it off for this process and, through environment variables,
for the subprocesses it starts (ablation workers, the demo's reload check). `quiet(False)`
does nothing, so a `--verbose` flag can be passed straight through.

Errors still surface: transformers' ERROR-level messages and exceptions are untouched.
"""
from __future__ import annotations

import logging
import os
import warnings

# what subprocesses inherit (read by transformers / huggingface_hub / tokenizers at import)
ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",            # bars drawn with tqdm directly (transformers' GGUF loader)
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning,ignore::UserWarning",
}

_LOGGERS = ("transformers", "huggingface_hub", "accelerate", "torch.distributed.elastic")


def quiet(enabled: bool = True) -> bool:
    """Silence load reports, progress bars and library warnings (this process + children).

    Returns whether anything was changed. Safe to call more than once.
    """
    if not enabled:
        return False
    for key, value in ENV.items():
        os.environ.setdefault(key, value)
    for category in (DeprecationWarning, FutureWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return True
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:  # pragma: no cover
        pass
    return True
