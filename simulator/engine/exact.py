"""The exact engine: replay a workload on a simulated cluster under one policy, round by round.

One run = one ``simpy.Environment``, one :class:`~simulator.network.Fabric`, one
:class:`~simulator.gpu.GPU` per topology GPU, one :class:`~simulator.kvcache.BlockDirectory`, one
policy, and one ``numpy.random.Generator`` from the seed, spawned into child streams (one per GPU
for sparse selection, one for focus sets, one for the policy).

Flow. An arrival process hands each request to its session's *home* GPU (least loaded, or the
GPU owning its repository). Each GPU runs a continuous-batching loop
(:func:`~simulator.engine.gpu_loop.gpu_loop`, which both engines share; this module supplies the
steps it runs):

1. **admit** queued requests while the batch is below ``max_batch`` and the KV they will own fits
   (HBM − weights − reserve); **prefill** them on the home GPU, reusing the blocks the directory
   already holds (leading known blocks under ``prefix`` reuse, any known block under ``span``),
   then place the new blocks; the prefill's end is the request's first token (TTFT);
2. **decode** one token for every other request in the batch: sample each query's selected blocks
   for every simulated layer at once (:class:`workloads.sparse.SparseSelector`, or a recorded
   selection trace), then per layer group the non-local blocks by holder; the policy turns each
   group — all the batch's queries for that owner — into one *round* (route / fetch / local),
   which the engine replays phase by phase: messages on the fabric, kernels on GPU streams, in
   the order and sizes of the closed form (:mod:`simulator.costmodel.phases`). Host-DRAM
   blocks are fetched over PCIe; dropped blocks are recomputed at home. Meanwhile the home attends its local
   blocks; after all merges it runs the layer's projections + FFN.

With ``layer_groups = G`` only G representative layers are simulated per token; each stands for
``layers / G`` layers, whose remaining time is waited out (exact when rates are stationary).
Every round is recorded with its simulated phases and the closed form's phases for the same
inputs. Every request is accounted for: completed, or not, with a reason.

Speed. SimPy events exist per message and per layer, not per kernel. A round is a chain of
callbacks (no process, :mod:`simulator.engine.rounds`); a GPU's compute stream is a closed-form
FIFO (:class:`~simulator.gpu.streams.Stream`: a kernel's end is known when it is queued — the same
schedule as :meth:`simulator.gpu.GPU.run`, which ``exact_streams=True`` uses to cross-check), so
a route round's owner kernel and merge need no event: the answer is sent with the kernel's end as
its ``delay_time`` and the round ends at the merge's known end. A message alone on idle links
(nearly all of them) is a *lone flow* of the Fabric (:mod:`simulator.network.lone`): one event, no
filling. The last round of a layer schedules the layer's end directly (one event per layer);
under a policy that never routes (``options`` without ``"route"``), the layers of a step with
nothing to exchange are chained without events. Selections are sampled 16 decode steps at a
time and block locations looked up for all layers of a step at once
(:class:`~simulator.engine.locate.StepData`, a part the run holds); kernel times and
closed-form phases are memoized per shape (:class:`~simulator.engine.stepcosts.StepCosts`,
another part); round and iteration records are packed into typed columns as the run
goes (:mod:`simulator.engine.columns`). Requests' bookkeeping is the run's
:class:`~simulator.engine.admission.Admission`, the result :mod:`simulator.engine.results`'s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd
import simpy

from simulator import hardware, kvcache
from simulator.costmodel.closed_form import CostModel
from simulator.engine import records
from simulator.engine.admission import Admission
from simulator.engine.clock import requests_progress, run_clock
from simulator.engine.columns import Columns
from simulator.engine.gpu_loop import gpu_loop
from simulator.engine.locate import StepData
from simulator.engine.requests import settle_unfinished
from simulator.engine.results import Result, collect
from simulator.engine.reuse import rotary_time
from simulator.engine.rounds import Pending, RoundReplay
from simulator.engine.stepcosts import StepCosts
from simulator.errors import UserError
from simulator.gpu.calibration import run_kernels, run_stack
from simulator.gpu.copyengines import CopyEngines
from simulator.gpu.runtime import GPU
from simulator.gpu.streams import GPUStream, Stream
from simulator.models import model as lookup_model
from simulator.network.fabric import Fabric
from simulator.policies import OPTIONS, Observed, Policy, PolicyContext, Round
from simulator.policies.observed import FabricLoad

__all__ = ["simulate"]


def simulate(scenario, policy: Policy, seed: int, trace: pd.DataFrame, *,
             progress: Callable[[int, int], None] | None = None, topology=None,
             check_invariants: bool = False, exact_streams: bool = False) -> Result:
    """Replay ``trace`` on ``scenario``'s cluster under a per-round ``policy`` (an instance).

    Arguments as :func:`simulator.runner.run`, which picks this engine for every policy without
    a decode loop of its own.
    """
    return _Run(scenario, policy, seed, trace, progress, topology=topology,
                check_invariants=check_invariants, exact_streams=exact_streams).execute()


class _Run:
    """One simulation; see the module docstring. Not reusable: build, ``execute`` once."""

    def __init__(self, scenario, policy: Policy, seed: int, trace: pd.DataFrame,
                 progress: Callable[[int, int], None] | None, *, topology=None,
                 check_invariants: bool = False, exact_streams: bool = False) -> None:
        self.sc = scenario
        self.policy = policy
        self.seed = seed
        self.progress = progress  # requests finished, or simulated time with a duration
        self.env = simpy.Environment()
        self.graph = scenario.topology.build() if topology is None else topology
        self.check_invariants = check_invariants
        import topologies

        self.names: list[str] = list(topologies.gpus(self.graph))
        self.G = len(self.names)
        self.arch = lookup_model(scenario.model.name)
        cal = scenario.calibration_dict()
        self.kernels = run_kernels(cal, cuda_graphs=scenario.serving.cuda_graphs)
        pl = scenario.placement
        self.bt = pl.block_tokens
        stack = run_stack(scenario.stack, cal)
        self.cm = CostModel(self.arch, self.graph, stack, kernels=self.kernels,
                            block_tokens=self.bt, instance_gpus=self.G)
        # one path cache for both: each destination's Dijkstra and each pair's path found once
        self.fabric = Fabric(self.env, self.graph, stack, paths=self.cm.path_cache)
        if scenario.engine.duration is not None:  # a message issued after it is never sent
            self.fabric.until = scenario.engine.duration
        specs = [hardware.gpu(self.graph.nodes[n].get("gpu", "H100")) for n in self.names]
        self.gpus = [GPU(self.env, n, s, self.kernels) for n, s in zip(self.names, specs,
                                                                      strict=True)]
        self.streams = [(GPUStream(x) if exact_streams else Stream(self.env)) for x in self.gpus]
        self.copies = [CopyEngines(self.env) for _ in self.gpus]  # host↔device DMA
        # layer folding
        L = self.arch.layers
        groups = scenario.engine.layer_groups
        self.S = L if groups <= 0 else min(groups, L)
        bounds = np.linspace(0, L, self.S + 1).round().astype(int)
        self.slot_layers = np.diff(bounds)  # real layers each simulated slot stands for
        self.slot_first = bounds[:-1]
        self.slot_layers_list = self.slot_layers.tolist()
        # a [deployment]: instances stepping together, MoE layers and KV transfers on the fabric
        self.deploy = None
        if getattr(scenario, "deployment", None) is not None:
            from simulator.engine.instances import Deployed

            self.deploy = Deployed(self, scenario.deployment)
            self.S, self.slot_layers, self.slot_first = self.deploy.slots()
            self.slot_layers_list = self.slot_layers.tolist()
        # KV capacity
        self.block_bytes = self.bt * self.arch.kv_bytes_per_token * L
        weights = (pl.weights_per_gpu if pl.weights_per_gpu is not None
                   else self.arch.weight_bytes / self.G)
        caps = tuple(kvcache.capacity_blocks(s.hbm_bytes, weights, pl.reserve_fraction,
                                             self.block_bytes) for s in specs)
        if self.deploy is not None and pl.weights_per_gpu is None:  # each pool's own weights
            caps = self.deploy.capacities(specs, pl, self.block_bytes)
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
        if host_cap:  # demotions to the host tier are device→host copies (copy engines)
            self.dir.on_demote = self._demoted
        # randomness: one generator, spawned
        root = np.random.default_rng(seed)
        sel_rng, focus_rng, pol_rng = root.spawn(3)
        self.sel_rngs = sel_rng.spawn(self.G)
        self.focus_rng = focus_rng
        # what an adaptive policy observes (None for the others: nothing is counted)
        self.observed = (Observed(self.names, self._free_at, self.S,
                                  FabricLoad(self.fabric, self.cm.path_rate))
                         if policy.observes else None)
        self.ctx = PolicyContext(self.cm, self.fabric, self.graph, pol_rng, self.observed)
        from workloads.sparse import SparseSelector

        kind = scenario.model.selection
        if kind == "auto":
            kind = "dsa" if self.arch.sparse else "dense"
        self.selector = SparseSelector(kind=kind, top_k_tokens=self.arch.topk_tokens or 2048,
                                       block_tokens=self.bt)
        self.indexer = self.arch.sparse and kind == "dsa"
        self.replay = None
        if scenario.workload.selections is not None:
            from simulator.engine.trace import scenario_selections
            from workloads.selections import SelectionReplay

            self.replay = SelectionReplay.from_frame(scenario_selections(scenario, trace))
        # a policy that never routes puts no kernel on another GPU's stream: a home stream then
        # runs only its own kernels, and slots with nothing to exchange need no event
        bad = [o for o in policy.options if o not in OPTIONS]
        if bad or not policy.options:
            raise ValueError(f"policy {policy.name!r}: options must be some of "
                             f"{', '.join(OPTIONS)}, got {policy.options!r}")
        self.chain_slots = "route" not in policy.options and not exact_streams
        arch, G = self.arch, self.G
        self.serving = scenario.serving
        self.req = Admission(
            self.env, trace, self.dir, n_gpus=G, placement=pl, serving=self.serving,
            max_num_seqs=self.serving.seqs(scenario.engine.max_batch),
            prefill_time=lambda g, tokens: self.costs.prefill(g, tokens),  # built below
            region_blocks=self.selector.region_blocks, focus_rng=self.focus_rng,
            progress=requests_progress(progress, scenario.engine.duration),
            concurrency=scenario.workload.concurrency,
            rotary_time=lambda g, tokens: rotary_time(self.kernels, specs[g], arch, tokens),
            homes=self.deploy.homes if self.deploy is not None else None)
        self.steps = StepData(self.req, self.dir, self.selector, self.sel_rngs, self.replay,
                              self.slot_first, self.machine_arr)
        self.steps.observed = self.observed
        if self.observed is not None:  # children after sel_rngs': those stay as they were
            self.steps.obs_rngs = sel_rng.spawn(self.G)
        self.rounds = Columns(list(zip(records.ROUND_COLUMNS, records.ROUND_DTYPES,
                                       strict=True)))
        self.iters = Columns(list(zip(records.ITERATION_COLUMNS, records.ITERATION_DTYPES,
                                      strict=True)))
        self.costs = StepCosts(self.kernels, self.cm, self.arch, self.gpus, self.names, self.req,
                               self.indexer)
        if self.deploy is not None:
            self.deploy.setup(root.spawn(1)[0])  # the MoE routing stream

    def _demoted(self, g: int, blocks: int, machine: int) -> None:
        """GPU ``g`` moved ``blocks`` blocks to ``machine``'s host tier (its own machine's, or
        for a replica on another machine, the first holder's): a device→host copy on its copy
        engine over the path to that host (nothing waits for it; it occupies the engine)."""
        t = self.cm.host_copy_time(self.names[g], self.hosts[machine],
                                   blocks * self.block_bytes, "d2h")
        self.copies[g].issue("d2h", t)

    # -- the steps the serving loop runs (gpu_loop.py) ---------------------------------------------

    def _prefill_layers(self, g: int, layer_time: float):
        """A prefill-only step's layers on GPU ``g``, ``layer_time`` [s] each: per layer slot
        one layer's kernel, then the folded layers' time (as a decode step's quiet slot), so
        another GPU's routed kernel queues between its layers — behind one layer of the
        chunk, as on a GPU that runs it layer by layer — and not behind the whole chunk, a
        wait its home's folding would repeat for every layer it stands for."""
        env, stream = self.env, self.streams[g]
        for layers in self.slot_layers_list:
            yield stream.after(layer_time, env.now, layers)

    def _decode(self, g: int, reqs: list[int], iteration: int, na_layer: float | None,
                start_at: float):
        """One decode step of ``reqs`` on GPU ``g`` from ``start_at`` [s]; ``na_layer`` is one
        layer's projections + FFN (+ fused prefill chunks) [s], None for the decodes alone."""
        env = self.env
        stream = self.streams[g]
        name = self.names[g]
        B = len(reqs)
        dense, valid = self.steps.select(g, reqs)
        self.dir.touch(g, dense[valid], env.now)
        if na_layer is None:
            na_layer = self.costs.na(g, B)
        # where every selected block is, for all slots at once (copies made by this step's
        # rounds are for the slot that made them, so they cannot change another slot's answer)
        local, groups = self.steps.locate_for(g, dense, valid, self.policy.colocated)
        if self.observed is not None:
            self._observe(g, reqs, valid)
        n_local = local.sum(axis=(0, 2)).tolist()
        q_local = local.any(axis=2).sum(axis=0).tolist()
        at = start_at  # when the next slot starts (ahead of now across chained slots)
        for s, slot_groups in enumerate(groups):
            layers = self.slot_layers_list[s]
            if not slot_groups and self.chain_slots:
                # nothing to exchange, and no other GPU's kernel can queue on this stream:
                # the slot's end is known, so no event (the same floats as Stream.after)
                at = stream.quiet_layer(
                    at, self.costs.attention(name, n_local[s], q_local[s]) if n_local[s] else 0.0,
                    na_layer, layers)
                continue
            if at > env.now:
                yield env.timeout(at - env.now)
            t0 = env.now
            done = None
            if slot_groups:
                # after the last merge: projections + FFN, then the folded layers' time
                done = env.event()
                pending = Pending(partial(stream.after_then, done, na_layer, t0, layers),
                                  len(slot_groups))
                for grp in slot_groups:
                    self._start_round(g, s, iteration, pending, *grp)
            if n_local[s]:  # home's own partial attention, queued behind any recompute
                stream.issue(self.costs.attention(name, n_local[s], q_local[s]))
            # projections + FFN (after every merge); then the folded layers' time
            yield done if done is not None else stream.after(na_layer, t0, layers)
            at = env.now
        if at > env.now:
            yield env.timeout(at - env.now)

    def _free_at(self, g: int, at: float) -> float:
        """When GPU ``g``'s compute stream runs out of the kernels queued on it [s] (everything
        issued so far; ``at`` is now)."""
        return self.streams[g].free_at

    def _observe(self, g: int, reqs: list[int], valid: np.ndarray | None,
                 picked: np.ndarray | None = None) -> None:
        """Tell an observing policy about GPU ``g``'s decode step (its ``Observed``): copies
        used, tokens left, the share of its context a query selects per slot, KV room — the
        share from the selections' ``valid`` mask, or from ``picked``, each query's selected
        (block, slot) pairs."""
        req, d = self.req, self.dir
        if len(reqs) == 1:  # the common batch: the same floats without the array calls
            r = reqs[0]
            gen = int(req.gen[r])
            context = max(-(-(int(req.inp[r]) + gen) // self.bt), 1)
            n = int(valid.sum()) if picked is None else int(picked[0])
            share = n / (self.S * context)
            left = float(int(req.out[r]) - gen)
        else:
            context = np.maximum(-(-(req.inp[reqs] + req.gen[reqs]) // self.bt), 1)
            if picked is None:
                picked = valid.sum(axis=(1, 2))
            share = float((picked / (self.S * context)).mean())
            left = int((req.out[reqs] - req.gen[reqs]).sum()) / len(reqs)
        self.observed.step(g, self.steps.owner_copy_hits, self.steps.away, len(reqs), left,
                           share, int(d.capacity[g] - d.owned[g]), int(d.copies[g]))

    def _group(self, g: int, k: int, b: int, members) -> tuple:
        """What a holder group of home ``g`` is: ``(blocks, distinct blocks, owner name, forced
        option or None, holder code)`` — holder ``k`` is a GPU (the policy chooses), a host tier
        (fetched) or the home itself (dropped blocks: recomputed)."""
        n_blocks = len(members)
        # distinct blocks: a set for a few (np.unique's overhead dominates there)
        distinct = n_blocks if b == 1 else len(set(members.tolist())) if n_blocks <= 256 \
            else len(np.unique(members))
        G = self.G
        if k < G:
            return n_blocks, distinct, self.names[k], None, k
        if k < 2 * G:
            return n_blocks, distinct, self.hosts[k - G], "fetch", k
        return n_blocks, distinct, self.names[g], "local", g

    def _ask(self, rnd: Round) -> str:
        """The policy's option for ``rnd``, checked against the options it declares."""
        option = self.policy.choose(self.ctx, rnd)
        if option not in self.policy.options:
            raise ValueError(f"policy {self.policy.name!r} returned {option!r}; it may "
                             f"return {', '.join(self.policy.options)} (its ``options``)")
        return option

    def _start_round(self, g, s, iteration, pending, k, b, members):
        """Ask the policy about one group (forced for host / dropped blocks); start its round."""
        G = self.G
        n_blocks, distinct, owner, option, code = self._group(g, k, b, members)
        if option is None:
            option = self._ask(Round(self.names[g], owner, s, b, math.ceil(n_blocks / b),
                                     distinct, self.env.now))
        cf = self.costs.closed_form(option, g, code, owner, n_blocks, b)
        RoundReplay(self, pending, g, k if k < G else -1, owner, code, option, b, n_blocks,
               distinct, members, s, iteration, cf).start()

    # -- driving and collecting ------------------------------------------------------------------

    def execute(self) -> Result:
        wall0 = time.perf_counter()
        env = self.env
        env.process(self.req.arrivals())
        if self.deploy is not None:
            self.deploy.start()
        else:
            for g in range(self.G):
                env.process(gpu_loop(self, g))
        duration = self.sc.engine.duration
        run_clock(env, duration, self.progress)
        self._finish_run()
        wall = time.perf_counter() - wall0
        events = next(env._eid)  # SimPy's event counter: every event ever scheduled
        settle_unfinished(self.req, self.req.entry.entered,
                          self.sc.workload.concurrency is not None)
        return collect(self, wall, events)

    def _finish_run(self) -> None:
        """Called when the clock stops, before the records are collected (a hook for engines
        built on this run)."""
