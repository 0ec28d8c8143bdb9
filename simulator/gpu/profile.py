"""One GPU's kernel profile: every operator's time, arrays in and out, each with its source.

A :class:`KernelProfile` answers for one GPU (:attr:`KernelProfile.gpu`, a catalog
:class:`~simulator.hardware.GPUSpec`) what every operator the engines run costs. Each answer is a
:class:`Timing`: times [s] and, per element, where the number comes from:

- ``measured: <file> line N`` — a row of a measured table, at exactly that shape;
- ``interpolated: <file>`` — between measured rows of that file at the same exact-match shape,
  linear in log size and log time (:mod:`simulator.gpu.tables`);
- ``fitted: <profile> <operator> model`` — the operator's fitted model
  (:mod:`simulator.gpu.operators`) at a shape no table covers, on the GPU it was measured on;
- ``extrapolated: <profile> <operator> model (measured on G) × <GPU> datasheet`` — a model fitted
  on another GPU, evaluated with this GPU's datasheet figures (HBM bandwidth, peak FLOP/s, NVLink).

Tables are consulted only on the GPU they were measured on; elsewhere the fitted model answers.
A missing table is never a zero and a shape outside the grid never a ``KeyError``: the fitted model
answers every shape. Profiles are built and saved by :mod:`simulator.gpu.profiles` (``kvfabric
calibrate DIR``); this module only evaluates them: each operator computes its fitted model's
times and names the table that may cover them, and :func:`simulator.gpu.answers.answer` puts the
two together with their sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from simulator.errors import UserError
from simulator.gpu import operators as ops
from simulator.gpu.answers import Timing, answer, datasheet_ratios
from simulator.gpu.table_loaders import load_rows, profile_label
from simulator.gpu.tables import Table, dtype_class
from simulator.hardware import GPUSpec


@dataclass(frozen=True)
class OperatorFit:
    """One operator's fitted parameters and where they come from.

    Attributes:
        op: operator name (a key of :data:`simulator.gpu.operators.FITS`).
        params: the fitted parameters (SI units; see each model).
        measured_on: catalog name of the GPU whose measurements were fitted.
        profile: the profile that fitted them.
        folders: measurement folders whose tables answer on ``measured_on``.
        summary: rows, median and p90 relative error of the fit (for docs and ``kernel list``).
    """

    op: str
    params: dict[str, float]
    measured_on: str
    profile: str
    folders: tuple[str, ...] = ()
    summary: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LaunchCost:
    """Per-kernel launch cost [s]: eager (host enqueue per call) and per CUDA-graph node."""

    eager_time: float
    graph_time: float
    source: str
    measured_on: str


class KernelProfile:
    """Operator times of one GPU (see the module docstring).

    Args:
        name: the profile's name (``h200``, ``h100-vidur`` …).
        gpu: the GPU answered for.
        fits: operator → its fit (already resolved through other profiles).
        launch: per-kernel launch costs.
        cuda_graphs: whether the deployment replays CUDA graphs (per-node launch cost) or launches
            eagerly (host enqueue per kernel).
        description: one line for ``kvfabric kernel list``.
    """

    def __init__(self, name: str, gpu: GPUSpec, fits: dict[str, OperatorFit], launch: LaunchCost,
                 cuda_graphs: bool = True, description: str = "") -> None:
        self.name = name
        self.gpu = gpu
        self.fits = fits
        self.launch_cost = launch
        self.cuda_graphs = bool(cuda_graphs)
        self.description = description
        self._tables: dict[tuple[str, str], Table | None] = {}
        self._sources: dict[str, str] = {}  # operator -> its model's source line
        self._attention_table: bool | None = None  # a contiguous attention table answers
        self._attention_fit: dict[str, float] = {}  # see attention_seconds
        self._float_fits: dict[str, dict[str, float]] = {}  # see _fit_floats

    def at(self, spec: GPUSpec) -> KernelProfile:
        """The same profile answering for ``spec`` (tables and fits of other GPUs extrapolate)."""
        if spec == self.gpu:
            return self
        return KernelProfile(self.name, spec, self.fits, self.launch_cost, self.cuda_graphs,
                             self.description)

    def fitted_only(self) -> KernelProfile:
        """The same profile without its tables: every answer from the fitted models."""
        fits = {op: replace(f, folders=()) for op, f in self.fits.items()}
        return KernelProfile(self.name, self.gpu, fits, self.launch_cost, self.cuda_graphs,
                             self.description)

    def with_cuda_graphs(self, cuda_graphs: bool) -> KernelProfile:
        """The same profile for a deployment that does (not) replay CUDA graphs."""
        out = KernelProfile(self.name, self.gpu, self.fits, self.launch_cost, cuda_graphs,
                            self.description)
        out._tables = self._tables
        return out

    # -- plumbing ------------------------------------------------------------------------------

    def fit(self, op: str) -> OperatorFit:
        """The fit behind operator ``op``; a :class:`UserError` if the profile has none."""
        try:
            return self.fits[op]
        except KeyError:
            raise UserError(f"kernel profile {self.name!r} has no {op} model") from None

    def _measured_here(self, op: str) -> bool:
        return self.fit(op).measured_on.upper() == self.gpu.name.upper()

    def _table(self, op: str, rows_name: str, select: tuple[str, object] | None = None,
               coords: tuple[str, ...] | None = None) -> Table | None:
        """The measured table of ``rows_name`` (rows where ``select`` holds; interpolated over
        ``coords`` instead of the rows' own, e.g. one coordinate where the rows' two are equal),
        or None off the GPU measured on."""
        if not self._measured_here(op):
            return None
        key = (rows_name, repr(select), coords)
        if key not in self._tables:
            found = None
            for folder in self.fit(op).folders:
                rows = load_rows(folder, profile_label(Path(folder))).get(rows_name)
                if rows is not None:
                    if select is not None:
                        rows = rows.subset(rows.data[select[0]] == select[1])
                    if coords is not None:
                        rows = replace(rows, coords=coords)
                    found = Table(rows) if len(rows) else None
                    break
            self._tables[key] = found
        return self._tables[key]

    def _model_source(self, op: str) -> str:
        got = self._sources.get(op)  # the same line every time: kept
        if got is not None:
            return got
        f = self.fit(op)
        if f.measured_on.upper() == self.gpu.name.upper():
            got = f"fitted: {f.profile} {op} model"
        else:
            got = f"extrapolated: {f.profile} {op} model (measured on {f.measured_on}) × " + \
                datasheet_ratios(self.gpu, f.measured_on)
        self._sources[op] = got
        return got

    # -- operators -----------------------------------------------------------------------------

    def gemm(self, m, n, k, dtype: str = "bf16", groups=1.0) -> Timing:
        """GEMM ``y[m, n] = x[m, k]·W[k, n]`` in ``dtype`` (``bf16``, ``fp16``, ``fp8``);
        ``groups`` weight matrices sharing the m rows (a grouped MoE GEMM) [s]."""
        cls = dtype_class(dtype)
        m, n, k, groups = np.broadcast_arrays(*(np.asarray(v, float) for v in (m, n, k, groups)))
        t = ops.gemm(self.fit("gemm").params, self.gpu, m, n, k, cls == "fp8", groups)
        return answer(t, self._table("gemm", "gemm"), [n, k, np.full(m.shape, cls)], [m],
                      self._model_source("gemm"), groups == 1)

    def gemm_seconds(self, m: float, n: float, k: float, dtype: str = "bf16",
                     groups: float = 1.0) -> tuple[float, str]:
        """:meth:`gemm` of one shape as ``(time [s], source)``, without arrays (a step's
        kernels, shape after shape): the same value and source as :meth:`gemm`'s — the fitted
        model on floats (:func:`~simulator.gpu.operators.gemm`), then the measured table at the
        one point where it covers the shape (:meth:`~simulator.gpu.tables.Table.lookup_one`, as
        :func:`~simulator.gpu.answers.answer` asks it for one shape)."""
        cls = dtype_class(dtype)
        m, n, k, groups = float(m), float(n), float(k), float(groups)
        table = self._table("gemm", "gemm")
        if table is not None and groups == 1.0:
            got = table.lookup_one((n, k, cls), (m,))
            if got is not None:
                return got
        t = ops.gemm(self._fit_floats("gemm"), self.gpu, m, n, k, cls == "fp8", groups)
        return float(t), self._model_source("gemm")

    def elementwise_seconds(self, kind: str, tokens: float, width: float) -> tuple[float, str]:
        """:meth:`elementwise` of one shape as ``(time [s], source)``, without arrays: the same
        value and source (as :meth:`gemm_seconds`)."""
        _check_kind(kind)
        m, w = float(tokens), float(width)
        table = self._table("elementwise", "elementwise")
        if table is not None:
            got = table.lookup_one((kind, w), (m,))
            if got is not None:
                return got
        t = ops.elementwise(self._fit_floats("elementwise"), self.gpu, kind, m, w)
        return float(t), self._model_source("elementwise")

    def _fit_floats(self, op: str) -> dict[str, float]:
        """Operator ``op``'s fitted parameters as Python floats (the same values; arithmetic on
        them is the same IEEE arithmetic, on the scalar paths, without numpy scalars)."""
        got = self._float_fits.get(op)
        if got is None:
            got = self._float_fits[op] = {k: float(v) for k, v in self.fit(op).params.items()}
        return got

    def attention(self, batch, context, q_heads, kv_heads, head_dim, *, paged: bool = False,
                  page_tokens: int = 16, topk: int | None = None) -> Timing:
        """GQA/MHA decode attention (one query token each), one layer [s].

        ``paged``: KV in pages of ``page_tokens`` gathered through a block table before the
        attention (as measured in ``h200/attn_decode.csv``); ``topk``: each query attends only
        ``min(context, topk)`` tokens.
        """
        b, L, hq, hk, d = np.broadcast_arrays(*(np.asarray(v, float) for v in
                                                (batch, context, q_heads, kv_heads, head_dim)))
        if topk is not None:
            L = np.minimum(L, float(topk))
        p = self.fit("attention").params
        t = ops.decode_attention(p, self.gpu, b, L, hq, hk, d)
        layout, page = ("paged", float(page_tokens)) if paged else ("contiguous", 0.0)
        if paged:
            blocks, bb = ops.page_gather_blocks(b, L, hk, d, page_tokens)
            t = t + ops.gather(self.fit("gather").params, self.gpu, blocks, bb)
        table = self._table("attention", "attention", ("layout", layout))
        return answer(t, table, [hq, hk, d, np.full(b.shape, layout), np.full(b.shape, page)],
                      [b, L], self._model_source("attention"), topk is None)

    def attention_seconds(self, batch: float, context: float, q_heads: float, kv_heads: float,
                          head_dim: float) -> float | None:
        """:meth:`attention` of one shape over contiguous KV as a float [s], without arrays (a
        decode step's hot path): the fitted model's value, the same as :meth:`attention`'s;
        None where a measured table may answer instead (then ask :meth:`attention`)."""
        if self._attention_table is None:
            self._attention_table = self._table("attention", "attention",
                                                ("layout", "contiguous")) is not None
            self._attention_fit = self._fit_floats("attention")  # kept: read every call
        if self._attention_table:
            return None
        return float(ops.decode_attention(self._attention_fit, self.gpu, float(batch),
                                          float(context), float(q_heads), float(kv_heads),
                                          float(head_dim)))

    def mla_attention(self, batch, context, heads, *, kv_bytes_per_token: float = 1152.0,
                      row_bytes_per_head: float = 1152.0 + 1028.0,
                      flops_per_token_per_head: float = 2.0 * (576 + 512),
                      topk: int | None = None, sparse: bool | None = None) -> Timing:
        """Absorbed MLA decode (FlashMLA), one layer [s]. ``topk``: sparse attention (DSA) over
        ``min(context, topk)`` tokens; ``sparse``: use FlashMLA's sparse fp8 efficiency (default:
        when ``topk`` is given). Defaults: DeepSeek-V3's bf16 latent (576 × 2 B per token; query
        row 1,152 B, output + LSE 1,028 B)."""
        b, L, h = np.broadcast_arrays(*(np.asarray(v, float) for v in (batch, context, heads)))
        n = np.minimum(L, float(topk)) if topk is not None else L
        t0 = self.fit("attention").params["t0"]
        sparse = topk is not None if sparse is None else sparse
        t = ops.mla_attention(t0, self.gpu, b, n, h, kv_bytes_per_token, row_bytes_per_head,
                              flops_per_token_per_head, sparse=sparse)
        if self.gpu.name.upper() in ("H100", "H800"):
            src = "fitted: FlashMLA README (H800) roofline, floor of the " + \
                f"{self.fit('attention').profile} decode fit"
        else:
            src = "extrapolated: FlashMLA README (H800) roofline × " + \
                datasheet_ratios(self.gpu, "H100")
        return Timing(t, np.full(t.shape, src, dtype=object))

    def prefill_attention(self, new, cached, q_heads, kv_heads, qk_dim, v_dim=None, *,
                          topk: int | None = None) -> Timing:
        """Causal attention of a prefill chunk: ``new`` tokens after ``cached`` ones, one layer,
        one sequence [s]; ``topk``: each query attends at most ``topk`` keys (DSA)."""
        v_dim = qk_dim if v_dim is None else v_dim
        c, P, hq, hk, dq, dv = np.broadcast_arrays(
            *(np.asarray(v, float) for v in (new, cached, q_heads, kv_heads, qk_dim, v_dim)))
        pairs, tri = causal_pairs(c, P, topk)
        with np.errstate(divide="ignore", invalid="ignore"):  # no new token: 0/0, masked below
            t = ops.prefill_attention(self.fit("prefill_attention").params, self.gpu, c, pairs,
                                      tri, P + c, hq, hk, dq, dv)
        t = np.where(c > 0, t, 0.0)
        use = (P == 0) & (dq == dv) & (topk is None) & (c > 0)
        # whole causal prompts (q_len = kv_len): a table over the prompt length alone, so that
        # prompts between measured ones interpolate (over both, every cell off the diagonal is
        # empty and only the measured lengths themselves answered)
        table = self._table("prefill_attention", "prefill_attention", ("masked", 1), ("q_len",))
        return answer(t, table, [hq, hk, dq, np.ones(c.shape)], [c],
                      self._model_source("prefill_attention"), use)

    def elementwise(self, kind: str, tokens, width) -> Timing:
        """One elementwise kernel (``rmsnorm``, ``rotary``, ``activation``, ``add``) over
        ``tokens`` rows of ``width`` bf16 elements [s]."""
        _check_kind(kind)
        m, w = np.broadcast_arrays(np.asarray(tokens, float), np.asarray(width, float))
        t = ops.elementwise(self.fit("elementwise").params, self.gpu, kind, m, w)
        return answer(t, self._table("elementwise", "elementwise"), [np.full(m.shape, kind), w],
                      [m], self._model_source("elementwise"))

    def copy(self, nbytes) -> Timing:
        """Device-to-device copy of ``nbytes`` [s]."""
        x = np.asarray(nbytes, float)
        return answer(ops.copy(self.fit("copy").params, self.gpu, x), self._table("copy", "copy"),
                      [], [x], self._model_source("copy"))

    def gather(self, blocks, block_bytes) -> Timing:
        """Gather of ``blocks`` scattered KV blocks of ``block_bytes`` each [s]."""
        n, bb = np.broadcast_arrays(np.asarray(blocks, float), np.asarray(block_bytes, float))
        return answer(ops.gather(self.fit("gather").params, self.gpu, n, bb),
                      self._table("gather", "gather"), [bb], [n], self._model_source("gather"))

    def merge(self, batch, heads, dim, partials) -> Timing:
        """LSE merge of ``partials`` partial outputs of ``batch`` × ``heads`` rows of ``dim`` [s]."""
        b, h, d, p = np.broadcast_arrays(*(np.asarray(v, float) for v in
                                           (batch, heads, dim, partials)))
        t = ops.merge(self.fit("merge").params, self.gpu, b, h, d, p)
        return answer(t, self._table("merge", "merge"), [h, d, p], [b],
                      self._model_source("merge"))

    def indexer(self, batch, context, heads=64, dim=128) -> Timing:
        """DSA indexer pass (scores, then top-k) of ``batch`` queries over ``context`` keys,
        one layer [s] (the measured version is unfused bf16: an upper bound on the fused fp8
        production kernel)."""
        b, L, h, d = np.broadcast_arrays(*(np.asarray(v, float) for v in
                                           (batch, context, heads, dim)))
        t = ops.indexer(self.fit("indexer").params, self.gpu, b, L, h, d)
        return answer(t, self._table("indexer", "indexer"), [h, d], [b, L],
                      self._model_source("indexer"))

    def indexer_time(self, batch: float, context: float, heads: float = 64,
                     dim: float = 128) -> float:
        """``float(self.indexer(batch, context, heads, dim))`` for one shape [s]: without a
        measured table, the model on Python floats (the same operations and value, without
        the array set-up, 15 µs a call, that a decode step's hot path pays)."""
        if self._table("indexer", "indexer") is not None:
            return float(self.indexer(batch, context, heads, dim))
        return float(ops.indexer(self.fit("indexer").params, self.gpu, float(batch),
                                 float(context), float(heads), float(dim)))

    def indexer_prefill(self, new, cached, heads=64, dim=128) -> Timing:
        """A prefill chunk's DSA indexer pass, one layer [s]: ``new`` tokens after ``cached``,
        causal, as the fused fp8 production kernel runs it (:func:`operators.indexer_prefill`;
        assumed — no prefill indexer was measured)."""
        n, c, h, d = np.broadcast_arrays(*(np.asarray(v, float) for v in
                                           (new, cached, heads, dim)))
        t = ops.indexer_prefill(self.fit("indexer").params, self.gpu, n, c, h, d)
        src = ("assumed: fused fp8 indexer (DeepGEMM fp8 GEMM efficiency), causal pairs; "
               "launch floor from the " + self.fit("indexer").profile + " indexer fit")
        return Timing(t, np.full(t.shape, src, dtype=object))

    def collective(self, kind: str, nbytes, ranks, fabric: str = "nvlink") -> Timing:
        """A collective (``allreduce``, ``allgather``, ``alltoall``, ``sendrecv``) of ``nbytes``
        over ``ranks`` GPUs on ``fabric`` (``nvlink`` or ``rdma``) [s]; 0 for one rank."""
        if kind not in ops.COLLECTIVES:
            raise UserError(f"collective {kind!r}: give one of {', '.join(ops.COLLECTIVES)}")
        if fabric not in ops.FABRICS:
            raise UserError(f"fabric {fabric!r}: give one of {', '.join(ops.FABRICS)}")
        s, r = np.broadcast_arrays(np.asarray(nbytes, float), np.asarray(ranks, float))
        t = ops.collective(self.fit("collective").params, self.gpu, kind, s, r, fabric)
        if kind == "allreduce":
            table, keys = self._table("collective", "allreduce"), [r, np.full(s.shape, fabric)]
        elif kind == "sendrecv":
            table, keys = self._table("collective", "sendrecv"), [np.full(s.shape, fabric)]
        else:
            table, keys = None, []
        out = answer(t, table, keys, [s], self._model_source("collective"), r > 1)
        return Timing(out.time, np.where(r <= 1, "measured: nothing to move (one rank)",
                                         out.source))

    def launch(self, kernels=1.0) -> Timing:
        """Launch cost of ``kernels`` kernels: per CUDA-graph node, or per eager launch [s]."""
        k = np.asarray(kernels, float)
        c = self.launch_cost
        per = c.graph_time if self.cuda_graphs else c.eager_time
        src = f"{c.source} ({'CUDA-graph node' if self.cuda_graphs else 'eager launch'})"
        if c.measured_on.upper() != self.gpu.name.upper():
            src = "extrapolated: " + src.split(": ", 1)[-1] + \
                f", measured on {c.measured_on}, assumed equal on {self.gpu.name}"
        return Timing(k * per, np.full(k.shape, src, dtype=object))


def _check_kind(kind: str) -> None:
    """A :class:`UserError` unless ``kind`` is an elementwise kind the model knows."""
    if kind not in ops.ELEMENTWISE_KINDS:
        raise UserError(f"elementwise kind {kind!r}: give one of "
                        f"{', '.join(ops.ELEMENTWISE_KINDS)}")


def causal_pairs(new, cached, topk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(query–key pairs, share of them under the causal triangle) of ``new`` tokens after
    ``cached``: ``Σ_{i=P+1}^{P+C} min(i, k)`` (k = ∞ unless sparse)."""
    c, P = np.asarray(new, float), np.asarray(cached, float)
    full = c * P + c * (c + 1.0) / 2.0
    tri = np.where(full > 0, c * (c + 1.0) / 2.0 / np.where(full > 0, full, 1.0), 0.0)
    if topk is None:
        return full, tri
    k = float(topk)

    def upto(n):  # Σ_{i=1..n} min(i, k)
        return np.where(n <= k, n * (n + 1.0) / 2.0, k * (k + 1.0) / 2.0 + (n - k) * k)
    pairs = upto(P + c) - upto(P)
    return pairs, np.where(pairs > 0, np.minimum(tri, 1.0), 0.0)


__all__ = ["KernelProfile", "LaunchCost", "OperatorFit", "Timing", "causal_pairs"]
