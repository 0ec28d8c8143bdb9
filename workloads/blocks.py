"""Trace blocks → engine blocks: split coarse hash blocks into the engine's KV pages.

Traces name their prompt's KV in coarse blocks (Mooncake: 512 tokens per hash id); the engine
pages KV in finer blocks (64 tokens by default, FlashMLA's page size). Splitting keeps sharing
exact: engine block ``j`` of trace block ``t`` gets the id ``t * ratio + j`` (``ratio =
trace_block_tokens // engine_block_tokens``), so two requests that share a trace block share all
its engine blocks, and different trace blocks never collide. A request's last trace block is
usually partial: it yields only ``ceil(input_tokens / engine_block_tokens)`` engine blocks in all.
Everything is vectorized over the CSR view (:class:`workloads.schema.FlatBlocks`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.errors import UserError
from workloads.schema import FlatBlocks, blocks_needed, flat_blocks, validate

#: The engine's default KV block (page) size [tokens]: FlashMLA pages hold 64 tokens
#: (deepseek-ai/FlashMLA README, "paged kvcache with block size 64").
ENGINE_BLOCK_TOKENS = 64


def block_ratio(trace_block_tokens: int, engine_block_tokens: int) -> int:
    """Engine blocks per trace block; ``UserError`` unless it is a positive whole number."""
    if engine_block_tokens <= 0 or trace_block_tokens <= 0:
        raise UserError("block sizes must be > 0 tokens")
    if trace_block_tokens % engine_block_tokens:
        raise UserError(
            f"engine block size {engine_block_tokens} tokens does not divide the trace's "
            f"{trace_block_tokens}-token blocks; choose a divisor (e.g. 64)"
        )
    return trace_block_tokens // engine_block_tokens


def refine_flat(
    blocks: FlatBlocks, input_tokens, trace_block_tokens, engine_block_tokens: int
) -> FlatBlocks:
    """Split every row's trace blocks into engine blocks (ids ``t * ratio + j``).

    Args:
        blocks: the trace's block ids per request (CSR).
        input_tokens: prompt length per request [tokens] (int array).
        trace_block_tokens: the trace's block size [tokens], scalar or per request (all rows
            must give the same ratio to ``engine_block_tokens``).
        engine_block_tokens: the engine's block size [tokens].
    """
    sizes = np.unique(np.asarray(trace_block_tokens, dtype=np.int64))
    ratios = {block_ratio(int(s), engine_block_tokens) for s in sizes}
    if len(ratios) > 1:
        raise UserError("block_tokens differs between requests; refine one block size at a time")
    ratio = ratios.pop() if ratios else 1
    inp = np.asarray(input_tokens, dtype=np.int64)
    # the largest engine id, id · ratio + ratio − 1, and the smallest, id · ratio, must fit in
    # an int64
    limit = (np.iinfo(np.int64).max - ratio + 1) // ratio
    if len(blocks.values) and blocks.values.max() > limit:
        raise UserError(f"block ids too large to refine without overflow (max id must be <= "
                        f"{limit}: (2^63 - {ratio}) / {ratio})")
    low = -((1 << 63) // ratio)
    if len(blocks.values) and blocks.values.min() < low:
        raise UserError(f"block ids too small to refine without overflow (min id must be >= "
                        f"{low}: -2^63 / {ratio})")
    counts = blocks_needed(inp, engine_block_tokens)
    if (counts > blocks.lengths() * ratio).any():
        raise UserError("a request has fewer trace blocks than its input_tokens need")
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    row = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    j = np.arange(offsets[-1], dtype=np.int64) - offsets[row]
    parent = blocks.values[blocks.offsets[row] + j // ratio]
    return FlatBlocks(offsets, parent * ratio + j % ratio)


def refine_block_ids(block_ids, input_tokens: int, trace_block_tokens: int = 512,
                     engine_block_tokens: int = ENGINE_BLOCK_TOKENS) -> np.ndarray:
    """One request's engine block ids from its trace block ids (see the module docstring)."""
    flat = FlatBlocks.from_lists([np.asarray(block_ids, dtype=np.int64)])
    return refine_flat(flat, [input_tokens], trace_block_tokens, engine_block_tokens).values


def refine_trace(df: pd.DataFrame,
                 engine_block_tokens: int = ENGINE_BLOCK_TOKENS) -> pd.DataFrame:
    """A copy of a trace at the engine's block size: ``block_ids`` split, ``spans`` rescaled."""
    flat = flat_blocks(df)
    inp = df["input_tokens"].to_numpy()
    bt = df["block_tokens"].to_numpy()
    fine = refine_flat(flat, inp, bt, engine_block_tokens)
    ratio = block_ratio(int(bt[0]), engine_block_tokens) if len(df) else 1
    counts = fine.lengths()
    out = df.copy()
    out["block_ids"] = pd.Series(fine.to_lists(), dtype=object, index=df.index)
    out["spans"] = pd.Series(
        [np.minimum(np.asarray(s, dtype=np.int64) * ratio, c) for s, c in zip(df["spans"], counts,
                                                                             strict=True)],
        dtype=object, index=df.index,
    )
    out["block_tokens"] = engine_block_tokens
    return validate(out, source="refined trace")
