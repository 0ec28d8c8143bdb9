"""Drawing a topology with matplotlib: one horizontal layer per node kind.

Layers from top to bottom: core spines (tier 2), spines, leaves, NICs, PCIe switches, GPUs,
NVSwitches, hosts; within a layer nodes are spread evenly in natural name order, so a machine's
parts line up under each other. A full-duplex link is drawn once, coloured by link kind; an
optional path is drawn on top in red. Figures are built without pyplot (no global state) and
written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import networkx as nx
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from simulator.fileio import atomic_path

from .validate import TopologyError, natural_key

_LAYERS = [("spine", 2), ("spine", 1), ("leaf", 0), ("nic", 0), ("pcie_switch", 0), ("gpu", 0),
           ("nvswitch", 0), ("host", 0)]
_NODE_COLORS = {"spine": "#6a3d9a", "leaf": "#1f78b4", "nic": "#33a02c", "pcie_switch": "#b2df8a",
                "gpu": "#e31a1c", "nvswitch": "#ff7f00", "host": "#a6a6a6"}
_EDGE_COLORS = {"nvlink": "#ff7f00", "pcie": "#8fbc5a", "ib": "#1f78b4", "roce": "#6a3d9a",
                "ethernet": "#555555"}
_FORMATS = ("png", "svg", "pdf")
#: Above this many nodes, names are not printed (they would overlap).
MAX_LABELLED_NODES = 64


def _layer(data: dict) -> int:
    kind = data.get("kind")
    tier = int(data.get("tier", 1)) if kind == "spine" else 0
    for i, (k, t) in enumerate(_LAYERS):
        if k == kind and t == tier:
            return i
    return len(_LAYERS)


def layered_layout(g: nx.DiGraph) -> dict[str, tuple[float, float]]:
    """Node → (x, y): y = −layer (see the module docstring), x evenly spread in [0, 1]."""
    layers: dict[int, list[str]] = {}
    for n in sorted(g.nodes, key=natural_key):
        layers.setdefault(_layer(g.nodes[n]), []).append(n)
    pos = {}
    for layer, names in layers.items():
        for i, n in enumerate(names):
            pos[n] = ((i + 0.5) / len(names), -float(layer))
    return pos


def draw(g: nx.DiGraph, target: str | os.PathLike, path: list[str] | None = None) -> Path:
    """Draw ``g`` (and ``path``, a node list, if given) to ``target`` (.png, .svg or .pdf)."""
    target = Path(target)
    fmt = target.suffix.lower().lstrip(".")
    if fmt not in _FORMATS:
        raise TopologyError(
            f"{target}: cannot draw to a {target.suffix or 'suffix-less'} file; "
            f"use one of {', '.join('.' + f for f in _FORMATS)}"
        )
    if not target.parent.is_dir():
        raise TopologyError(f"{target}: folder {str(target.parent)!r} does not exist; create it")
    pos = layered_layout(g)
    widest = max((sum(1 for p in pos.values() if p[1] == y) for y in {p[1] for p in pos.values()}),
                 default=1)
    width = max(8.0, min(40.0, 0.7 * widest))
    fig = Figure(figsize=(width, 7), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_axis_off()
    u = nx.Graph()
    u.add_nodes_from(g.nodes)
    for a, b, d in sorted(g.edges(data=True), key=lambda e: (natural_key(e[0]), natural_key(e[1]))):
        if not u.has_edge(a, b):
            u.add_edge(a, b, kind=d.get("kind"))
    kinds = 0  # link kinds drawn: a legend only when there is one to show
    for kind, color in _EDGE_COLORS.items():
        edges = [(a, b) for a, b, d in u.edges(data=True) if d["kind"] == kind]
        if edges:
            kinds += 1
            nx.draw_networkx_edges(u, pos, edgelist=edges, ax=ax, edge_color=color, width=0.8,
                                   alpha=0.7, label=kind)
    colors = [_NODE_COLORS.get(g.nodes[n].get("kind"), "#000000") for n in u.nodes]
    nx.draw_networkx_nodes(u, pos, ax=ax, node_color=colors, node_size=60)
    if path and len(path) > 1:
        nx.draw_networkx_edges(u, pos, edgelist=list(zip(path, path[1:], strict=False)), ax=ax,
                               edge_color="red", width=2.5)
    if g.number_of_nodes() <= MAX_LABELLED_NODES:
        nx.draw_networkx_labels(u, pos, ax=ax, font_size=6)
    ax.set_title(str(g.graph.get("name", "topology")))
    if kinds:
        ax.legend(loc="upper right", fontsize=7, title="links")
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=fmt, bbox_inches="tight")
    return target
