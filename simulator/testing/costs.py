"""Hypothesis strategies and an oracle for the closed-form cost model.

- :func:`two_node_graph` — a small hand-built cluster (two machines, a GPU pair each, NVSwitch,
  PCIe switch, NIC, one leaf) with chosen link rates, independent of the preset builders.
- :func:`architectures`, :func:`rounds`, :func:`bandwidths` — strategies for properties.
- :func:`replay_round` — the oracle: plays one round's phases as SimPy processes on a real
  :class:`~simulator.network.Fabric` and :class:`~simulator.gpu.GPU` runtime, one after the other,
  and returns the *simulated* phase times. With one round at a time (no contention) they must
  equal :class:`~simulator.costmodel.CostModel`'s closed form.
"""

from __future__ import annotations

import networkx as nx
from hypothesis import strategies as st

from simulator.costmodel import CostModel, Phases
from simulator.models import MODELS, Architecture
from simulator.units import GBps, Gbps, us

__all__ = ["architectures", "bandwidths", "replay_round", "rounds", "two_node_graph"]


def two_node_graph(nvlink: float = GBps(450), pcie: float = GBps(64), net: float = Gbps(400),
                   gpu: str = "H100", net_kind: str = "ib") -> nx.DiGraph:
    """Two machines ``n0``, ``n1`` with GPUs ``n{m}/gpu0``, ``n{m}/gpu1`` (rates in B/s).

    GPUs reach each other in a machine through ``n{m}/nvswitch``; ``gpu0`` reaches the network
    through ``n{m}/pcie0`` → ``n{m}/nic0`` → ``leaf0``. Latencies: 0.25 µs NVLink, 0.3 µs PCIe,
    0.2 µs network hop (the catalog's assumed per-hop values).
    """
    g = nx.DiGraph()

    def link(a: str, b: str, bw: float, lat: float, kind: str) -> None:
        g.add_edge(a, b, bandwidth=bw, latency=lat, kind=kind)
        g.add_edge(b, a, bandwidth=bw, latency=lat, kind=kind)

    g.add_node("leaf0", kind="leaf")
    for m in range(2):
        sw, pc, nic = f"n{m}/nvswitch", f"n{m}/pcie0", f"n{m}/nic0"
        g.add_node(sw, kind="nvswitch")
        g.add_node(pc, kind="pcie_switch")
        g.add_node(nic, kind="nic")
        for i in range(2):
            g.add_node(f"n{m}/gpu{i}", kind="gpu", gpu=gpu)
            link(f"n{m}/gpu{i}", sw, nvlink, us(0.25), "nvlink")
        link(f"n{m}/gpu0", pc, pcie, us(0.3), "pcie")
        link(pc, nic, pcie, us(0.3), "pcie")
        link(nic, "leaf0", net, us(0.2), net_kind)
    return g


def architectures() -> st.SearchStrategy[Architecture]:
    """A catalog model (either KV layout) or a custom two-coefficient one."""
    catalog = st.sampled_from(sorted(MODELS)).map(MODELS.__getitem__)
    catalog = st.tuples(catalog, st.sampled_from(["bf16", "fp8"])).map(
        lambda t: t[0].with_kv_dtype(t[1]))
    custom = st.builds(
        lambda layers, payload, moved, flops: Architecture.custom(
            "custom", layers, payload, moved, attention_flops_per_token=flops),
        st.integers(1, 128), st.floats(64.0, 1e6), st.floats(16.0, 1e5),
        st.sampled_from([0.0, 1e4, 3e5]))
    return st.one_of(catalog, custom)


def rounds() -> st.SearchStrategy[dict]:
    """Keyword arguments of one round: ``blocks``, ``batch``, ``reuse``."""
    return st.fixed_dictionaries({
        "blocks": st.integers(0, 4096),
        "batch": st.integers(1, 64),
        "reuse": st.sampled_from([1.0, 1.0, 2.0, 8.0]),
    })


def bandwidths() -> st.SearchStrategy[float]:
    """Line rates from 1 GB/s to 1 TB/s [B/s]."""
    return st.floats(1e9, 1e12)


def replay_round(cm: CostModel, option: str, src: str, dst: str, blocks: float,
                 batch: float = 1, heads: int | None = None) -> Phases:
    """Simulate one round (reuse 1) phase by phase on a Fabric and GPU runtimes; its phases [s].

    route: one message home→owner of the query bytes (its probe is the time until bytes start
    to flow, i.e. overhead + latency, its transfer the rest), the owner's attention kernel, the
    return message, the merge kernel at home. fetch: the request message, the block message, the
    home's attention + install kernels, the merge. local: the recompute + attention kernels, the
    merge.
    """
    from simulator.costmodel.contention import concurrent_rounds

    return concurrent_rounds(cm, option, [(src, dst)], blocks, batch, heads)[0]
