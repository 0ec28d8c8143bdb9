"""Long record columns that move to a temporary file once they are large.

A whole-trace replay makes tens of millions of rounds and link records: kept in memory, their
columns alone outgrow a 23 GB machine. A :class:`Spill` holds one column as numpy chunks; once
the chunks held in memory pass ``spill_bytes`` it writes them to an anonymous temporary file
(``tempfile.TemporaryFile``: unlinked at once, gone with the process) and appends every later
chunk there. :meth:`Spill.array` gives the whole column — in memory if it never spilled, else a
copy-on-write memory map of the file: the operating system pages it in when read and may drop
the pages again, so a long run's records cost disk, not resident memory. Writes into the
returned array stay private (the file is never changed through it).

The files go where :mod:`tempfile` puts them (``$TMPDIR``, else ``/tmp``); where ``/tmp`` is
a RAM disk, point ``TMPDIR`` at a disk folder for whole-trace runs. Small runs (every test but
the ones that ask for spilling) never touch the disk.
"""

from __future__ import annotations

import tempfile
import weakref
from typing import IO

import numpy as np

#: Bytes of one column held in memory before it moves to a temporary file.
SPILL_BYTES = 16 << 20


class Spill:
    """One column of ``dtype`` (a fixed-size numpy dtype), appended chunk by chunk."""

    __slots__ = ("dtype", "spill_bytes", "_chunks", "_held", "_file", "_on_disk", "__weakref__")

    def __init__(self, dtype, spill_bytes: int | None = None) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype.hasobject:
            raise TypeError("Spill holds fixed-size values only, not Python objects")
        self.spill_bytes = SPILL_BYTES if spill_bytes is None else spill_bytes
        self._chunks: list[np.ndarray] = []
        self._held = 0  # bytes in _chunks
        self._file: IO[bytes] | None = None
        self._on_disk = 0  # values written to _file

    def __len__(self) -> int:
        return self._on_disk + self._held // self.dtype.itemsize

    @property
    def spilled(self) -> bool:
        """Whether part of the column lives in the temporary file."""
        return self._file is not None

    def add(self, values) -> None:
        """Append ``values`` (converted to the column's dtype)."""
        a = np.ascontiguousarray(values, dtype=self.dtype)
        if a.size == 0:
            return
        self._chunks.append(a)
        self._held += a.nbytes
        if self._file is not None or self._held > self.spill_bytes:
            self._flush()

    def _flush(self) -> None:
        if self._file is None:
            # lives as long as the column (and its maps): no context manager
            self._file = tempfile.TemporaryFile(prefix="kvfabric-records-")  # noqa: SIM115
            weakref.finalize(self, self._file.close)  # closed with the column (maps stay valid)
        self._file.seek(0, 2)
        for a in self._chunks:
            self._file.write(a.data)
            self._on_disk += len(a)
        self._file.flush()
        self._chunks.clear()
        self._held = 0

    def array(self) -> np.ndarray:
        """The whole column: one array (a private memory map of the file once spilled)."""
        if self._file is None:
            if not self._chunks:
                return np.zeros(0, self.dtype)
            if len(self._chunks) > 1:
                self._chunks[:] = [np.concatenate(self._chunks)]
            return self._chunks[0]
        # once spilled, every add() writes through (nothing waits in _chunks), and the file
        # holds at least the value that made it spill
        mm = np.memmap(self._file, dtype=self.dtype, mode="c", shape=(self._on_disk,))
        return mm.view(np.ndarray)  # a plain array; it keeps the map alive
