"""How a kernel profile's answer is put together: a measured table where one covers the shape,
the operator's fitted model elsewhere, and the source of every number.

A :class:`~simulator.gpu.profile.KernelProfile` computes each operator's modelled times as
arrays, then hands them to :func:`answer` with the measured table that may cover them (None off
the GPU it was measured on). Shapes are grouped by their exact-match key columns (heads, dims,
dtype …) and each group is looked up at once over its interpolation coordinates
(:meth:`~simulator.gpu.tables.Table.lookup`); an element the table covers takes the table's time
and source, every other keeps the model's. One shape alone (a decode step's hot path) skips the
grouping. The result is a :class:`Timing`: times [s] and, per element, a source string whose
first word says its kind (``measured``, ``interpolated``, ``fitted``, ``extrapolated``; the
profile module's docstring lists them). :func:`datasheet_ratios` words what an extrapolated
answer scales by.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.errors import UserError
from simulator.gpu.tables import Table
from simulator.hardware import GPUSpec


@dataclass(frozen=True)
class Timing:
    """Times [s] and their sources, one per element of the (broadcast) inputs."""

    time: np.ndarray
    source: np.ndarray

    def __float__(self) -> float:
        return float(self.time.ravel()[0])

    @property
    def kind(self) -> np.ndarray:
        """``measured``, ``interpolated``, ``fitted`` or ``extrapolated`` per element."""
        return np.array([s.split(":")[0] for s in self.source.ravel()]).reshape(self.source.shape)


def answer(modelled: np.ndarray, table: Table | None, keys: list[np.ndarray],
           coords: list[np.ndarray], source: str, use_table: np.ndarray | bool = True) -> Timing:
    """Table answers where covered (and ``use_table``), the model (``modelled`` [s], whose
    source is ``source``) elsewhere; ``keys`` are the table's exact-match columns and
    ``coords`` its interpolation coordinates, each broadcast to ``modelled``'s shape."""
    modelled = np.asarray(modelled, float)
    shape = modelled.shape
    time = modelled.ravel().copy()
    src = np.full(time.size, source, dtype=object)
    if table is not None and time.size == 1:  # one shape (a step's hot path): the one
        # group of the general case below, without its grouping
        if np.asarray(use_table, bool).ravel()[0]:
            key = tuple(_plain(np.asarray(k).ravel()[0]) for k in keys)
            got = table.lookup_one(key, tuple(float(np.asarray(c, float).ravel()[0])
                                              for c in coords))
            if got is not None:
                time[0], src[0] = got
    elif table is not None:
        keys = [np.broadcast_to(np.asarray(k), shape).ravel() for k in keys]
        coords = [np.broadcast_to(np.asarray(c, float), shape).ravel() for c in coords]
        allowed = np.broadcast_to(np.asarray(use_table, bool), shape).ravel()
        if keys:
            stacked = np.array(["|".join(map(str, t)) for t in zip(*keys, strict=True)])
            groups = np.unique(stacked, return_inverse=True)[1]
        else:
            groups = np.zeros(time.size, int)
        for g in np.unique(groups):
            sel = np.flatnonzero((groups == g) & allowed)
            if sel.size == 0:
                continue
            key = tuple(_plain(k[sel[0]]) for k in keys)
            t, s = table.lookup(key, *[c[sel] for c in coords])
            ok = np.isfinite(t)
            time[sel[ok]] = t[ok]
            src[sel[ok]] = s[ok]
    return Timing(time.reshape(shape), src.reshape(shape))


def datasheet_ratios(spec: GPUSpec, base_name: str) -> str:
    """The datasheet figures an answer extrapolated from GPU ``base_name`` to ``spec`` scales
    by (HBM bandwidth, peak FLOP/s, NVLink bandwidth), as words for its source."""
    from simulator.hardware import gpu as lookup_gpu

    try:
        base = lookup_gpu(base_name)
    except UserError:
        return f"{spec.name} datasheet"
    return (f"{spec.name}/{base.name} datasheet (HBM ×{spec.hbm_bandwidth / base.hbm_bandwidth:.2f}"
            f", FLOP/s ×{spec.peak_flops / base.peak_flops:.2f}, "
            f"NVLink ×{spec.nvlink_bandwidth / base.nvlink_bandwidth:.2f})")


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    return v


__all__ = ["Timing", "answer", "datasheet_ratios"]
