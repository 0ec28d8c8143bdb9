"""Calibration: fit fabric and kernel coefficients from measurements by least squares.

Two kinds of CSV file, told apart by their header (one kind per file, ``#`` lines are comments):

- **ping-pong** rows ``bytes,seconds`` (one-way message time) or ``bytes,rtt_seconds`` (round
  trip, the same size each way; halved). Fit: ``seconds = t0 + bytes / rate`` →
  ``message_fixed_time = t0`` (stack overhead + path latency) and ``rate`` [B/s]. Given the line
  rate and the latency of the path measured on, these become a stack's ``overhead_time = t0 −
  path latency`` and ``efficiency = rate / line rate`` (the rule of :data:`hardware.STACKS`).
- **kernel** rows ``batch,tokens,seconds`` (a decode attention kernel over ``tokens`` cached
  tokens for each of ``batch`` queries). Fit: ``seconds = launch + batch·tokens / token_rate`` →
  ``launch_time`` and, with the KV bytes per token, the effective bandwidth and
  ``memory_efficiency = effective bandwidth / HBM bandwidth``.

Both fits are least squares (``numpy.linalg.lstsq``) on *relative* residuals — each row weighted by
1 / its measured time — because timings span decades: the small rows pin the intercept and the large
ones the slope, and neither drowns the other. The result is a plain dict, written as TOML
(``[fabric]`` and/or ``[kernels]`` tables; the ``[kernels]`` keys ``launch_time`` and
``memory_efficiency`` are :class:`~simulator.gpu.KernelModel` field names) that a scenario includes
with ``include = "calibration.toml"``; :func:`kernel_model` and :func:`stack_spec` turn it back into
the objects the cost model and the engine use, and :func:`run_kernels` and :func:`run_stack` give
a run its kernels and its stack from the scenario's calibration (``[fabric]``'s ``path``: where
the ping-pong ran, ``"inter_node"`` by default or ``"intra_node"``)."""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator import hardware
from simulator.errors import UserError
from simulator.gpu.kernels import KernelModel
from simulator.gpu.profiled import ProfiledKernels, profiled_kernels
from simulator.hardware import StackSpec

PINGPONG_HEADERS = (("bytes", "seconds"), ("bytes", "rtt_seconds"))
KERNEL_HEADER = ("batch", "tokens", "seconds")


@dataclass(frozen=True)
class Measurements:
    """Rows of one CSV file.

    Attributes:
        path: the file read.
        kind: ``"pingpong"`` or ``"kernel"``.
        x: the regressor per row (bytes, or batch × tokens).
        seconds: the measured one-way / kernel time per row [s].
        inputs: the raw input columns per row (for display).
        columns: their names.
    """

    path: str
    kind: str
    x: np.ndarray
    seconds: np.ndarray
    inputs: tuple[tuple[float, ...], ...]
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Fit:
    """A straight-line fit ``seconds = intercept + slope · x`` and its residuals [s]."""

    kind: str
    intercept: float
    slope: float
    fitted: np.ndarray
    residuals: np.ndarray

    @property
    def rms_residual(self) -> float:
        """Root-mean-square residual [s]."""
        return float(np.sqrt(np.mean(self.residuals**2)))

    @property
    def max_relative_residual(self) -> float:
        """Largest |residual| / fitted."""
        return float(np.max(np.abs(self.residuals) / np.abs(self.fitted)))


