"""Measured kernel tables: the rows of a measurement folder, per operator, and their lookup.

A measurement folder is laid out like ``calibration/h200/`` (``gemm.csv``, ``attn_decode.csv``,
``prefill_attn.csv``, ``memory.csv``, ``dsa_indexer.csv``, ``launch.csv``; each column described in
``calibration/README.md``) or like ``calibration/vidur_h100/`` (Vidur's ``compute/*.mlp.csv``
operator profiles and ``network/h100_dgx/*.csv`` NCCL profiles, in milliseconds — converted to
seconds here, at the edge). :func:`load_rows` turns either into :class:`Rows` per operator: the
shape of every measured row split into *keys* (matched exactly: heads, widths, dtypes, ranks) and
*coordinates* (interpolated: tokens, batch, context, bytes), its time [s], and the file and line it
came from.

Vidur's rows are GEMMs and elementwise kernels at shapes its CSV spells out (``n_head``,
``n_kv_head``, ``n_embd``, ``n_expanded_embd``, TP degree ``t``): ``attn_pre_proj`` is
GEMM(m, (H + 2·H_kv)·D/t, d), ``attn_post_proj`` GEMM(m, d, H·D/t), ``mlp_up_proj``
GEMM(m, 2·I/t, d) (gated), ``mlp_down_proj`` GEMM(m, d, I/t); norms have width d, rotary
(H + H_kv)·D/t, the activation I/t, the residual add d. Its fp16 rows count as 2-byte GEMMs.

A :class:`Table` answers lookups in log–log space: a coordinate equal to a measured row is
``measured`` (naming the file and line), one between measured rows of the same key is
``interpolated`` (linear in log size and log time, bilinear over two coordinates), anything else is
NaN — the caller's fitted model answers there. Rows measured twice at one shape are merged (median).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import UserError
from simulator.units import ms

#: Bytes per element of the GEMM dtype classes (fp16 and bf16 time alike).
DTYPE_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0}
#: Vidur operator → elementwise kind.
VIDUR_ELEMENTWISE = {"input_layernorm": "rmsnorm", "post_attention_layernorm": "rmsnorm",
                     "attn_rope": "rotary", "mlp_act": "activation", "add": "add"}
VIDUR_GEMMS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")


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


# -- reading measurement folders ------------------------------------------------------------

def layout_of(folder: Path) -> str:
    """``"h200"`` (files named like calibration/h200/) or ``"vidur"``; a UserError otherwise."""
    if (folder / "compute").is_dir() or (folder / "network").is_dir():
        return "vidur"
    if any((folder / f).is_file() for f in ("gemm.csv", "attn_decode.csv", "memory.csv")):
        return "h200"
    raise UserError(f"{folder}: no measurements found; expect gemm.csv, attn_decode.csv, "
                    "memory.csv … (like calibration/h200/) or compute/ and network/ "
                    "(like calibration/vidur_h100/)")


@cache
def load_rows(folder: str, label: str) -> dict[str, Rows]:
    """Every operator's rows in ``folder``; ``label`` prefixes the sources (e.g. ``h200``)."""
    path = Path(folder)
    try:
        if layout_of(path) == "vidur":
            return _vidur_rows(path, label)
        return _h200_rows(path, label)
    except UserError:
        raise
    except (ValueError, TypeError) as exc:  # a column of text where numbers belong, say
        raise UserError(f"{path}: a measurement that is not a number ({exc}); fix the CSV "
                        "files") from None


