"""The network: a max-min fair fluid Fabric of flows on a topology graph, clocked by SimPy.

- :mod:`~simulator.network.fabric` — :class:`Fabric`: transfers, fair shares, link records;
- :mod:`~simulator.network.flows` — flows, flow classes, routes, transfer records;
- :mod:`~simulator.network.shared` — flows that share links: classes, completions, the timer;
- :mod:`~simulator.network.lone` — lone flows: a message alone on idle links, one event;
- :mod:`~simulator.network.maxmin` — progressive filling over a changed component;
- :mod:`~simulator.network.accounts` — the counters, and messages an engine timed itself;
- :mod:`~simulator.network.linkstats` — per-link bytes, busy time and load timeline;
- :mod:`~simulator.network.paths` — deterministic (or ECMP) paths and their summaries.

May import: ``units``, ``errors``, ``hardware``, ``spill``. Exports :class:`Fabric`,
:class:`TransferRecord`, :class:`FlowState`, ``REL_TOL``, :class:`PathInfo`,
:class:`PathCache`, :class:`NoPathError`, :func:`path_info`, :func:`gpu_path`.
"""

from simulator.network.fabric import Fabric
from simulator.network.flows import FlowState, TransferRecord
from simulator.network.paths import NoPathError, PathCache, PathInfo, gpu_path, path_info
from simulator.network.shared import REL_TOL

__all__ = ["REL_TOL", "Fabric", "FlowState", "NoPathError", "PathCache", "PathInfo",
           "TransferRecord", "gpu_path", "path_info"]
