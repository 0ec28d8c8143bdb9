"""Disaggregated vs homogeneous at equal hardware cost: run both, tabulate, study the stack.

:func:`simulate` runs one of the two pool loops by policy name (``disaggregated``: Lamina-style,
:mod:`simulator.disaggregation.lamina`; ``homogeneous``: the vLLM-like baseline,
:mod:`simulator.disaggregation.homogeneous`); :func:`compare` runs both; :func:`comparison_frame`
and :func:`comparison_table` give the headline metrics side by side with their ratio (what the
CLI prints); :func:`stack_study` reruns the disaggregated side under each network stack.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from simulator.errors import UserError

#: The two policy names these loops serve, in comparison order.
LOOPS: tuple[str, ...] = ("disaggregated", "homogeneous")


def simulate(scenario, policy: str, seed: int | None = None, **kwargs):
    """Run ``policy`` (``"disaggregated"`` or ``"homogeneous"``) on ``scenario``."""
    if policy == "disaggregated":
        from simulator.disaggregation.lamina import simulate_disaggregated

        return simulate_disaggregated(scenario, seed, **kwargs)
    if policy == "homogeneous":
        from simulator.disaggregation.homogeneous import simulate_homogeneous

        return simulate_homogeneous(scenario, seed, **kwargs)
    raise UserError(f"unknown disaggregation loop {policy!r}; use one of {', '.join(LOOPS)}")


def compare(scenario, seed: int | None = None, **kwargs) -> dict:
    """Both policies on the same scenario: ``{"disaggregated": Result, "homogeneous": Result}``."""
    return {p: simulate(scenario, p, seed, **kwargs) for p in LOOPS}


_TABLE_COLUMNS = (
    ("throughput_tokens_per_s", "throughput [tok/s]", 1.0, "{:.1f}"),
    ("tbt_p50", "TBT p50 [ms]", 1e3, "{:.2f}"),
    ("tbt_p99", "TBT p99 [ms]", 1e3, "{:.2f}"),
    ("mean_batch", "mean batch", 1.0, "{:.1f}"),
    ("cost_per_hour", "$/hour", 1.0, "{:.2f}"),
    ("tokens_per_s_per_dollar_hour", "tok/s per $/h", 1.0, "{:.2f}"),
)


def comparison_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    """One row per policy (keys of ``results``: Result objects or summary dicts) with the
    headline metrics, plus a ``ratio`` row (first policy / second) when there are two. In a
    closed loop (``[workload] concurrency``) the throughput is the steady capacity
    (``capacity_tokens_per_s``), not tokens over the whole run (warm-up and drain included)."""
    rows = {}
    for name, res in results.items():
        s = dict(res.summary if hasattr(res, "summary") else res)
        if "capacity_tokens_per_s" in s:
            s["throughput_tokens_per_s"] = s["capacity_tokens_per_s"]
        rows[name] = {k: float(s.get(k, float("nan"))) for k, *_ in _TABLE_COLUMNS}
    df = pd.DataFrame.from_dict(rows, orient="index")
    if len(df) == 2:
        a, b = df.index
        with np.errstate(divide="ignore", invalid="ignore"):
            df.loc[f"ratio ({a}/{b})"] = df.loc[a] / df.loc[b]
    return df


def comparison_table(results: Mapping[str, Any], title: str = "disaggregated vs homogeneous"):
    """A ``rich.table.Table`` of :func:`comparison_frame` (SI converted for display)."""
    from rich.markup import escape
    from rich.table import Table

    df = comparison_frame(results)
    table = Table(title=title)
    table.add_column("policy")
    for _, label, _, _ in _TABLE_COLUMNS:
        table.add_column(escape(label), justify="right")  # "[ms]" is no markup tag
    for name, row in df.iterrows():
        ratio = str(name).startswith("ratio")
        cells = []
        for key, _, scale, fmt in _TABLE_COLUMNS:
            v = row[key]
            cells.append("-" if not math.isfinite(v) else (f"{v:.3f}×" if ratio
                                                           else fmt.format(v * scale)))
        table.add_row(str(name), *cells)
    return table


def stack_study(scenario, stacks: Iterable[str] = ("ibgda", "nccl"), seed: int | None = None,
                **kwargs) -> pd.DataFrame:
    """The disaggregated run under each network stack: TBT p50/p99 [s], throughput [tok/s],
    tok/s per $/h, and the change against the first stack (``tbt_p50_delta`` [s],
    ``throughput_ratio``). Shows what the per-layer round-trip latency costs."""
    rows = []
    for st in stacks:
        res = simulate(scenario.with_changes(stack=st), "disaggregated", seed, **kwargs)
        s = res.summary
        rows.append({"stack": st, "tbt_p50": s["tbt_p50"], "tbt_p99": s["tbt_p99"],
                     "throughput_tokens_per_s": s["throughput_tokens_per_s"],
                     "tokens_per_s_per_dollar_hour": s["tokens_per_s_per_dollar_hour"],
                     "mean_batch": s["mean_batch"], "model_pool_idle": s["model_pool_idle"],
                     "attention_pool_idle": s["attention_pool_idle"]})
    df = pd.DataFrame(rows).set_index("stack")
    ref = df.iloc[0]
    df["tbt_p50_delta"] = df["tbt_p50"] - ref["tbt_p50"]
    df["throughput_ratio"] = df["throughput_tokens_per_s"] / ref["throughput_tokens_per_s"]
    return df
