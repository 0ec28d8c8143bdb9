"""Cache hit rates of a trace: prefix caching vs position-independent reuse of spans.

Every block reference (request i, position j) of a trace is classified, against an unbounded
cache holding everything earlier *requests* computed (requests in row order, i.e. arrival
order):

- **reuse** — block id ``b[i, j]`` appeared in an earlier request, anywhere;
- **prefix hit** (a) — the whole prefix ``b[i, 0..j]`` appeared as a prefix of an earlier
  request: what a prefix cache (radix tree, vLLM/SGLang-style) can reuse;
- **position-independent hit** (b) — a prefix hit, or the block lies in a commutative span of
  request i (``spans`` column: a RAG document, a repository file) and its id appeared in an
  earlier request: a span's KV is reusable wherever it sits. Blocks outside spans keep the
  prefix rule, so (b) ≥ (a) on every trace, reference by reference.

Prefixes are compared through a 64-bit polynomial hash of the (mixed) block ids, computed
vectorized over the CSR view: ``H_j = Σ_{t≤j} x_t · B^{j−t} mod 2^64`` via the modular inverse of
the odd base B. Two different prefixes collide with probability ~2^-64 per pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workloads.schema import FlatBlocks, flat_blocks

_BASE = 0x9E3779B97F4A7C15  # odd, so invertible modulo 2^64
_BASE_INV = pow(_BASE, -1, 2**64)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: spreads consecutive ids over 64 bits (uint64 in, uint64 out)."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _powers(base: int, n: int) -> np.ndarray:
    p = np.full(max(n, 1), np.uint64(base), dtype=np.uint64)
    p[0] = 1
    return np.cumprod(p, dtype=np.uint64)


def prefix_hashes(blocks: FlatBlocks) -> np.ndarray:
    """uint64 hash of every prefix ``b[i, 0..j]``, aligned with ``blocks.values``."""
    n = len(blocks.values)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    row = blocks.row_index()
    pos = np.arange(n, dtype=np.int64) - blocks.offsets[row]
    max_len = int(blocks.lengths().max())
    with np.errstate(over="ignore"):
        c = _mix(blocks.values) * _powers(_BASE_INV, max_len)[pos]
        csum = np.cumsum(c, dtype=np.uint64)
        before = np.concatenate([[np.uint64(0)], csum])[blocks.offsets[:-1]]
        within = csum - before[row]
        return within * _powers(_BASE, max_len)[pos]


def row_prefix_hashes(ids: np.ndarray) -> np.ndarray:
    """uint64 hash of every prefix of one row of block ids (as :func:`prefix_hashes`)."""
    ids = np.asarray(ids, dtype=np.int64)
    offsets = np.array([0, len(ids)], dtype=np.int64)
    return prefix_hashes(FlatBlocks(offsets, ids))


def extend_prefix_hash(h: int, ids) -> np.ndarray:
    """The prefix hashes after appending ``ids`` to a prefix whose hash is ``h``
    (``H_j = H_{j−1}·B + mix(x_j) mod 2^64``, the same hash as :func:`prefix_hashes`)."""
    x = _mix(np.asarray(ids, dtype=np.int64))
    out = np.empty(len(x), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j, v in enumerate(x):
            h = np.uint64(h) * np.uint64(_BASE) + v
            out[j] = h
    return out


def seen_in_earlier_row(keys: np.ndarray, row: np.ndarray) -> np.ndarray:
    """For each entry, whether its key occurs in a row before its own (``row`` non-decreasing)."""
    if len(keys) == 0:
        return np.zeros(0, dtype=bool)
    codes, uniques = pd.factorize(keys)
    first = np.empty(len(uniques), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(keys) - 1, -1, -1)  # smallest index wins
    return row[first[codes]] < row


def span_mask(blocks: FlatBlocks, spans: FlatBlocks) -> np.ndarray:
    """Whether each block reference lies in one of its request's commutative spans."""
    n = len(blocks.values)
    mark = np.zeros(n + 1, dtype=np.int64)
    if len(spans.values):
        srow = spans.row_index()
        starts, ends = spans.values[0::2], spans.values[1::2]
        base = blocks.offsets[srow[0::2]]
        np.add.at(mark, base + starts, 1)
        np.add.at(mark, base + ends, -1)
    return np.cumsum(mark[:-1]) > 0


@dataclass(frozen=True)
class Hits:
    """Per block reference (aligned with the CSR values): ``reuse``, ``prefix`` (a) and
    ``position_independent`` (b) hit masks, plus ``in_span``."""

    reuse: np.ndarray
    prefix: np.ndarray
    position_independent: np.ndarray
    in_span: np.ndarray


def hits(df: pd.DataFrame) -> Hits:
    """Classify every block reference of a trace (see the module docstring)."""
    blocks = flat_blocks(df)
    row = blocks.row_index()
    reuse = seen_in_earlier_row(blocks.values, row)
    prefix = seen_in_earlier_row(prefix_hashes(blocks), row)
    if "spans" in df.columns:
        in_span = span_mask(blocks, flat_blocks(df, "spans"))
    else:
        in_span = np.zeros(len(blocks.values), dtype=bool)
    return Hits(reuse, prefix, prefix | (in_span & reuse), in_span)


def hit_rates(df: pd.DataFrame) -> dict[str, float]:
    """Hit fractions over all block references: ``prefix_hit_fraction`` (a),
    ``span_hit_fraction`` (b, position-independent), ``reuse_fraction``, ``span_fraction``
    (share of references inside commutative spans), and ``block_refs``."""
    h = hits(df)
    n = len(h.reuse)
    frac = (lambda m: float(m.sum()) / n) if n else (lambda m: 0.0)
    return {
        "block_refs": n,
        "prefix_hit_fraction": frac(h.prefix),
        "span_hit_fraction": frac(h.position_independent),
        "reuse_fraction": frac(h.reuse),
        "span_fraction": frac(h.in_span),
    }
