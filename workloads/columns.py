"""The trace's columns: what each one holds, and the list columns' in-memory (CSR) view.

Every loader and generator in :mod:`workloads` returns a DataFrame with exactly these columns
(in this order):

===============  ===========================  ================================================
column           dtype                        meaning
===============  ===========================  ================================================
``arrival_at``   float64                      arrival time [s] from the trace start; sorted
``request_id``   int64                        unique per row, in ``[0, 2^39)`` (it names the
                                              blocks its generated tokens fill)
``session_id``   int64                        conversation / agent the request belongs to
                                              (traces without sessions: the request id)
``parent_id``    Int64 (nullable)             request that spawned this one (sub-agent
                                              fan-out); ``<NA>`` for roots
``input_tokens`` int64                        prompt length [tokens], > 0
``output_tokens`` int64                       generated tokens, > 0
``block_ids``    list<int64> (object column   the prompt's KV blocks in order;
                 of int64 numpy arrays)       ``len == ceil(input_tokens / block_tokens)``.
                                              Equal ids mean equal content (shareable KV)
``block_tokens`` int64                        tokens per block of ``block_ids`` (> 0)
``repo_id``      Int64 (nullable)             repository the prompt reads, ``<NA>`` if none
``spans``        list<int64> (object column)  commutative spans as flattened half-open
                                              block-index pairs ``[s0, e0, s1, e1, …]``:
                                              each ``[s, e)`` is a segment whose position in
                                              the prompt does not matter (a RAG document, a
                                              repository file); sorted, non-overlapping.
                                              Empty when the prompt is order-sensitive
``turn_id``      Int64 (nullable)             the user turn of its session the call serves
                                              (structured agentic traces), else ``<NA>``
``context_id``   Int64 (nullable)             the agent context the prompt extends: within
                                              one context each prompt is a prefix of the
                                              next; a new context starts with a sub-agent
                                              or after compaction. ``<NA>`` if unknown
``tool_calls``   Int64 (nullable)             tool calls the response made (run before the
                                              context's next call), ``<NA>`` if unknown
``after_id``     Int64 (nullable)             the request this one waits for: it enters
                                              ``after_time`` after that request finishes
                                              (a sub-agent after its plan, a turn after the
                                              previous one), not at ``arrival_at``; an
                                              earlier row. ``<NA>``: it enters at
                                              ``arrival_at``
``after_time``   float64                      seconds from ``after_id``'s finish to this
                                              request's entry (spawn stagger, tool time);
                                              >= 0, 0 when ``after_id`` is null
===============  ===========================  ================================================

With ``after_id`` the engine keeps the trace causal: a request cannot start before the one it
follows has produced what it reads. ``arrival_at`` is then the time the generator expected
(the nominal schedule), used for ordering rows; the run records when the request entered.

``block_ids`` and ``spans`` are pyarrow ``list<int64>`` columns on disk and object columns of
int64 arrays in memory. The engine iterates per request, so :class:`FlatBlocks` (built by
:func:`flat_blocks`) gives a CSR view — ``offsets`` and ``values`` numpy arrays — built once.

This module is the schema as data (the names in order, which are integers, nullable or lists,
the bound on request ids, how many blocks a prompt needs); checking a frame's values against it
is :mod:`workloads.validation`, building, writing and reading one :mod:`workloads.schema`. It
imports nothing of :mod:`workloads`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Column names in order.
COLUMNS: tuple[str, ...] = (
    "arrival_at",
    "request_id",
    "session_id",
    "parent_id",
    "input_tokens",
    "output_tokens",
    "block_ids",
    "block_tokens",
    "repo_id",
    "spans",
    "turn_id",
    "context_id",
    "tool_calls",
    "after_id",
    "after_time",
)

#: The int64 columns, the nullable Int64 ones and the list<int64> ones.
INT_COLUMNS = ("request_id", "session_id", "input_tokens", "output_tokens", "block_tokens")
NULLABLE_COLUMNS = ("parent_id", "repo_id", "turn_id", "context_id", "tool_calls", "after_id")
LIST_COLUMNS = ("block_ids", "spans")

#: An empty list cell (no spans, a null list): shared, so never written to.
EMPTY = np.zeros(0, dtype=np.int64)

#: The largest request id: a request's id names the blocks its generated tokens fill
#: (:func:`workloads.selections.generated_block_id`, ``-(id · 2^24 + j) − 1`` in int64), which
#: stay distinct from every other request's only for ids in ``[0, 2^39)``.
MAX_REQUEST_ID = (1 << 39) - 1


@dataclass(frozen=True)
class FlatBlocks:
    """CSR view of a list column: row ``i`` is ``values[offsets[i]:offsets[i + 1]]``.

    Attributes:
        offsets: int64 array of length ``rows + 1``, ``offsets[0] == 0``, non-decreasing.
        values: int64 array of length ``offsets[-1]``.
    """

    offsets: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, i: int) -> np.ndarray:
        """The values of row ``i`` (a view, do not modify)."""
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        """Number of values per row (int64)."""
        return np.diff(self.offsets)

    def row_index(self) -> np.ndarray:
        """For each value, the row it belongs to (int64, length ``len(values)``)."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths())

    def to_lists(self) -> list[np.ndarray]:
        """The rows as a list of int64 arrays (for a DataFrame object column)."""
        return np.split(self.values, self.offsets[1:-1]) if len(self) else []

    @classmethod
    def from_lists(cls, rows: Sequence) -> FlatBlocks:
        """Build from a sequence of integer sequences (arrays or lists)."""
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if offsets[-1]:
            values = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows if len(r)])
        else:
            values = EMPTY.copy()
        return cls(offsets, values.astype(np.int64, copy=False))


def blocks_needed(input_tokens, block_tokens):
    """``ceil(input_tokens / block_tokens)`` as int64 (scalars or arrays)."""
    t = np.asarray(input_tokens, dtype=np.int64)
    b = np.asarray(block_tokens, dtype=np.int64)
    return -(-t // b)


def flat_blocks(df: pd.DataFrame, column: str = "block_ids") -> FlatBlocks:
    """CSR view (``offsets``, ``values``) of a list column of a trace, in row order."""
    return FlatBlocks.from_lists(df[column].tolist())
