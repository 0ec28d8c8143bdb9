"""The one entry: run a scenario under a policy, on the engine that policy needs.

:func:`run` sits above both kinds of engine. A per-round policy (route, fetch, local, adaptive …)
runs on the decode-loop engine (:func:`simulator.engine.exact.simulate`); a policy that names a
decode loop of its own (``loop``: ``disaggregated``, ``homogeneous``) runs on the pool loops
(:func:`simulator.disaggregation.simulate`). Both take the same trace
(:func:`simulator.engine.trace.load_trace`, loaded once here unless given) and return the same
:class:`~simulator.engine.results.Result`. :func:`compare_reuse` runs one trace under prefix, span
and no reuse (``placement.reuse``) and tabulates what each costs.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from simulator.engine.results import Result
from simulator.engine.trace import load_trace
from simulator.policies import Policy
from simulator.policies import get as get_policy

__all__ = ["Result", "compare_reuse", "load_trace", "run"]


def run(scenario, policy: str | Policy = "route", seed: int | None = None, *,
        trace: pd.DataFrame | None = None,
        progress: Callable[[int, int], None] | None = None,
        topology=None, check_invariants: bool = False, exact_streams: bool = False) -> Result:
    """Simulate ``scenario`` (a :class:`~simulator.scenario.Scenario`) under ``policy``.

    Args:
        scenario: a validated scenario.
        policy: name in :data:`simulator.policies.POLICIES`, or a policy instance.
        seed: overrides ``scenario.seed``.
        trace: a preloaded request trace (as :func:`load_trace` returns) to skip loading.
        progress: called as ``progress(finished_requests, total_requests)``.
        topology: a topology graph to use instead of building ``scenario.topology``.
        check_invariants: verify the KV directory (capacity, bookkeeping) after every
            iteration; raises ``AssertionError`` on a violation (slow; for tests; decode-loop
            engine only).
        exact_streams: run kernels through :meth:`simulator.gpu.GPU.run` (a SimPy resource and
            process per kernel) instead of the equivalent closed-form FIFO stream; slower, for
            cross-checking (decode-loop engine only).
    """
    seed = scenario.seed if seed is None else int(seed)
    if trace is None:
        trace = load_trace(scenario, seed)
    pol = get_policy(policy)
    if pol.loop is not None:  # a policy with its own decode loop (Lamina pools, TP replicas)
        from simulator.disaggregation import simulate

        return simulate(scenario, pol.loop, seed, trace=trace, progress=progress,
                        graph=topology)
    from simulator.engine.exact import simulate

    return simulate(scenario, pol, seed, trace, progress=progress, topology=topology,
                    check_invariants=check_invariants, exact_streams=exact_streams)


def compare_reuse(scenario, policy: str | Policy | None = None, seed: int | None = None, *,
                  rules: tuple[str, ...] = ("prefix", "span", "none"),
                  trace: pd.DataFrame | None = None) -> pd.DataFrame:
    """Run ``scenario``'s trace once per reuse rule (:mod:`simulator.engine.reuse`).

    Returns one row per rule: ``requests``, ``completed``, ``ttft_p50``, ``ttft_p99`` [s],
    ``prefill_tokens`` (tokens prefilled: recomputed pages, the last one at its size) and
    ``reused_fraction`` (reused / prompt blocks: the hit rate the rule achieved). ``policy``
    defaults to the scenario's first.
    """
    import dataclasses

    import numpy as np

    seed = scenario.seed if seed is None else int(seed)
    if trace is None:
        trace = load_trace(scenario, seed)
    bt = scenario.placement.block_tokens
    rows = []
    for rule in rules:
        sc = scenario.with_changes(placement=dataclasses.replace(scenario.placement, reuse=rule))
        res = run(sc, policy or scenario.policies[0], seed, trace=trace)
        req = res.requests
        tokens = np.minimum(req["prefilled_blocks"].to_numpy() * bt, req["input_tokens"])
        blocks = (req["reused_blocks"] + req["prefilled_blocks"]).sum()
        rows.append({"rule": rule, "requests": res.summary["requests"],
                     "completed": res.summary["completed"], "ttft_p50": res.summary["ttft_p50"],
                     "ttft_p99": res.summary["ttft_p99"], "prefill_tokens": int(tokens.sum()),
                     "reused_fraction": float(req["reused_blocks"].sum() / max(blocks, 1))})
    return pd.DataFrame(rows)
