"""Helpers for tests that write trace files of their own, or read a trace's rows."""

from __future__ import annotations

import gzip
from pathlib import Path


def write_lines(path: Path, lines: list[str]) -> Path:
    """Write ``lines`` (one per line) to ``path``, gzipped when its name ends in ``.gz``."""
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def spans_of(row) -> list:
    """A trace row's commutative spans: the block ids of each ``[start, end)`` pair."""
    sp = row["spans"]
    return [row["block_ids"][a:b] for a, b in zip(sp[0::2], sp[1::2], strict=True)]
