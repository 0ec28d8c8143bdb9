"""Loaders for real request traces: Mooncake JSONL, Azure LLM CSV and our Parquet.

Each loader returns a trace in the :mod:`workloads.schema` layout. Files may be plain or gzipped
(``.gz``). Reading is vectorized (``pandas.read_json(lines=True)`` / ``read_csv``); only when that
fast path fails or finds a bad value does a slow path re-read the file line by line to name the
first bad line (``UserError: FILE:LINE: …``) — or, with ``skip_bad=True``, to drop every bad line
and count them in ``df.attrs["skipped_lines"]`` (0 when nothing was skipped).

- **Mooncake** (Qin et al., FAST'25; ``timestamp`` [ms from the trace start], ``input_length``,
  ``output_length``, ``hash_ids``): ``hash_ids`` are prefix-chained ids of 512-token blocks, kept
  as int64 ``block_ids`` with ``block_tokens = 512`` (format documented in the Mooncake
  ``FAST25-release/traces`` README). The trace has no sessions: ``session_id = request_id``.
- **Azure LLM inference 2023** (Splitwise, ISCA'24; ``TIMESTAMP``, ``ContextTokens``,
  ``GeneratedTokens``): lengths only, so each request gets fresh block ids (no sharing) at
  ``block_tokens`` tokens per block (default 512, like Mooncake); ``arrival_at`` counts from the
  first record; ``session_id = request_id``.

``request_id`` is the record's index in the file (0-based, bad lines skipped). The shipped traces
live in ``workloads/data/<name>/``; :func:`shipped` finds them and :func:`load` dispatches on the
file name (or a shipped name such as ``"mooncake_conversation"``).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import itertools
import json
import math
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import UserError
from workloads.schema import FlatBlocks, make_trace, read_trace

#: Block size of Mooncake's ``hash_ids`` [tokens] (Mooncake FAST25-release/traces README).
MOONCAKE_BLOCK_TOKENS = 512

#: The most prompt or output tokens one request may have: ten times the longest context window
#: any model offers (Llama 4 Scout's 10 M tokens: Meta, "The Llama 4 herd", April 2025). A
#: count above it is a corrupt line, not a request, and would otherwise overflow int64 or ask
#: for terabytes of block ids.
MAX_REQUEST_TOKENS = 100_000_000

#: The latest arrival a trace file may give [s] from its start: 116 days, the bound of
#: ``[engine] duration`` (:data:`simulator.scenario.sections.MAX_DURATION`). Far past it the
#: clock cannot tell one decode step from the next: arrivals at 1e297 s ran to every latency 0
#: and overflow warnings.
MAX_TRACE_TIME = 1e7

DATA_DIR = Path(__file__).resolve().parent / "data"

#: Shipped trace name → file inside ``workloads/data/<name>/``.
SHIPPED: dict[str, str] = {
    "mooncake_conversation": "conversation_trace.jsonl.gz",
    "mooncake_synthetic": "synthetic_trace.jsonl.gz",
    "azure_llm_2023_code": "AzureLLMInferenceTrace_code.csv.gz",
    "azure_llm_2023_conv": "AzureLLMInferenceTrace_conv.csv.gz",
}



def _bad_line(path, lineno: int, exc: ValueError, skip_bad: bool) -> None:
    """Raise the user error for a line that does not parse, unless bad lines are skipped."""
    if not skip_bad:
        raise UserError(
            f"{path}:{lineno}: {exc}; fix the line or pass --skip-bad to skip it"
        ) from None

def shipped(name: str) -> Path:
    """Path of a shipped trace (see :data:`SHIPPED`); ``UserError`` for an unknown name."""
    if name not in SHIPPED:
        raise UserError(f"unknown shipped trace {name!r}; choose one of {sorted(SHIPPED)}")
    return DATA_DIR / name / SHIPPED[name]


def trace_format(path: str | os.PathLike) -> str:
    """``"mooncake"``, ``"azure"`` or ``"parquet"`` from the file name (``.gz`` ignored)."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith((".jsonl", ".json")):
        return "mooncake"
    if name.endswith(".csv"):
        return "azure"
    if name.endswith(".parquet"):
        return "parquet"
    raise UserError(
        f"{path}: unknown trace format; use .jsonl (Mooncake), .csv (Azure) or .parquet "
        "(optionally .gz for the first two)"
    )


