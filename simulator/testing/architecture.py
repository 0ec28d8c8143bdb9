"""The package map from the code's own imports: who imports whom, layers, circles, the picture.

Every module of ``simulator``, ``topologies`` and ``workloads`` is parsed with :mod:`ast` (never
imported); each ``import`` / ``from … import`` statement anywhere in it — at the top, inside a
function, under ``TYPE_CHECKING`` — is an edge. ``from pkg import name`` is an edge to the
submodule ``pkg.name`` when that is a module, else to ``pkg``. A *unit* is a package or module
directly under ``simulator`` (``simulator.network``, ``simulator.units`` …) or a whole top-level
package (``topologies``, ``workloads``); ``simulator/__init__.py`` (the lazy facade) is no unit.

The allowed direction is written in ``docs/architecture.md``, in a fenced block tagged
``layers`` — one line per layer, lowest first: ``N: unit unit …``. A unit may import units of a
*lower* layer only (and itself); :func:`violations` lists every import against that, and
:func:`circles` every import circle, among units and among modules.

    python -m simulator.testing.architecture            # check; print the map; exit 1 if broken
    python -m simulator.testing.architecture --draw docs/images/architecture.png

The picture carries the edge list it was drawn from in its PNG metadata (``kvfabric-imports``),
so a test can tell when the code has moved on and the picture is stale (:func:`picture_edges`).
"""

from __future__ import annotations

import ast
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import networkx as nx

#: The repository root (``simulator/testing/architecture.py`` → three levels up).
ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("simulator", "topologies", "workloads")
#: PNG text key holding the drawn edges.
META_KEY = "kvfabric-imports"


def module_name(path: Path, root: Path) -> str:
    """``simulator/network/fabric.py`` → ``simulator.network.fabric`` (``__init__`` dropped)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of :data:`PACKAGES` under ``root``: dotted name → file."""
    out = {}
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            out[module_name(f, root)] = f
    return out


def _targets(node: ast.AST, here: str, is_pkg: bool, known: dict[str, Path]) -> list[str]:
    """The modules one import statement names (only those of :data:`PACKAGES`)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = here.split(".") if is_pkg else here.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ""
        names = []
        for a in node.names:
            sub = f"{mod}.{a.name}"
            names.append(sub if sub in known else mod)
    else:
        return []
    out = []
    for n in names:
        # "import a.b.c" depends on the longest known module it names
        parts = n.split(".")
        while parts and ".".join(parts) not in known:
            parts.pop()
        if parts and parts[0] in PACKAGES:
            out.append(".".join(parts))
    return out


def module_graph(root: Path = ROOT) -> nx.DiGraph:
    """Modules as nodes; an edge ``a → b`` when ``a`` imports ``b`` (attribute ``lines``)."""
    known = modules(root)
    g = nx.DiGraph()
    g.add_nodes_from(known)
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            for t in _targets(node, name, is_pkg, known):
                if t != name:
                    if not g.has_edge(name, t):
                        g.add_edge(name, t, lines=[])
                    g.edges[name, t]["lines"].append(node.lineno)
    return g


def unit_of(module: str) -> str | None:
    """The unit a module belongs to (None for the ``simulator`` facade)."""
    parts = module.split(".")
    if parts[0] != "simulator":
        return parts[0]
    return ".".join(parts[:2]).removeprefix("simulator.") if len(parts) > 1 else None


def unit_graph(mg: nx.DiGraph) -> nx.DiGraph:
    """Units as nodes; an edge when a module of one imports a module of the other (attribute
    ``via``: the module pairs)."""
    g = nx.DiGraph()
    for m in mg.nodes:
        u = unit_of(m)
        if u is not None:
            g.add_node(u)
    for a, b in mg.edges:
        ua, ub = unit_of(a), unit_of(b)
        if ua is None or ub is None or ua == ub:
            continue
        if not g.has_edge(ua, ub):
            g.add_edge(ua, ub, via=[])
        g.edges[ua, ub]["via"].append((a, b))
    return g


def read_layers(doc: Path = ROOT / "docs" / "architecture.md") -> dict[str, int]:
    """Unit → layer from the ```` ```layers ```` block of ``doc``."""
    text = doc.read_text(encoding="utf-8")
    m = re.search(r"```layers\n(.*?)```", text, re.S)
    if m is None:
        raise ValueError(f"{doc}: no ```layers block")
    out: dict[str, int] = {}
    for line in m.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        level, _, units = line.partition(":")
        for u in units.split():
            if u in out:
                raise ValueError(f"{doc}: unit {u!r} is in two layers")
            out[u] = int(level)
    return out


