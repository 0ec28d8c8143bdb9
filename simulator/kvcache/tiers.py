"""Where a KV block lives: the tiers of :class:`~simulator.kvcache.directory.BlockDirectory`."""

HBM, HOST, DROPPED = 0, 1, 2  # a holder GPU's HBM, its machine's host DRAM, nowhere (recompute)
UNPLACED = -1  # the holder of a block that is not placed (or was dropped)