def read_csv(path: str | Path) -> Measurements:
    """Read a ping-pong or kernel CSV; a :class:`UserError` names the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) dropped
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text CSV file") from None
    rows = [(i, r) for i, r in enumerate(csv.reader(text.splitlines()), start=1)
            if r and not r[0].lstrip().startswith("#") and any(c.strip() for c in r)]
    if not rows:
        raise UserError(f"{path}: no rows; expected a header {_headers_hint()} and data rows")
    head_line, head = rows[0]
    header = tuple(c.strip().lower() for c in head)
    if header in PINGPONG_HEADERS:
        kind = "pingpong"
    elif header == KERNEL_HEADER:
        kind = "kernel"
    else:
        raise UserError(f"{path}, line {head_line}: header {','.join(head)!r} not recognized; "
                        f"use {_headers_hint()}")
    values: list[tuple[float, ...]] = []
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise UserError(f"{path}, line {line}: {len(row)} columns, expected {len(header)} "
                            f"({','.join(header)})")
        vals = []
        for col, cell in zip(header, row, strict=True):
            try:
                v = float(cell)
            except ValueError:
                raise UserError(f"{path}, line {line}, column {col!r}: {cell.strip()!r} is not "
                                "a number") from None
            ok = v >= 0 if col == "bytes" else v > 0
            if not (ok and math.isfinite(v)):
                need = ">= 0" if col == "bytes" else "> 0"
                raise UserError(f"{path}, line {line}, column {col!r}: {cell.strip()} must be a "
                                f"finite number {need}")
            vals.append(v)
        values.append(tuple(vals))
    if len(values) < 2:
        raise UserError(f"{path}: {len(values)} data row(s); a line fit needs at least 2")
    arr = np.array(values, dtype=float)
    if kind == "pingpong":
        x = arr[:, 0]
        seconds = arr[:, 1] / 2.0 if header[1] == "rtt_seconds" else arr[:, 1]
    else:
        x = arr[:, 0] * arr[:, 1]
        seconds = arr[:, 2]
    if np.ptp(x) == 0:
        raise UserError(f"{path}: every row has the same size; measure at least two sizes")
    return Measurements(str(path), kind, x, seconds, tuple(values), header)


def _headers_hint() -> str:
    names = [",".join(h) for h in (*PINGPONG_HEADERS, KERNEL_HEADER)]
    return " or ".join(repr(n) for n in names)


def fit_line(m: Measurements) -> Fit:
    """Least-squares ``seconds = intercept + slope · x`` over the rows of ``m`` (rows weighted by
    1 / seconds, i.e. relative residuals are minimized)."""
    a = np.column_stack([np.ones_like(m.x), m.x])
    w = 1.0 / m.seconds
    (intercept, slope), *_ = np.linalg.lstsq(a * w[:, None], m.seconds * w, rcond=None)
    fitted = a @ np.array([intercept, slope])
    return Fit(m.kind, float(intercept), float(slope), fitted, m.seconds - fitted)


#: How far a fitted rate may pass the stated line rate, or the stated path latency the fitted
#: fixed time, before the two are called inconsistent (a fit's own scatter: within it the
#: efficiency is taken as 1 and the overhead as 0).
FIT_SLACK = 0.05


def fabric_coefficients(fit: Fit, line_rate: float | None = None,
                        path_latency_time: float | None = None) -> dict[str, float]:
    """The ``[fabric]`` table from a ping-pong fit (SI units; see the module docstring)."""
    if fit.slope <= 0:
        raise UserError("ping-pong fit: time does not grow with message size; check the rows")
    out = {"message_fixed_time": fit.intercept, "rate": 1.0 / fit.slope,
           "rms_residual_time": fit.rms_residual}
    if path_latency_time is not None:
        if path_latency_time > fit.intercept * (1 + FIT_SLACK):
            raise UserError(f"--path-latency {path_latency_time * 1e6:g} µs: more than the "
                            f"measured fixed time of a message ({fit.intercept * 1e6:.3g} µs), "
                            "which holds it; check the path's hops or the rows")
        out["path_latency_time"] = path_latency_time
        out["overhead_time"] = max(0.0, fit.intercept - path_latency_time)
    if line_rate is not None:
        if out["rate"] > line_rate * (1 + FIT_SLACK):
            raise UserError(f"--line-rate {line_rate / 1e9:g} GB/s: the rows move "
                            f"{out['rate'] / 1e9:.3g} GB/s, faster than the wire; give the "
                            "path's line rate in GB/s")
        out["line_rate"] = line_rate
        out["efficiency"] = min(1.0, out["rate"] / line_rate)
    return out


def kernel_coefficients(fit: Fit, bytes_per_token: float | None = None,
                        hbm_bandwidth: float | None = None) -> dict[str, float]:
    """The ``[kernels]`` table from a kernel fit (SI units; see the module docstring)."""
    if fit.slope <= 0:
        raise UserError("kernel fit: time does not grow with batch × tokens; check the rows")
    out = {"launch_time": max(0.0, fit.intercept), "token_rate": 1.0 / fit.slope,
           "rms_residual_time": fit.rms_residual}
    if bytes_per_token is not None:
        out["bytes_per_token"] = bytes_per_token
        out["effective_bandwidth"] = bytes_per_token / fit.slope
        if hbm_bandwidth is not None:
            out["hbm_bandwidth"] = hbm_bandwidth
            out["memory_efficiency"] = min(1.0, out["effective_bandwidth"] / hbm_bandwidth)
    return out


def kernel_model(calibration: dict, base: KernelModel | None = None) -> KernelModel:
    """``base`` (default coefficients if None) with the calibrated kernel values applied."""
    base = base if base is not None else KernelModel()
    kern = calibration.get("kernels", {})
    changes = {k: float(kern[k]) for k in ("launch_time", "memory_efficiency") if k in kern}
    return dataclasses.replace(base, **changes)


def run_kernels(calibration: dict, cuda_graphs: bool | None = None
                ) -> KernelModel | ProfiledKernels:
    """The kernel model a run uses (engine and disaggregated loops alike).

    ``profile`` names it (:mod:`simulator.gpu.profiled`): absent, the measured profiles
    (``"measured"``: every GPU its shipped profile) — unless the calibration gives roofline
    coefficients (a ``[kernels]`` table or :class:`~simulator.gpu.KernelModel` fields at the top
    level, as ``kvfabric calibrate FILE.csv`` writes), which select the roofline. With
    ``"roofline"``: a :class:`~simulator.gpu.KernelModel` with those fields (the table wins),
    defaults for the rest. ``cuda_graphs`` (the deployment's, ``[serving] cuda_graphs``)
    overrides the profiles' flag when given."""
    fields = {f.name for f in dataclasses.fields(KernelModel)}
    values = {**calibration, **calibration.get("kernels", {})}
    coefficients = {k: v for k, v in values.items() if k in fields}
    choice = calibration.get("profile", "roofline" if coefficients else "measured")
    if choice != "roofline":
        return profiled_kernels(choice, cuda_graphs)
    return KernelModel(**coefficients)


def run_stack(stack: str | StackSpec, calibration: dict) -> StackSpec:
    """The network stack a run uses: the scenario's ``stack`` with an included ``[fabric]``
    table's ``overhead_time`` and ``efficiency`` (``kvfabric calibrate --line-rate
    --path-latency``) on the paths its ``path`` names (:func:`stack_spec`); ``stack`` itself
    without one."""
    return stack_spec(calibration, hardware.stack(stack))


def check_coefficients(calibration: Mapping, fail: Callable[[str, str], UserError]) -> None:
    """Check what :func:`run_kernels` and :func:`run_stack` read from ``calibration`` before a
    run starts: a ``kernels`` entry is a table, and each :class:`~simulator.gpu.KernelModel`
    field given (at the top level or in ``kernels``) a finite number in that field's range; a
    ``fabric`` entry is a table whose ``overhead_time`` is a finite number ≥ 0, ``efficiency`` in
    (0, 1] and ``path`` one of :data:`FABRIC_PATHS`. ``fail(field, msg)`` makes the error for the
    dotted ``field``; other keys (``model``, ``source`` …) are left alone."""
    _check_fabric(calibration.get("fabric", {}), fail)
    kernels = calibration.get("kernels", {})
    if not isinstance(kernels, Mapping):
        raise fail("kernels", "must be a table of kernel coefficients ([kernels]), got "
                   f"{kernels!r}")
    fields = [f.name for f in dataclasses.fields(KernelModel)]
    for prefix, table in (("", calibration), ("kernels.", kernels)):
        for key in (k for k in fields if k in table):
            value = table[key]
            if not _finite(value):
                raise fail(prefix + key, f"expected a finite number, got {value!r}")
            try:
                KernelModel(**{key: float(value)})
            except ValueError as exc:
                msg = str(exc).removeprefix("KernelModel: ")
                raise fail(prefix + key, f"{value!r}: {msg}") from None


#: Where a ``[fabric]`` table's ping-pong was measured (``path``; default: across nodes).
FABRIC_PATHS = ("inter_node", "intra_node")


def stack_spec(calibration: dict, base: StackSpec, inter_node: bool | None = None) -> StackSpec:
    """``base`` with the calibrated overhead and efficiency for inter- (or intra-) node paths:
    those ``inter_node`` names, else the ``[fabric]`` table's ``path`` (default across nodes);
    ``base`` itself when the table gives neither."""
    fab = calibration.get("fabric", {})
    if inter_node is None:
        where = fab.get("path", "inter_node")
    else:
        where = "inter_node" if inter_node else "intra_node"
    changes = {}
    if "overhead_time" in fab:
        changes[f"{where}_overhead_time"] = float(fab["overhead_time"])
    if "efficiency" in fab:
        changes[f"{where}_efficiency"] = float(fab["efficiency"])
    if not changes:
        return base
    return dataclasses.replace(base, name=f"{base.name}+calibrated", **changes)


def _check_fabric(fab, fail: Callable[[str, str], UserError]) -> None:
    """:func:`check_coefficients`' ``[fabric]`` part."""
    if not isinstance(fab, Mapping):
        raise fail("fabric", f"must be a table of fabric coefficients ([fabric]), got {fab!r}")
    for key, within, what in (("overhead_time", lambda v: v >= 0.0, "seconds >= 0"),
                              ("efficiency", lambda v: 0.0 < v <= 1.0,
                               "a fraction of the line rate in (0, 1]")):
        if key not in fab:
            continue
        value = fab[key]
        if not _finite(value) or not within(value):
            raise fail(f"fabric.{key}", f"{value!r}: give {what}")
    path = fab.get("path", FABRIC_PATHS[0])
    if path not in FABRIC_PATHS:
        raise fail("fabric.path", f"{path!r}: give where the ping-pong ran, one of "
                   f"{', '.join(FABRIC_PATHS)}")


def _finite(value) -> bool:
    """A finite number from TOML (a bool is not one)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
