"""The one entry: run a scenario under a policy, on the engine that policy needs.

:func:`run` sits above both kinds of engine. A per-round policy (route, fetch, local, adaptive …)
runs on the decode-loop engine (:func:`simulator.engine.exact.simulate`); a policy that names a
decode loop of its own (``loop``: ``disaggregated``, ``homogeneous``) runs on the pool loops
(:func:`simulator.disaggregation.simulate`). Both take the same trace
(:func:`simulator.engine.trace.load_trace`, loaded once here unless given) and return the same
:class:`~simulator.engine.results.Result`. :func:`compare_reuse` runs one trace under prefix, span
and no reuse (``placement.reuse``) and tabulates what each costs.

The decode-loop engine comes in two modes (``[engine] mode``, or ``engine=``): ``"exact"``
(:mod:`simulator.engine.exact`, an event per message and layer) and ``"fast"``
(:mod:`simulator.engine.fast`, an event per decode step, held to the exact one by
``benchmarks/validate_fast.py``). What the fast engine does not support runs on the exact engine
instead; the summary says which engine made a result (``engine``) and why it fell back
(``engine_fallback``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from simulator.engine.results import Result
from simulator.engine.trace import load_trace
from simulator.errors import UserError
from simulator.models import model as lookup_model
from simulator.policies import Policy
from simulator.policies import get as get_policy

__all__ = ["Result", "check", "compare_reuse", "load_trace", "run"]

#: Memory a generated request and one of its block references take while a run holds them [B]
#: (generator, trace and engine state; measured: ~17 B per reference for a 13 M-reference
#: agentic trace, rounded up for the engine's copies).
REQUEST_BYTES = 2_000.0
BLOCK_REF_BYTES = 24.0
#: Share of this machine's memory a run may be estimated to need before it is refused.
MEMORY_SHARE = 0.8
#: Memory of one preset topology node (its GPUs, switches, NICs and their links as a networkx
#: graph, plus the fabric's per-link state) [B]; a generous bound.
TOPOLOGY_NODE_BYTES = 200_000.0


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
        progress: called as ``progress(finished_requests, total_requests)``; with an
            ``[engine] duration``, ``progress(simulated_time, duration)`` [s] instead
            (:mod:`simulator.engine.clock`).
        topology: a topology graph to use instead of building ``scenario.topology``.
        check_invariants: verify the KV directory (capacity, bookkeeping) after every
            iteration; raises ``AssertionError`` on a violation (slow; for tests; decode-loop
            engine only).
        exact_streams: run kernels through :meth:`simulator.gpu.GPU.run` (a SimPy resource and
            process per kernel) instead of the equivalent closed-form FIFO stream; slower, for
            cross-checking (decode-loop engine only).
        engine: ``"exact"`` or ``"fast"``; overrides the scenario's ``[engine] mode``.
    """
    mode = engine_mode(scenario, engine)
    seed = scenario.seed if seed is None else int(seed)
    if trace is None:
        check(scenario, (policy,), graph=topology)
        trace = load_trace(scenario, seed)
    else:  # handed over as it is: what the engines rely on, checked before any work
        from workloads.schema import check_order_and_ids

        check_order_and_ids(trace)
    pol = get_policy(policy)
    fallback = None
    if mode == "fast":
        from simulator.engine.fast import unsupported

        fallback = unsupported(pol, exact_streams=exact_streams)
    if pol.loop is not None:  # a policy with its own decode loop (Lamina pools, TP replicas)
        from simulator.disaggregation import simulate

        mode_kw = {"fast": True} if mode == "fast" and fallback is None else {}
        res = simulate(scenario, pol.loop, seed, trace=trace, progress=progress,
                       graph=topology, **mode_kw)
        fallback = res.summary.pop("engine_fallback", fallback)
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
    window = lookup_model(scenario.model.name).max_context_tokens
    over = requests_over_context(trace, window)
    if over:  # only then: the design's summary keys stay as they are otherwise
        res.summary["max_context_tokens"] = window
        res.summary["requests_over_context"] = over
    return res


