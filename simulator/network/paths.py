"""Deterministic paths between GPUs on a topology graph, and their closed-form summary.

Both the fluid :class:`~simulator.network.Fabric` and the closed-form
:class:`~simulator.costmodel.CostModel` take the path a message follows from here, so the two
agree by construction on *which* links a message crosses.

Path choice: among the paths of least summed ``latency`` (then fewest hops), the lexicographically
smallest node sequence — independent of the order in which edges were added to the graph. With
``ecmp=True`` the choice among those equal-cost paths is a stable hash (CRC32) of the endpoint
names instead, spreading pairs over parallel links deterministically.

A GPU or a host (a node of a kind in :data:`NO_TRANSIT_KINDS`) is never a transit node: the
paths considered between two endpoints pass through no GPU or host other than the endpoints
themselves. Neither is a switch — a message from a GPU to another machine leaves through the
GPU's own PCIe switch and NIC; it is not relayed by a neighbour GPU over NVLink, nor through the
host's root complex, to another GPU's NIC. (On a RoCE fabric, whose switch hops cost 0.5 µs,
both relays are shorter than a leaf→spine→leaf detour — by 0.5 µs through a GPU, 0.4 µs through
the host — so least latency over the bare graph sent 112 of the 128 inter-machine pairs of
``lamina_h100_h20`` through another GPU's NIC, handing each GPU its neighbours' NICs.) Only
where no such path exists at all is the pair routed over the whole graph, GPUs and hosts
included, by the same rule: a custom topology that chains GPUs by direct links (a ring), or
joins one machine's GPUs only through its host (PCIe only, no NVSwitch) and has no network
between them either. A machine whose GPUs meet only at the host but which is also networked
has its intra-machine traffic routed over the network (out and back through a leaf).
"""

from __future__ import annotations

import heapq
import zlib
from dataclasses import dataclass
from itertools import islice

import networkx as nx

from simulator.errors import UserError

#: At most this many equal-cost paths are enumerated per pair before choosing.
MAX_EQUAL_COST_PATHS = 256


class NoPathError(UserError):
    """Two GPUs that cannot reach each other."""


@dataclass(frozen=True)
class PathInfo:
    """A path between two endpoints and its closed-form figures.

    Attributes:
        nodes: node names from source to destination (one node if src == dst).
        edges: the directed edges ``(u, v)`` crossed, in order.
        latency_time: summed per-hop latency [s].
        bottleneck_bandwidth: smallest edge bandwidth on the path [B/s] (``inf`` if no edges).
        inter_node: True if the path crosses a NIC (a node of kind ``nic``).
    """

    nodes: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    latency_time: float
    bottleneck_bandwidth: float
    inter_node: bool

    @property
    def hops(self) -> int:
        """Number of links crossed."""
        return len(self.edges)


def _path_key(g: nx.DiGraph, path: list[str]) -> tuple[float, int]:
    lat = sum(float(g.edges[u, v].get("latency", 0.0)) for u, v in zip(path, path[1:], strict=False))
    return (lat, len(path))


#: Kinds of node that are endpoints only: never a transit node of a path, unless the pair has no
#: other path (see the module docstring).
NO_TRANSIT_KINDS: frozenset[str] = frozenset({"gpu", "host"})


def endpoint_only(g: nx.DiGraph, n: str) -> bool:
    """Whether node ``n`` of ``g`` is a GPU or host: a path may start or end there, not pass
    through (:data:`NO_TRANSIT_KINDS`)."""
    return g.nodes[n].get("kind") in NO_TRANSIT_KINDS


def _no_transit(g: nx.DiGraph, src: str) -> nx.DiGraph:
    """``g`` without the edges leaving a GPU or host other than ``src``: a path in it from
    ``src`` passes through no other GPU or host (one may only end it)."""
    def keep(u: str, v: str) -> bool:
        return u == src or not endpoint_only(g, u)
    return nx.subgraph_view(g, filter_edge=keep)


def _equal_cost_paths(g: nx.DiGraph, src: str, dst: str) -> list[list[str]]:
    """The least-cost paths from ``src`` to ``dst`` (at most :data:`MAX_EQUAL_COST_PATHS`) among
    those through no GPU or host but the endpoints, or among all paths where there is none."""
    if src not in g or dst not in g:
        missing = src if src not in g else dst
        raise NoPathError(f"node {missing!r} is not in the topology")
    try:
        gen = nx.shortest_simple_paths(_no_transit(g, src), src, dst, weight=_weight)
        first = next(gen)
    except nx.NetworkXNoPath:
        # no path avoids other GPUs and hosts: route over the whole graph (GPUs chained directly)
        try:
            gen = nx.shortest_simple_paths(g, src, dst, weight=_weight)
            first = next(gen)
        except nx.NetworkXNoPath:
            raise NoPathError(f"no path from {src!r} to {dst!r} in the topology") from None
    best = _path_key(g, first)
    out = [first]
    for p in islice(gen, MAX_EQUAL_COST_PATHS - 1):
        key = _path_key(g, p)
        if key[0] > best[0] * (1 + 1e-12) + 1e-18 or key[1] > best[1]:
            break
        out.append(p)
    return out


