"""The request-trace schema: one row per request, as a pandas DataFrame.

A trace says *when* requests arrive, *how long* they are, and *which KV blocks* their prompts are
made of — the last is what decides where a query's attention has to read. Every loader and
generator in :mod:`workloads` returns a DataFrame with exactly the columns of
:data:`COLUMNS`, in that order; their table (dtype and meaning of each) is in
:mod:`workloads.columns`.

The schema is three modules, each one idea, and this one is where callers import it from:

- :mod:`workloads.columns` — the columns as data (:data:`COLUMNS`, :data:`MAX_REQUEST_ID`,
  :func:`blocks_needed`) and the list columns' CSR view (:class:`FlatBlocks`,
  :func:`flat_blocks`);
- :mod:`workloads.validation` — :func:`validate` checks every column and names the column and
  the first row at fault in a :class:`~simulator.errors.UserError`;
  :func:`check_order_and_ids` checks what the engines rely on in a trace handed to them;
- here — a trace built from column values (:func:`make_trace`), written to Parquet
  (:func:`write_trace`, atomically: :mod:`simulator.fileio`) and read back (:func:`read_trace`),
  each through :func:`validate`; and every public name of the other two, re-exported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import UserError
from simulator.fileio import atomic_path
from workloads.columns import (
    COLUMNS,
    EMPTY,
    MAX_REQUEST_ID,
    FlatBlocks,
    blocks_needed,
    flat_blocks,
)
from workloads.validation import check_order_and_ids, validate


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
        span_rows = [EMPTY] * n
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