def requests_over_context(trace: pd.DataFrame, max_context_tokens: int | None) -> int:
    """Requests of ``trace`` whose prompt and output together need more tokens than the
    model's context window ``max_context_tokens`` (0 when the window is not known). A server
    would refuse them; the simulator serves them, and a run with any puts the count and the
    window in its summary and says so in a note (``run_notes``)."""
    if max_context_tokens is None or not len(trace):
        return 0
    need = trace["input_tokens"].to_numpy(np.int64) + trace["output_tokens"].to_numpy(np.int64)
    return int(np.count_nonzero(need > max_context_tokens))


def engine_mode(scenario, engine: str | None = None) -> str:
    """The decode-loop engine ``scenario`` runs on (``engine`` overrides its ``[engine] mode``);
    a :class:`UserError` for an unknown one."""
    from simulator.engine.fast import check_engine

    return check_engine(getattr(scenario.engine, "mode", "exact") if engine is None else engine)


def memory_bytes(cgroup_file: str = "/sys/fs/cgroup/memory.max") -> float:
    """This machine's memory available to the process [B]: physical memory, or a smaller
    cgroup (v2, a container's) limit read from ``cgroup_file`` ("max": none)."""
    import os

    total = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    try:
        with open(cgroup_file) as f:
            limit = f.read().strip()
        if limit.isdigit():
            total = min(total, float(limit))
    except OSError:
        pass
    return total


def _fmt_count(x: float) -> str:
    return f"{x:,.0f}" if x < 1e7 else f"{x:.2g}"


def check(scenario, policies: tuple | None = None, *, memory: float | None = None,
          graph=None):
    """Refuse, before any work, a validated scenario that cannot run here; return its graph.

    Args:
        scenario: a :class:`~simulator.scenario.Scenario`.
        policies: the policies to run (default: the scenario's).
        memory: bytes the run may use (default: :data:`MEMORY_SHARE` of :func:`memory_bytes`).
        graph: the topology the run will use instead of building ``scenario.topology``.

    Raises :class:`UserError` naming the field: a topology that does not build, no GPU with room
    for one KV block (per-round policies), a workload or cluster too large for memory.
    """
    from simulator.units import fmt_bytes

    src = scenario.source
    limit = MEMORY_SHARE * memory_bytes() if memory is None else memory
    topo = scenario.topology
    if graph is None and topo.preset is not None and topo.spec is None and topo.file is None:
        need = topo.nodes * TOPOLOGY_NODE_BYTES
        if need > limit:
            raise UserError(f"{src}: field 'topology.nodes': {topo.nodes:,} nodes need about "
                            f"{fmt_bytes(need)} of memory, more than this machine's "
                            f"{fmt_bytes(limit)}; lower topology.nodes")
    w = scenario.workload
    if w.kind == "agentic":
        from simulator.engine.trace import agentic_params
        from workloads.agentic import AgenticParams

        params = agentic_params(scenario)
        if isinstance(params, AgenticParams):
            _check_generated_size(src, "agentic", params.expected_size(), limit,
                                  f"task_rate ({params.task_rate:g}), duration_time "
                                  f"({params.duration_time:g}), subagents "
                                  f"({params.subagents:g}) or turns_mean "
                                  f"({params.turns_mean:g})")
        else:  # a preset's sessions
            _check_generated_size(src, "agentic", params.expected_size(), limit,
                                  f"sessions ({params.sessions})" if params.sessions else
                                  f"session_rate ({params.session_rate:g}) or duration_time "
                                  f"({params.duration_time:g})", least=True)
    if w.kind == "spans":
        from simulator.engine.trace import span_params
        from workloads.rag import RagParams

        spans = span_params(scenario)
        counts = ("docs_per_request", "n_documents") if isinstance(spans, RagParams) else (
            "candidates",)
        named = [f"{k} ({getattr(spans, k):g})" for k in ("request_rate", "duration_time",
                                                          *counts)]
        _check_generated_size(src, "spans", spans.expected_size(), limit,
                              f"{', '.join(named[:-1])} or {named[-1]}")
    if w.kind == "mixed":
        from workloads.mixed import MixedFleetParams

        mixed = MixedFleetParams(**{"block_tokens": scenario.placement.block_tokens,
                                    **w.mixed_params()})
        _check_generated_size(src, "mixed", mixed.expected_size(), limit,
                              f"duration_time ({mixed.duration_time:g}) or its rates")
    if w.selections is not None:
        _check_selections(scenario)
    if graph is None:
        try:
            graph = topo.build()
        except UserError as exc:
            raise UserError(f"{src}: field 'topology': {exc}") from None
    loops = {get_policy(p).loop for p in (policies or scenario.policies)}
    if None in loops:
        if getattr(scenario, "deployment", None) is not None:  # its pools' own weights first
            _check_deployment(scenario, graph)
        _check_kv_room(scenario, graph)
    for loop in sorted(loops & {"disaggregated", "homogeneous"}):
        _check_pools(scenario, graph, baseline=loop == "homogeneous")
    return graph


