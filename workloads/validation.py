"""Checking a trace's values against the schema (:mod:`workloads.columns`).

:func:`validate` takes any DataFrame that claims to be a trace — a loader's, a generator's, a
user's Parquet file — fills the optional columns it lacks with their defaults, coerces each
column to its canonical dtype and checks every value: lengths and block sizes > 0, arrival times
finite, >= 0 and sorted, request ids unique in ``[0, MAX_REQUEST_ID]``, parents and followed
requests that exist (earlier rows, for ``after_id``), one block id per ``block_tokens`` of
prompt, spans sorted, non-overlapping and inside the prompt. The first value at fault raises a
:class:`~simulator.errors.UserError` naming the source, the column and the row, showing the
value as it was written (``4.5``, not ``np.float64(4.5)``), and saying what to give instead.
:func:`check_order_and_ids` is the part the engines rely on, for a trace handed to them without
:func:`validate`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.errors import UserError
from workloads.columns import (
    COLUMNS,
    EMPTY,
    INT_COLUMNS,
    LIST_COLUMNS,
    MAX_REQUEST_ID,
    NULLABLE_COLUMNS,
    blocks_needed,
)


def _shown(value) -> str:
    """A cell as a user wrote it: ``4.5``, ``'x'``, ``nan`` (not numpy's ``np.float64(4.5)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


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
    for col in NULLABLE_COLUMNS:
        if col not in df.columns:
            df[col] = pd.array([pd.NA] * n, dtype="Int64")
    if "spans" not in df.columns:
        df["spans"] = pd.Series([EMPTY] * n, dtype=object)
    if "after_time" not in df.columns:
        df["after_time"] = np.zeros(n)
    extra = [c for c in df.columns if c not in COLUMNS]
    if extra:
        raise _fail(source, extra[0], None, "unknown column", f"use only {list(COLUMNS)}")

    df["arrival_at"] = _arrivals(df, source)
    for col in INT_COLUMNS:
        df[col] = _int_column(df[col], source, col)
    _ids(df["request_id"].to_numpy(), source)
    for col in ("input_tokens", "output_tokens", "block_tokens"):
        bad = np.flatnonzero(df[col].to_numpy() <= 0)
        if len(bad):
            raise _fail(source, col, int(bad[0]), f"{df[col].iloc[bad[0]]} is not positive",
                        "lengths and block sizes must be > 0")
    rid = df["request_id"].to_numpy()
    for col in NULLABLE_COLUMNS:
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

    for col in LIST_COLUMNS:
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
            v = EMPTY
        try:
            arr = np.asarray(v)
            if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
                raise TypeError
        except (TypeError, ValueError):
            raise _fail(source, name, r, f"{v!r} is not a list of integers",
                        "give a list of int64 ids") from None
        out.append(arr.astype(np.int64, copy=False))
    return pd.Series(out, dtype=object, index=col.index)
