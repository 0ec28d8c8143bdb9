"""Topology TOML files and ``NAME:key=value`` specifications.

A topology file has one of two forms.

**A preset with parameters** (what the files in ``topologies/presets/`` are)::

    name = "two DGX H100"          # optional, shown in summaries
    preset = "dgx_h100"            # a key of topologies.PRESETS
    [params]                       # optional; every other parameter keeps its default
    nodes = 2
    oversubscription = 2.0

**An explicit graph**, for any other cluster::

    name = "two GPUs over PCIe"
    [[nodes]]
    name = "n0/gpu0"               # GPUs are named n{machine}/gpu{i} by convention
    kind = "gpu"                   # gpu, nvswitch, pcie_switch, nic, leaf, spine or host
    gpu = "H100"                   # GPU nodes only: a simulator.hardware.GPUS name
    node = 0                       # any further key = value becomes a node attribute (not
                                   # the file's own keys: links, nodes, params, preset)
    [[nodes]]
    name = "n0/pcie0"
    kind = "pcie_switch"
    [[links]]
    src = "n0/gpu0"
    dst = "n0/pcie0"
    link = "pcie5"                 # a simulator.hardware.LINKS name: supplies kind, bandwidth,
                                   # latency; any of the three given here overrides it
    # kind = "pcie"                # without `link`, all three are required:
    # bandwidth = 64e9             #   bytes per second (SI)
    # latency = 3e-7               #   seconds (SI)
    # directed = true              # only src -> dst (default: both directions, full duplex)

Every node a link names must be declared under ``[[nodes]]``. The graph is then checked by
:func:`topologies.validate`. Errors name the file, the table (``links[3]``) and the fix; a
syntax error names the parser's line and column.

:func:`dump` writes any valid graph in the explicit form (one full-duplex ``[[links]]`` entry
where both directions are equal, catalog links by name), so ``load(dump(g))`` gives ``g`` back
with equal node and edge attributes.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import networkx as nx
import tomli_w

from simulator.fileio import write_text
from simulator.hardware import GPUS, LINKS

from .builders import PRESETS, build
from .validate import TopologyError, _edge_order, natural_key, validate

#: Folder of the preset TOML files shipped with the package.
PRESET_DIR = Path(__file__).resolve().parent / "presets"

_TOP_KEYS = ("name", "description", "preset", "params", "nodes", "links")
_LINK_KEYS = ("src", "dst", "link", "kind", "bandwidth", "latency", "directed")
_EDGE_ATTRS = ("bandwidth", "latency", "kind", "link")
_SCALAR = (str, int, float, bool)


def _resolve(path: str | os.PathLike) -> Path:
    """``path``, or the shipped preset file when ``path`` is ``topologies/presets/X`` elsewhere."""
    p = Path(path)
    if not p.exists() and p.parts[:2] == ("topologies", "presets"):
        shipped = PRESET_DIR.joinpath(*p.parts[2:])
        if shipped.exists():
            return shipped
    return p


def load(path: str | os.PathLike) -> nx.DiGraph:
    """Read and validate a topology TOML file (see the module docstring for its format)."""
    p = _resolve(path)
    where = str(path)
    if p.is_dir():
        raise TopologyError(f"topology file {where!r} is a folder; give the .toml file's path")
    if not p.is_file():
        raise TopologyError(f"topology file {where!r} not found; give an existing .toml path")
    try:
        text = p.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) dropped
    except UnicodeDecodeError:
        raise TopologyError(f"{where}: not a UTF-8 text file; give a topology TOML file") from None
    return loads(text, source=where)


def loads(text: str, source: str = "<string>") -> nx.DiGraph:
    """Parse and validate topology TOML ``text``; ``source`` names it in error messages."""
    where = source
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"{where}: malformed TOML: {exc}; fix the syntax there") from None
    unknown = [k for k in doc if k not in _TOP_KEYS]
    if unknown:
        raise TopologyError(
            f"{where}: unknown top-level field {unknown[0]!r}; allowed: {', '.join(_TOP_KEYS)}"
        )
    if "preset" in doc:
        g = _load_preset(doc, where)
    elif "nodes" in doc or "links" in doc:
        g = _load_explicit(doc, where)
        validate(g, source=where)
    else:
        raise TopologyError(
            f"{where}: neither 'preset' nor [[nodes]]/[[links]] given; name a preset "
            f"({', '.join(PRESETS)}) or list the graph's nodes and links"
        )
    if isinstance(doc.get("name"), str):
        g.graph["name"] = doc["name"]
    g.graph["source"] = where
    return g


def _load_preset(doc: dict, where: str) -> nx.DiGraph:
    if "nodes" in doc or "links" in doc:
        raise TopologyError(
            f"{where}: give either 'preset' or [[nodes]]/[[links]], not both; "
            "dump the preset with topologies.dump() and edit that to extend it"
        )
    preset, params = doc["preset"], doc.get("params", {})
    if not isinstance(preset, str):
        raise TopologyError(f"{where}: field 'preset' must be a string naming a preset")
    if not isinstance(params, dict):
        raise TopologyError(f"{where}: field 'params' must be a table ([params])")
    try:
        return build(preset, **params)
    except TopologyError as exc:
        raise TopologyError(f"{where}: {exc}") from None


def _table_list(doc: dict, key: str, where: str) -> list[dict]:
    items = doc.get(key, [])
    if not isinstance(items, list) or not all(isinstance(t, dict) for t in items):
        raise TopologyError(f"{where}: '{key}' must be an array of tables ([[{key}]])")
    return items


def _load_explicit(doc: dict, where: str) -> nx.DiGraph:
    g = nx.DiGraph()
    for i, table in enumerate(_table_list(doc, "nodes", where)):
        at = f"{where}: nodes[{i}]"
        name = table.get("name")
        if not isinstance(name, str) or not name:
            raise TopologyError(f"{at}: field 'name' (a non-empty string) is missing")
        if name in g:
            raise TopologyError(f"{at}: node {name!r} is declared twice; keep one")
        attrs = {k: v for k, v in table.items() if k != "name"}
        for key, value in attrs.items():
            if key in ("preset", "params", "nodes", "links"):  # TOML puts a key written after
                # a [[nodes]] table into that node
                raise TopologyError(f"{at} ({name}): field {key!r} is the file's, not a node's; "
                                    "move it above the first [[nodes]] table")
            if not isinstance(value, _SCALAR):
                raise TopologyError(f"{at} ({name}): field {key!r} must be a string or a number")
        if attrs.get("kind") == "gpu" and isinstance(attrs.get("gpu"), str):
            upper = {k.upper(): k for k in GPUS}
            attrs["gpu"] = upper.get(attrs["gpu"].upper(), attrs["gpu"])
        g.add_node(name, **attrs)
    for i, table in enumerate(_table_list(doc, "links", where)):
        _add_link_table(g, table, f"{where}: links[{i}]")
    return g


def _add_link_table(g: nx.DiGraph, table: dict, at: str) -> None:
    unknown = [k for k in table if k not in _LINK_KEYS]
    if unknown:
        raise TopologyError(f"{at}: unknown field {unknown[0]!r}; allowed: {', '.join(_LINK_KEYS)}")
    ends = []
    for key in ("src", "dst"):
        node = table.get(key)
        if not isinstance(node, str):
            raise TopologyError(f"{at}: field {key!r} (a node name) is missing")
        if node not in g:
            raise TopologyError(f"{at}: node {node!r} is not declared; add it under [[nodes]]")
        ends.append(node)
    src, dst = ends
    if src == dst:
        raise TopologyError(f"{at}: link from {src!r} to itself; give two different nodes")
    attrs: dict = {}
    if "link" in table:
        spec = LINKS.get(table["link"]) if isinstance(table["link"], str) else None
        if spec is None:
            raise TopologyError(
                f"{at} ({src} -> {dst}): unknown link {table['link']!r}; "
                f"use one of {', '.join(LINKS)} or give kind, bandwidth and latency"
            )
        attrs = {"bandwidth": spec.bandwidth, "latency": spec.latency, "kind": spec.kind}
        attrs["link"] = spec.name
    for key in ("bandwidth", "latency", "kind"):
        if key in table:
            value = table[key]
            numeric = isinstance(value, int) and not isinstance(value, bool) and key != "kind"
            attrs[key] = float(value) if numeric else value
    directed = table.get("directed", False)
    if not isinstance(directed, bool):
        raise TopologyError(f"{at}: field 'directed' must be true or false")
    for u, v in [(src, dst)] + ([] if directed else [(dst, src)]):
        if g.has_edge(u, v):  # the later table would silently replace the earlier one
            raise TopologyError(f"{at}: {u} -> {v} is already linked by an earlier [[links]] "
                                "table; keep one (a link is full duplex unless directed = true)")
    g.add_edge(src, dst, **attrs)
    if not directed:
        g.add_edge(dst, src, **attrs)


# -- writing -----------------------------------------------------------------------------------

def _link_record(u: str, v: str, data: dict) -> dict:
    extra = [k for k in data if k not in _EDGE_ATTRS]
    if extra:
        raise TopologyError(
            f"edge {u!r} -> {v!r}: attribute {extra[0]!r} cannot be written to a topology file; "
            f"only {', '.join(_EDGE_ATTRS)} are kept"
        )
    rec: dict = {"src": u, "dst": v}
    spec = LINKS.get(data.get("link", ""))
    if spec is not None:
        rec["link"] = spec.name
    catalog = {} if spec is None else {
        "kind": spec.kind, "bandwidth": spec.bandwidth, "latency": spec.latency
    }
    for key in ("kind", "bandwidth", "latency"):
        if key in data and catalog.get(key) != data[key]:
            rec[key] = data[key]
    return rec


def to_toml(g: nx.DiGraph) -> str:
    """The explicit TOML form of ``g`` (see the module docstring)."""
    nodes = []
    for name in sorted(g.nodes, key=natural_key):
        rec = {"name": name}
        for key, value in g.nodes[name].items():
            if not isinstance(value, _SCALAR):
                raise TopologyError(
                    f"node {name!r}: attribute {key!r} = {value!r} cannot be written to a "
                    "topology file; only strings and numbers are kept"
                )
            rec[key] = value
        nodes.append(rec)
    links, done = [], set()
    for u, v in sorted(g.edges, key=_edge_order):
        if (u, v) in done:
            continue
        data = g.edges[u, v]
        rec = _link_record(u, v, data)
        if g.has_edge(v, u) and g.edges[v, u] == data:
            done.add((v, u))
        else:
            rec["directed"] = True
        links.append(rec)
    doc = {"name": str(g.graph.get("name", "topology")), "nodes": nodes, "links": links}
    return tomli_w.dumps(doc)


def dump(g: nx.DiGraph, path: str | os.PathLike) -> Path:
    """Write ``g`` to ``path`` in the explicit TOML form, atomically; returns the path."""
    return write_text(to_toml(g), path)


# -- NAME:key=value specs ------------------------------------------------------------------------

def _parse_value(text: str) -> object:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text.strip()


def parse_spec(spec: str | os.PathLike) -> nx.DiGraph:
    """A topology from a preset spec ``"dgx_h100:nodes=4,oversubscription=2"`` or a TOML path.

    A spec that ends in ``.toml``, contains a path separator or names an existing file is loaded
    with :func:`load`; otherwise it is ``PRESET[:key=value,…]`` with values parsed as integers,
    floats, ``true``/``false`` or strings.
    """
    text = os.fspath(spec)
    if text.endswith(".toml") or os.sep in text or "/" in text or Path(text).is_file():
        return load(text)
    name, _, rest = text.partition(":")
    params: dict[str, object] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise TopologyError(
                f"topology spec {text!r}: {item!r} is not key=value; "
                "write e.g. dgx_h100:nodes=4,oversubscription=2"
            )
        if key.strip() in params:
            raise TopologyError(f"topology spec {text!r}: {key.strip()} is given twice; give "
                                "each parameter once")
        params[key.strip()] = _parse_value(value)
    return build(name.strip(), **params)
