"""The engine: replay a workload on a simulated cluster under one policy, and record everything.

One run = one ``simpy.Environment``, one :class:`~simulator.network.Fabric`, one
:class:`~simulator.gpu.GPU` per topology GPU, one :class:`~simulator.kvcache.BlockDirectory`, one
policy, and one ``numpy.random.Generator`` from the seed, spawned into child streams (one per GPU
for sparse selection, one for focus sets, one for the policy).

Flow. An arrival process hands each request to its session's *home* GPU (least loaded, or the
GPU owning its repository). Each GPU runs a continuous-batching loop:

1. **admit** queued requests while the batch is below ``max_batch`` and the KV they will own fits
   (HBM − weights − reserve); **prefill** them on the home GPU, reusing the blocks the directory
   already holds (leading known blocks under ``prefix`` reuse, any known block under ``span``),
   then place the new blocks; the prefill's end is the request's first token (TTFT);
2. **decode** one token for every other request in the batch: sample each query's selected blocks
   for every simulated layer at once (:class:`workloads.sparse.SparseSelector`, or a recorded
   selection trace), then per layer group the non-local blocks by holder; the policy turns each
   group — all the batch's queries for that owner — into one *round* (route / fetch / local),
   which the engine replays phase by phase: messages on the fabric, kernels on GPU streams, in
   the order and sizes of :mod:`simulator.costmodel`'s closed form. Host-DRAM blocks are fetched
   over PCIe; dropped blocks are recomputed at home. Meanwhile the home attends its local
   blocks; after all merges it runs the layer's projections + FFN.

With ``layer_groups = G`` only G representative layers are simulated per token; each stands for
``layers / G`` layers, whose remaining time is waited out (exact when rates are stationary).
Every round is recorded with its simulated phases and the closed form's phases for the same
inputs. Every request is accounted for: completed, or not, with a reason.

Speed. SimPy events exist per (iteration, layer, owner): a round is a chain of callbacks (no
process), a GPU's compute stream is a closed-form FIFO (:class:`_Stream`: one timeout per
kernel, the same schedule as :meth:`simulator.gpu.GPU.run`, which ``exact_streams=True`` uses
to cross-check), selections are sampled 16 decode steps at a time, block locations are looked up
for all layers of a step at once, and closed-form phases are memoized per round shape.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import simpy

from simulator import hardware, kvcache, records
from simulator.costmodel import CostModel
from simulator.errors import UserError
from simulator.gpu import GPU, KernelModel
from simulator.models import model as lookup_model
from simulator.network import Fabric
from simulator.policies import OPTIONS, Policy, PolicyContext, Round
from simulator.policies import get as get_policy
from simulator.scenario import Scenario

#: Decode steps whose selections are sampled together for one query.
SELECTION_STEPS = 16

#: Reasons a request did not complete.
NOT_FINISHED = "not finished when the run stopped (duration limit)"
TOO_LARGE = "its KV does not fit the home GPU's free HBM"


@dataclass
class Result:
    """What one run produced (DataFrames built once at the end) and its headline summary."""

    policy: str
    seed: int
    requests: pd.DataFrame
    rounds: pd.DataFrame
    links: pd.DataFrame
    gpus: pd.DataFrame
    iterations: pd.DataFrame
    link_timeline: pd.DataFrame
    summary: dict
    fabric_bytes: float = 0.0
    extras: dict = field(default_factory=dict)


def run(scenario: Scenario, policy: str | Policy = "route", seed: int | None = None, *,
        trace: pd.DataFrame | None = None,
        progress: Callable[[int, int], None] | None = None,
        topology=None, check_invariants: bool = False, exact_streams: bool = False) -> Result:
    """Simulate ``scenario`` under ``policy`` (a registry name or instance).

    Args:
        scenario: a validated :class:`Scenario`.
        policy: name in :data:`simulator.policies.POLICIES`, or a policy instance.
        seed: overrides ``scenario.seed``.
        trace: a preloaded request trace (as :func:`load_trace` returns) to skip loading.
        progress: called as ``progress(finished_requests, total_requests)``.
        topology: a topology graph to use instead of building ``scenario.topology``.
        check_invariants: verify the KV directory (capacity, bookkeeping) after every
            iteration; raises ``AssertionError`` on a violation (slow; for tests).
        exact_streams: run kernels through :meth:`simulator.gpu.GPU.run` (a SimPy resource and
            process per kernel) instead of the equivalent closed-form FIFO stream; slower, for
            cross-checking.
    """
    seed = scenario.seed if seed is None else int(seed)
    if trace is None:
        trace = load_trace(scenario, seed)
    pol = get_policy(policy)
    if pol.loop is not None:  # a policy with its own decode loop (Lamina pools, TP replicas)
        from simulator.disaggregation import simulate

        return simulate(scenario, pol.loop, seed, trace=trace, progress=progress,
                        graph=topology)
    return _Run(scenario, pol, seed, trace, progress, topology=topology,
                check_invariants=check_invariants, exact_streams=exact_streams).execute()


def load_trace(scenario: Scenario, seed: int) -> pd.DataFrame:
    """The scenario's requests at the engine's block size, limited by ``max_requests`` and
    ``duration``, arrivals scaled by ``time_scale``."""
    from workloads import load
    from workloads.blocks import refine_trace

    w = scenario.workload
    bt = scenario.placement.block_tokens
    if w.kind == "agentic":
        from workloads.agentic import AgenticParams, generate_agentic

        params = {"block_tokens": bt, **w.agentic_params()}
        try:
            p = AgenticParams(**params)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{scenario.source}: field 'workload.agentic': {exc}") from None
        df = generate_agentic(np.random.default_rng([seed, 1]), p)
    else:
        df = load(w.trace)
    if scenario.engine.max_requests is not None:
        df = df.iloc[: scenario.engine.max_requests]
    if w.time_scale != 1.0:
        df = df.assign(arrival_at=df["arrival_at"] * w.time_scale)
    if scenario.engine.duration is not None:
        df = df[df["arrival_at"] < scenario.engine.duration]
    if len(df) and int(df["block_tokens"].iloc[0]) != bt:
        df = refine_trace(df, bt)
    return df.reset_index(drop=True)


class _Stream:
    """A GPU compute stream where kernels serialize FIFO, as ``simpy.Resource(capacity=1)``.

    Every kernel's duration is known when it is issued, so FIFO service needs no queue: a
    kernel issued at ``t`` ends at ``max(t, free_at) + duration`` — one timeout per kernel
    instead of a request, a process and a release (the same times as :meth:`GPU.run`).
    """

    __slots__ = ("env", "free_at", "busy", "kernels_run")

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.free_at = 0.0
        self.busy = 0.0
        self.kernels_run = 0

    def issue(self, duration: float) -> float:
        """Queue a kernel of ``duration`` [s] now; returns when it will finish [s]."""
        now = self.env.now
        start = self.free_at if self.free_at > now else now
        self.free_at = start + duration
        self.busy += duration
        self.kernels_run += 1
        return self.free_at

    def run(self, duration: float) -> simpy.Event:
        """An event that fires when a kernel of ``duration`` [s] issued now has finished."""
        return self.env.timeout(self.issue(duration) - self.env.now)

    def after(self, duration: float, t0: float, factor: int) -> simpy.Event:
        """Run a kernel of ``duration`` [s], then wait ``(factor − 1) × (its end − t0)``."""
        end = self.issue(duration)
        return self.env.timeout(end - self.env.now + (end - t0) * (factor - 1))

    @property
    def busy_time(self) -> float:
        """Kernel time run so far [s] (a kernel still running counts up to now)."""
        return self.busy - max(0.0, self.free_at - self.env.now)


class _GPUStream:
    """The same interface over :class:`simulator.gpu.GPU` (its resource and processes)."""

    def __init__(self, gpu: GPU) -> None:
        self.gpu = gpu

    def run(self, duration: float) -> simpy.Event:
        return self.gpu.run(duration)

    def issue(self, duration: float) -> None:
        self.gpu.run(duration)

    def after(self, duration: float, t0: float, factor: int) -> simpy.Event:
        env = self.gpu.env

        def proc():
            yield self.gpu.run(duration)
            if factor > 1:
                yield env.timeout((env.now - t0) * (factor - 1))

        return env.process(proc())

    @property
    def busy_time(self) -> float:
        return self.gpu.busy_time

    @property
    def kernels_run(self) -> int:
        return self.gpu.kernels_run


class _Pending:
    """The rounds of one (GPU, layer) still in flight; ``done`` fires when the last ends."""

    __slots__ = ("done", "left")

    def __init__(self, done: simpy.Event, left: int) -> None:
        self.done, self.left = done, left


class _Round:
    """One round replayed as a chain of callbacks — the messages and kernels of
    :mod:`simulator.costmodel`'s phases, in order — then recorded beside the closed form.

    route: query message (probe = its overhead + latency, transfer = its bytes) → attention on
    the owner → return message → LSE merge at home. fetch: request message → blocks message →
    one home kernel (attention + gather, then merge). local: one home kernel (recompute +
    attention, then merge), issued at once. Fetched / recomputed KV is kept as copies.
    """

    __slots__ = ("run", "pending", "g", "k", "owner", "code", "option", "batch", "n_blocks",
                 "distinct", "members", "s", "iteration", "cf", "t0", "t1", "probe",
                 "transfer", "compute", "ret", "merge", "nbytes")

    def __init__(self, run, pending, g, k, owner, code, option, batch, n_blocks, distinct,
                 members, s, iteration, cf) -> None:
        self.run, self.pending, self.g, self.k = run, pending, g, k
        self.owner, self.code, self.option = owner, code, option
        self.batch, self.n_blocks, self.distinct, self.members = batch, n_blocks, distinct, members
        self.s, self.iteration, self.cf = s, iteration, cf
        self.probe = self.transfer = self.ret = 0.0
        self.nbytes = 0.0

    def start(self) -> None:
        run = self.run
        env = run.env
        self.t0 = env.now
        src = run.names[self.g]
        if self.option == "route":
            q, r = run.cm.route_payload(self.batch)
            self.nbytes = q + r
            run.fabric.transfer(src, self.owner, q).callbacks.append(self._route_sent)
        elif self.option == "fetch":
            req = run.cm.request_bytes(self.n_blocks / self.batch, self.batch)
            self.nbytes = req
            run.fabric.transfer(src, self.owner, req).callbacks.append(self._fetch_asked)
        else:
            self.t1 = env.now
            cf = self.cf
            run.streams[self.g].run(cf.compute + cf.merge).callbacks.append(self._home_done)

    # route
    def _route_sent(self, ev) -> None:
        rec = ev.value
        self.probe = rec.started_at - self.t0
        self.transfer = rec.finished_at - rec.started_at
        self.t1 = self.run.env.now
        self.run.streams[self.k].run(self.cf.compute).callbacks.append(self._route_computed)

    def _route_computed(self, ev) -> None:
        run = self.run
        self.compute = run.env.now - self.t1
        self.t1 = run.env.now
        _, r = run.cm.route_payload(self.batch)
        run.fabric.transfer(self.owner, run.names[self.g], r).callbacks.append(self._route_back)

    def _route_back(self, ev) -> None:
        run = self.run
        self.ret = run.env.now - self.t1
        self.t1 = run.env.now
        run.streams[self.g].run(self.cf.merge).callbacks.append(self._route_merged)

    def _route_merged(self, ev) -> None:
        self.merge = self.run.env.now - self.t1
        self._finish()

    # fetch
    def _fetch_asked(self, ev) -> None:
        run = self.run
        self.probe = run.env.now - self.t0
        self.t1 = run.env.now
        kv = run.cm.fetch_bytes(self.n_blocks / self.batch, self.batch)
        self.nbytes += kv
        run.fabric.transfer(self.owner, run.names[self.g], kv).callbacks.append(
            self._fetch_arrived)

    def _fetch_arrived(self, ev) -> None:
        run = self.run
        self.transfer = run.env.now - self.t1
        self.t1 = run.env.now
        cf = self.cf
        run.streams[self.g].run(cf.compute + cf.merge).callbacks.append(self._home_done)

    # fetch and local: the home kernel (attention [+ gather | + recompute], then merge)
    def _home_done(self, ev) -> None:
        run = self.run
        self.merge = self.cf.merge
        self.compute = run.env.now - self.t1 - self.merge
        run.dir.add_copies(self.g, self.members, self.s, run.env.now)
        self._finish()

    def _finish(self) -> None:
        run = self.run
        cf = self.cf
        sim = run.env.now - self.t0
        run.rounds.append((
            self.iteration, self.s, int(run.slot_layers[self.s]), self.g, self.code,
            self.option, self.batch, self.n_blocks, self.distinct, self.nbytes, self.t0,
            self.probe, self.transfer, self.compute, self.ret, self.merge, sim,
            cf.probe, cf.transfer, cf.compute, cf.ret, cf.merge, cf.total,
        ))
        p = self.pending
        p.left -= 1
        if p.left == 0:
            p.done.succeed()


class _Run:
    """One simulation; see the module docstring. Not reusable: build, ``execute`` once."""

    def __init__(self, scenario: Scenario, policy: Policy, seed: int, trace: pd.DataFrame,
                 progress: Callable[[int, int], None] | None, *, topology=None,
                 check_invariants: bool = False, exact_streams: bool = False) -> None:
        self.sc = scenario
        self.policy = policy
        self.seed = seed
        self.trace = trace
        self.progress = progress
        self.env = simpy.Environment()
        self.graph = scenario.topology.build() if topology is None else topology
        self.check_invariants = check_invariants
        import topologies

        self.names: list[str] = list(topologies.gpus(self.graph))
        self.G = len(self.names)
        self.arch = lookup_model(scenario.model.name)
        cal = scenario.calibration_dict()
        kfields = set(KernelModel.__dataclass_fields__)
        kargs = {k: v for k, v in {**cal, **cal.get("kernels", {})}.items() if k in kfields}
        self.kernels = KernelModel(**kargs)
        pl = scenario.placement
        self.bt = pl.block_tokens
        self.cm = CostModel(self.arch, self.graph, scenario.stack, kernels=self.kernels,
                            block_tokens=self.bt, instance_gpus=self.G)
        self.fabric = Fabric(self.env, self.graph, scenario.stack)
        specs = [hardware.gpu(self.graph.nodes[n].get("gpu", "H100")) for n in self.names]
        self.gpus = [GPU(self.env, n, s, self.kernels) for n, s in zip(self.names, specs,
                                                                      strict=True)]
        self.streams = [(_GPUStream(x) if exact_streams else _Stream(self.env)) for x in self.gpus]
        # layer folding
        L = self.arch.layers
        groups = scenario.engine.layer_groups
        self.S = L if groups <= 0 else min(groups, L)
        bounds = np.linspace(0, L, self.S + 1).round().astype(int)
        self.slot_layers = np.diff(bounds)  # real layers each simulated slot stands for
        self.slot_first = bounds[:-1]
        # KV capacity
        self.block_bytes = self.bt * self.arch.kv_bytes_per_token * L
        weights = (pl.weights_per_gpu if pl.weights_per_gpu is not None
                   else self.arch.weight_bytes / self.G)
        caps = tuple(kvcache.capacity_blocks(s.hbm_bytes, weights, pl.reserve_fraction,
                                             self.block_bytes) for s in specs)
        if max(caps, default=0) == 0:
            raise UserError(
                f"{scenario.source}: field 'placement.weights_per_gpu': no GPU has room for a "
                f"single KV block ({weights / 1e9:.4g} GB of weights per GPU, reserve "
                f"{pl.reserve_fraction:.0%}); use more GPUs, a smaller model, or set "
                "placement.weights_per_gpu / placement.reserve_fraction lower")
        self.machine_name = [n.split("/")[0] for n in self.names]
        machines = sorted(set(self.machine_name), key=self.machine_name.index)
        self.machine_of = [machines.index(m) for m in self.machine_name]
        self.machine_arr = np.asarray(self.machine_of, np.int64)
        self.hosts = [f"{m}/host" for m in machines]
        has_host = all(h in self.graph for h in self.hosts)
        host_cap = int(pl.host_capacity // self.block_bytes) if pl.host_tier and has_host else 0
        dist = np.zeros((self.G, self.G))
        if pl.scheme == "replicate":
            for a in range(self.G):
                for b in range(self.G):
                    if a != b:
                        dist[a, b] = self.cm.path(self.names[a], self.names[b]).latency_time
        self.dir = kvcache.BlockDirectory(kvcache.DirectoryConfig(
            pl.scheme, pl.replicas, caps, host_cap, tuple(self.machine_of),
            tuple(map(tuple, dist)), self.S))
        # randomness: one generator, spawned
        root = np.random.default_rng(seed)
        sel_rng, focus_rng, pol_rng = root.spawn(3)
        self.sel_rngs = sel_rng.spawn(self.G)
        self.focus_rng = focus_rng
        self.ctx = PolicyContext(self.cm, self.fabric, self.graph, pol_rng)
        from workloads.sparse import SparseSelector

        kind = scenario.model.selection
        if kind == "auto":
            kind = "dsa" if self.arch.sparse else "dense"
        self.selector = SparseSelector(kind=kind, top_k_tokens=self.arch.topk_tokens or 2048,
                                       block_tokens=self.bt)
        self.replay = None
        if scenario.workload.selections is not None:
            from workloads.selections import SelectionReplay, read_selections

            self.replay = SelectionReplay.from_frame(read_selections(scenario.workload.selections))
        self._init_requests()
        self.rounds: list[tuple] = []
        self.iters: list[tuple] = []
        self._cf_cache: dict[tuple, object] = {}
        self._attn_cache: dict[tuple, float] = {}

    # -- requests ----------------------------------------------------------------------------

    def _init_requests(self) -> None:
        t = self.trace
        n = len(t)
        self.n = n
        self.rid = t["request_id"].to_numpy(np.int64)
        self.sid = t["session_id"].to_numpy(np.int64)
        self.arrival = t["arrival_at"].to_numpy(float)
        self.inp = t["input_tokens"].to_numpy(np.int64)
        self.out = t["output_tokens"].to_numpy(np.int64)
        self.repo = t["repo_id"].to_numpy(dtype=np.int64, na_value=-1)
        self.prompt = t["block_ids"].tolist()
        self.spans = t["spans"].tolist()
        self.home = np.full(n, -1, np.int64)
        self.admitted_at = np.full(n, np.nan)
        self.first_at = np.full(n, np.nan)
        self.finish_at = np.full(n, np.nan)
        self.gen = np.zeros(n, np.int64)
        self.reused = np.zeros(n, np.int64)
        self.prefilled = np.zeros(n, np.int64)
        self.reason = [""] * n
        self.ctx_idx: list[np.ndarray | None] = [None] * n
        self.sel_cache: list[tuple | None] = [None] * n
        self.focus: list[np.ndarray | None] = [None] * n
        self.popular = np.zeros(n, np.int64)
        self.session_home: dict[int, int] = {}
        self.session_focus: dict[int, np.ndarray] = {}
        self.finished = 0
        self.queue: list[list[int]] = [[] for _ in range(self.G)]
        self.batch: list[list[int]] = [[] for _ in range(self.G)]
        self.reserved = np.zeros(self.G, np.int64)
        self.wake: list[simpy.Event | None] = [None] * self.G

    def _choose_home(self, r: int) -> int:
        s = int(self.sid[r])
        if s in self.session_home:
            return self.session_home[s]
        if self.sc.placement.home == "repo_affinity" and self.repo[r] >= 0:
            h = int(kvcache.stable_hash(np.array([self.repo[r]]))[0] % np.uint64(self.G))
        else:
            load = [len(self.queue[g]) + len(self.batch[g]) for g in range(self.G)]
            h = int(np.argmin(load))
        self.session_home[s] = h
        return h

    def _arrivals(self):
        env = self.env
        for r in range(self.n):
            dt = self.arrival[r] - env.now
            if dt > 0:
                yield env.timeout(dt)
            g = self._choose_home(r)
            self.home[r] = g
            self.queue[g].append(r)
            w = self.wake[g]
            if w is not None and not w.triggered:
                w.succeed()

    # -- the per-GPU loop --------------------------------------------------------------------

    def _gpu_loop(self, g: int):
        env = self.env
        iteration = 0
        while True:
            if not self.queue[g] and not self.batch[g]:
                self.wake[g] = env.event()
                yield self.wake[g]
                self.wake[g] = None
                continue
            started = env.now
            admitted = self._admit(g)
            prefill_time = 0.0
            if admitted:
                dur = sum(self._prefill_plan(g, r) for r in admitted)
                yield self.streams[g].run(dur)
                prefill_time = env.now - started
                for r in admitted:
                    self._place_prompt(g, r)
                    self.first_at[r] = env.now
                    self.gen[r] = 1
            decoding = [r for r in self.batch[g] if r not in admitted and self.gen[r] < self.out[r]]
            if decoding:
                yield from self._decode(g, decoding, iteration)
                for r in decoding:
                    self.gen[r] += 1
                    self._grow_context(g, r)
            done = [r for r in self.batch[g] if self.gen[r] >= self.out[r]]
            for r in done:
                self._retire(g, r)
            if self.check_invariants:
                self.dir.check()
            if not admitted and not decoding and not done:
                continue  # only rejections happened: nothing ran
            self.iters.append((g, iteration, started, env.now, len(decoding), prefill_time,
                               len(decoding)))
            iteration += 1

    def _need_blocks(self, r: int) -> int:
        return -(-(int(self.inp[r]) + int(self.out[r])) // self.bt)

    def _admit(self, g: int) -> list[int]:
        admitted = []
        q = self.queue[g]
        cap = int(self.dir.capacity[g])
        while q and len(self.batch[g]) < self.sc.engine.max_batch:
            r = q[0]
            idx = self.dir.intern(self.prompt[r])
            known = self.dir.known(idx)
            reuse = self._reuse_mask(known, r)
            need = self._need_blocks(r) - int(reuse.sum())
            if self.reserved[g] + need > cap:
                if not self.batch[g] and not admitted:
                    q.pop(0)  # can never fit, even alone
                    self.reason[r] = TOO_LARGE
                    self._finish(r)
                    continue
                break
            q.pop(0)
            self.ctx_idx[r] = idx
            self.reused[r] = int(reuse.sum())
            self.prefilled[r] = len(idx) - self.reused[r]
            self.reserved[g] += need
            self.admitted_at[r] = self.env.now
            self.dir.pin(idx)
            self.batch[g].append(r)
            admitted.append(r)
        return admitted

    def _reuse_mask(self, known: np.ndarray, r: int) -> np.ndarray:
        if self.sc.placement.reuse == "span":
            return known
        lead = int(np.argmin(known)) if not known.all() else len(known)
        mask = np.zeros(len(known), bool)
        mask[:lead] = True
        return mask

    def _prefill_plan(self, g: int, r: int) -> float:
        """Prefill kernel time [s] for request ``r``'s blocks the directory does not hold."""
        missing = int(self.prefilled[r])
        tokens = min(missing * self.bt, int(self.inp[r]))
        return self.kernels.prefill_time(self.gpus[g].spec, self.arch, tokens, 1.0, gpus=self.G)

    def _place_prompt(self, g: int, r: int) -> None:
        idx = self.ctx_idx[r]
        missing = np.flatnonzero(~self.dir.known(idx))
        self.dir.place(idx[missing], g, self.env.now, repo=int(self.repo[r]),
                       positions=missing, n_context=len(idx))
        # the query's focus set (the files its agent works on), drifting between turns
        from workloads.selections import popular_extent
        from workloads.sparse import draw_focus, drift_focus

        pop = popular_extent(self.spans[r], len(idx))
        s = int(self.sid[r])
        f = self.session_focus.get(s)
        rb = self.selector.region_blocks
        f = (draw_focus(self.focus_rng, pop, 4, rb) if f is None
             else drift_focus(self.focus_rng, f, pop, 0.25, rb))
        self.session_focus[s] = f
        self.focus[r] = f
        self.popular[r] = pop

    def _grow_context(self, g: int, r: int) -> None:
        """Add a home-owned block when the generated tokens spill past the context's last one."""
        from workloads.selections import generated_block_id

        idx = self.ctx_idx[r]
        need = -(-(int(self.inp[r]) + int(self.gen[r])) // self.bt)
        if need > len(idx):
            keys = generated_block_id(self.rid[r], np.arange(len(idx), need))
            new = self.dir.intern(keys)
            self.dir.place(new, g, self.env.now, scheme="first_writer")
            self.dir.pin(new)
            self.ctx_idx[r] = np.concatenate([idx, new])

    def _retire(self, g: int, r: int) -> None:
        self.batch[g].remove(r)
        self.reserved[g] -= self._need_blocks(r) - int(self.reused[r])
        self.dir.unpin(self.ctx_idx[r])
        self.sel_cache[r] = None
        self._finish(r)

    def _finish(self, r: int) -> None:
        self.finish_at[r] = self.env.now
        self.finished += 1
        if self.progress is not None:
            self.progress(self.finished, self.n)

    # -- one decode step -----------------------------------------------------------------------

    def _select(self, g: int, reqs: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Dense block indices ``(B, S, W)`` selected per query and slot, and the valid mask.

        Selections are sampled for :data:`SELECTION_STEPS` decode steps of a query at once (as
        that many × S consecutive layers, so the selector's layer correlation also links one
        step to the next) and resampled early when the context gains a block.
        """
        stale = [r for r in reqs if not self._cached(r)]
        if stale:
            self._sample(g, stale)
        rows = [self.sel_cache[r][0][int(self.gen[r]) - 1 - self.sel_cache[r][1]] for r in reqs]
        width = max(x.shape[1] for x in rows)
        dense = np.full((len(reqs), self.S, width), -1, np.int64)
        for i, x in enumerate(rows):
            dense[i, :, : x.shape[1]] = x
        valid = dense >= 0
        dense[~valid] = 0
        if self.replay is not None:
            dense, valid = self._apply_replay(reqs, dense, valid)
        return dense, valid

    def _cached(self, r: int) -> bool:
        c = self.sel_cache[r]
        if c is None:
            return False
        sel, start, n_ctx = c
        return int(self.gen[r]) - 1 - start < len(sel) and n_ctx == len(self.ctx_idx[r])

    def _sample(self, g: int, reqs: list[int]) -> None:
        T, S = SELECTION_STEPS, self.S
        ctx_len = np.array([len(self.ctx_idx[r]) for r in reqs], np.int64)
        fw = max([len(self.focus[r]) for r in reqs] + [1])
        focus = np.full((len(reqs), fw), -1, np.int64)
        for i, r in enumerate(reqs):
            focus[i, : len(self.focus[r])] = self.focus[r]
        sel = self.selector.select_batch(self.sel_rngs[g], ctx_len, T * S, focus=focus,
                                         popular_blocks=self.popular[reqs])
        for i, r in enumerate(reqs):
            pos = sel.indices[i, :, : sel.counts[i]].reshape(T, S, -1)
            self.sel_cache[r] = (self.ctx_idx[r][pos], int(self.gen[r]) - 1, int(ctx_len[i]))

    def _apply_replay(self, reqs, dense, valid):
        rows = []
        for r in reqs:
            step = int(self.gen[r]) - 1
            for s in range(self.S):
                got = self.replay.blocks(self.rid[r], step, int(self.slot_first[s]))
                rows.append(None if got is None else self.dir.intern(got))
        width = max([dense.shape[2]] + [len(x) for x in rows if x is not None])
        d2 = np.zeros((len(reqs), self.S, width), np.int64)
        v2 = np.zeros_like(d2, dtype=bool)
        d2[:, :, : dense.shape[2]] = dense
        v2[:, :, : dense.shape[2]] = valid
        for k, x in enumerate(rows):
            if x is not None:
                i, s = divmod(k, self.S)
                d2[i, s] = 0
                v2[i, s] = False
                d2[i, s, : len(x)] = x
                v2[i, s, : len(x)] = True
        return d2, v2

    def _decode(self, g: int, reqs: list[int], iteration: int):
        env = self.env
        stream = self.streams[g]
        name = self.names[g]
        B = len(reqs)
        dense, valid = self._select(g, reqs)
        self.dir.touch(g, dense[valid], env.now)
        na_layer = self.kernels.non_attention_time(self.gpus[g].spec, self.arch, B,
                                                   gpus=self.G) / self.arch.layers
        # where every selected block is, for all slots at once (copies made by this step's
        # rounds are for the slot that made them, so they cannot change another slot's answer)
        if self.policy.colocated:
            local = valid
            groups: list[list] = [[] for _ in range(self.S)]
        else:
            local, groups = self._locate(g, dense, valid)
        n_local = local.sum(axis=(0, 2)).tolist()
        q_local = local.any(axis=2).sum(axis=0).tolist()
        for s, slot_groups in enumerate(groups):
            t0 = env.now
            pending = None
            if slot_groups:
                pending = _Pending(env.event(), len(slot_groups))
                for grp in slot_groups:
                    self._start_round(g, s, iteration, pending, *grp)
            if n_local[s]:  # home's own partial attention, queued behind any recompute
                bq = q_local[s]
                stream.issue(self._attention(name, n_local[s], bq))
            if pending is not None:
                yield pending.done
            # projections + FFN after every merge; then the folded layers' time
            yield stream.after(na_layer, t0, int(self.slot_layers[s]))

    def _attention(self, name: str, n_blocks: int, batch: int) -> float:
        key = (name, n_blocks, batch)
        t = self._attn_cache.get(key)
        if t is None:
            t = self.cm.attention_time(name, n_blocks / batch, batch)
            self._attn_cache[key] = t
        return t

    def _closed_form(self, option: str, g: int, code: int, owner: str, n_blocks: int,
                     batch: int):
        key = (option, g, code, n_blocks, batch)
        cf = self._cf_cache.get(key)
        if cf is None:
            cf = getattr(self.cm, option)(self.names[g], owner, n_blocks / batch, batch)
            self._cf_cache[key] = cf
        return cf

    def _locate(self, g: int, dense: np.ndarray, valid: np.ndarray):
        """Local mask ``(B, S, W)`` and, per slot, the groups of non-local blocks: one
        ``(key, batch, members)`` per holder GPU / host / recompute, keys ascending."""
        d = self.dir
        B, S, W = dense.shape
        G = self.G
        holder = d.nearest(dense.ravel(), g).reshape(dense.shape)
        tier = d.tier[dense]
        slots = np.arange(S)
        words = d.copy_bits[g][dense, (slots // 64)[None, :, None]]
        copy = ((words >> (slots % 64).astype(np.uint64)[None, :, None]) & np.uint64(1)) > 0
        local = valid & (((holder == g) & (tier == kvcache.HBM)) | copy)
        remote = valid & ~local
        groups: list[list] = [[] for _ in range(S)]
        if not remote.any():
            return local, groups
        qi, si, wi = np.nonzero(remote)
        idx = dense[qi, si, wi]
        h, t = holder[qi, si, wi], tier[qi, si, wi]
        # group key: holder GPU (HBM) | G + machine (host DRAM) | 2G (dropped: recompute)
        key = np.where(t == kvcache.HBM, h,
                       np.where(t == kvcache.HOST, G + self.machine_arr[np.maximum(h, 0)], 2 * G))
        sk = si * (3 * G) + key
        order = np.lexsort((qi, sk))
        sk, qi, idx = sk[order], qi[order], idx[order]
        cut = np.flatnonzero(np.diff(sk)) + 1
        starts = np.concatenate(([0], cut)).tolist()
        ends = np.concatenate((cut, [len(sk)])).tolist()
        new_q = np.ones(len(qi), bool)
        new_q[1:] = (qi[1:] != qi[:-1]) | (sk[1:] != sk[:-1])
        nq = np.add.reduceat(new_q, starts).tolist()
        for a, b, n_q in zip(starts, ends, nq, strict=True):
            slot, k = divmod(int(sk[a]), 3 * G)
            groups[slot].append((k, n_q, idx[a:b]))
        return local, groups

    def _start_round(self, g, s, iteration, pending, k, b, members):
        """Ask the policy about one group (forced for host / dropped blocks); start its round."""
        G = self.G
        src = self.names[g]
        n_blocks = len(members)
        distinct = n_blocks if b == 1 else len(np.unique(members))
        if k < G:
            owner, option, code = self.names[k], None, k
        elif k < 2 * G:
            owner, option, code = self.hosts[k - G], "fetch", k
        else:
            owner, option, code = src, "local", g
        if option is None:
            rnd = Round(src, owner, s, b, math.ceil(n_blocks / b), distinct, self.env.now)
            option = self.policy.choose(self.ctx, rnd)
            if option not in OPTIONS:
                raise ValueError(f"policy {self.policy.name!r} returned {option!r}; "
                                 f"return one of {', '.join(OPTIONS)}")
        cf = self._closed_form(option, g, code, owner, n_blocks, b)
        _Round(self, pending, g, k if k < G else -1, owner, code, option, b, n_blocks,
               distinct, members, s, iteration, cf).start()

    # -- driving and collecting ------------------------------------------------------------------

    def execute(self) -> Result:
        wall0 = time.perf_counter()
        env = self.env
        env.process(self._arrivals())
        for g in range(self.G):
            env.process(self._gpu_loop(g))
        duration = self.sc.engine.duration
        env.run(until=duration) if duration is not None else env.run()
        wall = time.perf_counter() - wall0
        events = next(env._eid)  # SimPy's event counter: every event ever scheduled
        for r in range(self.n):
            unfinished = np.isnan(self.finish_at[r]) or self.gen[r] < self.out[r]
            if unfinished and not self.reason[r]:
                self.reason[r] = NOT_FINISHED
        return self._result(wall, events)

    def _result(self, wall: float, events: int) -> Result:
        completed = np.array([not x for x in self.reason], bool)
        req_rows = list(zip(
            self.rid.tolist(), self.sid.tolist(),
            [self.names[h] if h >= 0 else "" for h in self.home.tolist()],
            self.arrival.tolist(), self.admitted_at.tolist(), self.first_at.tolist(),
            np.where(completed, self.finish_at, np.nan).tolist(), self.inp.tolist(),
            self.out.tolist(), self.gen.tolist(), self.reused.tolist(), self.prefilled.tolist(),
            completed.tolist(), self.reason, strict=True))
        requests = records.requests_frame(req_rows)
        rounds = records.rounds_frame(self.rounds, self.names, self.names + self.hosts)
        iterations = records.iterations_frame(self.iters, self.names)
        links = self.fabric.links_frame()
        now = self.env.now
        bin_time = max(now / 100.0, 1e-6)
        timeline = self.fabric.link_timeline(bin_time) if now > 0 else pd.DataFrame()
        d = self.dir
        gpus = pd.DataFrame({
            "gpu": self.names,
            "busy_time": [x.busy_time for x in self.streams],
            "utilization": [x.busy_time / now if now > 0 else 0.0 for x in self.streams],
            "kernels": [x.kernels_run for x in self.streams],
            "capacity_blocks": d.capacity.tolist(),
            "owned_blocks": d.owned.tolist(),
            "copy_blocks": d.copies.tolist(),
        })
        moved = float((rounds["bytes"] * rounds["layers"]).sum()) if len(rounds) else 0.0
        summary = records.summarize(requests, rounds, iterations, sim_time=now, wall_time=wall,
                                    events=events, bytes_moved=moved)
        summary["policy"] = self.policy.name
        summary["seed"] = self.seed
        return Result(self.policy.name, self.seed, requests, rounds, links, gpus, iterations,
                      timeline, summary, fabric_bytes=self.fabric.bytes_delivered,
                      extras={"demoted": d.demoted, "dropped": d.dropped,
                              "copies_evicted": d.copies_evicted})
