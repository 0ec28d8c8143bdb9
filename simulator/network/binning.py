"""Time bins of link records: bins of one length, and records' bytes spread over them.

:class:`~simulator.network.linkstats.LinkStats` draws its timelines with these: bins of one
length over ``[0, now]`` (:func:`bin_edges`), and each record's bytes split over the bins its
interval overlaps in proportion to the overlap (:func:`spread`, a compiled loop over the
records: :func:`~simulator.network.kernels.spread_rows`).
"""

from __future__ import annotations

import numpy as np

from simulator.errors import UserError
from simulator.network.kernels import spread_rows


def spread(key: np.ndarray, start: np.ndarray, end: np.ndarray, nbytes: np.ndarray,
           edges_at: np.ndarray, nkeys: int) -> tuple[np.ndarray | slice, np.ndarray]:
    """Bytes per key per bin (bins between ``edges_at`` [s]): each record's ``nbytes`` split
    over the bins its [start, end] overlaps in proportion to the overlap (keys below
    ``nkeys``). Returns the keys that occur (ascending; ``slice(None)``, every key, where rows
    for all cost no more than the records) and their rows, (keys × bins). A caller adds them
    to its totals with ``per[keys] += rows``: the sums ``per += rows`` over every key would
    give (a key absent adds 0.0), without an array over every key per call. Each cell's
    additions: the records within one bin in order, then the straddling ones' parts, record
    after record (a compiled loop, :func:`~simulator.network.kernels.spread_rows`)."""
    return spread_keys([(key, nkeys)], start, end, nbytes, edges_at)[0]


def spread_keys(keys: list[tuple[np.ndarray, int]], start: np.ndarray, end: np.ndarray,
                nbytes: np.ndarray, edges_at: np.ndarray
                ) -> list[tuple[np.ndarray | slice, np.ndarray]]:
    """:func:`spread` of the same records under several keyings at once (``keys``: each
    ``(key per record, nkeys)``, at least one), one pass over the records: for each, what
    :func:`spread` returns, the same floats."""
    nbins = len(edges_at) - 1
    present, rows = [], []
    for key, nkeys in keys:
        if nkeys * nbins <= key.size:  # rows for every key cost no more than the records do
            present.append(slice(None))
            rows.append((key, nkeys))
        else:
            occur = np.flatnonzero(np.bincount(key, minlength=nkeys))
            row = np.zeros(nkeys, np.int64)
            row[occur] = np.arange(occur.size)
            present.append(occur)
            rows.append((row[key], occur.size))  # each record's row among the keys that occur
    out = np.zeros((len(keys), max(n for _, n in rows), nbins))
    spread_rows(np.stack([k for k, _ in rows], axis=1), start, end, nbytes, edges_at, out)
    return [(p, out[j, :n]) for j, (p, (_, n)) in enumerate(zip(present, rows, strict=True))]


def bin_edges(what: str, bin_time: float, now: float) -> tuple[float, np.ndarray]:
    """``(now, bin edges [s])`` of bins of ``bin_time`` [s] over [0, now], the last one ending
    at ``now`` (a remainder under 1e-9 of a bin, float noise, joins it); a :class:`UserError`
    naming ``what`` for a bin length that is not > 0."""
    if not bin_time > 0:
        raise UserError(f"{what}: bin_time must be > 0 s, got {bin_time!r}")
    now = float(now)
    nbins = max(int(np.ceil(now / bin_time - 1e-9)), 1)
    edges_at = np.minimum(np.arange(nbins + 1) * float(bin_time), now)
    edges_at[-1] = now
    return now, edges_at
