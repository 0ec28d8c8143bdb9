"""Preset topology builders: GPU servers joined by a switch fabric, as ``networkx.DiGraph``.

Every builder returns a fresh graph with the conventions of :mod:`topologies`:

- machine ``m`` contributes ``n{m}/gpu{i}`` (kind ``gpu``, attr ``gpu`` = catalog name), one
  ``n{m}/nvswitch`` when it has more than one GPU (NVLink to each GPU), one ``n{m}/pcie{i}`` PCIe
  switch per GPU, with the GPU's NIC ``n{m}/nic{i}`` behind it when the machine is networked, and
  one ``n{m}/host`` (host DRAM tier) attached to every PCIe switch. Server nodes carry ``node=m``.
- switches carry ``tier`` (leaves 0, spines 1, fat-tree cores 2), used to layer drawings;
- every physical link is two directed edges with ``bandwidth`` [B/s], ``latency`` [s], ``kind``
  and ``link`` (the :data:`simulator.hardware.LINKS` name its figures come from).

Because per-hop latencies come from the catalog, least-latency path choice
(:mod:`simulator.network.paths`) sends traffic between two GPUs of one machine over NVLink
(GPU→NVSwitch→GPU, 2 hops) rather than over PCIe and the host (4 hops), and traffic between
machines over GPU→PCIe switch→NIC→leaf(→spine→leaf)→NIC→PCIe switch→GPU — the GPU's own PCIe
switch and NIC at each end, because a path passes through no GPU or host but its endpoints
(on RoCE, whose switch hops cost 0.5 µs, a relay through a neighbour GPU or the host to that
GPU's NIC would otherwise be shorter than the spine detour between rails).

The rail-optimized fabric (:func:`dgx_h100`, :func:`lamina_h100_h20`): machines are grouped into
scalable units of ``nodes_per_su`` machines; NIC ``i`` of every machine of unit ``s`` connects to
leaf ``su{s}/leaf{i}``; every leaf connects to the spine layer, modelled as ONE aggregate node
``spine`` (kind ``spine``, tier 1, attribute ``switches`` = the count of physical spines it stands
for). A leaf's link to it is the bundle of all its uplink ports: its bandwidth is the leaf's
downlink capacity (attached NICs × NIC rate) / ``oversubscription``. This models ideal load
balance over the spines — what InfiniBand adaptive routing approximates — because the fluid
model cannot split one flow over several paths, and one node per spine with single-path
routing (no ECMP by default) put every inter-leaf pair on the lexicographically first spine:
only 1/``spines`` of a leaf's uplink was usable, and a "non-blocking" fabric blocked. Not
modelled: the per-flow ECMP hash collisions of a RoCE fabric (several flows hashed onto one
spine link). ``spines`` is still accepted and checked, and kept in the graph's ``params`` and
on the aggregate node, but the capacities do not depend on it.

The fat tree (:func:`fat_tree`) is aggregated the same way, per pod and at the core (see its
docstring).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import networkx as nx

from simulator.hardware import GPUS, LINKS

from .validate import TopologyError, validate

#: The NVIDIA DGX SuperPOD (H100) reference architecture groups 32 DGX nodes into one
#: scalable unit sharing a set of rail leaf switches.
SUPERPOD_SU_NODES = 32

#: A DGX H100 holds 8 H100 SXM GPUs with one ConnectX-7 NDR NIC each (REFERENCE.md; DGX docs).
DGX_GPUS = 8

#: The most GPUs, and the most of any counted part (spines, machines per unit), a preset
#: builds. A limit of this tool, not of the hardware: at 65,536 GPUs a DGX fabric's graph has
#: ~0.2 M vertices and ~0.7 M links and takes ~10 s and ~1 GB to build, and a simulated minute
#: of 1,024 GPUs already takes minutes (docs/performance.md). Past it a parameter such as
#: ``nodes=1e6`` would exhaust memory building the graph; it is refused before any work.
MAX_COUNT = 65_536

#: The one node standing for a rail fabric's whole spine layer (see the module docstring).
SPINE = "spine"


def _add_link(g: nx.DiGraph, a: str, b: str, link: str, bandwidth: float | None = None) -> None:
    """Add the full-duplex catalog link ``link`` between ``a`` and ``b`` (two directed edges).

    ``bandwidth`` [B/s] overrides the catalog rate (for bundles of ports); latency and kind
    always come from the catalog.
    """
    spec = LINKS[link]
    attrs = {
        "bandwidth": float(spec.bandwidth if bandwidth is None else bandwidth),
        "latency": float(spec.latency),
        "kind": spec.kind,
        "link": spec.name,
    }
    g.add_edge(a, b, **attrs)
    g.add_edge(b, a, **attrs)


def _add_server(
    g: nx.DiGraph, m: int, gpus: int, gpu: str, nvlink: str, pcie: str, nic: str | None
) -> list[str]:
    """Add machine ``m`` (see the module docstring); return its NIC names (empty if ``nic`` is None)."""
    p = f"n{m}"
    host = f"{p}/host"
    g.add_node(host, kind="host", node=m)
    if gpus > 1:
        g.add_node(f"{p}/nvswitch", kind="nvswitch", node=m)
    nics = []
    for i in range(gpus):
        name, sw = f"{p}/gpu{i}", f"{p}/pcie{i}"
        g.add_node(name, kind="gpu", gpu=gpu, node=m)
        g.add_node(sw, kind="pcie_switch", node=m)
        if gpus > 1:
            _add_link(g, name, f"{p}/nvswitch", nvlink)
        _add_link(g, name, sw, pcie)
        _add_link(g, sw, host, pcie)
        if nic is not None:
            n = f"{p}/nic{i}"
            g.add_node(n, kind="nic", node=m)
            _add_link(g, sw, n, pcie)
            nics.append(n)
    return nics


def _rail_fabric(
    g: nx.DiGraph,
    server_nics: list[list[str]],
    nic: str,
    oversubscription: float,
    nodes_per_su: int,
    spines: int,
) -> None:
    """Join machines' NICs by rail-optimized leaves and spines (see the module docstring)."""
    rate = LINKS[nic].bandwidth
    g.add_node(SPINE, kind="spine", tier=1, switches=spines)
    for start in range(0, len(server_nics), nodes_per_su):
        su = start // nodes_per_su
        unit = server_nics[start : start + nodes_per_su]
        rails = max(len(nics) for nics in unit)
        for r in range(rails):
            leaf = f"su{su}/leaf{r}"
            g.add_node(leaf, kind="leaf", tier=0)
            attached = [nics[r] for nics in unit if r < len(nics)]
            for n in attached:
                _add_link(g, n, leaf, nic)
            # all the leaf's uplink ports to the spines as one bundle (ideal load balance)
            _add_link(g, leaf, SPINE, nic, bandwidth=len(attached) * rate / oversubscription)


