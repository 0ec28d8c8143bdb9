"""Checks that a topology graph is usable by the simulator, and the natural order of its GPUs.

A valid topology is a :class:`networkx.DiGraph` where

- every node has ``kind`` in :data:`NODE_KINDS`; GPU nodes also carry ``gpu``, a name from
  :data:`simulator.hardware.GPUS`;
- every directed edge has ``bandwidth`` [B/s] (finite, at least
  :data:`simulator.hardware.MIN_BANDWIDTH`, 1 B/s), ``latency`` [s] (finite, >= 0) and ``kind``
  in :data:`simulator.hardware.LINK_KINDS`;
- there is at least one GPU and every GPU can reach every other GPU.

:func:`validate` raises a :class:`~simulator.errors.UserError` for the *first* problem found, in a
deterministic order (nodes and edges in natural name order), naming the source (file or preset),
the node or edge, and what to do.
"""

from __future__ import annotations

import math
import re

import networkx as nx

from simulator.errors import UserError
from simulator.hardware import GPUS, LINK_KINDS, MIN_BANDWIDTH

#: Allowed values of the node attribute ``kind``.
NODE_KINDS: tuple[str, ...] = ("gpu", "nvswitch", "pcie_switch", "nic", "leaf", "spine", "host")

_DIGITS = re.compile(r"(\d+)")


class TopologyError(UserError):
    """A topology graph, file or preset specification that cannot be used."""


def natural_key(name: str) -> tuple:
    """Sort key ordering embedded numbers by value: ``n2/gpu10`` after ``n2/gpu9``."""
    parts = _DIGITS.split(str(name))
    return tuple((0, int(p), "") if p.isdecimal() else (1, 0, p) for p in parts)


def gpus(g: nx.DiGraph) -> list[str]:
    """GPU node names in natural order: ``n0/gpu0, n0/gpu1, …, n1/gpu0, …``."""
    return sorted((n for n, d in g.nodes(data=True) if d.get("kind") == "gpu"), key=natural_key)


def _edge_order(edge: tuple[str, str]) -> tuple:
    return (natural_key(edge[0]), natural_key(edge[1]))


def _check_node(name: str, data: dict, where: str) -> None:
    kind = data.get("kind")
    if kind is None:
        raise TopologyError(
            f"{where}: node {name!r} has no attribute 'kind'; "
            f"set kind to one of {', '.join(NODE_KINDS)}"
        )
    if kind not in NODE_KINDS:
        raise TopologyError(
            f"{where}: node {name!r} has unknown kind {kind!r}; use one of {', '.join(NODE_KINDS)}"
        )
    if kind == "gpu":
        model = data.get("gpu")
        if model is None:
            raise TopologyError(
                f"{where}: GPU node {name!r} has no attribute 'gpu'; "
                f"set gpu to one of {', '.join(sorted(GPUS))}"
            )
        if model not in GPUS:
            raise TopologyError(
                f"{where}: GPU node {name!r} has unknown gpu {model!r}; "
                f"use one of {', '.join(sorted(GPUS))}"
            )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _check_edge(u: str, v: str, data: dict, where: str) -> None:
    edge = f"edge {u!r} -> {v!r}"
    for attr in ("bandwidth", "latency", "kind"):
        if attr not in data:
            raise TopologyError(
                f"{where}: {edge} has no attribute {attr!r}; give it {attr} "
                "(or name a catalog link, which supplies bandwidth, latency and kind)"
            )
    if data["kind"] not in LINK_KINDS:
        raise TopologyError(
            f"{where}: {edge} has unknown link kind {data['kind']!r}; "
            f"use one of {', '.join(LINK_KINDS)}"
        )
    bw = _number(data["bandwidth"])
    if bw is None or not math.isfinite(bw) or bw < MIN_BANDWIDTH:  # 1e-300 is no rate
        raise TopologyError(
            f"{where}: {edge} has bandwidth {data['bandwidth']!r}; "
            f"it must be a finite number >= {MIN_BANDWIDTH:g} in bytes per second (SI)"
        )
    lat = _number(data["latency"])
    if lat is None or not math.isfinite(lat) or lat < 0:
        raise TopologyError(
            f"{where}: {edge} has latency {data['latency']!r}; "
            "it must be a finite number >= 0 in seconds"
        )


def _check_reachability(g: nx.DiGraph, names: list[str], where: str) -> None:
    first = names[0]
    reach = nx.descendants(g, first)
    for other in names[1:]:
        if other not in reach:
            raise TopologyError(
                f"{where}: GPU {first!r} cannot reach GPU {other!r}; "
                "connect them (add the missing links, in both directions)"
            )
    back = nx.ancestors(g, first)
    for other in names[1:]:
        if other not in back:
            raise TopologyError(
                f"{where}: GPU {other!r} cannot reach GPU {first!r}; "
                "add the missing link directions"
            )


def validate(g: nx.DiGraph, source: str = "topology") -> nx.DiGraph:
    """Check ``g`` (see the module docstring); return it unchanged, or raise :class:`TopologyError`.

    Args:
        g: the topology graph.
        source: what to name in messages: a file path or ``"preset NAME"``.
    """
    if not isinstance(g, nx.DiGraph):
        raise TopologyError(f"{source}: a topology must be a networkx.DiGraph, not {type(g)}")
    for name in sorted(g.nodes, key=natural_key):
        _check_node(name, g.nodes[name], source)
    for u, v in sorted(g.edges, key=_edge_order):
        _check_edge(u, v, g.edges[u, v], source)
    names = gpus(g)
    if not names:
        raise TopologyError(f"{source}: the topology has no GPU nodes; add nodes of kind 'gpu'")
    _check_reachability(g, names, source)
    return g
