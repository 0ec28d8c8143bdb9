"""Long record lists kept compact: rows appended as tuples, packed into typed numpy columns.

The engine appends one tuple per round and per iteration — cheap in the loop, but a tuple of 23
boxed values costs about 700 bytes, and a whole-trace replay makes tens of millions of rounds.
:class:`Columns` keeps the recent rows as tuples and, when asked between iterations
(:meth:`Columns.maybe_pack`), packs them into one typed numpy column each (about 140 bytes per
round row). A column of Python objects (a round's option) is packed as int32 codes into the
values seen so far, and comes back as a categorical. Each column is a
:class:`~simulator.spill.Spill`: once long it moves to a temporary file, so a long run's records
cost disk rather than memory. :meth:`Columns.frame` builds the DataFrame once at the end,
sharing the columns' arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from simulator.spill import Spill

#: Rows kept as tuples before they are packed into columns.
CHUNK_ROWS = 1 << 16


class Columns:
    """Rows of ``spec`` — ``(name, numpy dtype)`` per column — appended with :attr:`append`.

    ``object`` columns hold hashable values (stored as codes; a categorical in :meth:`frame`).
    ``spill_bytes`` is each column's :class:`~simulator.spill.Spill` threshold (default
    :data:`simulator.spill.SPILL_BYTES`).
    """

    def __init__(self, spec: Sequence[tuple[str, str]], chunk_rows: int | None = None,
                 spill_bytes: int | None = None) -> None:
        chunk_rows = CHUNK_ROWS if chunk_rows is None else chunk_rows
        self.names = [n for n, _ in spec]
        self.dtypes = [np.dtype(d) for _, d in spec]
        self.chunk_rows = chunk_rows
        self.rows: list[tuple] = []
        self.append = self.rows.append  # the hot path: a bound list.append
        # per object column: value → code, in order of first appearance
        self.codes: list[dict | None] = [{} if d.hasobject else None for d in self.dtypes]
        self.cols = [Spill(np.int32 if d.hasobject else d, spill_bytes) for d in self.dtypes]
        # the rows' record type: numpy converts a list of tuples to it in one C pass
        self._record = np.dtype([(f"f{i}", d) for i, d in enumerate(self.dtypes)])

    def __len__(self) -> int:
        return len(self.rows) + len(self.cols[0])

    @property
    def spilled(self) -> bool:
        """Whether some of the packed columns live in temporary files."""
        return any(c.spilled for c in self.cols)

    def pack(self) -> None:
        """Move the tuple rows into the typed columns."""
        if not self.rows:
            return
        table = np.array(self.rows, dtype=self._record)
        for field, col, codes in zip(self._record.names, self.cols, self.codes, strict=True):
            values = table[field]
            if codes is not None:
                values = [codes.setdefault(v, len(codes)) for v in values.tolist()]
            col.add(values)
        self.rows.clear()  # the same list: ``append`` stays bound to it

    def maybe_pack(self) -> None:
        """Pack if at least ``chunk_rows`` rows wait as tuples."""
        if len(self.rows) >= self.chunk_rows:
            self.pack()

    def frame(self) -> pd.DataFrame:
        """All rows as a DataFrame (columns in ``spec`` order and dtypes; object columns as
        categoricals with the values in order of first appearance). The DataFrame shares the
        columns' arrays (no second copy of a long run's records)."""
        self.pack()
        data = {}
        for name, col, codes in zip(self.names, self.cols, self.codes, strict=True):
            a = col.array()
            if codes is not None:
                a = pd.Categorical.from_codes(a, categories=list(codes))
            data[name] = a
        return pd.DataFrame(data, copy=False)
