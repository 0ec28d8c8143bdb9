"""Which GPU does what in a ``[deployment]``: pools, instances, ranks, and the weights each holds.

:func:`build_layout` assigns the topology's GPUs (in ``topologies.gpus`` order) to the pools:
the prefill pool first, then the decode instances, each instance a run of consecutive GPUs of
the pool's kind (so an 8-GPU-per-node topology puts an instance of 16 ranks on two whole
nodes); GPUs left over stay idle. The rule is :func:`take_gpus`'s (:class:`PoolsDoNotFit` where
a pool is short of GPUs), which :func:`~simulator.deployment.checks.check_against` applies
before any run, naming the field at fault where the pools do not fit. :class:`Layout` answers
what the engine and the CLI ask: the instances of a pool, the homes requests may decode on, and
a printable description (:meth:`Layout.describe`, :meth:`Layout.as_dict`).

The weights each GPU holds are :mod:`simulator.deployment.weights`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.deployment.spec import DeploymentSpec, PoolSpec


class PoolsDoNotFit(ValueError):
    """Pool ``pool`` needs ``need`` GPUs (of its kind) and finds ``free`` left by the pools
    before it."""

    def __init__(self, pool: str, need: int, free: int) -> None:
        super().__init__(f"{pool} pool needs {need} GPUs, {free} are free")
        self.pool, self.need, self.free = pool, need, free


def take_gpus(spec: DeploymentSpec, kinds: list[str]) -> dict[str, list[int]]:
    """The GPUs (indices into ``kinds``, the topology's GPU kinds in order) each pool takes: the
    pools in :meth:`DeploymentSpec.pools` order, each the first free GPUs of its kind (any kind
    without one); :class:`PoolsDoNotFit` for the first pool short of GPUs."""
    free = list(range(len(kinds)))
    taken: dict[str, list[int]] = {}
    for name, pool in spec.pools():
        kind = (pool.gpu or "").upper()
        mine = [g for g in free if not kind or kinds[g].upper() == kind]
        if len(mine) < pool.gpus:
            raise PoolsDoNotFit(name, pool.gpus, len(mine))
        taken[name] = mine[: pool.gpus]
        chosen = set(taken[name])
        free = [g for g in free if g not in chosen]
    return taken


@dataclass(frozen=True)
class Instance:
    """One instance: ``pool`` (``"prefill"`` or ``"decode"``), its index in the pool, and its
    GPUs (indices into the topology's GPU list; rank ``i`` is ``gpus[i]``)."""

    pool: str
    index: int
    gpus: tuple[int, ...]
    spec: PoolSpec


@dataclass(frozen=True)
class Layout:
    """The GPUs' roles under a deployment (see the module docstring).

    Attributes:
        names: topology GPU names, in order.
        instances: every instance, prefill pool first.
        idle: GPUs no pool uses.
    """

    names: tuple[str, ...]
    instances: tuple[Instance, ...]
    idle: tuple[int, ...]

    def pool(self, name: str) -> list[Instance]:
        """The instances of pool ``name``."""
        return [i for i in self.instances if i.pool == name]

    def gpus_of(self, name: str) -> list[int]:
        """Every GPU of pool ``name``, in order."""
        return [g for i in self.pool(name) for g in i.gpus]

    @property
    def disaggregated(self) -> bool:
        """True with a separate prefill pool."""
        return bool(self.pool("prefill"))

    def describe(self, arch=None) -> list[str]:
        """Lines for a terminal: one per instance (its GPUs, ranks, experts), then idle GPUs."""
        out = []
        for inst in self.instances:
            s = inst.spec
            first, last = self.names[inst.gpus[0]], self.names[inst.gpus[-1]]
            experts = ""
            if arch is not None and arch.experts:
                per = s.experts_per_rank or (arch.experts + s.redundant_experts) // s.ep_degree
                experts = (f", EP{s.ep_degree}: {per} routed experts per rank "
                           f"({s.redundant_experts} redundant) + {arch.shared_experts} shared, "
                           f"{s.moe_kernels.replace('_', '-')} kernels"
                           f"{', two-batch overlap' if s.two_batch_overlap else ''}")
            out.append(f"{inst.pool} instance {inst.index}: {len(inst.gpus)} GPUs "
                       f"{first} … {last}, attention DP{s.attention_dp} × TP{s.attention_tp}"
                       f"{experts}")
        if self.idle:
            out.append(f"idle: {len(self.idle)} GPUs ({self.names[self.idle[0]]} … "
                       f"{self.names[self.idle[-1]]})")
        return out

    def as_dict(self) -> dict:
        """JSON-ready: pools → instances → GPU names; idle GPU names."""
        pools: dict[str, list] = {}
        for inst in self.instances:
            pools.setdefault(inst.pool, []).append({
                "gpus": [self.names[g] for g in inst.gpus],
                "attention_dp": inst.spec.attention_dp, "attention_tp": inst.spec.attention_tp,
                "ep": inst.spec.ep_degree, "moe_kernels": inst.spec.moe_kernels,
                "two_batch_overlap": inst.spec.two_batch_overlap})
        return {"pools": pools, "idle": [self.names[g] for g in self.idle]}


def build_layout(spec: DeploymentSpec, names: list[str], kinds: list[str]) -> Layout:
    """Assign GPUs ``names`` (catalog kinds ``kinds``, topology order) to the pools of ``spec``
    (see the module docstring); pools must fit (:func:`~simulator.deployment.checks.check_against`
    says so with the field at fault)."""
    instances = []
    taken = take_gpus(spec, kinds)
    for pool_name, pool in spec.pools():
        take = taken[pool_name]
        for i in range(pool.instances):
            part = take[i * pool.instance_gpus: (i + 1) * pool.instance_gpus]
            instances.append(Instance(pool_name, i, tuple(part), pool))
    busy = {g for gpus in taken.values() for g in gpus}
    return Layout(tuple(names), tuple(instances),
                  tuple(g for g in range(len(names)) if g not in busy))
