"""Decision maps: which option the closed form picks over a grid of (blocks × fabric parameter).

A map evaluates :meth:`CostModel.compare` on a grid — selected blocks per query against the line
rate of every path (``over="bandwidth"``) or against every message's overhead + latency
(``over="probe"``) — and returns a flat DataFrame (one row per grid point) for plots and tables.
The boundary between route and fetch is also given in closed form, by
:meth:`CostModel.crossover`, so a map's colours and its boundary line come from the same formula
by two different routes (a check in itself).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from simulator.costmodel.closed_form import CostModel
from simulator.errors import UserError

AXES = ("bandwidth", "probe")


def _variant(cm: CostModel, over: str, value: float) -> CostModel:
    """``cm`` with every path's line rate, or every message's overhead + latency, set."""
    if over == "bandwidth":
        return cm.replace(bandwidth=value)
    if over == "probe":
        return cm.replace(message_fixed_time=value)
    raise UserError(f"over={over!r}: give one of {', '.join(AXES)}")


def decision_map(cm: CostModel, src: str, dst: str, blocks: Sequence[float],
                 values: Sequence[float], over: str = "bandwidth", batch: float = 1,
                 reuse: float = 1.0) -> pd.DataFrame:
    """The closed form's verdict at every (blocks, value) point.

    Args:
        over: ``"bandwidth"`` (values are line rates [B/s] applied to every path) or ``"probe"``
            (values are per-message overhead + latency [s]).
    Returns:
        Columns ``blocks``, ``value``, ``route_time``, ``fetch_time``, ``local_time`` [s],
        ``decision``.
    """
    rows = []
    for v in values:
        model = _variant(cm, over, v)
        for k in blocks:
            c = model.compare(src, dst, float(k), batch, reuse=reuse)
            rows.append({"blocks": float(k), "value": float(v), "route_time": c.route.total,
                         "fetch_time": c.fetch.total, "local_time": c.local.total,
                         "decision": c.decision})
    return pd.DataFrame(rows)


def crossover_curve(cm: CostModel, src: str, dst: str, values: Sequence[float],
                    over: str = "bandwidth", batch: float = 1,
                    reuse: float = 1.0) -> pd.DataFrame:
    """For each value of the fabric parameter, the blocks per query at which route = fetch.

    Columns ``value`` and ``crossover_blocks`` (NaN where one option wins at every block count).
    """
    out = []
    for v in values:
        model = _variant(cm, over, v)
        k = model.crossover(src, dst, "blocks", batch=batch, reuse=reuse)
        out.append({"value": float(v), "crossover_blocks": np.nan if k is None else k})
    return pd.DataFrame(out)
