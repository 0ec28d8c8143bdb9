"""Deployed instances in the exact engine: expert-parallel ranks that step together, their MoE
layers on the fabric, and prefill instances handing KV to decode instances.

With a ``[deployment]`` (:mod:`simulator.deployment`) the run (:class:`~simulator.engine.exact.
_Run`) holds a :class:`Deployed`, which replaces its per-GPU loops by one loop per *instance*.
This module builds the deployment and collects what it records:

- **the layout**: the deployment checked against the model and the cluster, its pools'
  instances placed on GPUs, each GPU's KV capacity after its pool's weights
  (:meth:`Deployed.capacities`), and the model's layers folded into simulated slots
  (:func:`fold_slots`: a group of identical layers each; the dense layers get a slot of their
  own);
- **the instances**: per instance its ranks' kernel times (:class:`~simulator.costmodel.
  rank_kernels.RankKernels`, shared by GPU kind), its expert-parallel group
  (:class:`~simulator.costmodel.moe.ExpertParallel`, routing drawn from the run's MoE stream)
  and its step loop — :class:`~simulator.engine.instance_loop.InstanceLoop` (lockstep ranks,
  slots, two-batch overlap), or the fast engine's own (``run.instance_loop``,
  :mod:`simulator.engine.fast_instances`);
- **prefill/decode** (a prefill pool): requests arrive at the prefill pool
  (:class:`~simulator.engine.kvtransfer.Handoff`); prefill instances step like any instance
  (their ranks only ever prefill), posting each chunk's KV slot by slot; a decode instance admits
  a request when its KV has arrived. With ``external_prefill`` requests arrive with their
  prompt's KV already on their decode rank.

Every MoE layer is recorded beside its closed form (:meth:`~simulator.costmodel.moe.
ExpertParallel.closed_form`): ``moe`` records (:data:`MOE_COLUMNS`); every transfer in
``kv_transfers``; :meth:`Deployed.summary` gives the headline figures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator import kvcache
from simulator.costmodel.experts import popularity
from simulator.costmodel.moe import ExpertParallel
from simulator.costmodel.rank_kernels import RankKernels
from simulator.deployment.checks import check_against, room_block_bytes
from simulator.deployment.layout import build_layout
from simulator.deployment.weights import weights_per_gpu
from simulator.engine.instance_loop import InstanceLoop
from simulator.engine.kvtransfer import TRANSFER_COLUMNS, Handoff, TransferEngine
from simulator.gpu.profiled import default_kernels
from simulator.network.paths import paths_among

#: Columns of the ``moe`` records: one per (instance, micro-batch, step, MoE slot).
MOE_COLUMNS = ("pool", "instance", "lane", "iteration", "layer", "layers", "ranks", "tokens",
               "max_rows", "dispatch_bytes", "combine_bytes", "started_at", "dispatch_time",
               "expert_time", "combine_time", "post_time", "cf_dispatch_time", "cf_expert_time",
               "cf_combine_time", "cf_post_time")


def fold_slots(layers: int, dense: int, groups: int) -> np.ndarray:
    """Slot boundaries (``S + 1`` layer indices): every layer its own slot (``groups`` 0 or
    ≥ layers), else ``groups`` slots of near-equal size of which the dense layers form the
    first — at least one MoE slot, and no more MoE slots than MoE layers (a slot stands for
    one layer or more)."""
    if groups <= 0 or groups >= layers:
        return np.arange(layers + 1)
    if 0 < dense < layers:
        moe = min(max(groups - 1, 1), layers - dense)
        rest = np.linspace(dense, layers, moe + 1).round().astype(int)
        return np.concatenate(([0], rest))
    return np.linspace(0, layers, groups + 1).round().astype(int)


class Deployed:
    """A run's deployment (see the module docstring). Built by the run's constructor once its
    topology, kernels and fabric exist; :meth:`setup` once its requests exist; :meth:`start`
    starts the instance loops."""

    def __init__(self, run, spec) -> None:
        self.run = run
        self.spec = spec
        arch = run.arch
        kinds = [run.graph.nodes[n].get("gpu", "H100") for n in run.names]
        pl = run.sc.placement
        check_against(spec, arch, kinds, run.sc.source, pl.reserve_fraction,
                      block_bytes=room_block_bytes(pl, arch))
        if not all(s.predicts for s in run.streams):
            raise ValueError("a [deployment] needs the closed-form streams (exact_streams=False)")
        self.layout = build_layout(spec, run.names, kinds)
        # the first MoE layer (a model without experts has none: every slot dense, below)
        self.dense = arch.dense_layers if spec.dense_layers is None else spec.dense_layers
        bounds = fold_slots(arch.layers, self.dense if arch.experts else 0,
                            run.sc.engine.layer_groups)
        self.bounds = bounds
        self.homes = self.layout.gpus_of("decode")
        self.rng = None  # the MoE routing stream, spawned by the run
        self.handoff: Handoff | None = None
        self.moe_rows: list[tuple] = []
        self.kernels = run.kernels if hasattr(run.kernels, "profile") else default_kernels()

    def slots(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(S, real layers per slot, first layer of each slot) for the run."""
        b = self.bounds
        return len(b) - 1, np.diff(b), b[:-1]

    def capacities(self, specs, placement, block_bytes: float) -> tuple[int, ...]:
        """KV blocks each GPU holds after its weights (its pool's: non-expert weights and its
        routed experts) and the reserve; idle GPUs hold none."""
        pool_of = {g: inst.spec for inst in self.layout.instances for g in inst.gpus}
        caps = []
        for g, s in enumerate(specs):
            pool = pool_of.get(g)
            if pool is None:
                caps.append(0)
                continue
            w = weights_per_gpu(self.run.arch, pool, self.spec.dense_layers)
            caps.append(kvcache.capacity_blocks(s.hbm_bytes, w, placement.reserve_fraction,
                                                block_bytes))
        return tuple(caps)

    def setup(self, rng: np.random.Generator) -> None:
        """Build the EP groups and the hand-off, once the run's requests exist."""
        run = self.run
        self.rng = rng
        arch = run.arch
        probs = None
        if arch.experts:
            probs = popularity(self.spec.popularity, arch.experts, rng, self.spec.zipf_exponent)
        S, slot_layers, slot_first = self.slots()
        self.is_moe = [bool(arch.experts) and int(f) >= self.dense for f in slot_first]
        rank_kernels: dict[str, RankKernels] = {}
        self.loops = []
        for inst in self.layout.instances:
            names = [run.names[g] for g in inst.gpus]
            rks = []
            for g in inst.gpus:
                spec = run.gpus[g].spec
                if spec.name not in rank_kernels:
                    rank_kernels[spec.name] = RankKernels(self.kernels, spec, arch,
                                                          self.spec.dense_layers)
                rks.append(rank_kernels[spec.name])
            ep = None
            if any(self.is_moe):  # a model with experts (they are in some slot)
                paths = paths_among(run.graph, names)  # {} for one GPU
                run.fabric.paths.prime(paths)
                run.cm._paths.prime(paths)
                per = inst.spec.experts_per_rank or \
                    (arch.experts + inst.spec.redundant_experts) // inst.spec.ep_degree
                ep = ExpertParallel(names, run.graph, arch, probs, per, inst.spec.moe_kernels,
                                    rks, paths, self.spec.dispatch_dtype,
                                    self.spec.combine_dtype)
            if run.observed is not None and len(inst.gpus) > 1:  # its ranks step together
                run.observed.lockstep[list(inst.gpus)] = True
            # the fast engine brings a loop of its own (simulator.engine.fast_instances)
            loop = getattr(run, "instance_loop", None) or InstanceLoop
            self.loops.append(loop(self, inst, rks, ep))
        if self.layout.disaggregated:
            t = self.spec.transfer
            self.handoff = Handoff(run, self.layout.gpus_of("prefill"),
                                   TransferEngine(run.env, run.fabric, t.bandwidth,
                                                  t.message_overhead_time),
                                   t.layerwise)

    def start(self) -> None:
        """Start every instance's loop (and send arrivals to the prefill pool, if any)."""
        run = self.run
        if self.handoff is not None:
            run.req.entry.deliver = self.handoff.deliver
        elif self.spec.external_prefill:
            run.req.entry.deliver = self._deliver_prefilled
        for loop in self.loops:
            run.env.process(loop.loop())

    def _deliver_prefilled(self, r: int) -> None:
        """Request ``r`` arrives with its prompt's KV on its decode rank (``external_prefill``):
        its new blocks are placed there as if a prefill cluster had sent them, so the rank
        admits it without computing anything and its first token comes with that step."""
        req = self.run.req
        home = req.choose_home(r)
        idx = req.context(r)
        req.ctx_idx[r] = idx
        req.reuse_plan(r, idx)  # the prompt's prefix hashes
        req.place_computed(home, r)
        req.home[r] = home
        req.queue[home].append(r)
        req.wake_up(home)

    # -- results -------------------------------------------------------------------------

    def extras(self) -> dict:
        """What a run's result carries for the deployment: the layout, the ``moe`` and
        ``kv_transfers`` records, and the decode pool's GPU count."""
        moe = pd.DataFrame(self._moe_ended(), columns=list(MOE_COLUMNS))
        transfers = pd.DataFrame(self.handoff.records if self.handoff else [],
                                 columns=list(TRANSFER_COLUMNS))
        return {"deployment": self.layout.as_dict(), "moe": moe, "kv_transfers": transfers,
                "decode_gpus": len(self.homes)}

    def _moe_ended(self) -> list[tuple]:
        """The ``moe`` records of layers that ended before the run's clock stopped (the fast
        engine composes a step's layers ahead of the clock; the exact engine records each as
        it ends)."""
        until = self.run.sc.engine.duration
        if until is None:
            return self.moe_rows
        t0, d, x, c, p = (MOE_COLUMNS.index(name) for name in (
            "started_at", "dispatch_time", "expert_time", "combine_time", "post_time"))
        return [r for r in self.moe_rows if r[t0] + r[d] + r[x] + r[c] + r[p] < until]

    def summary(self) -> dict:
        """Headline figures of the deployment: the MoE layers' closed-form error (relative, over
        the exchange phases), the transfers' times (first post to last arrival) and waits (the
        prompt's end to the last arrival: the transfer's share of TTFT) [s]."""
        out: dict = {"decode_gpus": len(self.homes)}
        rows = self._moe_ended()
        if rows:
            m = np.array([r[12:20] for r in rows], float)
            sim, cf = m[:, :4].sum(axis=1), m[:, 4:].sum(axis=1)
            err = np.abs(sim - cf) / np.where(cf > 0, cf, np.nan)
            err = err[np.isfinite(err)]
            out["moe_layers"] = len(rows)
            out["moe_closed_form_error_p50"] = float(np.quantile(err, 0.5)) if len(err) else 0.0
            out["moe_closed_form_error_p99"] = float(np.quantile(err, 0.99)) if len(err) else 0.0
            out["moe_time_mean"] = float(sim.mean())
        if self.handoff is not None and self.handoff.records:
            t = np.array([r[8] for r in self.handoff.records], float)
            out["kv_transfers"] = len(t)
            out["kv_transfer_time_p50"] = float(np.quantile(t, 0.5))
            out["kv_transfer_time_p99"] = float(np.quantile(t, 0.99))
            # what the transfer adds to TTFT: from the prompt's end to the last KV arrived
            wait = np.array([r[7] - r[6] for r in self.handoff.records], float)
            out["kv_transfer_wait_p50"] = float(np.quantile(wait, 0.5))
            out["kv_transfer_wait_p99"] = float(np.quantile(wait, 0.99))
        return out
