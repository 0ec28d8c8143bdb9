"""Kernel profiles shipped with the package: where they live, how they are built, loaded, chosen.

A profile is a TOML file (``calibration/profiles/<name>.toml``) holding, per operator, the
parameters of its fitted model (:mod:`simulator.gpu.operators`), the GPU it was measured on, the
fit's in-sample error, and the measurement folders whose tables answer at measured shapes
(paths relative to the TOML file). An operator the folders do not measure names the shipped
profile that does (``from = "h200"``), and a profile of a GPU without measurements names a
``base`` profile whose fits it evaluates with its own datasheet figures (``extrapolated``).

``kvfabric calibrate DIR -o PROFILE`` (:func:`build_profile`) fits every operator a measurement
folder has (laid out like ``calibration/h200/`` or ``calibration/vidur_h100/``) and writes the TOML;
nothing is fitted when a simulation starts. The shipped profiles:

- ``h200`` — our H200 measurements (``calibration/h200/``); elementwise kernels and collectives
  from ``h100-vidur``;
- ``h100-vidur`` — Vidur's H100 operator and NCCL profiles (``calibration/vidur_h100/``, MIT);
  attention, copies, gathers, merges, the indexer and launch costs from ``h200``;
- ``h20``, ``b200`` (base ``h200``) and ``a100`` (base ``h100-vidur``) — no measurements: the
  nearest measured GPU's fits scaled by datasheet ratios.

:func:`calibration_dir` finds the checkout's ``calibration/`` first, else the copy a regular install
puts under ``<prefix>/share/kvfabric/calibration`` (``[tool.setuptools.data-files]``).
"""

from __future__ import annotations

import math
import os
import sys
import tomllib
from functools import cache
from pathlib import Path

import numpy as np
import tomli_w

from simulator import hardware
from simulator.errors import UserError
from simulator.fileio import write_text
from simulator.gpu.fitting import ROBUST_SCALE, error_summary, fit_relative
from simulator.gpu.operators import FITS, indexer
from simulator.gpu.profile import KernelProfile, LaunchCost, OperatorFit
from simulator.gpu.table_loaders import load_rows, profile_label
from simulator.gpu.tables import Rows
from simulator.hardware import GPUSpec

#: The profile each catalog GPU uses when a scenario asks for measured profiles.
DEFAULT_PROFILES: dict[str, str] = {"H100": "h100-vidur", "H200": "h200", "H20": "h20",
                                    "A100": "a100", "B200": "b200"}
#: The shipped profile whose measurements each operator comes from, when a folder lacks them.
MEASURED_IN: dict[str, str] = {"gemm": "h200", "attention": "h200", "prefill_attention": "h200",
                               "copy": "h200", "gather": "h200", "merge": "h200",
                               "indexer": "h200", "launch": "h200", "elementwise": "h100-vidur",
                               "collective": "h100-vidur"}
#: The rows a selector ``name:value`` filters on.
_SELECT_COLUMN = {"attention": "layout", "elementwise": "kind", "sendrecv": "fabric"}
#: The launch.csv rows that give the per-kernel launch costs: a one-element add (a real kernel
#: through PyTorch's dispatcher) enqueued eagerly, and as one node of a replayed CUDA graph.
LAUNCH_ROWS = (("tiny_add_1elem", "host_enqueue_per_call"), ("tiny_add_1elem", "graph_per_node"))


def calibration_dir() -> Path:
    """The measurement and profile folder: the checkout's, else the installed copy."""
    checkout = Path(__file__).resolve().parents[2] / "calibration"
    if (checkout / "profiles").is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "kvfabric" / "calibration"


def profile_names() -> list[str]:
    """Names of the shipped profiles."""
    return sorted(p.stem for p in (calibration_dir() / "profiles").glob("*.toml"))


def profile_path(name: str) -> Path:
    """The TOML file of profile ``name`` (a shipped name or a path to a TOML file)."""
    p = Path(name)
    if name.endswith(".toml"):
        if not p.is_file():
            raise UserError(f"kernel profile file {name!r} not found")
        return p.resolve()
    shipped = calibration_dir() / "profiles" / f"{name}.toml"
    if shipped.is_file():
        return shipped
    raise UserError(f"unknown kernel profile {name!r}; known: {', '.join(profile_names())} "
                    "(or the path of a TOML file written by `kvfabric calibrate DIR`)")


def load_profile(name: str) -> KernelProfile:
    """The profile called ``name`` (shipped) or stored at ``name`` (a ``.toml`` path)."""
    return _load(str(profile_path(name)), ())


