"""Time bins of link records: which bin a time falls in, and records' bytes spread over bins.

:class:`~simulator.network.linkstats.LinkStats` draws its timelines with these: bins of one
length over ``[0, now]`` (:func:`bin_edges`), each record's bytes split over the bins its
interval overlaps in proportion to the overlap (:func:`spread`), and the bin of each of many
times found in linear passes where the times are sorted, as a run's records mostly are
(:func:`sorted_search`).
"""

from __future__ import annotations

import numpy as np

from simulator.errors import UserError


def spread(key: np.ndarray, start: np.ndarray, end: np.ndarray, nbytes: np.ndarray,
           edges_at: np.ndarray, nkeys: int) -> tuple[np.ndarray | slice, np.ndarray]:
    """Bytes per key per bin (bins between ``edges_at`` [s]): each record's ``nbytes`` split
    over the bins its [start, end] overlaps in proportion to the overlap (keys below
    ``nkeys``). Returns the keys that occur (ascending; ``slice(None)``, every key, where rows
    for all cost no more than the records) and their rows, (keys × bins). A caller adds them
    to its totals with ``per[keys] += rows``: the sums ``per += rows`` over every key would
    give (a key absent adds 0.0), without an array over every key per call."""
    nbins = len(edges_at) - 1
    if nkeys * nbins <= key.size:  # rows for every key cost no more than the records do
        keys, k, nrows = slice(None), key, nkeys
    else:
        keys = np.flatnonzero(np.bincount(key, minlength=nkeys))
        row = np.zeros(nkeys, np.int64)
        row[keys] = np.arange(keys.size)
        k, nrows = row[key], keys.size  # each record's row among the keys that occur
    first = bin_of(edges_at, start, "right")
    last = bin_of(edges_at, end, "left")
    one = first >= last  # within one bin (nearly all: flows are short); the others add 0 here
    # (bytes are >= 0: adding 0.0 leaves every sum as it was)
    out = np.bincount(k * nbins + first, np.where(one, nbytes, 0.0),
                      nrows * nbins).reshape(nrows, nbins)
    cross = np.flatnonzero(~one)  # records that straddle a bin edge
    if cross.size:  # each over its bins, record after record, bin after bin (np.add.at adds
        # in that order: each cell's sum the one a loop over the records gives)
        n = last[cross] - first[cross] + 1
        rec = np.repeat(cross, n)
        b = first[rec] + (np.arange(rec.size) - np.repeat(np.cumsum(n) - n, n))
        overlap = np.minimum(edges_at[b + 1], end[rec]) - np.maximum(edges_at[b], start[rec])
        np.add.at(out, (k[rec], b), nbytes[rec] * overlap / (end[rec] - start[rec]))
    return keys, out


def bin_of(edges_at: np.ndarray, x: np.ndarray, side: str) -> np.ndarray:
    """The bin of each ``x`` [s] between ``edges_at``, clipped to the bins:
    ``clip(searchsorted(edges_at, x, side) − 1, 0, nbins − 1)``."""
    i = sorted_search(edges_at, x, side)
    i -= 1
    np.maximum(i, 0, out=i)
    np.minimum(i, len(edges_at) - 2, out=i)
    return i


def sorted_search(edges_at: np.ndarray, x: np.ndarray, side: str) -> np.ndarray:
    """``np.searchsorted(edges_at, x, side)`` (sorted ``edges_at``), found the other way round
    where ``x`` is sorted too, as a run's records mostly are: each edge's place among the ``x``
    (a search per edge, not per record), each record then counting the edges placed at or
    before it — the same answers (``x[i] >= e`` ⇔ ``i >= searchsorted(x, e, "left")`` for
    sorted ``x``; ``>`` with ``"right"``) in linear passes instead of a search per record."""
    x = np.asarray(x)
    if x.size < 2 or not bool((x[1:] >= x[:-1]).all()):
        return np.searchsorted(edges_at, x, side=side)
    # right: edges at or below x[i] (x[i] >= e); left: edges below x[i] (x[i] > e)
    at = np.searchsorted(x, edges_at, side="left" if side == "right" else "right")
    counts = np.bincount(at, minlength=x.size + 1)[:x.size]  # edges placed at each record
    return np.cumsum(counts)


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
