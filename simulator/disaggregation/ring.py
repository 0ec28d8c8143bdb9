"""A tensor-parallel group's all-reduces as a ring of transfers on the fabric.

:class:`Ring` is what both pool loops hold per tensor-parallel group (a homogeneous replica, a
Lamina model slice): its uncontended time (:meth:`Ring.time`, what the closed forms use), its
run on the :class:`~simulator.network.fabric.Fabric` (:meth:`Ring.run`, the exact loops), and
its shape as on an idle fabric (:meth:`Ring.shape`, for the fast modes that account the
transfers themselves). The ring carries the bytes and their contention; the measured
all-reduce time (NCCL's protocol over the wire) is waited out on top, so an uncontended ring
takes exactly the measured time.
"""

from __future__ import annotations

import numpy as np

from simulator.network.traffic import TP_COLLECTIVE


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
