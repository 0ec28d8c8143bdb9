"""Placement: which GPU first holds a newly prefilled prompt block.

A scheme maps the blocks a writer GPU has just prefilled to their *first holder* (``base``) among
the directory's owner GPUs; :meth:`~simulator.kvcache.directory.BlockDirectory.place` records it
(and, for ``replicate:K``, the K − 1 owners after it):

- ``first_writer`` — the GPU that prefilled the block owns it (prefix sharing with real traces);
- ``hash`` — a stable integer hash of the block key (:func:`stable_hash`);
- ``range`` — contiguous shards: block *i* of an *n*-block prompt goes to owner ⌊i·G/n⌋;
- ``repo_affinity`` — every block of one repository on one owner (hash of the repo id); blocks
  outside a repository stay with their writer;
- ``replicate:K`` — K consecutive owners starting at the block's hash; a reader uses the nearest
  replica (itself, then the lowest path latency, then the lowest replica index).

Every scheme is a pure function of the keys, positions and writer: the same blocks land on the
same GPUs in every run.
"""

from __future__ import annotations

import numpy as np

__all__ = ["first_holders", "stable_hash"]

_MIX = np.uint64(0x9E3779B97F4A7C15)


def stable_hash(keys: np.ndarray) -> np.ndarray:
    """A deterministic 64-bit mix of integer keys (splitmix64 finaliser), as uint64."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.int64).view(np.uint64) + _MIX
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def first_holders(scheme: str, keys: np.ndarray, idx: np.ndarray, writer: int, g: int,
                  repo: int = -1, positions: np.ndarray | None = None,
                  n_context: int | None = None) -> np.ndarray:
    """The first holder GPU of each block ``idx`` (distinct, in prompt order) under ``scheme``
    (see the module docstring): ``keys`` are the directory's block keys by index, ``writer``
    the GPU that prefilled them, ``g`` the number of owner GPUs, ``repo`` the blocks' repository
    (−1: none), ``positions`` / ``n_context`` where they sit in their prompt (``range``)."""
    if scheme == "first_writer":
        base = np.full(len(idx), writer, np.int64)
    elif scheme in ("hash", "replicate"):
        base = (stable_hash(keys[idx]) % np.uint64(g)).astype(np.int64)
    elif scheme == "range":
        pos = np.arange(len(idx)) if positions is None else np.asarray(positions, np.int64)
        n = len(idx) if n_context is None else max(int(n_context), 1)
        base = np.minimum(pos * g // n, g - 1).astype(np.int64)
    elif scheme == "repo_affinity":
        if repo >= 0:
            owner = int(stable_hash(np.array([repo]))[0] % np.uint64(g))
            base = np.full(len(idx), owner, np.int64)
        else:
            base = np.full(len(idx), writer, np.int64)
    else:  # pragma: no cover - validated by the scenario
        raise ValueError(f"unknown placement scheme {scheme!r}")
    return base
