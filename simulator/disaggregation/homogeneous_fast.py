"""The homogeneous baseline's fast mode: a replica's whole step composed at once.

In fast mode (``[engine] mode = "fast"``) nothing but the replica's own step touches its stream
and — when :func:`rings_unshared` holds (no two rings' messages on one directed link, checked
once by the run) — its ring's links, so every layer slot's kernel and all-reduce times are known
when the step starts. :class:`ComposedSteps` composes the step at once (:meth:`Stream.chain`;
the ring's shape per all-reduce size memoized as a :class:`RingShape`; the link records the
Fabric would have kept, handed over :data:`DEFERRED_STEPS` steps at a time, in step order:
nothing reads them in between), and the replica's loop
(:mod:`simulator.disaggregation.homogeneous`) ends it at one SimPy timeout: the exact loop's
times without its ~4 events per layer slot. A step cut by the run's end leaves the Fabric as
the exact loop would: messages sent when issued, recorded when done, the rest on the wire.
Held to the exact loop by ``tests/test_disaggregation_fast.py`` and
``benchmarks/bench_homogeneous.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from simulator.disaggregation.ring import Ring
from simulator.gpu.streams import Stream
from simulator.network.traffic import TP_COLLECTIVE

#: Steps whose ring messages go to the Fabric at once (:meth:`ComposedSteps.flush`).
DEFERRED_STEPS = 512


class RingShape(NamedTuple):
    """A replica's all-reduces of one size in every layer slot, as on an idle fabric: per slot
    (rows) and hop (columns) the message's route id, start and end offsets from the slot's
    kernel end [s], bytes [B] and traffic class; per slot the ring's time [s] (the stream's
    wait); the closed-form sum of the ring times [s] and the bytes of one step [B] (what one
    ``record_messages`` call per step would add to the totals, in message order)."""

    sid: np.ndarray
    start: np.ndarray
    end: np.ndarray
    sent: np.ndarray
    tag: np.ndarray
    wait: np.ndarray
    closed: float
    total: float


class ComposedSteps:
    """The fast mode's steps of every replica of one run (see the module docstring).

    Args:
        fabric: the run's Fabric (the rings' link records go to it).
        rings: each replica's tensor-parallel ring.
        streams: each replica's compute stream.
        m: layers folded into each layer slot (int array).
        layers: the model's layers.
        until: the run's end [s] (``inf``: none).
    """

    def __init__(self, fabric, rings: list[Ring], streams: list[Stream], m: np.ndarray,
                 layers: int, until: float) -> None:
        self.fabric, self.rings, self.streams = fabric, rings, streams
        self.m, self.layers, self.until = m, layers, until
        self._shapes: list[dict] = [{} for _ in rings]  # ring shapes by bytes
        self._pending: list[tuple[RingShape, np.ndarray]] = []  # see _defer
        self._m_float = m.astype(float)

    def step(self, g: int, at: float, k: float, pre: float, x: float) -> tuple[float, float]:
        """Replica ``g``'s step from ``at`` [s] (after the host overhead): each layer slot's
        kernels (``k`` per layer, ``pre`` over all layers) on the replica's stream, then its
        all-reduces of ``x`` bytes as on an idle fabric, their link records kept — the exact
        loop's times without its events (valid because no other traffic shares the ring's
        links: :func:`rings_unshared`). The records wait in :meth:`_defer` until a batch of
        steps is handed over at once. Returns ``(step end [s], closed form of the kernels and
        all-reduces [s])``."""
        shapes = self._shapes[g]
        shape = shapes.get(x)
        if shape is None:
            if len(shapes) > 4096:
                shapes.clear()
            shape = shapes[x] = self._ring_shape(g, x)
        m = self._m_float
        kernels = m * k + pre * m / self.layers if pre else m * k  # (+ 0.0 changes nothing)
        stream = self.streams[g]
        total = float(np.add.reduce(kernels))  # kernels.sum(), without its wrapper
        times = stream.chain(at, kernels, shape.wait, total)
        cut = times[-1] >= self.until  # the run ends inside this step
        if cut:  # kernels the exact loop would not have issued by then
            stream.kernels_run -= int(np.count_nonzero(times[0:-1:2] >= self.until))
        if shape.sid.size:  # (a replica of one GPU has no ring)
            if not cut:
                self._defer(shape, times)
            else:  # as the Fabric would stand at the end: sent when issued, recorded when done
                self.flush()
                kernel_ends = times[1::2]
                s = (kernel_ends[:, None] + shape.start).ravel()
                e = (kernel_ends[:, None] + shape.end).ravel()
                issued = np.repeat(kernel_ends, shape.end.shape[1]) < self.until
                done = e < self.until
                sent = shape.sent.ravel()
                self.fabric.record_messages(shape.sid.ravel()[done], s[done], e[done], sent[done],
                                            shape.tag.ravel()[done])
                self.fabric.record_sent(float(sent[issued & ~done].sum()), TP_COLLECTIVE)
                # on the wire at the end: the bytes moved by then on its links (its lone rate)
                until = self.until
                moving = ~done & (s < until)
                self.fabric.record_on_wire(
                    shape.sid.ravel()[moving].tolist(), s[moving].tolist(), until,
                    (sent[moving] * (until - s[moving]) / (e[moving] - s[moving])).tolist(),
                    shape.tag.ravel()[moving].tolist())
        return float(times[-1]), total + shape.closed

    def _defer(self, shape: RingShape, times: np.ndarray) -> None:
        """Keep a step's ring messages (its ring ``shape``, its stream ``times``) for
        :meth:`flush`; every :data:`DEFERRED_STEPS` steps they go to the Fabric."""
        self._pending.append((shape, times))
        if len(self._pending) >= DEFERRED_STEPS:
            self.flush()

    def flush(self) -> None:
        """Hand the deferred steps' ring messages to the Fabric in one call, in the order the
        steps were composed: the same records, class counters and totals as one
        :meth:`~simulator.network.fabric.Fabric.record_messages` call per step (nothing reads
        them in between: in fast mode the rings' links carry nothing else)."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        index: dict[int, int] = {}  # a batch holds a few distinct ring shapes: each once
        shapes: list[RingShape] = []
        ids = []
        for sh, _ in pending:
            i = index.get(id(sh))
            if i is None:
                i = index[id(sh)] = len(shapes)
                shapes.append(sh)
            ids.append(i)
        ids = np.array(ids)
        ke = np.stack([t[1::2] for _, t in pending])[:, :, None]  # steps × slots × 1

        def per_step(field: str) -> np.ndarray:  # each step's shape's column, step after step
            return np.stack([getattr(sh, field) for sh in shapes])[ids]

        self.fabric.record_messages(per_step("sid").ravel(), (ke + per_step("start")).ravel(),
                                    (ke + per_step("end")).ravel(), per_step("sent").ravel(),
                                    per_step("tag").ravel(),
                                    totals=[shapes[i].total for i in ids])

    def _ring_shape(self, g: int, x: float) -> RingShape:
        """Replica ``g``'s all-reduces of ``x`` bytes per layer, every layer slot's (see
        :class:`RingShape`)."""
        ring = self.rings[g]
        per_m = {m: ring.shape(m, x) for m in set(self.m.tolist())}
        rows = [per_m[m] for m in self.m.tolist()]
        sids = [s for r in rows for s in r[0]]
        sent = [r[3] for r in rows for _ in r[0]]
        ring_time = {m: ring.time(m, x) for m in per_m}  # a ring time per distinct fold
        return RingShape(
            sid=np.array(sids, np.int32).reshape(len(rows), -1),
            start=np.array([r[1] for r in rows]).reshape(len(rows), -1),
            end=np.array([r[2] for r in rows]).reshape(len(rows), -1),
            sent=np.array(sent, float).reshape(len(rows), -1),
            tag=np.full((len(rows), len(sids) // max(len(rows), 1)), TP_COLLECTIVE, np.int8),
            wait=np.array([r[4] for r in rows]),
            closed=sum(ring_time[m] for m in self.m.tolist()),
            total=float(sum(sent)))


def rings_unshared(fabric, rings: list[Ring]) -> bool:
    """True when no two messages of the rings' all-reduces can share a directed link: each
    ring's hops on distinct links and no link used by two rings. Only then is an all-reduce's
    closed form (:meth:`Ring.time`) the Fabric's time, as the fast mode assumes."""
    seen: set[int] = set()
    for ring in rings:
        if ring.t <= 1:  # one GPU: no messages (its "hop" is to itself, over no link)
            continue
        per_hop = [frozenset(fabric.message_route(a, c)[2]) for a, c in ring.hops]
        mine = frozenset().union(*per_hop)
        if sum(map(len, per_hop)) != len(mine) or not seen.isdisjoint(mine):
            return False
        seen |= mine
    return True


__all__ = ["DEFERRED_STEPS", "ComposedSteps", "RingShape", "rings_unshared"]