def _weight(u: str, v: str, data: dict) -> float:
    # Latency first; a tiny per-hop term makes hop count the tie-breaker between equal latencies.
    return float(data.get("latency", 0.0)) + 1e-15


def gpu_path(g: nx.DiGraph, src: str, dst: str, ecmp: bool = False) -> list[str]:
    """The node sequence a message from ``src`` to ``dst`` follows (deterministic)."""
    if src == dst:
        if src not in g:
            raise NoPathError(f"node {src!r} is not in the topology")
        return [src]
    paths = _equal_cost_paths(g, src, dst)
    if ecmp and len(paths) > 1:
        paths.sort()
        return paths[zlib.crc32(f"{src}->{dst}".encode()) % len(paths)]
    return min(paths)


def path_info(g: nx.DiGraph, src: str, dst: str, ecmp: bool = False) -> PathInfo:
    """The path from ``src`` to ``dst`` with its summed latency and bottleneck bandwidth."""
    nodes = gpu_path(g, src, dst, ecmp=ecmp)
    edges = tuple(zip(nodes, nodes[1:], strict=False))
    lat = sum(float(g.edges[e].get("latency", 0.0)) for e in edges)
    bw = min((float(g.edges[e]["bandwidth"]) for e in edges), default=float("inf"))
    inter = any(g.nodes[n].get("kind") == "nic" for n in nodes)
    return PathInfo(tuple(nodes), edges, lat, bw, inter)


class PathCache:
    """Memoized :func:`path_info` for one graph (graphs are not mutated during a run).

    Without ECMP a path is found as :func:`paths_among` finds it — one Dijkstra per destination
    (kept), then the least-cost walk — the same path :func:`path_info` chooses (least latency,
    fewest hops, smallest node sequence, through no GPU or host but the endpoints where such a
    path exists), hundreds of times faster than enumerating equal-cost paths per pair. With ECMP
    every equal-cost path is needed: :func:`path_info` per pair."""

    def __init__(self, g: nx.DiGraph, ecmp: bool = False) -> None:
        self.graph = g
        self.ecmp = ecmp
        self._cache: dict[tuple[str, str], PathInfo] = {}
        self._dist: dict[str, dict[str, float]] = {}  # per destination: cost to it from each node
        self._full: dict[str, dict[str, float]] = {}  # the same through GPUs (fallback only)
        self._incoming: _Incoming | None = None

    def __call__(self, src: str, dst: str) -> PathInfo:
        key = (src, dst)
        info = self._cache.get(key)
        if info is None:
            if self.ecmp or src == dst:
                info = path_info(self.graph, src, dst, ecmp=self.ecmp)
            else:
                if self._incoming is None:
                    self._incoming = _Incoming(self.graph)
                dist = self._dist.get(dst)
                if dist is None:
                    dist = self._dist[dst] = _costs_to(self.graph, dst, self._incoming)
                info = _info(self.graph, _chosen_path(self.graph, src, dst, self._incoming, dist,
                                                      self._full))
            self._cache[key] = info
        return info

    def prime(self, infos: dict[tuple[str, str], PathInfo]) -> None:
        """Take paths computed elsewhere (:func:`paths_among`, which chooses as this cache
        does without ECMP); ignored with ECMP."""
        if not self.ecmp:
            for key, info in infos.items():
                self._cache.setdefault(key, info)


class _Incoming:
    """A graph's incoming edges as integer lists with their :func:`_weight` costs, for
    :func:`_costs_to` (built once per graph; graphs are not mutated during a run)."""

    def __init__(self, g: nx.DiGraph) -> None:
        self.nodes = list(g)
        at = {n: i for i, n in enumerate(self.nodes)}
        self.at = at
        # GPUs and hosts: never passed through (unless a pair has no other path)
        self.endpoints = frozenset(n for n in self.nodes if endpoint_only(g, n))
        self.is_endpoint = [n in self.endpoints for n in self.nodes]
        # per node, its predecessors in the graph's order with each edge's cost
        self.pred = [[(at[u], _weight(u, v, data)) for u, data in g.pred[v].items()]
                     for v in self.nodes]


