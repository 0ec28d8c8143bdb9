"""One sweep point, computed in a worker: a pure function of (kind, base, params, seed).

``kind = "run"`` sets the point's dotted fields on the base scenario and simulates it (one record
per policy: the flattened ``res.summary``); ``kind = "predict"`` evaluates the closed form for
one round (one record per option). :func:`run_point` never raises: a failure comes back as
``{"error": …}`` so the sweep reports it and goes on (:mod:`simulator.sweep.executor`).
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Mapping
from typing import Any

from simulator.errors import UserError
from simulator.sweep.spec import (
    PREDICT_DEFAULTS,
    PREDICT_FIELDS,
    Point,
    set_dotted,
    topology_spec,
)


def predict_model(args: Mapping[str, Any], graph):
    """The point's :class:`~simulator.costmodel.CostModel` and its comparison of one round."""
    from simulator.costmodel import CostModel

    extra = {k: args[k] for k in ("layout", "kv_dtype", "bandwidth") if k in args}
    cm = CostModel(args["model"], graph, args["stack"], block_tokens=int(args["block_tokens"]),
                   **extra)
    return cm.compare(args["src"], args["dst"], float(args["blocks"]), float(args["batch"]),
                      reuse=float(args["reuse"]))


def _predict(base: Mapping[str, Any], params: Mapping[str, Any], seed: int,
             base_dir: str = ".") -> list[dict]:
    """Closed-form costs of one round for every option (one record per option)."""
    import topologies

    args = {**PREDICT_DEFAULTS, **base, **params}
    unknown = set(args) - set(PREDICT_FIELDS)
    if unknown:
        raise UserError(f"predict sweep: unknown field {sorted(unknown)[0]!r}")
    g = topologies.parse_spec(topology_spec(str(args["topology"]), base_dir))
    cmp = predict_model(args, g)
    rows = []
    for option in ("route", "fetch", "local"):
        phases = cmp.option(option)
        rows.append({"option": option, **{f"{k}_time": v for k, v in phases.as_dict().items()},
                     "decision": cmp.decision})
    return rows


def _run(base: Mapping[str, Any], params: Mapping[str, Any], seed: int,
         base_dir: str, skip_bad: bool = False) -> list[dict]:
    """Simulate the base scenario with the point's fields set (one record per policy, with a
    ``note`` on an empty or degenerate run)."""
    from simulator.engine.records import run_notes
    from simulator.policies import get
    from simulator.runner import load_trace, run
    from simulator.scenario import Scenario

    data = copy.deepcopy(dict(base))
    policy = None
    for key, value in params.items():
        if key == "policy":
            policy = value
        else:
            set_dotted(data, key, value)
    scenario = Scenario.from_dict(data, source=f"sweep point {dict(params)}", base=base_dir)
    policies = [policy] if policy is not None else list(scenario.policies)
    trace = load_trace(scenario, seed, skip_bad=skip_bad)
    rows = []
    for name in policies:
        res = run(scenario, policy=name, seed=seed, trace=trace)
        note = "; ".join(run_notes(res.summary, pool_loop=get(name).loop is not None))
        rows.append({"policy": name, **_flat(res.summary), "note": note})
    return rows


def _flat(summary: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in summary.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_point(kind: str, base: Mapping[str, Any], base_dir: str, point: Point,
              skip_bad: bool = False) -> dict[str, Any]:
    """Compute one point; never raises: failures come back as ``{"error": …}``."""
    try:
        params = point.as_dict
        if kind == "predict":
            rows = _predict(base, params, point.seed, base_dir)
        else:
            rows = _run(base, params, point.seed, base_dir, skip_bad)
        return {"rows": rows}
    except Exception as exc:  # reported per point; the sweep goes on
        detail = str(exc) if isinstance(exc, UserError) else traceback.format_exc(limit=3)
        return {"error": f"{type(exc).__name__}: {exc}", "detail": detail}
