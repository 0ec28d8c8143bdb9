"""Summary statistics of a trace, as printed by ``kvfabric trace stats``.

Keys (DESIGN.md): ``requests``, ``block_refs``, ``distinct_blocks``, ``reuse_fraction`` (share
of block references to a block an earlier request used), ``prefix_hit_fraction`` (share an
unbounded prefix cache would hit), ``input_tokens`` and ``output_tokens`` (each ``mean``,
``p50``, ``p99``; linear-interpolated percentiles). Extra keys: ``span_hit_fraction``
(position-independent reuse of commutative spans), ``duration`` [s], ``block_tokens`` and
``skipped_lines``.

Agentic keys (the aggregates GitHub Copilot's trace release publishes, so a generated trace
can be held to them, :mod:`workloads.presets`): ``sessions`` (distinct ``session_id``),
``turns_per_session``, ``calls_per_turn`` and ``tool_calls_per_turn`` (``None`` unless the
trace has ``turn_id`` / ``tool_calls``), ``prompt_tokens_per_call``,
``completion_tokens_per_call`` and ``cached_prompt_fraction`` — the share of prompt tokens an
unbounded prefix cache holds: per call, its leading prefix-hit blocks × block size, capped at
its prompt.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workloads.schema import flat_blocks
from workloads.spans import hits


def _summary(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"mean": 0.0, "p50": 0.0, "p99": 0.0}
    v = values.astype(np.float64)
    return {"mean": float(v.mean()), "p50": float(np.percentile(v, 50)),
            "p99": float(np.percentile(v, 99))}


def agentic_stats(df: pd.DataFrame, prefix_hit: np.ndarray | None = None) -> dict:
    """The agentic keys of :func:`trace_stats` (see the module docstring); ``prefix_hit`` is
    the per-reference prefix-hit mask if already computed."""
    n = len(df)
    inp = df["input_tokens"].to_numpy(np.int64)
    out = df["output_tokens"].to_numpy(np.int64)
    if prefix_hit is None:
        prefix_hit = hits(df).prefix
    row = flat_blocks(df).row_index()
    hit_blocks = np.bincount(row, weights=prefix_hit, minlength=n).astype(np.int64)
    cached = np.minimum(hit_blocks * df["block_tokens"].to_numpy(np.int64), inp)
    sessions = int(df["session_id"].nunique())
    turn_known = n > 0 and bool(df["turn_id"].notna().all())
    turns = int(df.groupby(["session_id", "turn_id"]).ngroups) if turn_known else 0
    tools_known = turn_known and bool(df["tool_calls"].notna().all())
    return {
        "sessions": sessions,
        "turns_per_session": turns / sessions if turn_known else None,
        "calls_per_turn": n / turns if turn_known else None,
        "tool_calls_per_turn": (float(df["tool_calls"].sum()) / turns if tools_known
                                else None),
        "prompt_tokens_per_call": float(inp.mean()) if n else 0.0,
        "completion_tokens_per_call": float(out.mean()) if n else 0.0,
        "cached_prompt_fraction": float(cached.sum() / inp.sum()) if n else 0.0,
    }


def trace_stats(df: pd.DataFrame) -> dict:
    """The summary of a validated trace (see the module docstring for the keys)."""
    h = hits(df)
    refs = len(h.reuse)
    frac = (lambda m: float(m.sum()) / refs) if refs else (lambda m: 0.0)
    distinct = int(pd.unique(np.concatenate(df["block_ids"].tolist())).size) if len(df) else 0
    arrival = df["arrival_at"].to_numpy()
    sizes = sorted({int(b) for b in df["block_tokens"].unique()})
    return {
        "requests": len(df),
        "block_refs": refs,
        "distinct_blocks": distinct,
        "reuse_fraction": frac(h.reuse),
        "prefix_hit_fraction": frac(h.prefix),
        "span_hit_fraction": frac(h.position_independent),
        "input_tokens": _summary(df["input_tokens"].to_numpy()),
        "output_tokens": _summary(df["output_tokens"].to_numpy()),
        "duration": float(arrival[-1] - arrival[0]) if len(arrival) else 0.0,
        "block_tokens": sizes[0] if len(sizes) == 1 else sizes,
        "skipped_lines": int(df.attrs.get("skipped_lines", 0)),
        **agentic_stats(df, h.prefix),
    }
