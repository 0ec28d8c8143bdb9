"""The request-trace schema: one row per request, as a pandas DataFrame.

A trace says *when* requests arrive, *how long* they are, and *which KV blocks* their prompts are
made of — the last is what decides where a query's attention has to read. Every loader and
generator in :mod:`workloads` returns a DataFrame with exactly these columns (in this order):

===============  ===========================  ================================================
column           dtype                        meaning
===============  ===========================  ================================================
``arrival_at``   float64                      arrival time [s] from the trace start; sorted
``request_id``   int64                        unique per row, in ``[0, 2^39)`` (it names the
                                              blocks its generated tokens fill)
``session_id``   int64                        conversation / agent the request belongs to
                                              (traces without sessions: the request id)
``parent_id``    Int64 (nullable)             request that spawned this one (sub-agent
                                              fan-out); ``<NA>`` for roots
``input_tokens`` int64                        prompt length [tokens], > 0
``output_tokens`` int64                       generated tokens, > 0
``block_ids``    list<int64> (object column   the prompt's KV blocks in order;
                 of int64 numpy arrays)       ``len == ceil(input_tokens / block_tokens)``.
                                              Equal ids mean equal content (shareable KV)
``block_tokens`` int64                        tokens per block of ``block_ids`` (> 0)
``repo_id``      Int64 (nullable)             repository the prompt reads, ``<NA>`` if none
``spans``        list<int64> (object column)  commutative spans as flattened half-open
                                              block-index pairs ``[s0, e0, s1, e1, …]``:
                                              each ``[s, e)`` is a segment whose position in
                                              the prompt does not matter (a RAG document, a
                                              repository file); sorted, non-overlapping.
                                              Empty when the prompt is order-sensitive
``turn_id``      Int64 (nullable)             the user turn of its session the call serves
                                              (structured agentic traces), else ``<NA>``
``context_id``   Int64 (nullable)             the agent context the prompt extends: within
                                              one context each prompt is a prefix of the
                                              next; a new context starts with a sub-agent
                                              or after compaction. ``<NA>`` if unknown
``tool_calls``   Int64 (nullable)             tool calls the response made (run before the
                                              context's next call), ``<NA>`` if unknown
``after_id``     Int64 (nullable)             the request this one waits for: it enters
                                              ``after_time`` after that request finishes
                                              (a sub-agent after its plan, a turn after the
                                              previous one), not at ``arrival_at``; an
                                              earlier row. ``<NA>``: it enters at
                                              ``arrival_at``
``after_time``   float64                      seconds from ``after_id``'s finish to this
                                              request's entry (spawn stagger, tool time);
                                              >= 0, 0 when ``after_id`` is null
===============  ===========================  ================================================

With ``after_id`` the engine keeps the trace causal: a request cannot start before the one it
follows has produced what it reads. ``arrival_at`` is then the time the generator expected
(the nominal schedule), used for ordering rows; the run records when the request entered.

``block_ids`` and ``spans`` are pyarrow ``list<int64>`` columns on disk. The engine iterates per
request, so :func:`flat_blocks` gives a CSR view (``offsets``, ``values`` numpy arrays) built
once. :func:`validate` checks every column and names the column and the first row at fault in a
:class:`~simulator.errors.UserError`. Parquet output is atomic (:mod:`simulator.fileio`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import UserError
from simulator.fileio import atomic_path

#: Column names in order.
COLUMNS: tuple[str, ...] = (
    "arrival_at",
    "request_id",
    "session_id",
    "parent_id",
    "input_tokens",
    "output_tokens",
    "block_ids",
    "block_tokens",
    "repo_id",
    "spans",
    "turn_id",
    "context_id",
    "tool_calls",
    "after_id",
    "after_time",
)

_INT_COLUMNS = ("request_id", "session_id", "input_tokens", "output_tokens", "block_tokens")
_NULLABLE_COLUMNS = ("parent_id", "repo_id", "turn_id", "context_id", "tool_calls", "after_id")
_LIST_COLUMNS = ("block_ids", "spans")

_EMPTY = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class FlatBlocks:
    """CSR view of a list column: row ``i`` is ``values[offsets[i]:offsets[i + 1]]``.

    Attributes:
        offsets: int64 array of length ``rows + 1``, ``offsets[0] == 0``, non-decreasing.
        values: int64 array of length ``offsets[-1]``.
    """

    offsets: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, i: int) -> np.ndarray:
        """The values of row ``i`` (a view, do not modify)."""
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        """Number of values per row (int64)."""
        return np.diff(self.offsets)

    def row_index(self) -> np.ndarray:
        """For each value, the row it belongs to (int64, length ``len(values)``)."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths())

    def to_lists(self) -> list[np.ndarray]:
        """The rows as a list of int64 arrays (for a DataFrame object column)."""
        return np.split(self.values, self.offsets[1:-1]) if len(self) else []

    @classmethod
    def from_lists(cls, rows: Sequence) -> FlatBlocks:
        """Build from a sequence of integer sequences (arrays or lists)."""
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if offsets[-1]:
            values = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows if len(r)])
        else:
            values = _EMPTY.copy()
        return cls(offsets, values.astype(np.int64, copy=False))


