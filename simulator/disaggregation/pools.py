"""What both pool loops share: requests, head-sharded architectures, the run's set-up, results.

The Lamina loop (:mod:`simulator.disaggregation.lamina`) and the homogeneous baseline
(:mod:`simulator.disaggregation.homogeneous`) subclass :class:`PoolRun` (clock, graph,
architecture, the DOP check, kernels, fabric, requests and their KV need, the queue) and return
the engines' :class:`~simulator.engine.results.Result` (same tables and ``summary`` keys, plus
``mean_batch``, ``cost_per_hour``, ``tokens_per_s_per_dollar_hour`` and pool idle fractions) via
:func:`build_result`. The FIFO kernel stream is the engine's
(:class:`simulator.gpu.streams.Stream`).
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from itertools import accumulate, repeat
from typing import Any

import numpy as np
import pandas as pd
import simpy

from simulator.disaggregation.spec import DisaggregationSpec, check_against, spec_of
from simulator.engine import records
from simulator.engine.arrivals import Arrivals
from simulator.engine.clock import requests_progress
from simulator.engine.requests import init_request_arrays, settle_unfinished
from simulator.engine.results import Result
from simulator.engine.trace import load_trace
from simulator.gpu.calibration import run_kernels, run_stack
from simulator.models import model as lookup_model
from simulator.network.fabric import Fabric
from simulator.network.traffic import TP_COLLECTIVE

TOO_LARGE = "its KV does not fit the attention pool even alone"
TOO_LARGE_REPLICA = "its KV does not fit a replica's free HBM even alone"


def head_shard(arch, kv_heads: int):
    """The architecture one GPU sees when it serves ``kv_heads`` of ``arch``'s KV heads (and
    their query heads): KV bytes, query heads and attention FLOPs scaled by the share."""
    share = kv_heads / arch.kv_heads
    return dataclasses.replace(
        arch, query_heads=max(1, round(arch.query_heads * share)), kv_heads=kv_heads,
        kv_bytes_per_token_bf16=arch.kv_bytes_per_token_bf16 * share,
        kv_bytes_per_token_fp8=arch.kv_bytes_per_token_fp8 * share,
        attention_flops_per_token=arch.attention_flops_per_token * share)


def split_heads(kv_heads: int, parts: int) -> list[int]:
    """KV heads per part, as even as possible, larger shares first (``parts <= kv_heads``)."""
    base, extra = divmod(kv_heads, parts)
    return [base + (i < extra) for i in range(parts)]


def attended_tokens(arch, context: np.ndarray) -> np.ndarray:
    """Tokens each query attends: its context, capped at top-k for sparse (DSA) models."""
    context = np.asarray(context, float)
    return np.minimum(context, arch.topk_tokens) if arch.sparse else context


def fold_layers(layers: int, groups: int, multiple: int = 1) -> np.ndarray:
    """Real layers each simulated slot stands for: every layer (``groups = 0``) or ``groups``
    slots rounded to a multiple of ``multiple`` (so slots map evenly onto model slices)."""
    if groups <= 0 or groups >= layers:
        return np.ones(layers, np.int64)
    s = max(multiple, int(round(groups / multiple)) * multiple)
    s = min(s, layers)
    return np.diff(np.linspace(0, layers, s + 1).round().astype(np.int64))


def served_arch(scenario, arch=None):
    """The architecture a run serves: ``arch`` if given, else the scenario's model; with
    ``model.selection = "dense"`` a sparse (DSA) model attends its whole context instead."""
    arch = arch if arch is not None else lookup_model(scenario.model.name)
    if arch.sparse and scenario.model.selection == "dense":
        kind = "mla" if arch.attention == "mla_dsa" else arch.attention
        arch = dataclasses.replace(arch, topk_tokens=None, attention=kind)
    return arch


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
    timeline = fabric.link_timeline(max(now / 100.0, 1e-6)) if now > 0 else pd.DataFrame()
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


class Ring:
    """A tensor-parallel group's all-reduce as a ring on the fabric, at the measured time.

    A ring all-reduce of ``X`` bytes over ``t`` GPUs sends ``2 (t − 1) / t · X`` bytes per GPU
    in ``2 (t − 1)`` steps; ``m`` layers' two all-reduces (after attention, after the FFN) are
    simulated as one transfer per GPU of all their bytes plus the remaining steps' per-message
    time (the slowest hop's, e.g. the one that leaves the node). The fabric gives the bytes'
    contention; NCCL's protocol costs more than the wire does (Vidur's H100 profile: a 1 MiB
    all-reduce over 4 GPUs takes about twice the ring's wire time), so when ``measured(X)``
    (one all-reduce's measured time, :meth:`~simulator.gpu.kernels.KernelModel.allreduce_time`)
    exceeds the ring's uncontended time the difference is waited out after the transfers: an
    uncontended ring takes exactly :meth:`time`, the measured time.

    Args:
        fabric: the run's fabric.
        gpus: the group's GPU names, in ring order.
        measured: ``measured(nbytes)``, one all-reduce's measured time [s], or None (the wire).
    """

    def __init__(self, fabric, gpus: list[str], measured=None) -> None:
        self.fabric = fabric
        self.t = len(gpus)
        self.hops = [(a, gpus[(i + 1) % self.t]) for i, a in enumerate(gpus)]
        self.msg0 = (max(fabric.message_time(a, c, 0) for a, c in self.hops)
                     if self.t > 1 else 0.0)
        self.measured = measured

    def plan(self, layers: float, nbytes: float) -> tuple[float, float]:
        """(bytes each GPU sends [B], extra per-step time [s]) of ``layers`` layers' two
        all-reduces of ``nbytes`` each."""
        t = self.t
        steps = 2.0 * layers * 2.0 * (t - 1)
        return 2.0 * layers * 2.0 * (t - 1) / t * nbytes, (steps - 1.0) * self.msg0

    def wire_time(self, layers: float, nbytes: float) -> float:
        """The ring's uncontended time on the fabric [s] (0 for one GPU)."""
        if self.t <= 1 or nbytes <= 0:
            return 0.0
        sent, extra = self.plan(layers, nbytes)
        return max(self.fabric.message_time(a, c, sent) for a, c in self.hops) + extra

    def protocol_time(self, layers: float, nbytes: float) -> float:
        """What the measured all-reduces take beyond the ring's wire time [s] (>= 0)."""
        if self.measured is None or self.t <= 1 or nbytes <= 0:
            return 0.0
        return max(0.0, 2.0 * layers * self.measured(nbytes) - self.wire_time(layers, nbytes))

    def time(self, layers: float, nbytes: float) -> float:
        """Uncontended time [s] of ``layers`` layers' two all-reduces (0 for one GPU)."""
        return self.wire_time(layers, nbytes) + self.protocol_time(layers, nbytes)

    def run(self, env, layers: float, nbytes: float):
        """The all-reduces on the fabric (a generator to ``yield from``)."""
        if self.t <= 1 or nbytes <= 0:
            return
        sent, extra = self.plan(layers, nbytes)
        yield env.all_of([self.fabric.transfer(a, c, sent, tag=TP_COLLECTIVE)
                          for a, c in self.hops])
        extra += self.protocol_time(layers, nbytes)
        if extra > 0:
            yield env.timeout(extra)

    def shape(self, layers: float, nbytes: float) -> tuple:
        """What :meth:`account` needs for ``layers`` layers' all-reduces of ``nbytes`` each, as
        on an idle fabric: ``(route ids, offsets [s] from the ring's start at which each hop's
        bytes start and end, bytes per hop [B], the ring's time [s])``; empty for one GPU."""
        if self.t <= 1 or nbytes <= 0:
            return ((), np.zeros(0), np.zeros(0), 0.0, 0.0)
        sent, extra = self.plan(layers, nbytes)
        routes = [self.fabric.message_route(a, c) for a, c in self.hops]
        sids = tuple(r[3] for r in routes)
        starts = np.array([r[0] for r in routes])
        ends = starts + np.array([sent / r[1] for r in routes])
        # as the Fabric runs it: the transfers (lone flows), then the remaining steps' messages
        # and the protocol's surplus waited out at once
        tail = extra + self.protocol_time(layers, nbytes)
        return sids, starts, ends, sent, float(ends.max()) + tail

    @staticmethod
    def fabric_of(graph, gpus: list[str]) -> str:
        """``"nvlink"`` when the group's GPUs share a node, else ``"rdma"``."""
        return "nvlink" if len({g.split("/")[0] for g in gpus}) <= 1 else "rdma"


class BytePool:
    """A KV pool counted in bytes (a :class:`~simulator.engine.scheduler.KVPool`) for the pool
    loops: per request ``per_token`` bytes for each token of its context, out of ``capacity``.

    With ``reserve`` a request takes its whole prompt + output at admission; otherwise it takes
    its prompt at admission when the prompt arrives prefilled (``prefill_tokens`` returns 0:
    another cluster wrote it) and grows as tokens are computed. ``can_fit(r, nbytes)`` and
    ``take(r, nbytes)`` / ``give(r, nbytes)`` let a loop place the bytes (one replica's budget,
    or an attention GPU's) — the defaults count one pool.
    """

    def __init__(self, reqs: Requests, per_token: float, capacity: float, reserve: bool,
                 prefill_tokens: Callable[[int], int]) -> None:
        self.req = reqs
        self.per_token = per_token
        self.capacity = capacity
        self.reserve = reserve
        self.prefill_tokens = prefill_tokens
        self.used = 0.0
        self.peak = 0.0
        self.held: dict[int, float] = {}

    # where the bytes go (overridden by a loop that places them on several GPUs)
    def can_fit(self, r: int, nbytes: float) -> bool:
        """Room for ``nbytes`` more of request ``r``'s KV now."""
        return self.used + nbytes <= self.capacity

    def fits_alone(self, r: int, nbytes: float) -> bool:
        """Would ``nbytes`` of ``r`` fit an empty pool."""
        return nbytes <= self.capacity

    def take(self, r: int, nbytes: float) -> None:
        """Count ``nbytes`` more of ``r``."""
        self.used += nbytes
        self.peak = max(self.peak, self.used)

    def give(self, r: int, nbytes: float) -> None:
        """Uncount ``nbytes`` of ``r``."""
        self.used = max(0.0, self.used - nbytes)

    # the KVPool interface
    def admit(self, r: int) -> int | None:
        req = self.req
        full = float(req.inp[r] + req.out[r]) * self.per_token
        if not self.fits_alone(r, full):
            return None
        compute = self.prefill_tokens(r)
        context = float(req.inp[r] + req.gen[r])
        start = full if self.reserve else (context - compute) * self.per_token
        if not self.can_fit(r, start):
            return -1
        self.take(r, start)
        self.held[r] = start
        return compute

    def grow(self, r: int, tokens: int) -> bool:
        if self.reserve:
            return True
        nbytes = tokens * self.per_token
        if not self.can_fit(r, nbytes):
            return False
        self.take(r, nbytes)
        self.held[r] += nbytes
        return True

    def release(self, r: int) -> None:
        self.give(r, self.held.pop(r, 0.0))

    def grow_each(self, rs: list[int]) -> int:
        """:meth:`grow` by one token for each of ``rs`` in order, to the first that does not fit
        (the same comparisons and additions, without a call each); how many grew. A pool that
        places the bytes itself (its own ``can_fit`` / ``take``) sets ``grow_each = None``."""
        if self.reserve:
            return len(rs)
        nbytes, held = 1 * self.per_token, self.held
        # the pool's use after each growth, added one after another (in C); r grows while its
        # addition keeps the use within capacity (non-decreasing: the first that does not, stops)
        after = list(accumulate(repeat(nbytes, len(rs)), initial=self.used))[1:]
        k = bisect_right(after, self.capacity)
        if k:
            self.used = after[k - 1]
            if self.used > self.peak:
                self.peak = self.used
            for r in rs[:k]:
                held[r] += nbytes
        return k


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
