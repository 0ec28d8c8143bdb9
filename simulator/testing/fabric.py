"""Testing aids for the fabric: small hand-built graphs, hypothesis strategies, the naive oracle.

The oracle, :class:`NaiveFabric`, has :class:`~simulator.network.Fabric`'s ``transfer`` interface
and the same message model, but none of its cleverness: at every arrival and departure it brings
every flow's remaining bytes up to date and recomputes *every* rate from scratch by textbook
progressive filling (:func:`max_min_rates`: raise all unfrozen flows' common level until a link
saturates or a flow reaches its cap; freeze those; repeat). It is slow and obviously right, and the
tests and ``benchmarks/bench_fabric.py`` hold the Fabric's finish times against it.

:func:`max_min_violations` checks the defining properties of a max-min fair allocation on a
snapshot (:meth:`Fabric.flows`): no link above capacity, and every flow either at its cap or
crossing a saturated link on which no flow gets more.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import networkx as nx
import simpy
from hypothesis import strategies as st

from simulator import hardware
from simulator.errors import UserError
from simulator.network import REL_TOL, FlowState, TransferRecord
from simulator.network.paths import PathCache
from simulator.units import GBps, us

__all__ = [
    "FlowSpec", "NaiveFabric", "max_min_rates", "max_min_violations", "run_flows", "duplex",
    "star_graph", "parking_lot_graph", "cross_node_pcie_graph", "small_topologies", "flow_sets",
    "fabric_cases",
]


# -- graphs --------------------------------------------------------------------------------------

def duplex(g: nx.DiGraph, a: str, b: str, bandwidth: float, latency: float = 0.0,
           kind: str = "ethernet") -> None:
    """Add a full-duplex link: edges a→b and b→a, each ``bandwidth`` [B/s], ``latency`` [s]."""
    g.add_edge(a, b, bandwidth=float(bandwidth), latency=float(latency), kind=kind)
    g.add_edge(b, a, bandwidth=float(bandwidth), latency=float(latency), kind=kind)


def star_graph(hosts: int, bandwidth: float = GBps(100), latency: float = us(1)) -> nx.DiGraph:
    """``hosts`` endpoints ``h0 …`` each with an up and a down link to one switch ``sw``."""
    g = nx.DiGraph(name=f"star{hosts}")
    g.add_node("sw", kind="leaf")
    for i in range(hosts):
        g.add_node(f"h{i}", kind="gpu")
        duplex(g, f"h{i}", "sw", bandwidth, latency)
    return g


def parking_lot_graph(bandwidths: Sequence[float], latency: float = 0.0) -> nx.DiGraph:
    """A chain ``r0 → r1 → … → rK`` whose i-th hop has ``bandwidths[i]`` [B/s] (duplex)."""
    g = nx.DiGraph(name="parking_lot")
    for i, bw in enumerate(bandwidths):
        g.add_node(f"r{i}", kind="gpu")
        g.add_node(f"r{i + 1}", kind="gpu")
        duplex(g, f"r{i}", f"r{i + 1}", bw, latency)
    return g


def cross_node_pcie_graph() -> nx.DiGraph:
    """Two machines, one GPU each: GPU–PCIe switch–NIC–leaf–NIC–PCIe switch–GPU.

    PCIe Gen4 x16 (32 GB/s, PCI-SIG) is slower than the InfiniBand NDR link (50 GB/s, NVIDIA
    SuperPOD docs), so a cross-node flow's bottleneck is the PCIe hop. Figures from
    :data:`simulator.hardware.LINKS`.
    """
    pcie, ib = hardware.link("pcie4"), hardware.link("ib_ndr")
    g = nx.DiGraph(name="cross_node_pcie")
    g.add_node("leaf", kind="leaf")
    for m in (0, 1):
        gpu, sw, nic = f"n{m}/gpu0", f"n{m}/pcie0", f"n{m}/nic0"
        g.add_node(gpu, kind="gpu")
        g.add_node(sw, kind="pcie_switch")
        g.add_node(nic, kind="nic")
        duplex(g, gpu, sw, pcie.bandwidth, pcie.latency, "pcie")
        duplex(g, sw, nic, pcie.bandwidth, pcie.latency, "pcie")
        duplex(g, nic, "leaf", ib.bandwidth, ib.latency, "ib")
    return g


# -- the oracle ----------------------------------------------------------------------------------

def max_min_rates(paths: Sequence[Sequence], caps: Sequence[float],
                  capacity: dict) -> list[float]:
    """Max-min fair rates [B/s] by textbook progressive filling (every round from scratch).

    Args:
        paths: for each flow, the links it crosses (hashable link ids).
        caps: for each flow, its own rate cap [B/s] (``inf`` for none).
        capacity: link id → capacity [B/s].
    """
    n = len(paths)
    rate: list[float | None] = [None] * n
    level = 0.0
    while any(r is None for r in rate):
        count: dict = {}
        used: dict = {}
        for i in range(n):
            for link in paths[i]:
                if rate[i] is None:
                    count[link] = count.get(link, 0) + 1
                else:
                    used[link] = used.get(link, 0.0) + rate[i]
        link_level = {k: max(capacity[k] - used.get(k, 0.0), 0.0) / c for k, c in count.items()}
        theta = min([*link_level.values(), *(caps[i] for i in range(n) if rate[i] is None)])
        level = max(level, theta)
        for i in range(n):
            if rate[i] is None and (caps[i] <= theta or
                                    any(link_level[k] <= theta for k in paths[i])):
                rate[i] = level
    return rate  # type: ignore[return-value]


class _NaiveFlow:
    def __init__(self, fid, src, dst, nbytes, issued_at, done, edges, cap):
        self.fid, self.src, self.dst, self.nbytes = fid, src, dst, nbytes
        self.issued_at, self.started_at, self.done = issued_at, issued_at, done
        self.edges, self.cap = edges, cap
        self.remaining, self.rate = nbytes, 0.0


class NaiveFabric:
    """The oracle fabric: same interface and model as :class:`~simulator.network.Fabric`,
    recomputing everything at every arrival and departure (see the module docstring)."""

    def __init__(self, env: simpy.Environment, graph: nx.DiGraph, stack="ideal",
                 ecmp: bool = False) -> None:
        self.env, self.graph = env, graph
        self.stack = hardware.stack(stack)
        self.paths = PathCache(graph, ecmp=ecmp)
        self.capacity = {(u, v): float(d["bandwidth"]) for u, v, d in graph.edges(data=True)}
        self.active: list[_NaiveFlow] = []  # in flow-id order
        self.updated_at = 0.0
        self.timer_gen = 0
        self.next_fid = 0
        self.bytes_sent = self.bytes_delivered = 0.0
        self.flows_completed = 0

    def transfer(self, src: str, dst: str, nbytes: float) -> simpy.Event:
        """Send ``nbytes`` [B]; the event's value is a :class:`TransferRecord`."""
        nbytes = float(nbytes)
        if not 0.0 <= nbytes < float("inf"):
            raise UserError(f"transfer {src!r} -> {dst!r}: nbytes must be >= 0, got {nbytes!r}")
        now, done, fid = self.env.now, self.env.event(), self.next_fid
        self.next_fid += 1
        self.bytes_sent += nbytes
        info = self.paths(src, dst)
        if src == dst:
            self._finish(_NaiveFlow(fid, src, dst, nbytes, now, done, (), 0.0))
            return done
        eff = self.stack.efficiency(info.inter_node)
        flow = _NaiveFlow(fid, src, dst, nbytes, now, done, info.edges,
                          eff * info.bottleneck_bandwidth)
        delay = self.stack.overhead_time(info.inter_node) + info.latency_time
        if delay > 0:
            self.env.timeout(delay).callbacks.append(lambda _e: self._start(flow))
        else:
            self._start(flow)
        return done

    def _start(self, flow: _NaiveFlow) -> None:
        flow.started_at = self.env.now
        if flow.nbytes == 0:
            self._finish(flow)
            return
        self._advance()
        self.active.append(flow)
        self.active.sort(key=lambda f: f.fid)
        self._recompute()

    def _advance(self) -> None:
        now = self.env.now
        for f in self.active:
            f.remaining = max(f.remaining - f.rate * (now - self.updated_at), 0.0)
        self.updated_at = now

    def _recompute(self) -> None:
        self.timer_gen += 1
        if not self.active:
            return
        rates = max_min_rates([f.edges for f in self.active], [f.cap for f in self.active],
                              self.capacity)
        for f, r in zip(self.active, rates, strict=True):
            f.rate = r
        now = self.env.now
        t_next = min(now + f.remaining / f.rate for f in self.active)
        gen = self.timer_gen
        self.env.timeout(max(t_next - now, 0.0)).callbacks.append(lambda _e: self._on_timer(gen))

    def _on_timer(self, gen: int) -> None:
        if gen != self.timer_gen:
            return
        self._advance()
        now = self.env.now
        done = [f for f in self.active if f.remaining <= f.rate * now * REL_TOL]
        self.active = [f for f in self.active if f not in done]
        self._recompute()
        for f in done:
            self._finish(f)

    def _finish(self, f: _NaiveFlow) -> None:
        now = self.env.now
        self.bytes_delivered += f.nbytes
        self.flows_completed += 1
        f.done.succeed(TransferRecord(f.src, f.dst, f.nbytes, f.issued_at, f.started_at, now, f.fid))