# -- parameter checks (messages name the preset and parameter) --------------------------------

def _need(ok: bool, preset: str, param: str, value: object, what: str) -> None:
    if not ok:
        raise TopologyError(f"preset {preset}: parameter {param}={value!r}: {what}")


def _check_link(preset: str, param: str, name: str, kinds: tuple[str, ...]) -> None:
    spec = LINKS.get(name)
    fits = [k for k, s in sorted(LINKS.items()) if s.kind in kinds]
    _need(
        spec is not None and spec.kind in kinds,
        preset,
        param,
        name,
        f"must be a catalog link of kind {'/'.join(kinds)}: one of {', '.join(fits)}",
    )


def _check_gpu(preset: str, param: str, name: str) -> None:
    _need(name in GPUS, preset, param, name, f"unknown GPU; use one of {', '.join(sorted(GPUS))}")


def _check_count(preset: str, param: str, value: int, low: int = 1) -> None:
    _need(low <= value <= MAX_COUNT, preset, param, value,
          f"must be an integer from {low} to {MAX_COUNT:,}")


def _check_gpus(preset: str, param: str, value: object, gpus: int) -> None:
    _need(gpus <= MAX_COUNT, preset, param, value,
          f"builds {gpus:,} GPUs; a preset builds at most {MAX_COUNT:,}")


