"""Tables that fit the terminal: one row per item when it fits, turned on its side when not.

A comparison table has one row per policy and a dozen metric columns — about 130 characters.
:func:`print_table` prints it as it is when the terminal is wide enough, and otherwise
*vertically*: one row per metric, one column per policy (about 14 characters each), split into
several tables if even that is too wide. Cells are never cut (``14.…``). When the output is not
a terminal (piped into a file or another program) the table keeps one row per item at its full
width, so every line can be read by a script.
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table


def percent(fraction: float | None) -> str:
    """A fraction as a percent, two decimals (0.1454 → ``14.54%``); ``—`` when missing (None or
    NaN). The closed-form error's cell in ``kvfabric run``'s and ``kvfabric sweep``'s tables."""
    if fraction is None or (isinstance(fraction, float) and math.isnan(fraction)):
        return "—"
    return f"{fraction:.2%}"


def _natural_width(console: Console, table: Table) -> int:
    return console.measure(table, options=console.options.update(width=10_000)).maximum


def vertical(table: Table, first: int = 0, count: int | None = None) -> Table:
    """``table`` turned on its side: its column headers become the first column and each of its
    rows (from ``first``, ``count`` of them) a column headed by the row's first cell."""
    cols = table.columns
    rows = [list(c.cells) for c in cols]  # rows[i][j]: column i, row j
    n = len(rows[0]) if rows else 0
    picked = range(first, n if count is None else min(n, first + count))
    out = Table(title=table.title, caption=table.caption, show_lines=False)
    out.add_column(str(cols[0].header) if cols else "", justify="left", no_wrap=True)
    for j in picked:
        out.add_column(_fold(str(rows[0][j])), justify="right", no_wrap=True)
    for i in range(1, len(cols)):
        out.add_row(str(cols[i].header), *(rows[i][j] for j in picked))
    return out


def _fold(header: str, width: int = 16) -> str:
    """A long row name as a column header on several lines (``ratio (a/b)`` → three)."""
    if len(header) <= width:
        return header
    return header.replace(" (", "\n(").replace("/", "/\n")


def layouts(console: Console, table: Table) -> list[Table]:
    """The tables to print for ``console``'s width (see the module docstring)."""
    if not console.is_terminal or _natural_width(console, table) <= console.width:
        return [table]
    n = table.row_count
    per = max(1, n)
    while per > 1 and _natural_width(console, vertical(table, 0, per)) > console.width:
        per -= 1
    return [vertical(table, a, per) for a in range(0, n, per)]


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` wide, vertically, or at full width when piped (module docstring)."""
    for t in layouts(console, table):
        if console.is_terminal:
            console.print(t)
        else:  # piped: one line per row however narrow the (absent) terminal says it is
            wide = Console(file=console.file, width=max(console.width,
                                                        _natural_width(console, t)),
                           color_system=None, force_terminal=False)
            wide.print(t)