def _check_pools(scenario, graph, *, baseline: bool) -> None:
    """The pool loops' GPUs and weights (:func:`simulator.disaggregation.spec.check_against`),
    before any work; a scenario without a ``[disaggregation]`` section is told that its
    defaults were checked."""
    import topologies
    from simulator.disaggregation.shards import served_arch
    from simulator.disaggregation.spec import check_against, spec_of

    kinds = [str(graph.nodes[n].get("gpu", "H100")) for n in topologies.gpus(graph)]
    try:
        check_against(spec_of(scenario), served_arch(scenario), kinds,
                      scenario.placement.reserve_fraction, scenario.source, baseline=baseline)
    except UserError as exc:
        if getattr(scenario, "disaggregation", None) is not None:
            raise
        raise UserError(f"{exc} (the scenario has no [disaggregation] section: these are its "
                        "defaults; add one)") from None


def _check_generated_size(src: str, kind: str, size: tuple[float, float], limit: float,
                          lower: str, *, least: bool = False) -> None:
    """:func:`check_generated_size` for the scenario ``src``'s ``workload.<kind>``; ``lower``
    names the fields to lower."""
    check_generated_size(f"{src}: field 'workload.{kind}'", size, limit,
                         f"workload.{kind}.{lower}", least=least)


def check_generated_size(where: str, size: tuple[float, float], limit: float, lower: str, *,
                         least: bool = False) -> None:
    """A :class:`UserError` ``"{where}: about N requests … ; lower {lower}"`` when a generated
    workload of ``size`` (requests, block references; with ``least``, references counted short)
    would need more than ``limit`` bytes of memory."""
    from simulator.units import fmt_bytes

    requests, refs = size
    need = requests * REQUEST_BYTES + refs * BLOCK_REF_BYTES
    short = "at least " if least else ""
    if need > limit:
        raise UserError(
            f"{where}: about {_fmt_count(requests)} requests with "
            f"{short}{_fmt_count(refs)} block references need {short or 'about '}"
            f"{fmt_bytes(need)} of memory, more than this machine's {fmt_bytes(limit)}; lower "
            f"{lower}")


def _check_deployment(scenario, graph) -> None:
    """The ``[deployment]`` fits the model and the topology (:func:`~simulator.deployment.checks.
    check_against`)."""
    import topologies
    from simulator.deployment.checks import check_against, room_block_bytes

    kinds = [graph.nodes[n].get("gpu", "H100") for n in topologies.gpus(graph)]
    arch = lookup_model(scenario.model.name)
    pl = scenario.placement
    check_against(scenario.deployment, arch, kinds, scenario.source, pl.reserve_fraction,
                  block_bytes=room_block_bytes(pl, arch))


