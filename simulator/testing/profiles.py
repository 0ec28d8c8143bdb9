"""Hypothesis example counts that follow the active profile (``HYPOTHESIS_PROFILE``).

A slow property test states its CI budget, ``@settings(max_examples=examples(8))``; the
``thorough`` profile multiplies it (local runs before a release), ``mutation`` caps it (every
mutant of ``benchmarks/mutation.py`` runs the same few, derandomized examples).
"""

from __future__ import annotations

import os

__all__ = ["examples", "profile"]

#: Multipliers of a test's stated example count, by profile.
SCALE = {"thorough": 10.0, "mutation": 1.0}


def profile() -> str:
    """The active profile's name (as ``tests/conftest.py`` picks it)."""
    return os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default")


def examples(n: int) -> int:
    """``n`` examples scaled for the active profile (at least 1)."""
    return max(1, int(n * SCALE.get(profile(), 1.0)))