def _read(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{path}: not a readable CSV table ({exc.__class__.__name__})") from None
    if df.empty:  # a header alone: nothing to fit (it ended in an IndexError deep in the fit)
        raise UserError(f"{path}: a header but no measurement rows; add rows or remove the file")
    df["_line"] = np.arange(len(df)) + 2  # header is line 1
    return df


def _need(df: pd.DataFrame, path: Path, cols: tuple[str, ...]) -> pd.DataFrame:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    return df


def _src(label: str, name: str, lines) -> np.ndarray:
    return np.array([f"{label}/{name} line {int(i)}" for i in lines], dtype=object)


def _rows(keys, coords, data, time, source) -> Rows:
    """Rows whose times and coordinates are numbers > 0; a :class:`UserError` naming the first
    row that is not (its source: ``label/file line N``)."""
    data = {k: np.asarray(v) for k, v in data.items()}
    source = np.asarray(source)
    time = np.asarray(time)
    for name, values in (("time_s", time), *((c, data[c]) for c in coords)):
        x = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(float)
        bad = np.flatnonzero(~(np.isfinite(x) & (x > 0)))
        if len(bad):
            v = values[bad[0]]
            v = v.item() if isinstance(v, np.generic) else v  # 'nan', not np.float64(nan)
            raise UserError(f"{source[bad[0]]}: {name} {v!r} is not a number > 0; fix the row "
                            "or remove it")
    return Rows(tuple(keys), tuple(coords), data, time.astype(float), source)


def _h200_rows(path: Path, label: str) -> dict[str, Rows]:
    out: dict[str, Rows] = {}
    f = path / "gemm.csv"
    if f.is_file():
        d = _need(_read(f), f, ("dtype", "m", "n", "k", "time_s"))
        out["gemm"] = _rows(("n", "k", "dtype"), ("m",),
                            {"m": d.m, "n": d.n, "k": d.k, "dtype": _dtypes(d, f)},
                            d.time_s, _src(label, f.name, d._line))
    f = path / "attn_decode.csv"
    if f.is_file():
        d = _need(_read(f), f, ("variant", "q_heads", "kv_heads", "head_dim", "batch", "context",
                                "block_size", "time_s"))
        for variant, op, layout in (("dense", "attention", "contiguous"),
                                    ("paged_gather_attn", "attention", "paged"),
                                    ("paged_gather_only", "page_gather", "paged")):
            x = d[d.variant == variant]
            if x.empty:
                continue
            page = x.block_size.fillna(0).astype(float)
            rows = _rows(("q_heads", "kv_heads", "head_dim", "layout", "page_tokens"),
                         ("batch", "context"),
                         {"q_heads": x.q_heads, "kv_heads": x.kv_heads, "head_dim": x.head_dim,
                          "layout": np.full(len(x), layout), "page_tokens": page,
                          "batch": x.batch, "context": x.context},
                         x.time_s, _src(label, f.name, x._line))
            out[op] = rows if op not in out else _concat(out[op], rows)
    f = path / "prefill_attn.csv"
    if f.is_file():
        d = _need(_read(f), f, ("variant", "q_heads", "kv_heads", "head_dim", "q_len", "kv_len",
                                "time_s"))
        d = d[d.variant.isin(["causal_full", "chunk"])]
        out["prefill_attention"] = _rows(
            ("q_heads", "kv_heads", "head_dim", "masked"), ("q_len", "kv_len"),
            {"q_heads": d.q_heads, "kv_heads": d.kv_heads, "head_dim": d.head_dim,
             "masked": (d.variant == "causal_full").astype(int), "q_len": d.q_len,
             "kv_len": d.kv_len}, d.time_s, _src(label, f.name, d._line))
    f = path / "memory.csv"
    if f.is_file():
        d = _need(_read(f), f, ("test", "bytes", "time_s"))
        c = d[d.test == "d2d_copy"]
        if not c.empty:
            out["copy"] = _rows((), ("bytes",), {"bytes": c.bytes}, c.time_s,
                                _src(label, f.name, c._line))
        g = d[d.test == "kv_block_gather"]
        if not g.empty:
            out["gather"] = _rows(("block_bytes",), ("blocks",),
                                  {"block_bytes": g.block_bytes, "blocks": g.n_blocks},
                                  g.time_s, _src(label, f.name, g._line))
        m = d[d.test == "lse_merge"]
        if not m.empty:
            out["merge"] = _rows(("heads", "dim", "partials"), ("batch",),
                                 {"heads": m.heads, "dim": m.dim, "partials": m.n_partials,
                                  "batch": m.batch}, m.time_s, _src(label, f.name, m._line))
    f = path / "dsa_indexer.csv"
    if f.is_file():
        d = _need(_read(f), f, ("batch", "context", "part", "time_s"))
        for part in ("scores", "topk", "both"):
            x = d[d.part == part]
            op = "indexer" if part == "both" else f"indexer_{part}"
            # the measured indexer: DeepSeek-V3.2's 64 heads × 128 (calibration/README.md)
            out[op] = _rows(("heads", "dim"), ("batch", "context"),
                            {"heads": np.full(len(x), 64), "dim": np.full(len(x), 128),
                             "batch": x.batch, "context": x.context}, x.time_s,
                            _src(label, f.name, x._line))
    f = path / "launch.csv"
    if f.is_file():
        d = _need(_read(f), f, ("op", "method", "time_s"))
        out["launch"] = _rows(("op", "method"), (), {"op": d.op, "method": d.method}, d.time_s,
                              _src(label, f.name, d._line))
    return out


def _dtypes(d: pd.DataFrame, path: Path) -> pd.Series:
    """The ``dtype`` column as its class (:func:`dtype_class`); an unknown one names its line."""
    try:
        return d.dtype.map(dtype_class)
    except UserError as exc:
        line = d._line[~d.dtype.isin(list(DTYPE_BYTES))].iloc[0]
        raise UserError(f"{path}:{line}: {exc}") from None


def _concat(a: Rows, b: Rows) -> Rows:
    return Rows(a.keys, a.coords, {k: np.concatenate([a.data[k], b.data[k]]) for k in a.data},
                np.concatenate([a.time, b.time]), np.concatenate([a.source, b.source]))


def _vidur_rows(path: Path, label: str) -> dict[str, Rows]:
    gemm: list[dict] = []
    elem: list[dict] = []
    for f in sorted((path / "compute").glob("*.mlp.csv")):
        cols = ("n_head", "n_kv_head", "n_embd", "n_expanded_embd", "num_tokens",
                "num_tensor_parallel_workers")
        d = _need(_read(f), f, cols)
        t = d.num_tensor_parallel_workers.to_numpy(float)
        h, hk = d.n_head.to_numpy(float), d.n_kv_head.to_numpy(float)
        dm, inter = d.n_embd.to_numpy(float), d.n_expanded_embd.to_numpy(float)
        hd = dm / h
        shapes = {"attn_pre_proj": ((h + 2 * hk) * hd / t, dm), "attn_post_proj": (dm, h * hd / t),
                  "mlp_up_proj": (2 * inter / t, dm), "mlp_down_proj": (dm, inter / t)}
        widths = {"input_layernorm": dm, "post_attention_layernorm": dm,
                  "attn_rope": (h + hk) * hd / t, "mlp_act": inter / t, "add": dm}
        src = _src(f"{label}/compute", f.name, d._line)
        for op, (n, k) in shapes.items():
            col = f"time_stats.{op}.median"
            _need(d, f, (col,))
            gemm.append({"m": d.num_tokens, "n": n, "k": k, "op": np.full(len(d), op),
                         "time": d[col].to_numpy(float) * ms(1.0), "source": src})
        for op, width in widths.items():
            col = f"time_stats.{op}.median"
            _need(d, f, (col,))
            elem.append({"kind": np.full(len(d), VIDUR_ELEMENTWISE[op]), "width": width,
                         "tokens": d.num_tokens, "time": d[col].to_numpy(float) * ms(1.0),
                         "source": src})
    out: dict[str, Rows] = {}
    if gemm:
        g = {k: np.concatenate([np.asarray(x[k]) for x in gemm]) for k in gemm[0]}
        out["gemm"] = _rows(("n", "k", "dtype"), ("m",),
                            {"m": g["m"], "n": g["n"], "k": g["k"],
                             "dtype": np.full(g["m"].size, "bf16"), "op": g["op"]},
                            g["time"], g["source"])
        e = {k: np.concatenate([np.asarray(x[k]) for x in elem]) for k in elem[0]}
        out["elementwise"] = _rows(("kind", "width"), ("tokens",),
                                   {"kind": e["kind"], "width": e["width"], "tokens": e["tokens"]},
                                   e["time"], e["source"])
    net = path / "network" / "h100_dgx"
    f = net / "all_reduce.csv"
    if f.is_file():
        d = _need(_read(f), f, ("time_stats.all_reduce.median", "num_workers", "size"))
        out["allreduce"] = _rows(("ranks", "fabric"), ("bytes",),
                                 {"ranks": d.num_workers, "fabric": np.full(len(d), "nvlink"),
                                  "bytes": d["size"]},
                                 d["time_stats.all_reduce.median"].to_numpy(float) * ms(1.0),
                                 _src(f"{label}/network/h100_dgx", f.name, d._line))
    f = net / "send_recv.csv"
    if f.is_file():
        d = _need(_read(f), f, ("time_stats.send_recv.median", "devices_per_node", "size"))
        # two GPUs on one node talk over NVLink; one GPU per node, over the nodes' RDMA NICs
        fabric = np.where(d.devices_per_node.to_numpy() >= 2, "nvlink", "rdma")
        out["sendrecv"] = _rows(("fabric",), ("bytes",), {"fabric": fabric, "bytes": d["size"]},
                                d["time_stats.send_recv.median"].to_numpy(float) * ms(1.0),
                                _src(f"{label}/network/h100_dgx", f.name, d._line))
    if not out:
        raise UserError(f"{path}: no compute/*.mlp.csv or network/h100_dgx/*.csv found")
    return out


def profile_label(folder: Path) -> str:
    """A short label for sources: the folder's name (``h200``, ``vidur_h100``)."""
    return re.sub(r"\s+", "_", folder.resolve().name)
