"""``kvfabric run``'s regret tables: each policy against the best static policy of the run, and
what each adaptive policy chose over time (:mod:`simulator.engine.regret` computes both)."""

from __future__ import annotations

import math

from rich.table import Table

from simulator.engine.regret import METRICS, STATIC
from simulator.policies.base import OPTIONS

_LABELS = {"tbt_p50": "TBT p50", "tbt_p99": "TBT p99", "throughput_tokens_per_s": "tokens/s"}


def _pct(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if not x:
        return "0"  # the best static policy itself
    text = f"{x:+.2%}"
    # a regret that rounds to 0.00% (float noise between equal policies: 1e-16) has its sign
    # below the printed digits: no "+0.00%" / "-0.00%", but not "0" either (it is not exact)
    return text[1:] if text[1:] == "0.00%" else text


def regret_table(report: dict) -> Table:
    """One row per policy: its regret per metric (+ worse, − better than every static
    policy), under a title naming the best static policy of each metric."""
    best = ", ".join(f"{_LABELS[k]} {report['baseline'][k] or '—'}" for k, _ in METRICS)
    t = Table(title=f"regret against the best static policy ({best})")
    t.add_column("policy", justify="left", no_wrap=True)
    for key, _ in METRICS:
        t.add_column(f"{_LABELS[key]} regret", justify="right", no_wrap=True)
    for p, row in report["policies"].items():
        t.add_row(p, *(_pct(row[k]) for k, _ in METRICS))
    return t


def choices_table(report: dict) -> Table | None:
    """Per adaptive policy and option, its share of the decided rounds in each tenth of the
    run (None if no policy outside route/fetch/local made rounds)."""
    choices = {p: c for p, c in report.get("choices", {}).items() if p not in STATIC}
    if not choices:
        return None
    bins = len(next(iter(choices.values()))["start_at"])
    t = Table(title="options chosen over time (share of decided rounds per tenth of the run)")
    t.add_column("policy", justify="left", no_wrap=True)
    t.add_column("option", justify="left", no_wrap=True)
    for i in range(bins):
        t.add_column(f"{i + 1}", justify="right", no_wrap=True)
    for p, c in choices.items():
        for o in OPTIONS:
            t.add_row(p, o, *("—" if math.isnan(x) else f"{x:.0%}" for x in c[o]))
    return t