def _costs_to(g: nx.DiGraph, dst: str, incoming: _Incoming,
              transit: bool = False) -> dict[str, float]:
    """Least cost (:func:`_weight`) from every node that reaches ``dst`` to ``dst``.

    Dijkstra over the reversed edges as networkx's ``single_source_dijkstra_path_length`` runs
    it — the same heap order (cost, then push count) and edge order, so the same sums to the
    last bit — on integer lists built once (``incoming``), several times faster.

    Unless ``transit``, a GPU or host other than ``dst`` gets its cost (as a path's source: its
    first hop is free) but is never passed through: the search does not go on from it, so the
    cost of every other node counts only paths through no GPU or host but ``dst``."""
    if dst not in g:
        raise NoPathError(f"node {dst!r} is not in the topology")
    pred = incoming.pred
    stop = [False] * len(pred) if transit else incoming.is_endpoint
    src = incoming.at[dst]
    inf = float("inf")
    done = [False] * len(pred)
    seen = [inf] * len(pred)  # best cost pushed so far
    seen[src] = 0.0
    dist: dict[str, float] = {}
    nodes = incoming.nodes
    count = 0
    fringe = [(0.0, 0, src)]
    pop, push = heapq.heappop, heapq.heappush
    while fringe:
        d, _, v = pop(fringe)
        if done[v]:
            continue
        done[v] = True
        dist[nodes[v]] = d
        if stop[v] and v != src:
            continue  # a GPU or host other than dst: an endpoint only
        for u, cost in pred[v]:
            if done[u]:
                continue
            du = d + cost
            if du < seen[u]:
                seen[u] = du
                count += 1
                push(fringe, (du, count, u))
    return dist


def _least_path(g: nx.DiGraph, src: str, dst: str, dist: dict[str, float],
                avoid: frozenset[str] = frozenset()) -> list[str]:
    """From ``src``, always the smallest-named next node still on a least-cost path to ``dst``
    (``dist``: :func:`_costs_to`), never stepping onto a node of ``avoid`` but ``dst``."""
    if src not in dist:
        raise NoPathError(f"no path from {src!r} to {dst!r} in the topology")
    path = [src]
    u = src
    while u != dst:
        best = None
        for v in sorted(g.successors(u)):
            if v not in dist or (v in avoid and v != dst):
                continue
            d = _weight(u, v, g.edges[u, v]) + dist[v]
            if abs(d - dist[u]) <= 1e-12 * dist[u] + 1e-18:
                best = v
                break
        if best is None:  # pragma: no cover - a least-cost path always continues
            raise NoPathError(f"no path from {src!r} to {dst!r} in the topology")
        path.append(best)
        u = best
    return path


def _chosen_path(g: nx.DiGraph, src: str, dst: str, incoming: _Incoming,
                 dist: dict[str, float], full: dict[str, dict[str, float]]) -> list[str]:
    """The path :func:`gpu_path` chooses without ECMP, from ``dist`` (:func:`_costs_to` of
    ``dst``, through no other GPU or host); where that has no path from ``src``, over the whole graph
    (``full``: such costs per destination, filled here on demand)."""
    if src in dist:
        return _least_path(g, src, dst, dist, incoming.endpoints)
    whole = full.get(dst)
    if whole is None:
        whole = full[dst] = _costs_to(g, dst, incoming, transit=True)
    return _least_path(g, src, dst, whole)


def _info(g: nx.DiGraph, path: list[str]) -> PathInfo:
    edges = tuple(zip(path, path[1:], strict=False))
    lat = sum(float(g.edges[e].get("latency", 0.0)) for e in edges)
    bw = min((float(g.edges[e]["bandwidth"]) for e in edges), default=float("inf"))
    inter = any(g.nodes[n].get("kind") == "nic" for n in path)
    return PathInfo(tuple(path), edges, lat, bw, inter)


def paths_among(g: nx.DiGraph, nodes: list[str]) -> dict[tuple[str, str], PathInfo]:
    """Every path between two of ``nodes`` (ordered pairs, ``a != b``), chosen by the rule of
    :func:`gpu_path` without ECMP (least latency, then fewest hops, then the lexicographically
    smallest node sequence, through no GPU or host but the two endpoints unless no such path
    exists) — but for many pairs at once: one Dijkstra per destination over the reversed graph
    that does not go on from a GPU or host (:func:`_costs_to`), then from each source a walk that
    always takes the smallest-named next node still on a least-cost path and steps onto no other
    GPU or host. Hundreds of
    times faster than :func:`path_info` per pair (an expert-parallel group of 144 GPUs has
    20,592 pairs)."""
    out: dict[tuple[str, str], PathInfo] = {}
    incoming = _Incoming(g)
    full: dict[str, dict[str, float]] = {}
    for dst in nodes:
        dist = _costs_to(g, dst, incoming)
        for src in nodes:
            if src != dst:
                out[(src, dst)] = _info(g, _chosen_path(g, src, dst, incoming, dist, full))
    return out
