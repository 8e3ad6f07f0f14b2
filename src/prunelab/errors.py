"""User-facing errors: one line that names the bad thing and the valid choices.

Anything raised as PrunelabError is printed by the CLI as a single line and exits 2;
everything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class PrunelabError(Exception):
    """A problem with the user's input (config, data, plan, names), not a bug."""


def close_matches(value: str, choices: Iterable[str], n: int = 3) -> list[str]:
    choices = list(choices)
    return difflib.get_close_matches(str(value), choices, n=n, cutoff=0.5)


def unknown(kind: str, value: object, choices: Iterable[str]) -> PrunelabError:
    """Error for an unknown name: close matches first, then every valid choice."""
    choices = sorted(set(map(str, choices)))
    near = close_matches(str(value), choices)
    hint = f"; did you mean {', '.join(repr(c) for c in near)}?" if near else ""
    return PrunelabError(f"unknown {kind} {value!r}{hint} valid: {', '.join(choices)}")
