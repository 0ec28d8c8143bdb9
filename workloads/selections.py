"""Selection traces: which blocks each (request, decode step, layer) read — replayable verbatim.

A selection trace is a Parquet table with one row per (``request_id``, ``step``, ``layer``) and
``block_ids`` (list<int64>) the engine blocks that layer's attention read at that decode step.
Users who recorded what a real indexer picked write one; ``kvfabric trace gen selections`` writes
what :class:`workloads.sparse.SparseSelector` would pick, to inspect, edit and replay.

Context at a step. Engine blocks are ``block_tokens`` tokens (64 by default). At decode step s
(0-based) a request's query attends to ``input_tokens + s`` tokens, i.e. the first
``ceil((input_tokens + s) / block_tokens)`` blocks of: its prompt blocks (the trace's
``block_ids`` refined to engine blocks, :mod:`workloads.blocks`), then blocks of generated
tokens, which have no id in the request trace and get the negative ids of
:func:`generated_block_id` (``-(request_id · 2^24 + j) - 1`` for the request's j-th block), so
they never collide with non-negative trace ids nor with another request's: request ids are in
``[0, 2^39)`` (:data:`workloads.schema.MAX_REQUEST_ID`, checked when a trace is read and when the
engine is handed one), where the product fits an int64. Loading checks that every
selected block belongs to that request's context at that step (:func:`validate_selections`).
The engine replays rows it finds (:class:`SelectionReplay`) and samples the others.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import UserError
from simulator.fileio import atomic_path
from workloads.blocks import ENGINE_BLOCK_TOKENS, refine_trace
from workloads.focus import draw_focus, drift_focus
from workloads.schema import flat_blocks
from workloads.sparse import SparseSelector

SELECTION_COLUMNS = ("request_id", "step", "layer", "block_ids")
_GEN_SHIFT = 24  # bits for a request's block index in generated ids (16 Mi blocks per request)


def generated_block_id(request_id, j):
    """Id of the ``j``-th context block of ``request_id`` when that block is not a prompt block
    (it holds generated tokens): negative, unique per (request, j). Scalars or arrays."""
    return -(np.asarray(request_id, dtype=np.int64) * (1 << _GEN_SHIFT)
             + np.asarray(j, dtype=np.int64)) - 1


def context_block_ids(prompt_ids: np.ndarray, input_tokens: int, step: int, request_id: int,
                      block_tokens: int = ENGINE_BLOCK_TOKENS) -> np.ndarray:
    """The engine block ids a request's query sees at decode step ``step`` (see module doc).

    Args:
        prompt_ids: the request's prompt blocks at ``block_tokens`` per block.
        input_tokens: prompt length [tokens]. step: decode step (0-based).
    """
    n = -(-(int(input_tokens) + int(step)) // block_tokens)
    have = len(prompt_ids)
    if n <= have:
        return np.asarray(prompt_ids[:n], dtype=np.int64)
    extra = generated_block_id(request_id, np.arange(have, n, dtype=np.int64))
    return np.concatenate([np.asarray(prompt_ids, dtype=np.int64), extra])


def popular_extent(spans: np.ndarray, n_blocks: int) -> int:
    """Blocks of the leading region whose files have Zipf popularity: up to the end of the last
    commutative span (the repository), or the whole prompt if there are none."""
    return int(spans[-1]) if len(spans) else int(n_blocks)


def generate_selections(
    rng: np.random.Generator,
    trace: pd.DataFrame,
    selector: SparseSelector | None = None,
    *,
    n_layers: int = 61,
    steps: int = 4,
    max_requests: int | None = 64,
    focus_regions: int = 4,
    focus_drift: float = 0.25,
    batch: int = 128,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """What ``selector`` would pick for the first ``max_requests`` requests of ``trace``.

    Args:
        rng: random stream. trace: a validated request trace (any block size dividing into
            the selector's ``block_tokens``).
        n_layers: layers per step (61: DeepSeek-V3.2, HF config ``num_hidden_layers``).
        steps: first decode steps per request (capped at its ``output_tokens``).
        max_requests: requests to cover (``None``: all).
        focus_regions, focus_drift: each session (agent) has a focus set of this many regions
            that drifts between its requests with this probability per region.
        batch: queries sampled per vectorized call. progress: called with (done, total).
    Returns:
        A DataFrame with :data:`SELECTION_COLUMNS`, sorted by (request, step, layer).
    """
    sel = selector or SparseSelector()
    bt = sel.block_tokens
    sub = trace if max_requests is None else trace.iloc[:max_requests]
    fine = refine_trace(sub, bt)
    flat = flat_blocks(fine)
    rid = fine["request_id"].to_numpy()
    inp = fine["input_tokens"].to_numpy()
    out = fine["output_tokens"].to_numpy()
    sessions = fine["session_id"].to_numpy()
    spans = fine["spans"].tolist()
    focus_of: dict[int, np.ndarray] = {}
    queries = []  # (row, step, context_ids, popular, focus)
    for i in range(len(fine)):
        prompt = flat.row(i)
        pop = popular_extent(spans[i], len(prompt))
        s = int(sessions[i])
        if s in focus_of:
            f = drift_focus(rng, focus_of[s], pop, focus_drift, sel.region_blocks)
        else:
            f = draw_focus(rng, pop, focus_regions, sel.region_blocks)
        focus_of[s] = f
        for step in range(min(steps, int(out[i]))):
            ctx = context_block_ids(prompt, int(inp[i]), step, int(rid[i]), bt)
            queries.append((i, step, ctx, pop, f))
    fwidth = max([len(q[4]) for q in queries] + [1])
    parts = []
    for start in range(0, len(queries), batch):
        chunk = queries[start : start + batch]
        focus = np.full((len(chunk), fwidth), -1, dtype=np.int64)
        for j, q in enumerate(chunk):
            focus[j, : len(q[4])] = q[4]
        picked = sel.select_batch(
            rng, np.array([len(q[2]) for q in chunk]), n_layers, focus=focus,
            popular_blocks=np.array([q[3] for q in chunk]))
        for j, (i, step, ctx, _, _) in enumerate(chunk):
            idx = picked.query(j)
            for layer in range(n_layers):
                parts.append((int(rid[i]), step, layer, ctx[idx[layer]]))
        if progress is not None:
            progress(min(start + batch, len(queries)), len(queries))
    df = pd.DataFrame(parts, columns=list(SELECTION_COLUMNS))
    df = df.astype({"request_id": np.int64, "step": np.int64, "layer": np.int64})
    df.attrs["block_tokens"] = bt
    return df


def write_selections(df: pd.DataFrame, path: str | os.PathLike,
                     block_tokens: int = ENGINE_BLOCK_TOKENS) -> Path:
    """Write a selection trace to Parquet atomically; the block size goes in its metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _check_columns(df, str(path))
    schema = pa.schema([("request_id", pa.int64()), ("step", pa.int64()), ("layer", pa.int64()),
                        ("block_ids", pa.list_(pa.int64()))],
                       metadata={b"kvfabric": json.dumps({"block_tokens": block_tokens}).encode()})
    table = pa.Table.from_pandas(df[list(SELECTION_COLUMNS)], schema=schema, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_selections(path: str | os.PathLike, trace: pd.DataFrame | None = None,
                    block_tokens: int | None = None) -> pd.DataFrame:
    """Read a selection trace; with ``trace``, validate it against the requests' contexts.

    ``block_tokens`` defaults to the file's metadata (else 64).
    """
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise UserError(f"{path}: not a readable Parquet selection trace ({exc})") from None
    if block_tokens is None:
        block_tokens = selection_block_tokens(table.schema) or ENGINE_BLOCK_TOKENS
    df = table.to_pandas()
    _check_columns(df, str(path))
    df["block_ids"] = pd.Series(
        [np.zeros(0, np.int64) if v is None else np.asarray(v, dtype=np.int64)
         for v in df["block_ids"]], dtype=object)
    df.attrs["block_tokens"] = block_tokens
    if trace is not None:
        validate_selections(df, trace, block_tokens, source=str(path))
    return df


def selection_block_tokens(schema) -> int | None:
    """The block size [tokens] a selection trace's Parquet ``schema`` records
    (:func:`write_selections`), or None where it records none."""
    meta = (schema.metadata or {}).get(b"kvfabric")
    return json.loads(meta)["block_tokens"] if meta else None


def _check_columns(df: pd.DataFrame, source: str) -> None:
    for col in SELECTION_COLUMNS:
        if col not in df.columns:
            raise UserError(f"{source}: column '{col}' missing; a selection trace needs "
                            f"{list(SELECTION_COLUMNS)}")
    for col in ("request_id", "step", "layer"):
        if not pd.api.types.is_integer_dtype(df[col]):
            raise UserError(f"{source}: column '{col}' is {df[col].dtype}, not integers")
        bad = np.flatnonzero(df[col].to_numpy() < 0)
        if len(bad) and col != "request_id":
            raise UserError(f"{source}: column '{col}', row {bad[0]}: negative value")


def validate_selections(sel: pd.DataFrame, trace: pd.DataFrame,
                        block_tokens: int = ENGINE_BLOCK_TOKENS, source: str = "selections",
                        *, traced_only: bool = False) -> None:
    """``UserError`` naming the row unless every row's request exists, its step is within the
    request's output, and every selected block is in the request's context at that step.
    ``traced_only``: rows of requests not in ``trace`` are skipped, not refused (a run cut by
    ``max_requests`` or a duration never replays them)."""
    _check_columns(sel, source)
    dup = sel.duplicated(["request_id", "step", "layer"]).to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise UserError(f"{source}: row {row}: (request_id, step, layer) repeats an earlier row; "
                        "give each layer of each step once")
    wanted = trace["request_id"].isin(pd.unique(sel["request_id"]))
    fine = refine_trace(trace[wanted.to_numpy()], block_tokens)
    flat = flat_blocks(fine)
    pos = {int(r): i for i, r in enumerate(fine["request_id"].to_numpy())}
    inp = fine["input_tokens"].to_numpy()
    out = fine["output_tokens"].to_numpy()
    rids = sel["request_id"].to_numpy()
    steps = sel["step"].to_numpy()
    contexts: dict[tuple[int, int], np.ndarray] = {}
    for row, (r, s, ids) in enumerate(zip(rids, steps, sel["block_ids"], strict=True)):
        i = pos.get(int(r))
        if i is None and traced_only:
            continue
        if i is None:
            raise UserError(f"{source}: row {row}: request_id {r} is not in the request trace")
        if s >= out[i]:
            raise UserError(f"{source}: row {row}: step {s} but request {r} generates only "
                            f"{out[i]} tokens (steps 0..{out[i] - 1})")
        key = (int(r), int(s))
        ctx = contexts.get(key)
        if ctx is None:
            ctx = np.sort(context_block_ids(flat.row(i), int(inp[i]), int(s), int(r),
                                            block_tokens))
            contexts[key] = ctx
        ids = np.asarray(ids, dtype=np.int64)
        j = np.searchsorted(ctx, ids)
        inside = (j < len(ctx)) & (ctx[np.minimum(j, len(ctx) - 1)] == ids)
        if not inside.all():
            bad = int(ids[np.flatnonzero(~inside)[0]])
            raise UserError(
                f"{source}: row {row} (request {r}, step {s}, layer {sel['layer'].iloc[row]}): "
                f"block {bad} is not in the request's context at that step; select only blocks "
                "of its prompt or its generated tokens")


@dataclass(frozen=True)
class SelectionReplay:
    """Lookup of recorded selections for the engine: ``blocks(request_id, step, layer)`` gives
    the recorded block ids or ``None`` (then the engine samples)."""

    index: dict[tuple[int, int, int], np.ndarray]

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> SelectionReplay:
        keys = zip(df["request_id"].to_numpy().tolist(), df["step"].to_numpy().tolist(),
                   df["layer"].to_numpy().tolist(), strict=True)
        return cls({k: np.asarray(v, dtype=np.int64) for k, v in zip(keys, df["block_ids"],
                                                                     strict=True)})

    def blocks(self, request_id: int, step: int, layer: int) -> np.ndarray | None:
        """Recorded block ids for (request, step, layer), or ``None``."""
        return self.index.get((int(request_id), int(step), int(layer)))

    def __len__(self) -> int:
        return len(self.index)