#: The largest leaf oversubscription (downlink / uplink capacity) a preset builds: built fabrics
#: run 1:1 to about 8:1; at 1e300 the spine links carried 1e-289 B/s and a run's step times
#: overflowed (1e296 s, overflow warnings, exit 0).
MAX_OVERSUBSCRIPTION = 1e3


def _check_fabric(preset: str, oversubscription: float, nodes_per_su: int, spines: int) -> None:
    _need(0 < oversubscription <= MAX_OVERSUBSCRIPTION, preset, "oversubscription",
          oversubscription, f"must be > 0 and <= {MAX_OVERSUBSCRIPTION:g}")
    _check_count(preset, "nodes_per_su", nodes_per_su)
    _check_count(preset, "spines", spines)


# -- presets -----------------------------------------------------------------------------------

def single_node(
    gpus: int = 8, gpu: str = "H100", nvlink: str = "nvlink4", pcie: str = "pcie5"
) -> nx.DiGraph:
    """One machine: GPUs on one NVSwitch, a PCIe switch per GPU and a host; no network.

    Args:
        gpus: GPUs in the machine.
        gpu: GPU catalog name.
        nvlink: catalog link of each GPU↔NVSwitch link.
        pcie: catalog link of the GPU↔PCIe switch↔host links.
    """
    _check_count("single_node", "gpus", gpus)
    _check_gpu("single_node", "gpu", gpu)
    _check_link("single_node", "nvlink", nvlink, ("nvlink",))
    _check_link("single_node", "pcie", pcie, ("pcie",))
    g = nx.DiGraph(name="single_node")
    _add_server(g, 0, gpus, gpu, nvlink, pcie, None)
    return g


def dgx_h100(
    nodes: int = 2,
    oversubscription: float = 1.0,
    nic: str = "ib_ndr",
    pcie: str = "pcie5",
    nvlink: str = "nvlink4",
    nodes_per_su: int = SUPERPOD_SU_NODES,
    spines: int = 2,
    gpu: str = "H100",
) -> nx.DiGraph:
    """DGX H100 machines (8 H100, one NIC per GPU behind a PCIe switch) on a rail-optimized fabric.

    Args:
        nodes: DGX machines.
        oversubscription: leaf downlink capacity / leaf uplink capacity (1 = non-blocking).
        nic: catalog link of the NICs and the fabric (ib_ndr; ib_xdr makes PCIe the bottleneck).
        pcie: catalog link of the GPU↔PCIe switch↔NIC/host links (pcie4 makes it the bottleneck).
        nvlink: catalog link of each GPU↔NVSwitch link.
        nodes_per_su: machines sharing one set of rail leaves (32 in the DGX SuperPOD).
        spines: spine switches joining all leaves — modelled as one aggregate spine node with
            each leaf's uplinks as one bundle (ideal load balance over the spines, as adaptive
            routing approximates; per-flow ECMP hash collisions are not modelled), so the count
            is recorded but changes no capacity.
        gpu: GPU catalog name: ``"H200"`` gives a DGX H200, the same machine with 141 GB GPUs
            (the same NVLink4, PCIe Gen5 and one 400G NIC per GPU: NVIDIA DGX H200 datasheet).
    """
    p = "dgx_h100"
    _check_count(p, "nodes", nodes)
    _check_gpus(p, "nodes", nodes, nodes * DGX_GPUS)
    _check_gpu(p, "gpu", gpu)
    _check_link(p, "nic", nic, ("ib", "roce", "ethernet"))
    _check_link(p, "pcie", pcie, ("pcie",))
    _check_link(p, "nvlink", nvlink, ("nvlink",))
    _check_fabric(p, oversubscription, nodes_per_su, spines)
    g = nx.DiGraph(name=p)
    server_nics = [_add_server(g, m, DGX_GPUS, gpu, nvlink, pcie, nic) for m in range(nodes)]
    _rail_fabric(g, server_nics, nic, oversubscription, nodes_per_su, spines)
    return g


