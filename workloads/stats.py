"""Summary statistics of a trace, as printed by ``kvfabric trace stats``.

Keys (DESIGN.md): ``requests``, ``block_refs``, ``distinct_blocks``, ``reuse_fraction`` (share
of block references to a block an earlier request used), ``prefix_hit_fraction`` (share an
unbounded prefix cache would hit), ``input_tokens`` and ``output_tokens`` (each ``mean``,
``p50``, ``p99``; linear-interpolated percentiles). Extra keys: ``span_hit_fraction``
(position-independent reuse of commutative spans), ``duration`` [s], ``block_tokens`` and
``skipped_lines``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workloads.spans import hit_rates


def _summary(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"mean": 0.0, "p50": 0.0, "p99": 0.0}
    v = values.astype(np.float64)
    return {"mean": float(v.mean()), "p50": float(np.percentile(v, 50)),
            "p99": float(np.percentile(v, 99))}


def trace_stats(df: pd.DataFrame) -> dict:
    """The summary of a validated trace (see the module docstring for the keys)."""
    rates = hit_rates(df)
    distinct = int(pd.unique(np.concatenate(df["block_ids"].tolist())).size) if len(df) else 0
    arrival = df["arrival_at"].to_numpy()
    sizes = sorted({int(b) for b in df["block_tokens"].unique()})
    return {
        "requests": len(df),
        "block_refs": rates["block_refs"],
        "distinct_blocks": distinct,
        "reuse_fraction": rates["reuse_fraction"],
        "prefix_hit_fraction": rates["prefix_hit_fraction"],
        "span_hit_fraction": rates["span_hit_fraction"],
        "input_tokens": _summary(df["input_tokens"].to_numpy()),
        "output_tokens": _summary(df["output_tokens"].to_numpy()),
        "duration": float(arrival[-1] - arrival[0]) if len(arrival) else 0.0,
        "block_tokens": sizes[0] if len(sizes) == 1 else sizes,
        "skipped_lines": int(df.attrs.get("skipped_lines", 0)),
    }
