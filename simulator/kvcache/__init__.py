"""The KV cache: which GPU (and tier) holds each block, placement, capacity and eviction.

- :mod:`~simulator.kvcache.directory` — :class:`BlockDirectory`: keys → dense indices,
  holders, tiers, copies per layer slot;
- :mod:`~simulator.kvcache.placement` — the placement schemes: a new block's first holder;
- :mod:`~simulator.kvcache.invariants` — the directory's bookkeeping checked by a scan;
- :mod:`~simulator.kvcache.eviction` — :class:`Eviction`, the part the directory holds to make
  room (LRU copies, demotions to the host tier, host drops);
- :mod:`~simulator.kvcache.blocklists` — per-GPU / per-machine block lists (no scans);
- :mod:`~simulator.kvcache.host_order` — per machine, a heap of its host-tier blocks' last uses:
  a full host's least recently used blocks without a scan;
- :mod:`~simulator.kvcache.copystore` — :class:`CopyStore`, each GPU's copies per layer slot and
  their last uses (dense while small; paged on large clusters, where a GPU gets a page of the
  block index space only where it keeps copies);
- :mod:`~simulator.kvcache.tiers` — the tier codes.

May import: nothing of the simulator (numpy only). Exports :class:`BlockDirectory`,
:class:`DirectoryConfig`, :func:`capacity_blocks`, :func:`stable_hash`, the tier codes ``HBM``,
``HOST``, ``DROPPED``, ``UNPLACED`` and ``WATERMARK_DIVISOR``.
"""

from simulator.kvcache.directory import (
    BlockDirectory,
    DirectoryConfig,
    capacity_blocks,
    stable_hash,
)
from simulator.kvcache.eviction import WATERMARK_DIVISOR, Eviction, least_recent
from simulator.kvcache.tiers import DROPPED, HBM, HOST, UNPLACED

__all__ = ["DROPPED", "HBM", "HOST", "UNPLACED", "WATERMARK_DIVISOR", "BlockDirectory",
           "DirectoryConfig", "Eviction", "capacity_blocks", "least_recent", "stable_hash"]