def blocks_needed(input_tokens, block_tokens):
    """``ceil(input_tokens / block_tokens)`` as int64 (scalars or arrays)."""
    t = np.asarray(input_tokens, dtype=np.int64)
    b = np.asarray(block_tokens, dtype=np.int64)
    return -(-t // b)


def flat_blocks(df: pd.DataFrame, column: str = "block_ids") -> FlatBlocks:
    """CSR view (``offsets``, ``values``) of a list column of a trace, in row order."""
    return FlatBlocks.from_lists(df[column].tolist())


def make_trace(
    *,
    arrival_at,
    input_tokens,
    output_tokens,
    block_ids: Sequence | FlatBlocks,
    block_tokens=512,
    request_id=None,
    session_id=None,
    parent_id=None,
    repo_id=None,
    spans: Sequence | FlatBlocks | None = None,
    turn_id=None,
    context_id=None,
    tool_calls=None,
    after_id=None,
    after_time=None,
    source: str = "trace",
) -> pd.DataFrame:
    """Assemble and validate a trace DataFrame from column values.

    Args:
        arrival_at: arrival times [s], one per request (sorted).
        input_tokens, output_tokens: lengths [tokens].
        block_ids: per request the prompt's block ids (sequences, or a :class:`FlatBlocks`).
        block_tokens: tokens per block, a scalar or one per request.
        request_id: defaults to ``0..n-1``. session_id: defaults to ``request_id``.
        parent_id, repo_id: nullable ints (``None`` / negative means none); default all none.
        spans: per request flattened ``[s, e)`` pairs; default none.
        turn_id, context_id, tool_calls: nullable ints of structured agentic traces
            (``None`` / negative means unknown); default all unknown.
        after_id, after_time: the request each one follows (nullable ids, ``None`` / negative
            means none) and the gap after its finish [s]; default none and 0.
        source: name used in error messages (a file name).
    """
    arrival_at = np.asarray(arrival_at, dtype=np.float64)
    n = len(arrival_at)
    rid = np.arange(n, dtype=np.int64) if request_id is None else np.asarray(request_id, np.int64)
    sid = rid.copy() if session_id is None else np.asarray(session_id, dtype=np.int64)
    blocks = block_ids.to_lists() if isinstance(block_ids, FlatBlocks) else list(block_ids)
    if spans is None:
        span_rows = [_EMPTY] * n
    else:
        span_rows = spans.to_lists() if isinstance(spans, FlatBlocks) else list(spans)
    df = pd.DataFrame(
        {
            "arrival_at": arrival_at,
            "request_id": rid,
            "session_id": sid,
            "parent_id": _nullable(parent_id, n),
            "input_tokens": np.asarray(input_tokens, dtype=np.int64),
            "output_tokens": np.asarray(output_tokens, dtype=np.int64),
            "block_ids": pd.Series([np.asarray(b, dtype=np.int64) for b in blocks], dtype=object),
            "block_tokens": np.broadcast_to(np.asarray(block_tokens, dtype=np.int64), (n,)).copy(),
            "repo_id": _nullable(repo_id, n),
            "spans": pd.Series([np.asarray(s, dtype=np.int64) for s in span_rows], dtype=object),
            "turn_id": _nullable(turn_id, n),
            "context_id": _nullable(context_id, n),
            "tool_calls": _nullable(tool_calls, n),
            "after_id": _nullable(after_id, n),
            "after_time": (np.zeros(n) if after_time is None
                           else np.asarray(after_time, dtype=np.float64)),
        }
    )
    return validate(df, source=source)


def _nullable(values, n: int) -> pd.Series:
    if values is None:
        return pd.Series(pd.array([pd.NA] * n, dtype="Int64"))
    if isinstance(values, pd.Series) and str(values.dtype) == "Int64":
        return values.reset_index(drop=True)
    arr = np.asarray(values, dtype=np.int64)
    return pd.Series(pd.arrays.IntegerArray(arr, arr < 0))


def _shown(value) -> str:
    """A cell as a user wrote it: ``4.5``, ``'x'``, ``nan`` (not numpy's ``np.float64(4.5)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


#: The largest request id: a request's id names the blocks its generated tokens fill
#: (:func:`workloads.selections.generated_block_id`, ``-(id · 2^24 + j) − 1`` in int64), which
#: stay distinct from every other request's only for ids in ``[0, 2^39)``.
MAX_REQUEST_ID = (1 << 39) - 1


def check_order_and_ids(df: pd.DataFrame, source: str = "trace") -> None:
    """What the engines rely on in a trace handed to them as it is (not read through
    :func:`validate`, which checks this too): finite arrival times >= 0 in order, and unique
    request ids in ``[0, MAX_REQUEST_ID]``. Raises :class:`UserError` naming the first row at
    fault."""
    _arrivals(df, source)
    _ids(np.asarray(df["request_id"], dtype=np.int64), source)


def _times(df: pd.DataFrame, column: str, source: str, fix: str) -> np.ndarray:
    """``df[column]`` as floats [s], each finite and >= 0, else ``UserError`` (``fix`` says
    what to give) showing the value as written."""
    t = pd.to_numeric(df[column], errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(t) | (t < 0))
    if len(bad):
        raise _fail(source, column, int(bad[0]), f"{_shown(df[column].iloc[bad[0]])} is not "
                    "a finite time >= 0", fix)
    return t


def _arrivals(df: pd.DataFrame, source: str) -> np.ndarray:
    """``df``'s arrival times [s] as floats: finite, >= 0 and sorted, else ``UserError``."""
    arrival = _times(df, "arrival_at", source, "give seconds from the trace start")
    bad = np.flatnonzero(np.diff(arrival) < 0)
    if len(bad):
        raise _fail(source, "arrival_at", int(bad[0]) + 1, "arrival times are not sorted",
                    "sort the trace by arrival_at")
    return arrival


def _ids(rid: np.ndarray, source: str) -> None:
    """Request ids unique and in ``[0, MAX_REQUEST_ID]``, else ``UserError``."""
    bad = np.flatnonzero((rid < 0) | (rid > MAX_REQUEST_ID))
    if len(bad):
        raise _fail(source, "request_id", int(bad[0]), f"{rid[bad[0]]} is outside 0..2^39 - 1",
                    "number the requests from 0 (an id also names the blocks its generated "
                    "tokens fill)")
    dup = pd.Series(rid).duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise _fail(source, "request_id", row, f"id {rid[row]} repeats", "ids must be unique")


def _fail(source: str, column: str, row: int | None, problem: str, fix: str) -> UserError:
    where = f"{source}: column '{column}'" + (f", row {row}" if row is not None else "")
    return UserError(f"{where}: {problem}; {fix}")


def validate(df: pd.DataFrame, source: str = "trace") -> pd.DataFrame:
    """Check a trace against the schema; return it with canonical dtypes and column order.

    Missing optional columns (``parent_id``, ``repo_id``, ``spans``, ``session_id``,
    ``turn_id``, ``context_id``, ``tool_calls``, ``after_id``, ``after_time``) are filled with
    their defaults. Raises :class:`UserError` naming ``source``, the column and the first row
    at fault.
    """
    df = df.reset_index(drop=True).copy()
    n = len(df)
    for col in ("arrival_at", "request_id", "input_tokens", "output_tokens", "block_ids"):
        if col not in df.columns:
            raise _fail(source, col, None, "missing", f"a trace needs columns {list(COLUMNS)}")
    if "block_tokens" not in df.columns:
        raise _fail(source, "block_tokens", None, "missing", "add tokens per block (e.g. 512)")
    if "session_id" not in df.columns:
        df["session_id"] = df["request_id"]
    for col in _NULLABLE_COLUMNS:
        if col not in df.columns:
            df[col] = pd.array([pd.NA] * n, dtype="Int64")
    if "spans" not in df.columns:
        df["spans"] = pd.Series([_EMPTY] * n, dtype=object)
    if "after_time" not in df.columns:
        df["after_time"] = np.zeros(n)
    extra = [c for c in df.columns if c not in COLUMNS]
    if extra:
        raise _fail(source, extra[0], None, "unknown column", f"use only {list(COLUMNS)}")

    df["arrival_at"] = _arrivals(df, source)
    for col in _INT_COLUMNS:
        df[col] = _int_column(df[col], source, col)
    _ids(df["request_id"].to_numpy(), source)
    for col in ("input_tokens", "output_tokens", "block_tokens"):
        bad = np.flatnonzero(df[col].to_numpy() <= 0)
        if len(bad):
            raise _fail(source, col, int(bad[0]), f"{df[col].iloc[bad[0]]} is not positive",
                        "lengths and block sizes must be > 0")
    rid = df["request_id"].to_numpy()
    for col in _NULLABLE_COLUMNS:
        try:
            df[col] = df[col].astype("Int64")
        except (TypeError, ValueError) as exc:
            raise _fail(source, col, None, f"not integers ({exc})", "use ints or nulls") from None
    parent = df["parent_id"]
    known = parent.notna().to_numpy()
    if known.any():
        ok = np.isin(parent.to_numpy(dtype=np.int64, na_value=-1), rid)
        bad = np.flatnonzero(known & ~ok)
        if len(bad):
            raise _fail(source, "parent_id", int(bad[0]), f"{parent.iloc[bad[0]]} is not a "
                        "request_id of this trace", "point at an earlier request or leave null")
    _check_after(df, rid, source)

    for col in _LIST_COLUMNS:
        df[col] = _list_column(df[col], source, col)
    need = blocks_needed(df["input_tokens"].to_numpy(), df["block_tokens"].to_numpy())
    have = np.fromiter((len(b) for b in df["block_ids"]), dtype=np.int64, count=n)
    bad = np.flatnonzero(have != need)
    if len(bad):
        r = int(bad[0])
        raise _fail(source, "block_ids", r, f"{have[r]} blocks for {df['input_tokens'].iloc[r]} "
                    f"input tokens at {df['block_tokens'].iloc[r]} tokens per block (need "
                    f"{need[r]})", "give ceil(input_tokens / block_tokens) block ids")
    for r, (sp, nb) in enumerate(zip(df["spans"], need, strict=True)):
        if len(sp) and not _spans_ok(sp, int(nb)):
            raise _fail(source, "spans", r, f"{sp.tolist()} is not a sorted list of "
                        f"non-overlapping [start, end) pairs within 0..{nb}",
                        "give flattened block-index pairs")
    return df[list(COLUMNS)]


def _check_after(df: pd.DataFrame, rid: np.ndarray, source: str) -> None:
    """``after_id`` names an earlier row's request; ``after_time`` is a finite gap >= 0."""
    df["after_time"] = _times(df, "after_time", source,
                              "give seconds after the followed request finishes")
    after = df["after_id"].to_numpy(dtype=np.int64, na_value=-1)
    known = np.flatnonzero(after >= 0)
    if not len(known):
        return
    row_of = pd.Series(np.arange(len(rid)), index=rid)
    pos = row_of.reindex(after[known]).to_numpy(dtype=np.float64)
    bad = known[~(pos < known)]  # unknown ids are NaN: not < anything
    if len(bad):
        r = int(bad[0])
        raise _fail(source, "after_id", r, f"{after[r]} is not the request_id of an earlier "
                    "row", "point at a request before this one (sorted by arrival_at) or leave "
                    "null")


def _spans_ok(sp: np.ndarray, n_blocks: int) -> bool:
    if len(sp) % 2:
        return False
    starts, ends = sp[0::2], sp[1::2]
    return bool(
        (starts >= 0).all() and (ends <= n_blocks).all() and (starts < ends).all()
        and (starts[1:] >= ends[:-1]).all()
    )


def _int_column(col: pd.Series, source: str, name: str) -> np.ndarray:
    values = pd.to_numeric(col, errors="coerce")
    arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))
    if len(bad):
        raise _fail(source, name, int(bad[0]), f"{_shown(col.iloc[bad[0]])} is not an integer",
                    "give whole numbers")
    if values.dtype.kind != "i":  # floats (or uint64) past int64 would wrap on the cast
        big = np.flatnonzero(np.abs(arr) >= 2.0**63)
        if len(big):
            raise _fail(source, name, int(big[0]), f"{_shown(col.iloc[big[0]])} is past the "
                        "largest integer (2^63 - 1)", "give whole numbers below 2^63")
    return values.to_numpy().astype(np.int64)


