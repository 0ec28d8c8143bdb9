"""Long record lists kept compact: rows appended as tuples, packed into typed numpy columns.

The engine appends one tuple per round and per iteration — cheap in the loop, but a tuple of 23
boxed values costs about 700 bytes, and a whole-trace replay makes tens of millions of rounds.
:class:`Columns` keeps the recent rows as tuples and, when asked between iterations
(:meth:`Columns.maybe_pack`), packs them into one typed numpy array per column (about 140 bytes
per round row); :meth:`Columns.frame` builds the DataFrame once at the end.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

#: Rows kept as tuples before they are packed into columns.
CHUNK_ROWS = 1 << 16


class Columns:
    """Rows of ``spec`` — ``(name, numpy dtype)`` per column — appended with :attr:`append`."""

    def __init__(self, spec: Sequence[tuple[str, str]], chunk_rows: int = CHUNK_ROWS) -> None:
        self.names = [n for n, _ in spec]
        self.dtypes = [np.dtype(d) for _, d in spec]
        self.chunk_rows = chunk_rows
        self.rows: list[tuple] = []
        self.append = self.rows.append  # the hot path: a bound list.append
        self.chunks: list[list[np.ndarray]] = []

    def __len__(self) -> int:
        return len(self.rows) + sum(len(c[0]) for c in self.chunks)

    def pack(self) -> None:
        """Move the tuple rows into a chunk of typed columns."""
        if not self.rows:
            return
        cols = zip(*self.rows, strict=True)
        self.chunks.append([np.asarray(c, dtype=d) for c, d in zip(cols, self.dtypes,
                                                                     strict=True)])
        self.rows.clear()  # the same list: ``append`` stays bound to it

    def maybe_pack(self) -> None:
        """Pack if at least ``chunk_rows`` rows wait as tuples."""
        if len(self.rows) >= self.chunk_rows:
            self.pack()

    def frame(self) -> pd.DataFrame:
        """All rows as a DataFrame (columns in ``spec`` order and dtypes). The chunks are merged
        into one, column by column, and the DataFrame shares its arrays (no second copy of a
        long run's records)."""
        self.pack()
        if not self.chunks:
            return pd.DataFrame({n: np.zeros(0, d) for n, d in zip(self.names, self.dtypes,
                                                                    strict=True)})
        if len(self.chunks) > 1:
            merged = []
            for i in range(len(self.names)):
                merged.append(np.concatenate([c[i] for c in self.chunks]))
                for c in self.chunks:
                    c[i] = None  # free each column's pieces once merged
            self.chunks = [merged]
        return pd.DataFrame(dict(zip(self.names, self.chunks[0], strict=True)), copy=False)
