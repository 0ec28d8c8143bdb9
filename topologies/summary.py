"""Figures that describe a topology: counts, link groups, bisection bandwidth, one path.

Bisection bandwidth. The textbook definition — the minimum, over all ways of splitting the GPUs
into two equal halves, of the capacity crossing the split — is NP-hard to compute in general. We
report instead the *natural-order bisection*: the GPU list in natural order
(:func:`topologies.gpus`) is cut into its first half ``A`` (``n // 2`` GPUs) and the rest ``B``,
and the bisection bandwidth is the maximum flow [B/s] from ``A`` to ``B`` (edge capacity =
``bandwidth``; networkx max-flow), which equals the capacity of the minimum cut between them. For
the presets, whose machines are numbered along the fabric, this is the cut between the first and
second half of the cluster — the one oversubscription restricts. Every path counts, including
detours (GPU→PCIe→host→PCIe→GPU inside a machine), as it would for a max flow.
"""

from __future__ import annotations

from collections import Counter

import networkx as nx

from simulator.network.paths import path_info

from .validate import TopologyError, _edge_order, gpus, natural_key

_SOURCE = ("bisection", "source")
_SINK = ("bisection", "sink")


def bisection_bandwidth(g: nx.DiGraph) -> float | None:
    """Max flow [B/s] from the first half of :func:`gpus` to the second; None for < 2 GPUs."""
    names = gpus(g)
    if len(names) < 2:
        return None
    half = len(names) // 2
    h = nx.DiGraph()
    h.add_edges_from((u, v, {"capacity": float(d["bandwidth"])}) for u, v, d in g.edges(data=True))
    h.add_edges_from((_SOURCE, n) for n in names[:half])  # no capacity attribute: unbounded
    h.add_edges_from((n, _SINK) for n in names[half:])
    return float(nx.maximum_flow_value(h, _SOURCE, _SINK, capacity="capacity"))


def link_groups(g: nx.DiGraph) -> list[dict]:
    """Links grouped by (kind, catalog link, bandwidth [B/s], ``one_way``) with their ``count``.

    A full-duplex link (two directed edges with equal attributes) counts once; a one-way edge
    (no reverse, or a reverse that differs) counts once too, in a group of its own.
    """
    counts: Counter = Counter()
    for u, v in sorted(g.edges, key=_edge_order):
        d = g.edges[u, v]
        duplex = g.has_edge(v, u) and g.edges[v, u] == d
        if duplex and _edge_order((v, u)) < _edge_order((u, v)):
            continue
        counts[(d["kind"], d.get("link", ""), float(d["bandwidth"]), not duplex)] += 1
    return [
        {"kind": k, "link": link, "bandwidth": bw, "one_way": one_way, "count": n}
        for (k, link, bw, one_way), n in sorted(
            counts.items(), key=lambda kv: (kv[0][0], -kv[0][2], kv[0][1], kv[0][3]))
    ]


def path_report(g: nx.DiGraph, src: str, dst: str, ecmp: bool = False) -> dict:
    """The path :mod:`simulator.network.paths` picks from ``src`` to ``dst``, hop by hop.

    Keys: ``src``, ``dst``, ``nodes``, ``hops`` (each ``src``, ``dst``, ``kind``, ``link``,
    ``bandwidth`` [B/s], ``latency`` [s]), ``latency_time`` [s] (summed), ``bottleneck_bandwidth``
    [B/s], ``bottleneck`` (the first hop with that bandwidth), ``inter_node``.
    """
    for node in (src, dst):
        if node not in g:
            sample = ", ".join(gpus(g)[:2])
            raise TopologyError(
                f"node {node!r} is not in the topology; GPU names look like {sample} "
                "(`kvfabric topology show` lists the graph)"
            )
    info = path_info(g, src, dst, ecmp=ecmp)
    hops = []
    for u, v in info.edges:
        d = g.edges[u, v]
        hops.append({
            "src": u, "dst": v, "kind": d["kind"], "link": d.get("link", ""),
            "bandwidth": float(d["bandwidth"]), "latency": float(d["latency"]),
        })
    bottleneck = min(hops, key=lambda h: h["bandwidth"]) if hops else None
    return {
        "src": src,
        "dst": dst,
        "nodes": list(info.nodes),
        "hops": hops,
        "latency_time": info.latency_time,
        "bottleneck_bandwidth": info.bottleneck_bandwidth if hops else None,
        "bottleneck": bottleneck,
        "inter_node": info.inter_node,
    }


def summarize(g: nx.DiGraph, path: tuple[str, str] | None = None) -> dict:
    """A JSON-ready summary of ``g``.

    Keys: ``name``, ``nodes`` (count), ``edges`` (directed), ``node_kinds`` (kind → count),
    ``gpus`` (catalog name → count), ``gpu_count``, ``links`` (:func:`link_groups`),
    ``bisection_bandwidth`` [B/s] (natural-order bisection, see the module docstring; None below
    2 GPUs), ``bisection_halves`` (GPU counts of the two halves), ``aggregates`` when some
    switch nodes stand for several physical switches (a preset's spine layer and a fat tree's
    aggregation and core switches: node attribute ``switches``): ``{"nodes": aggregate nodes,
    "switches": physical switches they stand for}``, and ``path`` (:func:`path_report`) when
    ``path`` = (src, dst) is given.
    """
    names = gpus(g)
    kinds = Counter(d.get("kind", "?") for _, d in g.nodes(data=True))
    models = Counter(g.nodes[n].get("gpu", "?") for n in names)
    out = {
        "name": str(g.graph.get("name", "topology")),
        "nodes": g.number_of_nodes(),
        "edges": g.number_of_edges(),
        "node_kinds": {k: kinds[k] for k in sorted(kinds, key=natural_key)},
        "gpus": {k: models[k] for k in sorted(models)},
        "gpu_count": len(names),
        "links": link_groups(g),
        "bisection_bandwidth": bisection_bandwidth(g),
        "bisection_halves": [len(names) // 2, len(names) - len(names) // 2],
    }
    counts = [d["switches"] for _, d in g.nodes(data=True)
              if isinstance(d.get("switches"), int) and not isinstance(d["switches"], bool)]
    if counts:
        out["aggregates"] = {"nodes": len(counts), "switches": sum(counts)}
    if path is not None:
        out["path"] = path_report(g, *path)
    return out
