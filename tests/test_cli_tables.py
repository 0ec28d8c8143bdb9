"""The comparison table fits the terminal: wide when it fits, vertical in 80 or 120 columns,
never a cut cell, and one row per policy when piped."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from simulator.cli.run import _table
from simulator.cli.tables import layouts, print_table

SUMMARY = {"requests": 233, "completed": 233, "ttft_p50": 0.01416, "ttft_p99": 2.799,
           "tbt_p50": 0.001824, "tbt_p99": 0.006248, "throughput_tokens_per_s": 302.1,
           "bytes_moved": 231.7e9, "closed_form_error_p50": 0.0, "closed_form_error_p99": 0.4149,
           "wall_time": 3.6, "events": 177_436}
POLICIES = ("route", "fetch", "adaptive", "adaptive_live", "colocated")


def table(n: int):
    return _table("agentic_repo", 0, {p: SimpleNamespace(summary=SUMMARY) for p in POLICIES[:n]})


def render(width: int, n: int, terminal: bool = True) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=terminal, color_system=None)
    print_table(console, table(n))
    return out.getvalue().splitlines()


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("n", [1, 3, 5])
def test_a_narrow_terminal_gets_the_table_on_its_side_with_nothing_cut(width, n):
    lines = render(width, n)
    assert max(len(line) for line in lines) <= width
    text = "\n".join(lines)
    assert "…" not in text
    for p in POLICIES[:n]:  # every policy, every metric, every value whole
        assert p in text
    for value in ("233/233", "14.16 ms", "2.799 s", "231.7 GB", "41.49%", "177,436"):
        assert text.count(value) == n
    # vertical: one row per metric, not one per policy
    assert sum(line.startswith("│ TTFT p99") for line in lines) >= 1
    assert "cf err: |simulated − closed form| / closed form" in " ".join(text.split())  # kept


def test_a_wide_terminal_keeps_one_row_per_policy():
    lines = render(200, 3)
    rows = [line for line in lines if line.startswith("│ ")]
    assert [r.split()[1] for r in rows] == ["route", "fetch", "adaptive"]


def test_piped_output_keeps_one_row_per_policy_whatever_the_width():
    lines = render(80, 5, terminal=False)
    rows = [line for line in lines if line.startswith("│ ")]
    assert len(rows) == 5 and all("177,436" in r for r in rows)
    assert "…" not in "\n".join(lines)


def test_the_layout_is_chosen_by_width():
    console = Console(file=io.StringIO(), width=80, force_terminal=True)
    assert len(layouts(console, table(5))) >= 1
    assert layouts(Console(file=io.StringIO(), width=300, force_terminal=True),
                   table(5))[0].row_count == 5
    vertical = layouts(console, table(3))
    assert len(vertical) == 1 and vertical[0].row_count == 11  # the eleven metrics
