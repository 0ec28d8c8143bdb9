"""Focus sets: the files a query's agent is working on, as block indices of its context.

A focus set is a few regions (files) of ``region_blocks`` blocks among the leading blocks of a
context (the shared repository). :func:`draw_focus` makes one for a new session and
:func:`drift_focus` lets it drift between turns; :class:`workloads.sparse.SparseSelector` draws a
share of each layer's selections from it (its ``focus_fraction``).
"""

from __future__ import annotations

import numpy as np


def draw_focus(rng: np.random.Generator, available_blocks: int, n_regions: int = 4,
               region_blocks: int = 16) -> np.ndarray:
    """A focus set: ``n_regions`` distinct regions (files) of ``region_blocks`` blocks among the
    first ``available_blocks`` blocks; returns sorted block indices (int64)."""
    total = -(-available_blocks // region_blocks)
    if total <= 0:
        return np.zeros(0, dtype=np.int64)
    regions = np.sort(rng.choice(total, size=min(n_regions, total), replace=False))
    return _region_blocks(regions, available_blocks, region_blocks)


def drift_focus(rng: np.random.Generator, focus: np.ndarray, available_blocks: int,
                drift: float = 0.25, region_blocks: int = 16) -> np.ndarray:
    """Next turn's focus: each focused region is replaced with probability ``drift`` by a region
    not in the set (uniformly among the first ``available_blocks`` blocks)."""
    total = -(-available_blocks // region_blocks)
    regions = np.unique(np.asarray(focus, dtype=np.int64) // region_blocks)
    regions = regions[regions < total]
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    move = np.flatnonzero(rng.random(len(regions)) < drift)
    free = np.setdiff1d(np.arange(total, dtype=np.int64), regions)
    move = move[: len(free)]
    regions = regions.copy()
    if len(move):
        regions[move] = rng.choice(free, size=len(move), replace=False)
    return _region_blocks(np.sort(regions), available_blocks, region_blocks)


def _region_blocks(regions: np.ndarray, available_blocks: int, region_blocks: int) -> np.ndarray:
    blocks = (regions[:, None] * region_blocks + np.arange(region_blocks)[None, :]).ravel()
    return blocks[blocks < available_blocks].astype(np.int64)
