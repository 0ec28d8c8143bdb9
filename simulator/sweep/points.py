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
from simulator.sweep.spec import Point


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data["a"]["b"] = value`` for ``key = "a.b"``, creating tables on the way."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"sweep field '{key}': '{part}' is not a table in the base")
    node[parts[-1]] = value


def _predict(base: Mapping[str, Any], params: Mapping[str, Any], seed: int) -> list[dict]:
    """Closed-form costs of one round for every option (one record per option)."""
    import topologies
    from simulator.costmodel import CostModel

    args = {"model": "deepseek-v3.2", "topology": "dgx_h100", "stack": "ibgda",
            "src": "n0/gpu0", "dst": "n1/gpu0", "blocks": 32, "batch": 1, "reuse": 1.0,
            "block_tokens": 64}
    args.update(base)
    args.update(params)
    known = set(args) - {"model", "topology", "stack", "src", "dst", "blocks", "batch", "reuse",
                         "block_tokens", "layout", "kv_dtype", "bandwidth"}
    if known:
        raise UserError(f"predict sweep: unknown field {sorted(known)[0]!r}")
    g = topologies.parse_spec(str(args["topology"]))
    extra = {k: args[k] for k in ("layout", "kv_dtype", "bandwidth") if k in args}
    cm = CostModel(args["model"], g, args["stack"], block_tokens=int(args["block_tokens"]),
                   **extra)
    cmp = cm.compare(args["src"], args["dst"], float(args["blocks"]), float(args["batch"]),
                     reuse=float(args["reuse"]))
    rows = []
    for option in ("route", "fetch", "local"):
        phases = cmp.option(option)
        rows.append({"option": option, **{f"{k}_time": v for k, v in phases.as_dict().items()},
                     "decision": cmp.decision})
    return rows


def _run(base: Mapping[str, Any], params: Mapping[str, Any], seed: int,
         base_dir: str) -> list[dict]:
    """Simulate the base scenario with the point's fields set (one record per policy)."""
    from simulator.runner import run
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
    rows = []
    for name in policies:
        res = run(scenario, policy=name, seed=seed)
        rows.append({"policy": name, **_flat(res.summary)})
    return rows


def _flat(summary: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in summary.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_point(kind: str, base: Mapping[str, Any], base_dir: str, point: Point) -> dict[str, Any]:
    """Compute one point; never raises: failures come back as ``{"error": …}``."""
    try:
        params = point.as_dict
        if kind == "predict":
            rows = _predict(base, params, point.seed)
        else:
            rows = _run(base, params, point.seed, base_dir)
        return {"rows": rows}
    except Exception as exc:  # reported per point; the sweep goes on
        detail = str(exc) if isinstance(exc, UserError) else traceback.format_exc(limit=3)
        return {"error": f"{type(exc).__name__}: {exc}", "detail": detail}
