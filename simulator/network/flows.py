"""The Fabric's records and flow state: what a transfer returns, and the objects behind it.

:class:`TransferRecord` (a transfer's result) and :class:`FlowState` (a flow seen by
:meth:`~simulator.network.Fabric.flows`) are public; :class:`Route` (a cached path with its
links, delay and cap), :class:`Flow` (one message) and :class:`FlowClass` (the active flows of
one (src, dst), which share one max-min rate) are the Fabric's internals (see
:mod:`simulator.network` for the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from simulator.network.paths import PathInfo

_INF = float("inf")


class TransferRecord(NamedTuple):
    """The value of a transfer's event (an immutable named tuple: cheap to make, one per
    message). Times are absolute simulation times [s].

    Attributes:
        src, dst: endpoint node names.
        nbytes: message size [B].
        issued_at: when ``transfer`` was called.
        started_at: when bytes began to flow (after stack overhead + path latency).
        finished_at: when the last byte arrived.
        flow_id: the Fabric's counter for this transfer (ties are broken by it).
    """

    src: str
    dst: str
    nbytes: float
    issued_at: float
    started_at: float
    finished_at: float
    flow_id: int = -1

    @property
    def duration_time(self) -> float:
        """``finished_at − issued_at`` [s]."""
        return self.finished_at - self.issued_at


@dataclass(frozen=True, slots=True)
class FlowState:
    """One active (bandwidth-sharing) flow at the moment of :meth:`Fabric.flows`."""

    flow_id: int
    src: str
    dst: str
    rate: float  # [B/s]
    remaining_bytes: float  # [B]
    edges: tuple[tuple[str, str], ...]


class Route:
    __slots__ = ("info", "links", "delay_time", "cap", "bneck", "sid")

    def __init__(self, info: PathInfo, links: tuple[int, ...], delay_time: float, cap: float,
                 bneck: float, sid: int):
        self.info, self.links, self.delay_time, self.cap = info, links, delay_time, cap
        self.bneck, self.sid = bneck, sid  # sid: its id in the link accounting


class Flow:
    __slots__ = ("fid", "src", "dst", "nbytes", "issued_at", "started_at", "done", "route",
                 "lone", "rate", "tag", "joined_at", "class_bytes")

    def __init__(self, fid, src, dst, nbytes, issued_at, started_at, done, route, tag=0):
        self.fid, self.src, self.dst, self.nbytes = fid, src, dst, nbytes
        self.issued_at, self.started_at, self.done, self.route = issued_at, started_at, done, route
        self.lone = False  # reserved alone on idle links (see :mod:`simulator.network.lone`)
        self.rate = 0.0  # its rate while lone [B/s]
        self.tag = tag  # its traffic class (:mod:`simulator.network.traffic`)
        self.joined_at = 0.0  # when it joined a flow class [s] ...
        self.class_bytes = 0.0  # ... with this many bytes left [B] (link records by class)


class FlowClass:
    """Active flows of one (src, dst): same links, same cap, hence the same max-min rate."""

    __slots__ = ("cid", "key", "links", "cap", "bneck", "n", "rate", "new_rate", "s_ref",
                 "t_ref", "heap", "gen", "dirty", "stamp", "t_next")

    def __init__(self, cid: int, key: tuple[str, str], route: Route, now: float):
        self.cid, self.key, self.links, self.cap = cid, key, route.links, route.cap
        self.bneck = route.bneck  # the least line rate on its links [B/s]
        self.n, self.rate, self.new_rate = 0, 0.0, 0.0
        self.s_ref, self.t_ref = 0.0, now
        self.heap: list = []  # (target S [B], flow id, _Flow)
        self.gen, self.dirty, self.stamp = 0, True, 0
        self.t_next = _INF  # predicted finish of the member with the least target [s]

    def set_rate(self, rate: float, now: float) -> None:
        """Run at ``rate`` [B/s] from ``now`` [s] on; the service received at the old rate since
        ``t_ref`` is added to ``s_ref`` first."""
        self.s_ref += self.rate * (now - self.t_ref)
        self.t_ref = now
        self.rate = rate