def default_profile(spec: GPUSpec) -> KernelProfile:
    """The shipped profile of ``spec``'s GPU, or the nearest measured one extrapolated to it."""
    name = DEFAULT_PROFILES.get(spec.name.upper())  # the catalog's names are upper case
    if name is None:
        h100, h200 = hardware.gpu("H100"), hardware.gpu("H200")

        def distance(base: GPUSpec) -> float:
            return abs(np.log(spec.hbm_bandwidth / base.hbm_bandwidth)) + \
                abs(np.log(spec.peak_flops / base.peak_flops))
        name = "h100-vidur" if distance(h100) <= distance(h200) else "h200"
    return load_profile(name).at(spec)


@cache
def _read(path: str) -> dict:
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8-sig"))  # a BOM dropped
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{file}: not a kernel profile TOML file ({exc})") from None
    head = data.get("profile")
    if not isinstance(head, dict) or "name" not in head or "gpu" not in head:
        raise UserError(f"{file}: missing [profile] with name and gpu")
    return data


def _resolve(path: str, what: str, chain: tuple[str, ...]) -> OperatorFit | LaunchCost:
    """Operator ``what`` (or ``"launch"``) of the profile at ``path``, following ``from`` and
    ``base`` references operator by operator."""
    file = Path(path)
    data = _read(path)
    head = data["profile"]
    name = str(head["name"])
    if name in chain:
        raise UserError(f"{file}: kernel profiles refer to each other in a circle for {what}: "
                        f"{' → '.join((*chain, name))}")
    entry = data.get("launch" if what == "launch" else "operators", {})
    entry = entry if what == "launch" else entry.get(what)
    ref = head.get("base") if not entry else entry.get("from")
    if ref is not None:
        return _resolve(str(profile_path(str(ref))), what, (*chain, name))
    if not entry:
        raise UserError(f"{file}: {what} has neither parameters nor a profile to take them from")
    try:
        if what == "launch":
            times = _positive(file, what, {k: entry[k] for k in ("eager_time", "graph_time")},
                              zero=True)
            return LaunchCost(times["eager_time"], times["graph_time"], str(entry["source"]),
                              str(entry["measured_on"]))
        folders = tuple(str((file.parent / f).resolve()) for f in head.get("measurements", []))
        params = _positive(file, what, dict(entry["params"]))
        # each part of the operator's model whole or absent (a part its measurements lacked)
        missing = sorted(k for part in FITS[what].values() if set(part.start) & set(params)
                         for k in part.start if k not in params)
        if missing:
            raise UserError(f"{file}: {what} params lack {', '.join(missing)}; fit the profile "
                            "again (kvfabric calibrate DIR) or take the operator from another "
                            "with from = \"<profile>\"")
        return OperatorFit(what, params, str(entry["measured_on"]), name, folders,
                           {k: entry[k] for k in ("rows", "median_error", "p90_error")
                            if k in entry})
    except UserError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{file}: {what} entry is malformed ({exc!r})") from None


def _positive(file: Path, what: str, values: dict, zero: bool = False) -> dict[str, float]:
    """``values`` as floats, each a finite number > 0 (>= 0 with ``zero``) — as a fit makes
    them; a :class:`UserError` naming the file, operator and key otherwise (a nan or negative
    parameter gave nan or negative kernel times, a whole run of them)."""
    for key, v in values.items():
        ok = (not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
              and (v >= 0 if zero else v > 0))
        if not ok:
            raise UserError(f"{file}: {what} {key} = {v!r} is not a finite number "
                            f"{'>=' if zero else '>'} 0; fix it or fit the profile again "
                            "(kvfabric calibrate DIR)")
    return {k: float(v) for k, v in values.items()}


@cache
def _load(path: str, chain: tuple[str, ...]) -> KernelProfile:
    head = _read(path)["profile"]
    try:
        spec = hardware.gpu(str(head["gpu"]))
    except UserError as exc:
        raise UserError(f"{path}: profile.gpu: {exc}") from None
    fits = {op: _resolve(path, op, ()) for op in FITS}
    graphs = head.get("cuda_graphs", True)
    if not isinstance(graphs, bool):  # the string "false" was true
        raise UserError(f"{path}: profile.cuda_graphs = {graphs!r}: give true or false")
    return KernelProfile(str(head["name"]), spec, fits, _resolve(path, "launch", ()), graphs,
                         str(head.get("description", "")))


# -- building a profile from measurements -----------------------------------------------------

def select_rows(rows: dict[str, Rows], selector: str) -> Rows | None:
    """The rows a fit reads: ``name`` or ``name:value`` (filtered on the operator's selector)."""
    name, _, value = selector.partition(":")
    r = rows.get(name)
    if r is None or not value:
        return r
    sub = r.subset(r.data[_SELECT_COLUMN[name]] == value)
    return sub if len(sub) else None


