"""Helpers for tests that write trace files of their own."""

from __future__ import annotations

import gzip
from pathlib import Path


def write_lines(path: Path, lines: list[str]) -> Path:
    """Write ``lines`` (one per line) to ``path``, gzipped when its name ends in ``.gz``."""
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path
