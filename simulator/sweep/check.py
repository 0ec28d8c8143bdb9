"""Every point of a sweep validated before any point runs.

A sweep that would fail on some points — an unknown dotted field (``workload.agentic.subagentz``),
a bad value, an unknown policy or model, a workload too large for this machine, a trace line that
does not parse — is refused with one :class:`~simulator.errors.UserError` naming the sweep file,
the point and the field, before the first point starts and before anything is written. What is
checked per point:

- ``kind = "run"``: the point's scenario (the base with its fields set) through the scenario
  validator, the ``policy`` field against the registry, :func:`simulator.runner.check` (the
  topology builds, a KV block fits, the workload's estimated size fits this machine's memory
  shared by the parallel workers), and each distinct trace file loaded once (encoding, lines);
- ``kind = "predict"``: every field a :class:`~simulator.costmodel.CostModel` argument, the model,
  stack and topology known, ``src`` and ``dst`` GPUs of the topology, counts positive.

Distinct scenarios are checked once, so a grid over ``policy`` or ``stack`` costs little.
"""

from __future__ import annotations

import json
import math
from typing import Any

from simulator.errors import UserError
from simulator.sweep.spec import PREDICT_DEFAULTS, PREDICT_FIELDS, Point, Sweep, topology_spec
from simulator.units import LARGEST_SIZE


def _where(sweep: Sweep, point: Point) -> str:
    fields = ", ".join(f"{k}={v!r}" for k, v in point.params)
    return f"{sweep.source} point {point.index} ({fields})"


def check_points(sweep: Sweep, parallel: int = 1) -> None:
    """Raise :class:`UserError` for the first point that cannot run (see the module docstring);
    ``parallel`` points share this machine's memory."""
    if sweep.kind == "predict":
        _check_predict(sweep)
    else:
        _check_run(sweep, max(1, parallel))


def _check_run(sweep: Sweep, parallel: int) -> None:
    from simulator.policies import POLICIES
    from simulator.runner import MEMORY_SHARE, check, memory_bytes
    from simulator.scenario import Scenario
    from workloads.blocks import block_ratio

    memory = MEMORY_SHARE * memory_bytes() / parallel
    seen: set[str] = set()
    traces: dict[str, int] = {}  # each distinct trace file: its block size [tokens]
    for point in sweep.points():
        where = _where(sweep, point)
        params = point.as_dict
        policy = params.get("policy")
        if policy is not None and policy not in POLICIES:
            raise UserError(f"{sweep.source}: field 'grid.policy': unknown policy {policy!r}; "
                            f"known: {', '.join(POLICIES)}")
        try:
            data = sweep.scenario_data(params)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None
        blob = json.dumps([data, policy], sort_keys=True, default=str)
        if blob in seen:
            continue
        seen.add(blob)
        scenario = Scenario.from_dict(data, source=where, base=sweep.base_dir)
        check(scenario, (policy,) if policy is not None else None, memory=memory)
        w = scenario.workload
        if w.kind == "trace" and w.trace not in traces:
            from simulator.engine.trace import trace_file
            from workloads import load

            df = load(trace_file(scenario), skip_bad=sweep.skip_bad)
            traces[w.trace] = int(df["block_tokens"].iloc[0]) if len(df) else 0
        if w.kind == "trace" and traces[w.trace]:
            try:  # as the run refines the trace's blocks into the engine's
                block_ratio(traces[w.trace], scenario.placement.block_tokens)
            except UserError as exc:
                raise UserError(f"{where}: field 'placement.block_tokens': {exc}") from None


def _check_predict(sweep: Sweep) -> None:
    import topologies
    from simulator.sweep.points import predict_model

    graphs: dict[str, Any] = {}
    for point in sweep.points():
        where = _where(sweep, point)
        args = {**PREDICT_DEFAULTS, **sweep.base, **point.as_dict}
        unknown = sorted(set(args) - set(PREDICT_FIELDS))
        if unknown:
            raise UserError(f"{where}: field {unknown[0]!r}: not a kind = \"predict\" field; "
                            f"known: {', '.join(PREDICT_FIELDS)}")
        try:  # the model and the stack: predict_model below
            spec = topology_spec(str(args["topology"]), sweep.base_dir)
            if spec not in graphs:
                graphs[spec] = topologies.parse_spec(spec)
            g = graphs[spec]
            for end in ("src", "dst"):
                node = args[end]
                if node not in g or g.nodes[node].get("kind", "gpu") != "gpu":
                    raise UserError(f"field {end!r}: {node!r} is not a GPU of {spec}")
            if args["src"] == args["dst"]:
                raise UserError(f"field 'dst': {args['dst']!r} is the home's own GPU (src); a "
                                "round reads blocks on another GPU")
            for name in ("blocks", "batch", "reuse", "block_tokens", "bandwidth"):
                v = args.get(name)
                if v is None and name == "bandwidth":
                    continue
                if isinstance(v, bool) or not isinstance(v, int | float) or not (
                        math.isfinite(v) and 0 < v <= LARGEST_SIZE):
                    raise UserError(f"field {name!r}: {v!r} is not a number > 0 and <= "
                                    f"{LARGEST_SIZE:g}")
                if name in ("batch", "block_tokens") and not float(v).is_integer():
                    raise UserError(f"field {name!r}: {v!r} is not a whole number")
            # what the closed form itself refuses: a model, stack, dtype or layout it does not
            # know, a reuse below 1
            predict_model(args, g)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None