# -- driving and checking ------------------------------------------------------------------------

@dataclass(frozen=True)
class FlowSpec:
    """A transfer to issue: at ``issued_at`` [s], ``nbytes`` [B] from ``src`` to ``dst``.
    With ``ahead_time`` > 0 [s], ``transfer`` is called that much earlier with
    ``delay_time=ahead_time`` (the Fabric only; the naive oracle has no delayed sends)."""

    issued_at: float
    src: str
    dst: str
    nbytes: float
    ahead_time: float = 0.0


def run_flows(fabric, flows: Sequence[FlowSpec], probe_at: Sequence[float] = (),
              probe: Callable[[float], None] | None = None) -> list[TransferRecord]:
    """Issue ``flows`` on ``fabric`` (a Fabric or a NaiveFabric), run to the end, return the
    records in the order of ``flows``. ``probe(now)`` is called at each time in ``probe_at`` and
    right after every completion."""
    env = fabric.env
    out: list[TransferRecord | None] = [None] * len(flows)

    def keep(i: int) -> Callable[[simpy.Event], None]:
        def cb(ev: simpy.Event) -> None:
            out[i] = ev.value
            if probe is not None:
                probe(env.now)
        return cb

    def issue():
        calls = sorted(range(len(flows)),
                       key=lambda i: (flows[i].issued_at - flows[i].ahead_time, i))
        for i in calls:
            f = flows[i]
            at = f.issued_at - f.ahead_time
            if at > env.now:
                yield env.timeout(at - env.now)
            kw = {"delay_time": f.ahead_time} if f.ahead_time > 0 else {}
            fabric.transfer(f.src, f.dst, f.nbytes, **kw).callbacks.append(keep(i))

    def probing():
        for t in sorted(probe_at):
            if t > env.now:
                yield env.timeout(t - env.now)
            probe(env.now)

    env.process(issue())
    if probe is not None and probe_at:
        env.process(probing())
    env.run()
    return out  # type: ignore[return-value]