def _check_selections(scenario) -> None:
    """The selection trace exists and is a Parquet file with the selection columns, written
    for the scenario's block size where it records one (what it selects is checked against the
    requests when the engine reads it, :func:`simulator.engine.trace.scenario_selections`, and
    by ``kvfabric run`` once the requests are loaded, before its progress bars)."""
    from pathlib import Path

    import pyarrow.parquet as pq

    from workloads.selections import SELECTION_COLUMNS, selection_block_tokens

    path = Path(scenario.workload.selections)
    where = f"{scenario.source}: field 'workload.selections'"
    if path.is_dir():
        raise UserError(f"{where}: {str(path)!r} is a folder; give a selection trace's Parquet "
                        "file")
    if not path.is_file():
        raise UserError(f"{where}: file {str(path)!r} not found; write one with `kvfabric trace "
                        "gen selections` or fix the path")
    try:
        schema = pq.read_schema(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{where}: {path} is not a readable Parquet file ({exc})") from None
    missing = [c for c in SELECTION_COLUMNS if c not in schema.names]
    if missing:
        raise UserError(f"{where}: {path} has no column {missing[0]!r}; a selection trace needs "
                        f"{list(SELECTION_COLUMNS)}")
    made_at = selection_block_tokens(schema)
    bt = scenario.placement.block_tokens
    if made_at is not None and made_at != bt:  # its block ids name blocks of another size
        raise UserError(f"{where}: {path} selects {made_at}-token blocks, but "
                        f"placement.block_tokens is {bt}; write it again with `kvfabric trace "
                        f"gen selections --block-tokens {bt}`")


def _check_kv_room(scenario, graph) -> None:
    """Some GPU holds one KV block after weights and reserve (the decode-loop engine's rule;
    a ``[deployment]`` without ``placement.weights_per_gpu`` has each pool's own weights, which
    :func:`_check_deployment` checks), and ``replicate:K`` asks for no more copies of a block
    than the cluster has GPUs."""
    import topologies
    from simulator import hardware
    from simulator.kvcache import capacity_blocks

    arch = lookup_model(scenario.model.name)
    pl = scenario.placement
    gpus = list(topologies.gpus(graph))
    if not gpus:
        raise UserError(f"{scenario.source}: field 'topology': the cluster has no GPU")
    if pl.scheme == "replicate" and pl.replicas > len(gpus):
        raise UserError(f"{scenario.source}: field 'placement.scheme': replicate:{pl.replicas} "
                        f"asks for {pl.replicas} copies of each block, but the cluster has "
                        f"{len(gpus)} GPUs; write replicate:K with K <= {len(gpus)}")
    if getattr(scenario, "deployment", None) is not None and pl.weights_per_gpu is None:
        return  # each pool's GPUs hold their own weights: _check_deployment checked their room
    block = pl.block_tokens * arch.kv_bytes_per_token * arch.layers
    weights = pl.weights_per_gpu if pl.weights_per_gpu is not None else arch.weight_bytes / len(gpus)
    specs = [hardware.gpu(graph.nodes[n].get("gpu", "H100")) for n in gpus]
    if max(capacity_blocks(s.hbm_bytes, weights, pl.reserve_fraction, block) for s in specs) == 0:
        raise UserError(
            f"{scenario.source}: field 'placement.weights_per_gpu': no GPU has room for a "
            f"single KV block ({weights / 1e9:.4g} GB of weights per GPU, reserve "
            f"{pl.reserve_fraction:.0%}); use more GPUs, a smaller model, or set "
            "placement.weights_per_gpu / placement.reserve_fraction lower")


def compare_reuse(scenario, policy: str | Policy | None = None, seed: int | None = None, *,
                  rules: tuple[str, ...] = ("prefix", "span", "none"),
                  trace: pd.DataFrame | None = None) -> pd.DataFrame:
    """Run ``scenario``'s trace once per reuse rule (:mod:`simulator.engine.reuse`).

    Returns one row per rule: ``requests``, ``completed``, ``ttft_p50``, ``ttft_p99`` [s],
    ``prefill_tokens`` (tokens prefilled, as the run's steps computed them: recomputed pages,
    a partial last block only its own tokens, and recomputes after a preemption) and
    ``reused_fraction`` (reused / prompt blocks: the hit rate the rule achieved). ``policy``
    defaults to the scenario's first.
    """
    import dataclasses

    seed = scenario.seed if seed is None else int(seed)
    if trace is None:
        trace = load_trace(scenario, seed)
    rows = []
    for rule in rules:
        sc = scenario.with_changes(placement=dataclasses.replace(scenario.placement, reuse=rule))
        res = run(sc, policy or scenario.policies[0], seed, trace=trace)
        req = res.requests
        blocks = (req["reused_blocks"] + req["prefilled_blocks"]).sum()
        rows.append({"rule": rule, "requests": res.summary["requests"],
                     "completed": res.summary["completed"], "ttft_p50": res.summary["ttft_p50"],
                     "ttft_p99": res.summary["ttft_p99"],
                     "prefill_tokens": int(res.summary["prefill_tokens"]),
                     "reused_fraction": float(req["reused_blocks"].sum() / max(blocks, 1))})
    return pd.DataFrame(rows)