def violations(ug: nx.DiGraph, layers: dict[str, int]) -> list[str]:
    """Imports against the layering (or from/to a unit the layers do not name), one line each."""
    out = []
    for u in sorted(ug.nodes):
        if u not in layers:
            out.append(f"{u}: not in any layer of docs/architecture.md; add it to one")
    for a, b in sorted(ug.edges):
        if a in layers and b in layers and layers[b] >= layers[a]:
            a_mod, b_mod = ug.edges[a, b]["via"][0]
            out.append(f"{a} (layer {layers[a]}) imports {b} (layer {layers[b]}): "
                       f"{a_mod} → {b_mod}")
    return out


def circles(g: nx.DiGraph) -> list[list[str]]:
    """Every import circle of ``g`` (its strongly connected components of two or more)."""
    return sorted(sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1)


def edge_list(ug: nx.DiGraph) -> list[list[str]]:
    """The unit graph's edges, sorted (what the picture records)."""
    return sorted([a, b] for a, b in ug.edges)


def draw(ug: nx.DiGraph, layers: dict[str, int], path: Path) -> Path:
    """The package map as a PNG: one row per layer (lowest at the bottom), arrows from importer
    to imported; the drawn edge list goes into the PNG's metadata."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simulator.fileio import atomic_path

    rows: dict[int, list[str]] = {}
    for u in sorted(ug.nodes):
        rows.setdefault(layers.get(u, -1), []).append(u)
    pos = {}
    for level, units in sorted(rows.items()):
        if len(units) == 1:  # zig-zag lone units so arrows between them do not cross boxes
            pos[units[0]] = (0.35 if level % 2 else 0.65, level)
            continue
        for i, u in enumerate(units):
            pos[u] = ((i + 1) / (len(units) + 1), level)
    fig, ax = plt.subplots(figsize=(11, 8))
    cmap = plt.get_cmap("tab10")
    edge_colors = [cmap(layers.get(a, 0) % 10) for a, _ in ug.edges]
    packages = {p.name for p in (ROOT / "simulator").iterdir() if p.is_dir()}
    colors = ["#c6dbef" if u in packages else "#fdd0a2" if u in ("topologies", "workloads")
              else "#e5e5e5" for u in ug.nodes]
    nx.draw_networkx_edges(ug, pos, ax=ax, arrows=True, arrowsize=9, width=0.7, alpha=0.55,
                           edge_color=edge_colors, connectionstyle="arc3,rad=0.06",
                           node_size=2300)
    nx.draw_networkx_nodes(ug, pos, ax=ax, node_color=colors, node_size=2300,
                           edgecolors="#444444", linewidths=0.6)
    nx.draw_networkx_labels(ug, pos, ax=ax, font_size=6.5)
    for level in rows:
        ax.text(-0.02, level, f"layer {level}", ha="right", va="center", fontsize=8,
                color="#555555")
    ax.set_xlim(-0.12, 1.02)
    ax.set_title("kvfabric: packages (blue), modules (grey), top-level packages (orange);\n"
                 "arrows point from importer to imported (coloured by the importer's layer), "
                 "always down", fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    meta = {META_KEY: json.dumps(edge_list(ug))}
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata=meta)
    plt.close(fig)
    return Path(path)


def picture_edges(path: Path) -> list[list[str]] | None:
    """The edge list a picture made by :func:`draw` was drawn from (None if it has none)."""
    from PIL import Image

    with Image.open(path) as img:
        raw = img.info.get(META_KEY)
    return json.loads(raw) if raw else None


def check(root: Path = ROOT) -> list[str]:
    """Every problem with the import structure: layer violations and circles (unit and module)."""
    mg = module_graph(root)
    ug = unit_graph(mg)
    problems = violations(ug, read_layers(root / "docs" / "architecture.md"))
    problems += [f"import circle among units: {' ↔ '.join(c)}" for c in circles(ug)]
    problems += [f"import circle among modules: {' ↔ '.join(c)}" for c in circles(mg)]
    return problems


def main(argv: Iterable[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Check (and draw) kvfabric's package map.")
    ap.add_argument("--draw", type=Path, help="write the picture here (PNG)")
    args = ap.parse_args(list(argv) if argv is not None else None)
    mg = module_graph()
    ug = unit_graph(mg)
    layers = read_layers()
    for level in sorted(set(layers.values())):
        units = sorted(u for u, lv in layers.items() if lv == level)
        deps = sorted({b for u in units if u in ug for b in ug.successors(u)})
        print(f"layer {level:2d}: {' '.join(units):42s} imports {' '.join(deps) or '-'}")
    problems = check()
    for p in problems:
        print(p)
    if args.draw is not None:
        print(f"wrote {draw(ug, layers, args.draw)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
