"""Helpers for tests that write trace files of their own, or read a trace's rows."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def write_lines(path: Path, lines: list[str]) -> Path:
    """Write ``lines`` (one per line) to ``path``, gzipped when its name ends in ``.gz``."""
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def spans_of(row) -> list:
    """A trace row's commutative spans: the block ids of each ``[start, end)`` pair."""
    sp = row["spans"]
    return [row["block_ids"][a:b] for a, b in zip(sp[0::2], sp[1::2], strict=True)]


def two_prompts_sharing_a_prefix():
    """Two prompts of 150 tokens in 64-token blocks (64 + 64 + 22) sharing their first two
    blocks, the second arriving 1 s after the first (once it is done), 4 output tokens each:
    a trace small enough to work out by hand what each reuse rule prefills."""
    from workloads import make_trace

    return make_trace(arrival_at=np.array([0.0, 1.0]), input_tokens=np.array([150, 150]),
                      output_tokens=np.array([4, 4]),
                      block_ids=[np.array([1, 2, 3]), np.array([1, 2, 4])], block_tokens=64)
