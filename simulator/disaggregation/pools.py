"""What both pool loops share: their requests, the run's set-up, and the result they return.

The Lamina loop (:mod:`simulator.disaggregation.lamina`) and the homogeneous baseline
(:mod:`simulator.disaggregation.homogeneous`) subclass :class:`PoolRun` (clock, graph,
architecture, the DOP check, kernels, fabric, requests and their KV need, the queue) and return
the engines' :class:`~simulator.engine.results.Result` (same tables and ``summary`` keys, plus
``mean_batch``, ``cost_per_hour``, ``tokens_per_s_per_dollar_hour`` and pool idle fractions) via
:func:`build_result`. The FIFO kernel stream is the engine's
(:class:`simulator.gpu.streams.Stream`). The other parts both loops use have modules of their
own: what a GPU serves of the model (:mod:`simulator.disaggregation.shards`), a tensor-parallel
group's all-reduce ring (:mod:`simulator.disaggregation.ring`), and the KV pool counted in
bytes (:mod:`simulator.disaggregation.byte_pool`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import simpy

from simulator.disaggregation.shards import served_arch
from simulator.disaggregation.spec import DisaggregationSpec, check_against, spec_of
from simulator.engine import records
from simulator.engine.arrivals import Arrivals
from simulator.engine.clock import requests_progress
from simulator.engine.requests import init_request_arrays, settle_unfinished
from simulator.engine.results import Result, link_timeline
from simulator.engine.trace import load_trace
from simulator.gpu.calibration import run_kernels, run_stack
from simulator.network.fabric import Fabric

TOO_LARGE = "its KV does not fit the attention pool even alone"
TOO_LARGE_REPLICA = "its KV does not fit a replica's free HBM even alone"


class Requests:
    """Per-request state as numpy arrays, built from a trace; rows become ``requests``."""

    def __init__(self, trace: pd.DataFrame, progress: Callable[[int, int], None] | None) -> None:
        init_request_arrays(self, trace)
        self.home = [""] * self.n
        self.finished = 0
        self.progress = progress
        # the arrival process hears of each finish (followers and a closed loop enter) and
        # says who entered (set with it by the loop's arrival process)
        self.on_finish: Callable[[int], None] | None = None
        self.entered = np.zeros(self.n, bool)
        self.closed = False  # a closed loop (set with ``entered``)

    def finish(self, r: int, now: float, reason: str = "") -> None:
        """Mark request ``r`` done at ``now`` (with a reason if it did not complete)."""
        self.finish_at[r] = now
        self.reason[r] = reason
        self.finished += 1
        if self.on_finish is not None:
            self.on_finish(r)
        if self.progress is not None:
            self.progress(self.finished, self.n)

    def frame(self, block_tokens: int) -> pd.DataFrame:
        """The ``requests`` table (engine columns); unfinished requests get a reason."""
        settle_unfinished(self, self.entered, self.closed)
        done = np.array([not x for x in self.reason], bool)
        blocks = (-(-self.inp // block_tokens)).tolist()
        rows = list(zip(self.rid.tolist(), self.sid.tolist(), self.home, self.arrival.tolist(),
                        self.admitted_at.tolist(), self.first_at.tolist(),
                        np.where(done, self.finish_at, np.nan).tolist(), self.inp.tolist(),
                        self.out.tolist(), self.gen.tolist(), [0] * self.n, blocks,
                        done.tolist(), self.reason, strict=True))
        return records.requests_frame(rows)


def build_result(policy: str, seed: int, env: simpy.Environment, fabric, reqs: Requests,
                 block_tokens: int, iters: list[tuple], unit_names: list[str],
                 gpus: pd.DataFrame, cost_per_hour: float, wall_time: float,
                 extra: Mapping[str, Any], concurrency: int | None = None):
    """A :class:`~simulator.engine.results.Result` with the engine's tables and summary keys.

    ``iters`` rows: the engine's iteration columns (:data:`simulator.engine.records.
    ITERATION_COLUMNS`) followed by the closed form's predicted iteration time ``cf_time`` [s]; ``unit_names`` names the ``gpu`` column's codes
    (micro-batches or replicas). ``closed_form_error_*`` is the relative error of that
    prediction against the simulated iteration times.
    """
    requests = reqs.frame(block_tokens)
    it = records.iterations_frame([row[:9] for row in iters], unit_names)
    it["cf_time"] = [row[9] for row in iters]
    rounds = records.rounds_frame([], ["-"])
    now = float(env.now)
    links = fabric.links_frame()
    timeline = link_timeline(fabric)
    moved = float(fabric.bytes_delivered)
    summary = records.summarize(requests, rounds, it, sim_time=now, wall_time=wall_time,
                                events=next(env._eid), bytes_moved=moved,
                                concurrency=concurrency)
    sim = (it["finished_at"] - it["started_at"]).to_numpy(float)
    cf = it["cf_time"].to_numpy(float)
    ok = np.isfinite(cf) & (cf > 0)
    err = np.abs(sim[ok] - cf[ok]) / cf[ok]
    summary["closed_form_error_p50"] = float(np.quantile(err, 0.5)) if len(err) else float("nan")
    summary["closed_form_error_p99"] = float(np.quantile(err, 0.99)) if len(err) else float("nan")
    summary["mean_batch"] = mean_batch(it)
    summary["cost_per_hour"] = float(cost_per_hour)
    # a closed loop is judged at capacity (its steady window), an open loop over the whole run
    tput = summary.get("capacity_tokens_per_s", summary["throughput_tokens_per_s"])
    summary["tokens_per_s_per_dollar_hour"] = tput / cost_per_hour if cost_per_hour > 0 else 0.0
    summary.update(extra)
    summary["policy"] = policy
    summary["seed"] = seed
    from simulator.engine.results import fabric_extras

    return Result(policy, seed, requests, rounds, links, gpus, it, timeline, summary,
                  fabric_bytes=moved, extras={**extra, **fabric_extras(fabric)})


def mean_batch(iterations: pd.DataFrame) -> float:
    """Time-averaged number of requests decoding at once over the whole deployment."""
    if len(iterations) == 0:
        return 0.0
    start = iterations["started_at"].to_numpy(float)
    end = iterations["finished_at"].to_numpy(float)
    span = end.max() - start.min()
    if span <= 0:
        return 0.0
    return float((iterations["batch"].to_numpy(float) * (end - start)).sum() / span)


def idle_fraction(busy: Iterable[float], span: float) -> float:
    """Mean idle share of a pool's GPUs over ``span`` [s] (0 if nothing ran)."""
    busy = list(busy)
    if span <= 0 or not busy:
        return 0.0
    return float(1.0 - min(1.0, sum(busy) / (len(busy) * span)))


class PoolRun:
    """What both loops set up the same way: clock, graph, architecture, the DOP check against the
    topology's GPUs, kernels, fabric, requests and their KV need, the queue and its waiters.
    A subclass builds its pools after ``super().__init__`` and implements ``execute``."""

    baseline: bool = False  # checked against the homogeneous baseline's fields

    def __init__(self, sc, spec: DisaggregationSpec, seed: int, trace: pd.DataFrame, graph,
                 progress, arch=None) -> None:
        import topologies

        self.sc, self.spec, self.seed = sc, spec, seed
        self.env = simpy.Environment()
        self.graph = graph if graph is not None else sc.topology.build()
        self.arch = arch = served_arch(sc, arch)
        self._names = list(topologies.gpus(self.graph))
        self._kinds = [str(self.graph.nodes[x].get("gpu", "H100")) for x in self._names]
        self.reserve = sc.placement.reserve_fraction
        check_against(spec, arch, self._kinds, self.reserve, sc.source, baseline=self.baseline)
        cal = sc.calibration_dict()
        self.kernels = run_kernels(cal, cuda_graphs=sc.serving.cuda_graphs)
        self.fabric = Fabric(self.env, self.graph, run_stack(sc.stack, cal))
        self.progress = progress  # for run_clock
        self.req = Requests(trace, requests_progress(progress, sc.engine.duration))
        self.queue: deque[int] = deque()
        self.waiters: list[simpy.Event] = []
        self.iters: list[tuple] = []
        self.serving = sc.serving
        self.kv_reserve = sc.serving.kv_allocation == "reserve"
        # DSA models pay the indexer over each query's whole context (unless run dense)
        self.indexer = arch.sparse and arch.attention == "mla_dsa"

    def prompt_work(self, r: int) -> int:
        """Prompt tokens request ``r`` computes on these pools when the scheduler takes it: its
        context (prompt + tokens generated before a preemption) with ``prefill = "local"``; with
        ``"external"`` none when a prefill cluster wrote it, its context after a preemption (its
        KV is gone: recomputed here, as the engines' admission recomputes a hand-off's)."""
        if self.spec.prefill != "local" and not self.req.gen[r]:  # gen > 0: admitted again
            return 0
        return int(self.req.inp[r] + self.req.gen[r])

    def cached(self, sched, r: int, chunk: int) -> int:
        """Context tokens a prefill chunk of ``chunk`` tokens of ``r`` attends besides its own:
        those computed in earlier chunks (``sched``'s ``prefill_left`` counts what is left after
        this one)."""
        return max(0, self.prompt_work(r) - sched.prefill_left.get(r, 0) - chunk)

    def gpus_of(self, kind: str, count: int, taken: Collection[str] = ()) -> list[str]:
        """The first ``count`` GPUs of catalog ``kind`` in the topology's natural order, past
        those ``taken`` by another pool (a model pool and an attention pool of one kind share
        no GPU)."""
        return [x for x, k in zip(self._names, self._kinds, strict=True)
                if k.upper() == kind.upper() and x not in taken][:count]

    def _wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for ev in waiters:
            ev.succeed()

    def _arrivals(self):
        """The arrival process (:class:`~simulator.engine.arrivals.Arrivals`): requests join
        the one queue and wake the loops."""
        entry = Arrivals(self.env, self.req.arrival, self.sc.workload.concurrency,
                         self._deliver, self.req.follows)
        self.req.on_finish = entry.finished
        self.req.entered = entry.entered
        self.req.closed = self.sc.workload.concurrency is not None
        return entry.process()

    def _deliver(self, r: int) -> None:
        self.queue.append(r)
        self._wake()

    @classmethod
    def simulate(cls, scenario, seed: int | None = None, *,
                 spec: DisaggregationSpec | None = None, graph=None,
                 trace: pd.DataFrame | None = None,
                 progress: Callable[[int, int], None] | None = None, arch=None, **mode):
        """Build one run of this loop and execute it (arguments as
        :func:`simulator.disaggregation.lamina.simulate_disaggregated`; ``mode``: the loop's
        own options, e.g. the homogeneous loop's ``fast``)."""
        seed = scenario.seed if seed is None else int(seed)
        spec = spec if spec is not None else spec_of(scenario)
        if trace is None:
            trace = load_trace(scenario, seed)
        return cls(scenario, spec, seed, trace, graph, progress, arch, **mode).execute()