def lamina_h100_h20(
    h100_nodes: int = 1,
    h20_nodes: int = 1,
    gpus_per_node: int = 8,
    nic: str = "roce400",
    pcie: str = "pcie5",
    oversubscription: float = 1.0,
    spines: int = 2,
) -> nx.DiGraph:
    """Lamina's testbed shape: H100 machines then H20 machines, one RoCE NIC per GPU.

    Machines ``n0 … n{h100_nodes-1}`` hold H100s (model workers), the following ones H20s
    (attention workers); each GPU has its own 400G NIC behind a PCIe switch (Lamina §6) and all
    NICs join one rail-optimized RoCE leaf/spine fabric.

    Args:
        h100_nodes: machines of H100s.
        h20_nodes: machines of H20s.
        gpus_per_node: GPUs per machine, on one NVSwitch (NVLink4).
        nic: catalog link of the NICs and the fabric.
        pcie: catalog link of the GPU↔PCIe switch↔NIC/host links.
        oversubscription: leaf downlink capacity / leaf uplink capacity.
        spines: spine switches joining all leaves — modelled as one aggregate spine node, as in
            :func:`dgx_h100`: recorded, changes no capacity.
    """
    p = "lamina_h100_h20"
    _check_count(p, "h100_nodes", h100_nodes, low=0)
    _check_count(p, "h20_nodes", h20_nodes, low=0)
    _need(h100_nodes + h20_nodes >= 1, p, "h100_nodes", h100_nodes, "need at least one machine")
    _check_count(p, "gpus_per_node", gpus_per_node)
    _check_gpus(p, "gpus_per_node", gpus_per_node, (h100_nodes + h20_nodes) * gpus_per_node)
    _check_link(p, "nic", nic, ("ib", "roce", "ethernet"))
    _check_link(p, "pcie", pcie, ("pcie",))
    _check_fabric(p, oversubscription, 1, spines)
    g = nx.DiGraph(name=p)
    kinds = ["H100"] * h100_nodes + ["H20"] * h20_nodes
    server_nics = [
        _add_server(g, m, gpus_per_node, kind, "nvlink4", pcie, nic) for m, kind in enumerate(kinds)
    ]
    _rail_fabric(g, server_nics, nic, oversubscription, len(kinds), spines)
    return g