def _list_column(col: pd.Series, source: str, name: str) -> pd.Series:
    out = []
    for r, v in enumerate(col):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            v = _EMPTY
        try:
            arr = np.asarray(v)
            if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
                raise TypeError
        except (TypeError, ValueError):
            raise _fail(source, name, r, f"{v!r} is not a list of integers",
                        "give a list of int64 ids") from None
        out.append(arr.astype(np.int64, copy=False))
    return pd.Series(out, dtype=object, index=col.index)


def write_trace(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Validate and write a trace to Parquet atomically (list columns as list<int64>)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = validate(df, source=str(path))
    schema = pa.schema(
        [
            ("arrival_at", pa.float64()),
            ("request_id", pa.int64()),
            ("session_id", pa.int64()),
            ("parent_id", pa.int64()),
            ("input_tokens", pa.int64()),
            ("output_tokens", pa.int64()),
            ("block_ids", pa.list_(pa.int64())),
            ("block_tokens", pa.int64()),
            ("repo_id", pa.int64()),
            ("spans", pa.list_(pa.int64())),
            ("turn_id", pa.int64()),
            ("context_id", pa.int64()),
            ("tool_calls", pa.int64()),
            ("after_id", pa.int64()),
            ("after_time", pa.float64()),
        ]
    )
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_trace(path: str | os.PathLike) -> pd.DataFrame:
    """Read a trace written by :func:`write_trace` (or any Parquet with the schema's columns)."""
    path = Path(path)
    try:
        df = pd.read_parquet(path, engine="pyarrow")
    except (OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise UserError(f"{path}: not a readable Parquet trace ({exc})") from None
    return validate(df, source=str(path))  # list cells: arrays, or None for null (both taken)


__all__ = [
    "COLUMNS",
    "FlatBlocks",
    "MAX_REQUEST_ID",
    "blocks_needed",
    "check_order_and_ids",
    "flat_blocks",
    "make_trace",
    "read_trace",
    "validate",
    "write_trace",
]