def load(path_or_name: str | os.PathLike, *, skip_bad: bool = False,
         block_tokens: int = 512) -> pd.DataFrame:
    """Load any supported trace: a shipped name, or a Mooncake/Azure/Parquet file.

    Args:
        path_or_name: a file path, or a key of :data:`SHIPPED`.
        skip_bad: skip (and count in ``attrs["skipped_lines"]``) bad lines instead of failing.
        block_tokens: block size for traces without blocks (Azure) [tokens].
    """
    key = str(path_or_name)
    path = shipped(key) if key in SHIPPED else Path(path_or_name)
    if not path.exists():
        raise UserError(f"{path}: no such file (shipped traces: {sorted(SHIPPED)})")
    if path.is_dir():
        raise UserError(f"{path}: a folder, not a trace file; give a .jsonl (Mooncake), .csv "
                        "(Azure) or .parquet trace file")
    fmt = trace_format(path)
    if fmt == "mooncake":
        df = load_mooncake(path, skip_bad=skip_bad)
    elif fmt == "azure":
        df = load_azure(path, skip_bad=skip_bad, block_tokens=block_tokens)
    else:
        df = read_trace(path)
        df.attrs["skipped_lines"] = 0
    _check_span(df, path, fmt)
    return df


def _check_span(df: pd.DataFrame, path: Path, fmt: str) -> None:
    """No arrival past :data:`MAX_TRACE_TIME`; a :class:`UserError` naming the file otherwise."""
    late = np.flatnonzero(df["arrival_at"].to_numpy() > MAX_TRACE_TIME)
    if len(late):
        what = {"mooncake": "'timestamp'", "azure": "TIMESTAMP"}.get(fmt, "'arrival_at'")
        raise UserError(f"{path}: {what}: an arrival {df['arrival_at'].iloc[late[0]]:g} s after "
                        f"the trace's start, past the latest a trace may give ("
                        f"{MAX_TRACE_TIME:g} s, 116 days); cut the trace or fix its times")


@contextlib.contextmanager
def _gzip_errors(path: Path):
    """A ``.gz`` file that is not gzip, or is cut short, as one user error naming it."""
    try:
        yield
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise UserError(f"{path}: not a complete gzip file ({exc or type(exc).__name__}); "
                        "unpack it again, or drop the .gz suffix if it is plain text") from None


def _text_lines(path: Path, skip_bad: bool, skipped: list[int]):
    """The file's lines as text, decoded one by one so that a line that is not UTF-8 is named
    (``FILE:LINE``) — or, with ``skip_bad``, counted in ``skipped[0]`` and yielded empty. A
    byte-order mark opening the file (Windows editors write one) is dropped."""
    with (gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")) as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                yield raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                _bad_line(path, lineno, ValueError(
                    f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x})"), skip_bad)
                skipped[0] += 1
                yield "\n"


# -- Mooncake --------------------------------------------------------------------------------

_MOONCAKE_FIELDS = ("timestamp", "input_length", "output_length", "hash_ids")


def load_mooncake(path: str | os.PathLike, *, skip_bad: bool = False) -> pd.DataFrame:
    """Load a Mooncake JSONL trace (plain or gzipped); see the module docstring."""
    path = Path(path)
    with _gzip_errors(path):
        return _load_mooncake(path, skip_bad)


def _load_mooncake(path: Path, skip_bad: bool) -> pd.DataFrame:
    raw = None
    try:
        raw = pd.read_json(path, lines=True, dtype=False, compression="infer")
    except (ValueError, TypeError):  # TypeError: a line that is a JSON array, not an object
        raw = None
    if raw is not None and _mooncake_frame_ok(raw):
        ts = raw["timestamp"].to_numpy(np.float64)
        inp = raw["input_length"].to_numpy(np.int64)
        out = raw["output_length"].to_numpy(np.int64)
        blocks = FlatBlocks.from_lists(raw["hash_ids"].tolist())
        skipped = 0
    else:
        ts, inp, out, rows, skipped = _mooncake_slow(path, skip_bad)
        blocks = FlatBlocks.from_lists(rows)
    return _finish(path, ts / 1000.0, inp, out, blocks, MOONCAKE_BLOCK_TOKENS, skipped)


