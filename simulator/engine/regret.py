"""Regret: each policy of a run against the best static policy of the same run, and what an
adaptive policy chose over time.

A run that compares policies on one trace (``kvfabric run``, :func:`report`) can say how much a
policy lost to the best *static* choice — always ``route``, always ``fetch`` or always ``local``
— made in hindsight, metric by metric:

- ``tbt_p50``, ``tbt_p99`` (lower is better): ``regret = (x − best) / best``;
- ``throughput_tokens_per_s`` (higher is better): ``regret = (best − x) / best``.

The best static policy is chosen per metric among the static policies that ran; its regret is
0, a worse policy's is positive and a policy better than every static one has a *negative*
regret (what it gained). Without a static policy in the run there is nothing to compare with and
:func:`report` returns None.

For every other policy with rounds, :func:`choices_over_time` counts how often it chose each
option in equal tenths of the run (by round start): the rounds it *decided* — owner a GPU other
than home; fetches from host DRAM and recomputes of dropped blocks are forced, not chosen.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from simulator.policies.base import OPTIONS

#: The static policies regret is measured against.
STATIC: tuple[str, ...] = ("route", "fetch", "local")
#: (summary key, True if higher is better).
METRICS: tuple[tuple[str, bool], ...] = (
    ("tbt_p50", False), ("tbt_p99", False), ("throughput_tokens_per_s", True),
)
#: Time bins of :func:`choices_over_time`.
BINS = 10


def regret(summaries: dict[str, dict]) -> dict | None:
    """Each policy's relative regret against the best static policy, per metric.

    Args:
        summaries: ``{policy: summary}`` of one run's policies (same trace and seed).

    Returns ``{"baseline": {metric: best static policy}, "policies": {policy: {metric:
    regret}}}`` (regret NaN where a metric is undefined), or None without a static policy.
    """
    static = [p for p in STATIC if p in summaries]
    if not static:
        return None
    baseline, best = {}, {}
    for key, higher in METRICS:
        values = [(summaries[p].get(key, math.nan), p) for p in static]
        values = [(v, p) for v, p in values if v is not None and math.isfinite(v)]
        if not values:
            baseline[key], best[key] = None, math.nan
            continue
        v, p = (max if higher else min)(values, key=lambda vp: vp[0])
        baseline[key], best[key] = p, v
    out = {}
    for p, s in summaries.items():
        row = {}
        for key, higher in METRICS:
            x, b = s.get(key, math.nan), best[key]
            if x is None or not (math.isfinite(x) and math.isfinite(b)) or b == 0:
                row[key] = math.nan
            else:
                row[key] = (b - x) / b if higher else (x - b) / b
        out[p] = row
    return {"baseline": baseline, "policies": out}


def choices_over_time(rounds: pd.DataFrame, end_at: float, bins: int = BINS) -> dict:
    """How often each option was chosen in ``bins`` equal spans of ``[0, end_at]`` [s].

    Returns ``{"start_at": [...], "bin_time": w, "rounds": [...], "route": [...], "fetch":
    [...], "local": [...]}``: per span its start [s], the decided rounds that started in it and
    each option's share of them (NaN in a span without one).
    """
    w = end_at / bins if end_at > 0 else 0.0
    starts = [i * w for i in range(bins)]
    if len(rounds):
        owner = rounds["owner"].astype(str)
        src = rounds["src"].astype(str)
        decided = (owner != src) & ~owner.str.endswith("/host")
        r = rounds.loc[decided.to_numpy(), ["started_at", "option"]]
    else:
        r = pd.DataFrame({"started_at": [], "option": []})
    at = r["started_at"].to_numpy(float)
    idx = np.minimum((at / w).astype(np.int64), bins - 1) if w > 0 else np.zeros(len(at), int)
    counts = np.bincount(idx, minlength=bins)[:bins].astype(float)
    out: dict = {"start_at": starts, "bin_time": w, "rounds": counts.astype(int).tolist()}
    opts = r["option"].astype(str).to_numpy()
    for o in OPTIONS:
        n = np.bincount(idx[opts == o], minlength=bins)[:bins].astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[o] = np.where(counts > 0, n / np.maximum(counts, 1), np.nan).tolist()
    return out


def report(results: dict) -> dict | None:
    """Regret of a run's policies and the choices of its non-static ones over time.

    Args:
        results: ``{policy: Result}`` of one run (same trace and seed).

    Returns :func:`regret`'s dict plus ``"choices": {policy: choices_over_time}`` for every
    policy outside :data:`STATIC` that made rounds, or None without a static policy.
    """
    out = regret({p: r.summary for p, r in results.items()})
    if out is None:
        return None
    out["choices"] = {p: choices_over_time(r.rounds, float(r.summary.get("sim_time", 0.0)))
                      for p, r in results.items() if p not in STATIC and len(r.rounds)}
    return out