def fit_operator(op: str, rows: dict[str, Rows], spec: GPUSpec) -> dict | None:
    """Fitted parameters of ``op`` on ``rows`` measured on ``spec`` (None if no rows), with the
    in-sample error summary over every row it was fitted on."""
    params: dict[str, float] = {}
    modelled, measured = [], []
    for part in FITS[op].values():
        sets = [r for r in (select_rows(rows, s) for s in part.rows) if r is not None]
        if not sets:
            continue
        y = np.concatenate([r.time for r in sets])

        def model(p, sets=sets, part=part):
            return np.concatenate([part.model(p, spec, r) for r in sets])
        fitted = fit_relative(model, part.start, y, robust=ROBUST_SCALE)
        params.update(fitted)
        if op != "indexer":
            modelled.append(model(fitted))
            measured.append(y)
    if not params:
        return None
    if op == "indexer":
        both = rows.get("indexer")
        if both is None or not {"t0", "t1"} <= params.keys():
            return None
        modelled.append(indexer(params, spec, both.data["batch"], both.data["context"],
                                both.data["heads"], both.data["dim"]))
        measured.append(both.time)
    summary = error_summary(np.concatenate(modelled), np.concatenate(measured))
    return {"measured_on": spec.name, "params": params, **summary}


def launch_entry(rows: dict[str, Rows], spec: GPUSpec) -> dict | None:
    """The ``[launch]`` table from a launch.csv's rows (see :data:`LAUNCH_ROWS`)."""
    r = rows.get("launch")
    if r is None:
        return None
    found = []
    for op, method in LAUNCH_ROWS:
        sel = np.flatnonzero((r.data["op"] == op) & (r.data["method"] == method))
        if sel.size == 0:
            return None
        found.append((float(r.time[sel[0]]), str(r.source[sel[0]])))
    (eager, src_e), (graph, src_g) = found
    file, line_e = src_e.split(" line ")  # sources read "<label>/<file> line <n>"
    _, line_g = src_g.split(" line ")
    (op, eager_how), (_, graph_how) = LAUNCH_ROWS  # one kernel, two ways of launching it
    return {"eager_time": eager, "graph_time": graph, "measured_on": spec.name,
            "source": f"measured: {file} lines {line_e} and {line_g} ({op}: {eager_how}, "
                      f"{graph_how})"}


def build_profile(folders: list[Path], spec: GPUSpec, name: str, output: Path,
                  cuda_graphs: bool = True, description: str = "") -> dict:
    """Fit every operator the measurement ``folders`` hold; the profile as a TOML-ready dict.

    Operators no folder measures are taken from the shipped profile that does
    (:data:`MEASURED_IN`); a :class:`UserError` if that is this very profile.
    """
    rows: dict[str, Rows] = {}
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"{folder}: not a folder of measurements")
        for op, r in load_rows(str(folder.resolve()), profile_label(folder)).items():
            rows.setdefault(op, r)
    here = output.resolve().parent
    rel = [os.path.relpath(f.resolve(), here) for f in folders]
    data: dict = {"profile": {"name": name, "gpu": spec.name, "cuda_graphs": bool(cuda_graphs),
                              "description": description or
                              f"{spec.name}: fitted on {', '.join(str(f) for f in folders)}",
                              "measurements": rel},
                  "operators": {}}
    for op in FITS:
        entry = fit_operator(op, rows, spec)
        if entry is None:
            entry = {"from": _borrow_from(op, name)}
        data["operators"][op] = entry
    launch = launch_entry(rows, spec)
    data["launch"] = launch if launch is not None else {"from": _borrow_from("launch", name)}
    return data


def _borrow_from(op: str, name: str) -> str:
    ref = MEASURED_IN[op]
    if ref == name:
        raise UserError(f"profile {name!r}: the measurements hold no {op} rows and {name!r} is "
                        "the shipped profile they would come from; add them or pick another name")
    return ref


def write_profile(data: dict, output: Path) -> None:
    """Write a profile dict as TOML (atomically), with a header saying how it was made."""
    header = ("# A kernel profile written by `kvfabric calibrate DIR -o PROFILE` (SI units: "
              "seconds, bytes).\n# Per operator: the fitted model's parameters "
              "(simulator/gpu/operators.py), the GPU measured on,\n# and the in-sample relative "
              "error; `from` names the profile an unmeasured operator comes from.\n")
    write_text(header + tomli_w.dumps(data), output)