def max_min_violations(states: Sequence[FlowState], graph: nx.DiGraph,
                       caps: dict[int, float] | None = None, rel: float = 1e-9) -> list[str]:
    """What is wrong with a snapshot's allocation (empty if it is max-min fair).

    Checks: summed rates on each link ≤ its bandwidth; each flow is at its cap (``caps``: flow id
    → cap [B/s]) or crosses a saturated link on which no flow gets a higher rate.
    """
    caps = caps or {}
    load: dict = {}
    top: dict = {}
    for s in states:
        for e in s.edges:
            load[e] = load.get(e, 0.0) + s.rate
            top[e] = max(top.get(e, 0.0), s.rate)
    out = []
    for e, x in load.items():
        if x > graph.edges[e]["bandwidth"] * (1 + rel):
            out.append(f"link {e}: load {x} > bandwidth {graph.edges[e]['bandwidth']}")
    for s in states:
        if s.rate >= caps.get(s.flow_id, float("inf")) * (1 - rel):
            continue
        if not any(load[e] >= graph.edges[e]["bandwidth"] * (1 - rel) and
                   s.rate >= top[e] * (1 - rel) for e in s.edges):
            out.append(f"flow {s.flow_id} ({s.rate} B/s) has no bottleneck link")
    return out


# -- hypothesis strategies -----------------------------------------------------------------------

_BANDWIDTHS = [GBps(x) for x in (1, 12.5, 25, 32, 50, 64, 100, 450)]


@st.composite
def small_topologies(draw, max_nodes: int = 6) -> nx.DiGraph:
    """A connected graph of 2–``max_nodes`` nodes with duplex links of assorted bandwidth and
    latency; some nodes are NICs (so stacks' inter-node figures apply)."""
    n = draw(st.integers(2, max_nodes))
    names = [f"v{i}" for i in range(n)]
    g = nx.DiGraph(name="random")
    for i, name in enumerate(names):
        g.add_node(name, kind=draw(st.sampled_from(["gpu", "gpu", "nic"])) if i else "gpu")
    pairs = [(names[draw(st.integers(0, i - 1))], names[i]) for i in range(1, n)]
    extra = draw(st.lists(st.tuples(st.sampled_from(names), st.sampled_from(names)), max_size=n))
    pairs += [(a, b) for a, b in extra if a != b and not g.has_edge(a, b)]
    for a, b in pairs:
        if not g.has_edge(a, b):
            bw = draw(st.sampled_from(_BANDWIDTHS))
            lat = draw(st.sampled_from([0.0, us(0.2), us(0.3), us(1.0)]))
            duplex(g, a, b, bw, lat)
    return g


@st.composite
def flow_sets(draw, graph: nx.DiGraph, max_flows: int = 12) -> list[FlowSpec]:
    """Transfers between random nodes of ``graph`` (same-node and zero-byte ones included), at
    times drawn from a few values so that arrivals tie."""
    names = sorted(graph.nodes)
    times = draw(st.lists(st.floats(0, 2e-3), min_size=1, max_size=4))
    sizes = st.one_of(st.just(0.0), st.floats(1.0, 1e8), st.sampled_from([1e3, 1e6, 5e7]))
    flows = draw(st.lists(st.builds(FlowSpec, st.sampled_from(times), st.sampled_from(names),
                                    st.sampled_from(names), sizes),
                          min_size=1, max_size=max_flows))
    return flows


@st.composite
def fabric_cases(draw, max_nodes: int = 6, max_flows: int = 12):
    """(graph, flows, stack name) for oracle comparisons."""
    g = draw(small_topologies(max_nodes))
    return g, draw(flow_sets(g, max_flows)), draw(st.sampled_from(["ideal", "nccl", "ibgda"]))