def fat_tree(k: int = 4, link: str = "ib_ndr", gpu: str = "H100", pcie: str = "pcie5") -> nx.DiGraph:
    """A k-ary fat tree (Al-Fares et al., SIGCOMM 2008) whose k³/4 hosts are one-GPU machines.

    Pod ``p`` has ``k/2`` edge switches ``pod{p}/edge{e}`` (kind leaf); edge switch ``e`` serves
    machines ``n{(p·k/2 + e)·k/2 + h}``. Each machine is a GPU behind a PCIe switch with a NIC and
    a host, like the other presets.

    Above the edge switches the tree is aggregated, as the rail fabric's spines are (module
    docstring): a pod's ``k/2`` aggregation switches are ONE node ``pod{p}/agg`` (kind spine,
    tier 1, attribute ``switches`` = k/2), joined to each of the pod's edge switches by the bundle
    of that edge switch's ``k/2`` uplinks (k/2 × the link rate); the ``(k/2)²`` core switches are
    ONE node ``core`` (kind spine, tier 2, ``switches`` = (k/2)²), joined to each pod's
    aggregate by the bundle of the pod's ``(k/2)²`` aggregation-to-core links. Every capacity of
    the physical tree is kept (its bisection too); what the aggregate adds is ideal load balance
    over the equal paths (the fat tree is rearrangeably non-blocking). With one node per switch
    and single-path routing every inter-pod pair took ``agg0`` and ``core0``, so 8 flows across
    the k = 4 bisection took four times the non-blocking time. Per-flow ECMP hash collisions are
    not modelled.

    Args:
        k: switch port count (even, >= 2).
        link: catalog link of the NICs and every switch link.
        gpu: GPU catalog name.
        pcie: catalog link of the GPU↔PCIe switch↔NIC/host links.
    """
    p = "fat_tree"
    _need(k >= 2 and k % 2 == 0, p, "k", k, "must be an even integer >= 2")
    _check_gpus(p, "k", k, k**3 // 4)
    _check_link(p, "link", link, ("ib", "roce", "ethernet"))
    _check_gpu(p, "gpu", gpu)
    _check_link(p, "pcie", pcie, ("pcie",))
    g = nx.DiGraph(name=p)
    half = k // 2
    rate = LINKS[link].bandwidth
    g.add_node("core", kind="spine", tier=2, switches=half * half)
    m = 0
    for pod in range(k):
        agg = f"pod{pod}/agg"
        g.add_node(agg, kind="spine", tier=1, switches=half)
        # the pod's half × half aggregation-to-core links, one bundle
        _add_link(g, agg, "core", link, bandwidth=half * half * rate)
        for e in range(half):
            edge = f"pod{pod}/edge{e}"
            g.add_node(edge, kind="leaf", tier=0)
            # the edge switch's half uplinks (one to each aggregation switch), one bundle
            _add_link(g, edge, agg, link, bandwidth=half * rate)
            for _ in range(half):
                (nic,) = _add_server(g, m, 1, gpu, "nvlink4", pcie, link)
                _add_link(g, nic, edge, link)
                m += 1
    return g


#: Preset name → builder. Every builder takes keyword parameters with defaults only.
PRESETS: dict[str, Callable[..., nx.DiGraph]] = {
    "single_node": single_node,
    "dgx_h100": dgx_h100,
    "fat_tree": fat_tree,
    "lamina_h100_h20": lamina_h100_h20,
}


def preset_params(name: str) -> dict[str, object]:
    """Parameter name → default value of preset ``name``."""
    sig = inspect.signature(_preset(name))
    return {p.name: p.default for p in sig.parameters.values()}


def _preset(name: str) -> Callable[..., nx.DiGraph]:
    try:
        return PRESETS[name]
    except KeyError:
        raise TopologyError(
            f"unknown topology preset {name!r}; use one of {', '.join(PRESETS)} "
            "or the path of a topology TOML file"
        ) from None


def _coerce(preset: str, param: str, value: object, default: object) -> object:
    """``value`` converted to the type of ``default`` where that loses nothing."""
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        ok = isinstance(value, int)
    elif isinstance(default, float):
        ok = isinstance(value, int | float)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise TopologyError(
            f"preset {preset}: parameter {param}={value!r} must be of type "
            f"{type(default).__name__} (default {default!r})"
        )
    return value


def build(name: str, **params: object) -> nx.DiGraph:
    """Build and validate preset ``name`` with keyword ``params`` (others keep their defaults).

    Raises :class:`~topologies.validate.TopologyError` (a ``UserError``) for an unknown preset,
    an unknown parameter or a bad value, naming it and the accepted ones.
    """
    builder = _preset(name)
    defaults = preset_params(name)
    kwargs = {}
    for key in sorted(params):
        if key not in defaults:
            raise TopologyError(
                f"preset {name}: unknown parameter {key!r}; its parameters are "
                + ", ".join(f"{k} (default {v!r})" for k, v in defaults.items())
            )
        kwargs[key] = _coerce(name, key, params[key], defaults[key])
    g = builder(**kwargs)
    g.graph["name"] = name
    g.graph["params"] = {**defaults, **kwargs}
    return validate(g, source=f"preset {name}")
