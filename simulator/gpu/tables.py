"""Measured kernel tables: the rows of one operator, and their log–log lookup.

:class:`Rows` are an operator's measured rows (read from a measurement folder by
:mod:`simulator.gpu.table_loaders`): the shape of every row split into *keys* (matched exactly:
heads, widths, dtypes, ranks) and *coordinates* (interpolated: tokens, batch, context, bytes), its
time [s], and the file and line it came from.

A :class:`Table` answers lookups in log–log space: a coordinate equal to a measured row is
``measured`` (naming the file and line), one between measured rows of the same key is
``interpolated`` (linear in log size and log time, bilinear over two coordinates), anything else is
NaN — the caller's fitted model answers there. Rows measured twice at one shape are merged (median).
:func:`dtype_class` names the GEMM dtype class a ``dtype`` key holds (fp16 and bf16 time alike).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass

import numpy as np

from simulator.errors import UserError

#: Bytes per element of the GEMM dtype classes (fp16 and bf16 time alike).
DTYPE_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0}


def dtype_class(dtype: str) -> str:
    """``"bf16"`` for 2-byte dtypes, ``"fp8"`` for 1-byte; a :class:`UserError` otherwise."""
    if dtype not in DTYPE_BYTES:
        raise UserError(f"dtype {dtype!r}: give one of {', '.join(DTYPE_BYTES)}")
    return "fp8" if DTYPE_BYTES[dtype] == 1.0 else "bf16"


@dataclass(frozen=True)
class Rows:
    """Measured rows of one operator.

    Attributes:
        keys: names of the exact-match shape columns.
        coords: names of the interpolated shape columns (1 or 2).
        data: column name → values per row (keys, coords and any extra inputs a fit needs).
        time: measured time per row [s].
        source: ``"file line N"`` per row.
    """

    keys: tuple[str, ...]
    coords: tuple[str, ...]
    data: dict[str, np.ndarray]
    time: np.ndarray
    source: np.ndarray

    def __len__(self) -> int:
        return int(self.time.size)

    def subset(self, mask: np.ndarray) -> Rows:
        """The rows where ``mask`` is true."""
        return Rows(self.keys, self.coords, {k: v[mask] for k, v in self.data.items()},
                    self.time[mask], self.source[mask])

    def shapes(self) -> np.ndarray:
        """A shape id per row: rows sharing all key values share an id (leave-one-shape-out)."""
        cols = [np.asarray(self.data[k]).astype(str) for k in self.keys] or \
            [np.full(len(self), "")]
        joined = np.array(["|".join(v) for v in zip(*cols, strict=True)])
        return np.unique(joined, return_inverse=True)[1]


def _cell_medians(cell: np.ndarray, time: np.ndarray) -> np.ndarray:
    """``np.median`` of ``time`` over the rows of each distinct ``cell``, cells in ascending
    order — the same bits (the sum of the two middle values halved; of an odd count the middle
    value twice, halved: itself exactly), for all cells at once."""
    order = np.lexsort((time, cell))
    x, c = time[order], cell[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    n = np.diff(np.r_[starts, c.size])
    return (x[starts + (n - 1) // 2] + x[starts + n // 2]) / 2.0


class Table:
    """Log–log lookup over the rows of one operator (see the module docstring)."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        self._grids: dict[tuple, tuple] = {}
        self._axis_lists: dict[tuple, list[list[float]]] = {}  # log axes as lists (lookup_one)
        if not len(rows):
            return
        ids = rows.shapes()
        for shape in np.unique(ids):
            idx = np.flatnonzero(ids == shape)
            key = tuple(_norm(rows.data[k][idx[0]]) for k in rows.keys)
            self._grids[key] = self._grid(idx)
            self._axis_lists[key] = [a.tolist() for a in self._grids[key][0]]

    def _grid(self, idx: np.ndarray) -> tuple:
        r = self.rows
        vals = [r.data[c][idx].astype(float) for c in r.coords]
        axes = [np.unique(v) for v in vals]
        shape = tuple(a.size for a in axes)
        pos = tuple(np.searchsorted(a, v) for a, v in zip(axes, vals, strict=True))
        flat = np.ravel_multi_index(pos, shape) if shape else np.zeros(idx.size, int)
        logt = np.full(int(np.prod(shape)), np.nan)
        src = np.full(logt.size, "", dtype=object)
        cells, first = np.unique(flat, return_index=True)  # first: each cell's first row
        logt[cells] = np.log(_cell_medians(flat, r.time[idx]))
        src[cells] = r.source[idx[first]]
        return [np.log(a) for a in axes], logt.reshape(shape), src.reshape(shape)

    def lookup_one(self, key: tuple, coords: tuple[float, ...]) -> tuple[float, str] | None:
        """:meth:`lookup` at one point: ``(time [s], source)``, or None where it gives NaN —
        the same numbers from the same operations in the same order (numpy's log and exp), on
        floats instead of arrays (a step's kernels, shape after shape)."""
        norm = tuple(_norm(k) for k in key)
        grid = self._grids.get(norm)
        if grid is None:
            return None
        axes, logt, sources = grid
        lo, hi, wt, exact = [], [], [], []
        for a, c in zip(self._axis_lists[norm], coords, strict=True):
            if not c > 0.0:  # log 0 = -inf and log of a negative (or NaN): never covered
                return None
            x = float(np.log(c))
            i = min(bisect_left(a, x), len(a) - 1)
            below = max(i - 1, 0)
            near = i if abs(a[i] - x) <= 1e-9 else below if abs(a[below] - x) <= 1e-9 else -1
            hit = near >= 0
            low, high = (near, near) if hit else (below, i)
            span = a[high] - a[low]
            if hit:
                w = 0.0
            elif a[0] < x < a[-1] and span > 0:
                w = (x - a[low]) / span
            else:  # outside the measured range: NaN
                return None
            lo.append(low)
            hi.append(high)
            wt.append(w)
            exact.append(hit)
        val = 0.0
        for corner in range(2 ** len(axes)):
            idx, weight = [], 1.0
            for d in range(len(axes)):
                up = (corner >> d) & 1
                idx.append(hi[d] if up else lo[d])
                weight = weight * (wt[d] if up else 1.0 - wt[d])
            if weight > 0:
                val = val + weight * float(logt[tuple(idx)])
        if not math.isfinite(val):
            return None
        first, last = sources[tuple(lo)], sources[tuple(hi)]
        if all(exact):
            return float(np.exp(val)), "measured: " + first
        return float(np.exp(val)), "interpolated: " + _file_of(first or last)

    def lookup(self, key: tuple, *coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Times [s] (NaN where not covered) and sources at ``coords`` for one key."""
        coords = np.broadcast_arrays(*[np.atleast_1d(np.asarray(c, dtype=float))
                                       for c in coords])
        n = coords[0].size
        out = np.full(n, np.nan)
        src = np.full(n, "", dtype=object)
        grid = self._grids.get(tuple(_norm(k) for k in key))
        if grid is None or n == 0:
            return out, src
        axes, logt, sources = grid
        lo, hi, wt, exact = [], [], [], []
        for a, c in zip(axes, coords, strict=True):
            with np.errstate(divide="ignore", invalid="ignore"):
                x = np.log(c.ravel())
            i = np.clip(np.searchsorted(a, x), 0, a.size - 1)
            below = np.maximum(i - 1, 0)
            near = np.where(np.abs(a[i] - x) <= 1e-9, i,
                            np.where(np.abs(a[below] - x) <= 1e-9, below, -1))
            hit = near >= 0
            inside = (x > a[0]) & (x < a[-1])
            low = np.where(hit, near, below)
            high = np.where(hit, near, i)
            span = a[high] - a[low]
            safe = np.where(span > 0, span, 1.0)
            w = np.where(hit, 0.0, np.where(inside & (span > 0), (x - a[low]) / safe, np.nan))
            lo.append(low)
            hi.append(high)
            wt.append(w)
            exact.append(hit)
        val = np.zeros(n)
        for corner in range(2 ** len(axes)):
            idx, weight = [], np.ones(n)
            for d in range(len(axes)):
                up = (corner >> d) & 1
                idx.append(hi[d] if up else lo[d])
                weight = weight * (np.nan_to_num(wt[d]) if up else 1.0 - np.nan_to_num(wt[d]))
            v = logt[tuple(idx)]
            val = np.where(weight > 0, val + weight * v, val)
        val = np.where(np.logical_or.reduce([np.isnan(w) for w in wt]), np.nan, val)
        ok = np.isfinite(val)
        out[ok] = np.exp(val[ok])
        if ok.any():
            first = sources[tuple(x[ok] for x in lo)]
            last = sources[tuple(x[ok] for x in hi)]
            src[ok] = ["interpolated: " + _file_of(a or b) for a, b in zip(first, last,
                                                                           strict=True)]
        use = np.logical_and.reduce(exact) & ok
        if use.any():
            src[use] = ["measured: " + s for s in sources[tuple(x[use] for x in lo)]]
        return out, src


def _norm(v) -> object:
    if isinstance(v, str):
        return v
    f = float(v)
    return round(f, 6)


def _file_of(source: str) -> str:
    return source.split(" line ")[0]
