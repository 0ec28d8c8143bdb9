"""Workloads: the request trace schema, real-trace loaders, generators, sparse selection, spans.

- :mod:`workloads.schema` — the trace DataFrame: built, written to Parquet, read; with
  :mod:`workloads.columns` (the columns, their CSR view) and :mod:`workloads.validation`.
- :mod:`workloads.loaders` — Mooncake JSONL, Azure CSV, our Parquet; the shipped traces.
- :mod:`workloads.blocks` — trace blocks → engine blocks (finer, sharing preserved).
- :mod:`workloads.sparse` — which blocks each layer's attention reads (dense, DSA, NSA).
- :mod:`workloads.agentic` — coding sub-agents over shared repositories (the simple fleet).
- :mod:`workloads.sessions` — structured agentic sessions: turns, calls, tool calls, sub-agents,
  compaction; :mod:`workloads.presets` fits them to published traffic (``copilot_2026``);
  :mod:`workloads.context` builds their growing prompts.
- :mod:`workloads.rag` — RAG-like requests whose retrieved documents are permuted.
- :mod:`workloads.nested` — nested generation: n answers that commute, then a judge.
- :mod:`workloads.selections` — step-level selection traces the engine can replay.
- :mod:`workloads.spans` — prefix-cache vs position-independent (span) hit rates.
- :mod:`workloads.stats` — the summary printed by ``kvfabric trace stats``.

Heavier modules are imported on first use, so ``import workloads`` stays cheap.
"""

from workloads.loaders import SHIPPED, load, load_azure, load_mooncake, shipped
from workloads.schema import (
    COLUMNS,
    FlatBlocks,
    flat_blocks,
    make_trace,
    read_trace,
    validate,
    write_trace,
)

__all__ = [
    "COLUMNS",
    "SHIPPED",
    "FlatBlocks",
    "flat_blocks",
    "load",
    "load_azure",
    "load_mooncake",
    "make_trace",
    "read_trace",
    "shipped",
    "validate",
    "write_trace",
]