def _mooncake_frame_ok(raw: pd.DataFrame) -> bool:
    if not set(_MOONCAKE_FIELDS) <= set(raw.columns) or len(raw.columns) != 4:
        return False
    for col in ("timestamp", "input_length", "output_length"):
        if not pd.api.types.is_integer_dtype(raw[col]) and not pd.api.types.is_float_dtype(raw[col]):
            return False
    ts = raw["timestamp"].to_numpy(np.float64)
    inp = raw["input_length"].to_numpy(np.float64)
    out = raw["output_length"].to_numpy(np.float64)
    if not (np.isfinite(ts).all() and (ts >= 0).all() and (ts <= MAX_TRACE_TIME * 1e3).all()):
        return False
    if not ((inp > 0).all() and (out > 0).all() and (inp == np.round(inp)).all()
            and (out == np.round(out)).all() and (inp <= MAX_REQUEST_TOKENS).all()
            and (out <= MAX_REQUEST_TOKENS).all()):
        return False
    ids = raw["hash_ids"]
    if not all(isinstance(h, list) for h in ids):
        return False
    lengths = np.fromiter((len(h) for h in ids), dtype=np.int64, count=len(ids))
    if not (lengths == -(-inp.astype(np.int64) // MOONCAKE_BLOCK_TOKENS)).all():
        return False
    # numpy would silently take a boolean as 0 or 1: only ints (JSON integers) pass — below
    # 2**64, or read_json would have failed — and only those exact as doubles (the slow path
    # keeps any id in [0, 2**63) exactly); one flattening, checked and converted in C
    flat_ids = list(itertools.chain.from_iterable(ids))
    if not set(map(type, flat_ids)) <= {int}:
        return False
    flat = np.array(flat_ids, dtype=np.float64)
    return bool(((flat >= 0) & (flat < 2.0**53)).all())


def _mooncake_line(line: str) -> tuple[float, int, int, list[int]]:
    """Parse one Mooncake line; raises ``ValueError`` with the problem."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    missing = [f for f in _MOONCAKE_FIELDS if f not in obj]
    if missing:
        raise ValueError(f"missing field {missing[0]!r}")
    ts = obj["timestamp"]
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts) or ts < 0:
        raise ValueError(f"'timestamp' {ts!r} is not a time >= 0 in ms")
    if ts > MAX_TRACE_TIME * 1e3:
        raise ValueError(f"'timestamp' {ts!r} ms is past the latest time a trace may give, "
                         f"{MAX_TRACE_TIME * 1e3:g} ms (116 days)")
    for f in ("input_length", "output_length"):
        v = obj[f]
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{f!r} {v!r} is not a positive integer")
        if v > MAX_REQUEST_TOKENS:
            raise ValueError(f"{f!r} {v:,} is more than {MAX_REQUEST_TOKENS:,} tokens")
    ids = obj["hash_ids"]
    if not isinstance(ids, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**63 for x in ids
    ):
        raise ValueError("'hash_ids' is not a list of non-negative integers below 2**63")
    need = -(-obj["input_length"] // MOONCAKE_BLOCK_TOKENS)
    if len(ids) != need:
        raise ValueError(
            f"'hash_ids' has {len(ids)} ids but input_length {obj['input_length']} needs {need}"
            f" blocks of {MOONCAKE_BLOCK_TOKENS} tokens"
        )
    return float(ts), obj["input_length"], obj["output_length"], ids


def _mooncake_slow(path: Path, skip_bad: bool):
    ts, inp, out, rows = [], [], [], []
    undecodable = [0]
    skipped = 0
    for lineno, line in enumerate(_text_lines(path, skip_bad, undecodable), start=1):
        if not line.strip():
            continue
        try:
            t, i, o, ids = _mooncake_line(line)
        except ValueError as exc:
            _bad_line(path, lineno, exc, skip_bad)
            skipped += 1
            continue
        ts.append(t)
        inp.append(i)
        out.append(o)
        rows.append(ids)
    return (np.asarray(ts, np.float64), np.asarray(inp, np.int64), np.asarray(out, np.int64),
            rows, skipped + undecodable[0])


# -- Azure -----------------------------------------------------------------------------------

_AZURE_FIELDS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def load_azure(path: str | os.PathLike, *, skip_bad: bool = False,
               block_tokens: int = 512) -> pd.DataFrame:
    """Load an Azure LLM inference CSV (plain or gzipped); blocks are synthesized, unshared."""
    path = Path(path)
    if block_tokens <= 0:
        raise UserError(f"block_tokens must be > 0, got {block_tokens}")
    with _gzip_errors(path):
        return _load_azure(path, skip_bad, block_tokens)


def _load_azure(path: Path, skip_bad: bool, block_tokens: int) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, compression="infer", dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
        raw = None
    fast = None
    if raw is not None and tuple(raw.columns) == _AZURE_FIELDS:
        # a date must start with a digit (pandas would also accept words like "now")
        dated = raw["TIMESTAMP"].str.match(r"\s*\d")
        try:  # mixed time zones, or a date past 2262: line by line, where each is read or named
            at = pd.to_datetime(raw["TIMESTAMP"].where(dated, ""), format="ISO8601",
                                errors="coerce").dt.as_unit("ns")
            if at.dt.tz is not None:  # one zone on every line: instants in UTC, as line by line
                at = at.dt.tz_convert("UTC").dt.tz_localize(None)
        except (ValueError, OverflowError, AttributeError):
            at = None
        # as the slow path reads them: integers written as such, within the bound
        inp, out = (pd.to_numeric(raw[c].where(raw[c].str.fullmatch(r"\s*[+-]?\d+\s*"), ""),
                                  errors="coerce") for c in _AZURE_FIELDS[1:])
        ok = ((inp > 0) & (out > 0) & (inp <= MAX_REQUEST_TOKENS)
              & (out <= MAX_REQUEST_TOKENS))
        if at is not None and bool((ok & at.notna()).all()):
            ns = at.to_numpy().astype(np.int64)
            fast = (ns, inp.to_numpy(np.int64), out.to_numpy(np.int64), 0)
    if fast is None:
        fast = _azure_slow(path, skip_bad)
    ns, inp, out, skipped = fast
    arrival = (ns - ns.min()).astype(np.float64) * 1e-9 if len(ns) else np.zeros(0)  # ns → s
    counts = -(-inp // block_tokens)
    offsets = np.zeros(len(inp) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    blocks = FlatBlocks(offsets, np.arange(offsets[-1], dtype=np.int64))
    return _finish(path, arrival, inp, out, blocks, block_tokens, skipped)


def _azure_slow(path: Path, skip_bad: bool):
    ns, inp, out = [], [], []
    undecodable = [0]
    skipped = 0
    reader = csv.reader(_text_lines(path, skip_bad, undecodable))
    header = next(reader, None)
    if header is None:
        raise UserError(f"{path}: empty file; an Azure LLM inference trace starts with the "
                        f"header {','.join(_AZURE_FIELDS)}")
    if tuple(h.strip() for h in header) != _AZURE_FIELDS:
        raise UserError(f"{path}:1: header {header!r} is not {list(_AZURE_FIELDS)}; is this an "
                        "Azure LLM inference trace?")
    for row in reader:
        lineno = reader.line_num
        if not row or not any(c.strip() for c in row):
            continue
        try:
            if len(row) != 3:
                raise ValueError(f"{len(row)} fields, expected 3")
            try:
                if not row[0].strip()[:1].isdigit():
                    raise ValueError
                t = pd.to_datetime(row[0].strip(), format="ISO8601").as_unit("ns")
            except (ValueError, TypeError, OverflowError, AttributeError):
                raise ValueError(f"TIMESTAMP {row[0]!r} is not a date-time between 1677 and "
                                 "2262") from None
            if t is pd.NaT:
                raise ValueError(f"TIMESTAMP {row[0]!r} is not a date-time")
            vals = []
            for name, text in zip(_AZURE_FIELDS[1:], row[1:], strict=True):
                try:
                    v = int(text)
                except ValueError:
                    raise ValueError(f"{name} {text!r} is not an integer") from None
                if v <= 0:
                    raise ValueError(f"{name} {v} is not positive")
                if v > MAX_REQUEST_TOKENS:
                    raise ValueError(f"{name} {v:,} is more than {MAX_REQUEST_TOKENS:,} tokens")
                vals.append(v)
        except ValueError as exc:
            _bad_line(path, lineno, exc, skip_bad)
            skipped += 1
            continue
        ns.append(t.value)
        inp.append(vals[0])
        out.append(vals[1])
    return (np.asarray(ns, np.int64), np.asarray(inp, np.int64), np.asarray(out, np.int64),
            skipped + undecodable[0])


def _finish(path: Path, arrival, inp, out, blocks: FlatBlocks, block_tokens: int,
            skipped: int) -> pd.DataFrame:
    order = np.argsort(arrival, kind="stable")
    n = len(arrival)
    if not (order == np.arange(n)).all():
        rows = blocks.to_lists()
        blocks = FlatBlocks.from_lists([rows[i] for i in order])
    rid = np.arange(n, dtype=np.int64)[order]
    df = make_trace(
        arrival_at=np.asarray(arrival)[order], input_tokens=np.asarray(inp)[order],
        output_tokens=np.asarray(out)[order], block_ids=blocks, block_tokens=block_tokens,
        request_id=rid, session_id=rid, source=str(path),
    )
    df.attrs["skipped_lines"] = int(skipped)
    df.attrs["source"] = str(path)
    return df
