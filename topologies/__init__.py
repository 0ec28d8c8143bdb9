"""Cluster topologies as ``networkx.DiGraph``: preset builders, TOML files, checks, summaries.

    import topologies
    g = topologies.build("dgx_h100", nodes=2)
    g = topologies.load("topologies/presets/lamina_h100_h20.toml")
    g = topologies.parse_spec("dgx_h100:nodes=4,oversubscription=2")   # or a TOML path
    topologies.gpus(g)        # ['n0/gpu0', 'n0/gpu1', …, 'n1/gpu0', …]

Conventions every graph follows (checked by :func:`validate`):

- GPU nodes are named ``n{machine}/gpu{i}``; node attribute ``kind`` is one of ``gpu``,
  ``nvswitch``, ``pcie_switch``, ``nic``, ``leaf``, ``spine``, ``host``; GPU nodes also carry
  ``gpu``, a :data:`simulator.hardware.GPUS` name (look the spec up with
  ``simulator.hardware.gpu(g.nodes[n]["gpu"])``).
- Edges carry ``bandwidth`` [B/s], ``latency`` [s] and ``kind`` (``nvlink``, ``pcie``, ``ib``,
  ``roce``, ``ethernet``), plus ``link`` (the catalog link) when built from the catalog. Every
  physical link is two directed edges, one each way.
- Each preset machine has a ``n{m}/host`` node (host DRAM tier) reached over PCIe.

Modules: :mod:`~topologies.builders` (presets, :data:`PRESETS`, :func:`build`),
:mod:`~topologies.loader` (TOML format, :func:`load`, :func:`dump`, :func:`parse_spec`),
:mod:`~topologies.validate`, :mod:`~topologies.summary` (bisection bandwidth, paths),
:mod:`~topologies.draw` (matplotlib, imported on first use).
"""

from __future__ import annotations

from .builders import PRESETS, build, preset_params
from .loader import PRESET_DIR, dump, load, loads, parse_spec, to_toml
from .summary import bisection_bandwidth, link_groups, path_report, summarize
from .validate import NODE_KINDS, TopologyError, gpus, natural_key, validate

__all__ = [
    "NODE_KINDS",
    "PRESETS",
    "PRESET_DIR",
    "TopologyError",
    "bisection_bandwidth",
    "build",
    "dump",
    "gpus",
    "link_groups",
    "load",
    "loads",
    "natural_key",
    "parse_spec",
    "path_report",
    "preset_params",
    "summarize",
    "to_toml",
    "validate",
]
