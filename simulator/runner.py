"""The one entry: run a scenario under a policy, on the engine that policy needs.

:func:`run` sits above both kinds of engine. A per-round policy (route, fetch, local, adaptive …)
runs on the decode-loop engine (:func:`simulator.engine.exact.simulate`); a policy that names a
decode loop of its own (``loop``: ``disaggregated``, ``homogeneous``) runs on the pool loops
(:func:`simulator.disaggregation.simulate`). Both take the same trace
(:func:`simulator.engine.trace.load_trace`, loaded once here unless given) and return the same
:class:`~simulator.engine.results.Result`.

The decode-loop engine comes in two modes (``[engine] mode``, or ``engine=``): ``"exact"``
(:mod:`simulator.engine.exact`, an event per message and layer) and ``"fast"``
(:mod:`simulator.engine.fast`, an event per decode step, held to the exact one by
``benchmarks/validate_fast.py``). What the fast engine does not support runs on the exact engine
instead; the summary says which engine made a result (``engine``) and why it fell back
(``engine_fallback``).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from simulator.engine.results import Result
from simulator.engine.trace import load_trace
from simulator.policies import Policy
from simulator.policies import get as get_policy

__all__ = ["Result", "load_trace", "run"]


def run(scenario, policy: str | Policy = "route", seed: int | None = None, *,
        trace: pd.DataFrame | None = None,
        progress: Callable[[int, int], None] | None = None,
        topology=None, check_invariants: bool = False, exact_streams: bool = False,
        engine: str | None = None) -> Result:
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
        engine: ``"exact"`` or ``"fast"``; overrides the scenario's ``[engine] mode``.
    """
    from simulator.engine.fast import check_engine

    mode = check_engine(getattr(scenario.engine, "mode", "exact") if engine is None else engine)
    seed = scenario.seed if seed is None else int(seed)
    if trace is None:
        trace = load_trace(scenario, seed)
    pol = get_policy(policy)
    fallback = None
    if mode == "fast":
        from simulator.engine.fast import unsupported

        fallback = unsupported(pol, exact_streams=exact_streams)
    if pol.loop is not None:  # a policy with its own decode loop (Lamina pools, TP replicas)
        from simulator.disaggregation import simulate

        res = simulate(scenario, pol.loop, seed, trace=trace, progress=progress,
                       graph=topology)
    elif mode == "fast" and fallback is None:
        from simulator.engine.fast import simulate

        res = simulate(scenario, pol, seed, trace, progress=progress, topology=topology,
                       check_invariants=check_invariants)
    else:
        from simulator.engine.exact import simulate

        res = simulate(scenario, pol, seed, trace, progress=progress, topology=topology,
                       check_invariants=check_invariants, exact_streams=exact_streams)
    res.summary["engine"] = "fast" if mode == "fast" and fallback is None else "exact"
    if fallback is not None:
        res.summary["engine_fallback"] = fallback
    return res
