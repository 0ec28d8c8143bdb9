"""The comparison table fits the terminal: wide when it fits, vertical in 80 or 120 columns,
never a cut cell, and one row per policy when piped."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console
from rich.table import Table

from simulator.cli.run import _table
from simulator.cli.tables import _fold, _natural_width, layouts, percent, print_table, vertical

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
    on_side = layouts(console, table(3))
    assert len(on_side) == 1 and on_side[0].row_count == 11  # the eleven metrics


def _widths(console: Console, t) -> list[int]:
    return [_natural_width(console, vertical(t, 0, per)) for per in range(1, t.row_count + 1)]


def test_vertical_picks_the_rows_asked_for_and_keeps_title_and_caption():
    t = table(5)
    for first, count, picked in ((0, None, POLICIES), (1, 2, POLICIES[1:3]),
                                 (3, 9, POLICIES[3:]), (5, None, ())):
        v = vertical(t, first, count)
        assert [str(c.header) for c in v.columns] == ["policy", *map(str, picked)]
        assert v.row_count == len(t.columns) - 1  # one row per metric
        assert (v.title, v.caption) == (t.title, t.caption)
    empty = vertical(Table())
    assert [str(c.header) for c in empty.columns] == [""] and empty.row_count == 0
    names = Table("policy")  # rows with a name and no figure: a column each, no row
    names.add_row("route")
    names.add_row("fetch")
    only = vertical(names)
    assert [str(c.header) for c in only.columns] == ["policy", "route", "fetch"]
    assert only.row_count == 0


def test_a_vertical_table_has_no_lines_between_its_rows_and_wraps_no_cell():
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(vertical(table(2)))
    lines = out.getvalue().splitlines()
    body = [line for line in lines if line.startswith("│")]
    assert len(body) == 11 and not any(line.startswith("├") for line in lines)
    v = vertical(table(2))
    assert [(c.justify, c.no_wrap) for c in v.columns] == [("left", True), ("right", True),
                                                          ("right", True)]


def test_a_long_row_name_is_folded_into_a_header_of_several_lines():
    assert _fold("policy (ab/cd)xy") == "policy (ab/cd)xy"  # up to 16 characters: as it is
    assert _fold("disaggregated (a/b)") == "disaggregated\n(a/\nb)"
    assert _fold("ratio (a/b)", width=8) == "ratio\n(a/\nb)"


@pytest.mark.parametrize("per", [1, 2, 3])
def test_a_terminal_exactly_as_wide_as_a_layout_gets_that_layout(per):
    # the widest vertical table of `per` policies that fits is used, at equality too; the
    # policies are split into tables of that many
    probe = Console(file=io.StringIO(), width=80, force_terminal=True)
    t = table(5)
    width = _widths(probe, t)[per - 1]
    console = Console(file=io.StringIO(), width=width, force_terminal=True)
    got = layouts(console, t)
    assert [len(x.columns) - 1 for x in got] == [min(per, 5 - a) for a in range(0, 5, per)]
    wide = _natural_width(probe, t)
    at_edge = Console(file=io.StringIO(), width=wide, force_terminal=True)
    assert layouts(at_edge, t) == [t]  # the wide table, at exactly its width


def test_piped_output_is_printed_at_the_tables_full_width_not_the_consoles():
    out = io.StringIO()
    console = Console(file=out, width=300, force_terminal=False)
    print_table(console, table(1))
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) < 300  # its own width, not padded to the console's
    assert "\x1b[" not in out.getvalue()  # no colour codes into a file or a pipe


def test_a_terminal_narrower_than_one_policys_table_still_gets_one_policy_per_table():
    probe = Console(file=io.StringIO(), width=80, force_terminal=True)
    t = table(3)
    narrow = Console(file=io.StringIO(), width=_widths(probe, t)[0] - 1, force_terminal=True)
    assert [len(x.columns) - 1 for x in layouts(narrow, t)] == [1, 1, 1]


def test_a_fraction_prints_in_percent_and_a_missing_one_as_a_dash():
    # the closed-form error's cell in run's and sweep's tables (one function for both)
    assert percent(0.14538) == "14.54%"
    assert percent(0.0) == "0.00%"
    assert percent(2.5) == "250.00%"
    assert percent(None) == percent(float("nan")) == "—"
