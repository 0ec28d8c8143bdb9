"""Measurement folders read into rows: one :class:`~simulator.gpu.tables.Rows` per operator.

A measurement folder is laid out like ``calibration/h200/`` (``gemm.csv``, ``attn_decode.csv``,
``prefill_attn.csv``, ``memory.csv``, ``dsa_indexer.csv``, ``launch.csv``; each column described in
``calibration/README.md``) or like ``calibration/vidur_h100/`` (Vidur's ``compute/*.mlp.csv``
operator profiles and ``network/h100_dgx/*.csv`` NCCL profiles, in milliseconds — converted to
seconds here, at the edge). :func:`load_rows` turns either into :class:`Rows` per operator (once
per folder: cached), checking every time and coordinate is a number > 0 and naming the file and
line of the first that is not; :func:`layout_of` tells the two layouts apart and
:func:`profile_label` names a folder in the rows' sources.

Vidur's rows are GEMMs and elementwise kernels at shapes its CSV spells out (``n_head``,
``n_kv_head``, ``n_embd``, ``n_expanded_embd``, TP degree ``t``): ``attn_pre_proj`` is
GEMM(m, (H + 2·H_kv)·D/t, d), ``attn_post_proj`` GEMM(m, d, H·D/t), ``mlp_up_proj``
GEMM(m, 2·I/t, d) (gated), ``mlp_down_proj`` GEMM(m, d, I/t); norms have width d, rotary
(H + H_kv)·D/t, the activation I/t, the residual add d. Its fp16 rows count as 2-byte GEMMs.

The lookup over these rows is :mod:`simulator.gpu.tables`'s.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import UserError
from simulator.gpu.tables import DTYPE_BYTES, Rows, dtype_class
from simulator.units import ms

#: Vidur operator → elementwise kind.
VIDUR_ELEMENTWISE = {"input_layernorm": "rmsnorm", "post_attention_layernorm": "rmsnorm",
                     "attn_rope": "rotary", "mlp_act": "activation", "add": "add"}
VIDUR_GEMMS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")


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
