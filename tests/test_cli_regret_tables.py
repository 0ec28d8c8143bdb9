"""``kvfabric run``'s regret tables (simulator/cli/regret_tables.py) from reports made by hand:
every header, cell and column setting, and the table printed as a user sees it."""

from __future__ import annotations

import io
import math

from rich.console import Console

from simulator.cli.regret_tables import choices_table, regret_table
from simulator.engine.regret import regret

NAN = math.nan
REPORT = {
    "baseline": {"tbt_p50": "fetch", "tbt_p99": "route", "throughput_tokens_per_s": None},
    "policies": {
        "route": {"tbt_p50": 0.1234, "tbt_p99": 0.0, "throughput_tokens_per_s": NAN},
        "fetch": {"tbt_p50": 0.0, "tbt_p99": 0.05, "throughput_tokens_per_s": None},
        "adaptive": {"tbt_p50": -0.02, "tbt_p99": 0.00004, "throughput_tokens_per_s": NAN},
    },
    "choices": {
        "fetch": {"start_at": [0.0, 1.0], "route": [0.0, 0.0], "fetch": [1.0, 1.0],
                  "local": [0.0, 0.0]},
        "adaptive": {"start_at": [0.0, 1.0, 2.0], "route": [0.25, NAN, 1.0],
                     "fetch": [0.74, NAN, 0.0], "local": [0.01, NAN, 0.0]},
    },
}


def cells(table) -> list[list[str]]:
    """The table's rows as text, its header row first."""
    cols = [[str(c.header), *map(str, c.cells)] for c in table.columns]
    return [list(row) for row in zip(*cols, strict=True)]


def settings(table) -> list[tuple[str, bool]]:
    return [(c.justify, c.no_wrap) for c in table.columns]


def test_the_regret_table_has_a_row_per_policy_and_names_the_best_static_ones():
    t = regret_table(REPORT)
    assert t.title == ("regret against the best static policy (TBT p50 fetch, TBT p99 route, "
                       "tokens/s —)")
    assert cells(t) == [
        ["policy", "TBT p50 regret", "TBT p99 regret", "tokens/s regret"],
        ["route", "+12.34%", "0", "—"],
        ["fetch", "0", "+5.00%", "—"],
        ["adaptive", "-2.00%", "0.00%", "—"],  # a regret too small for two decimals is not 0
    ]
    assert settings(t) == [("left", True)] + [("right", True)] * 3


def test_a_regret_that_rounds_to_zero_shows_no_sign():
    # 0.1 + 0.2 against 0.3: float noise of ±1.9e-16, not "+0.00%" / "-0.00%"
    noise = {"route": {"tbt_p50": 0.3, "tbt_p99": 0.3, "throughput_tokens_per_s": 0.3},
             "adaptive": {"tbt_p50": 0.1 + 0.2, "tbt_p99": 0.3,
                          "throughput_tokens_per_s": 0.1 + 0.2}}
    report = regret(noise)
    assert report["policies"]["adaptive"]["tbt_p50"] > 0  # the numbers keep their noise
    assert report["policies"]["adaptive"]["throughput_tokens_per_s"] < 0
    assert cells(regret_table(report))[2] == ["adaptive", "0.00%", "0", "0.00%"]
    # half the last digit either way: the first regrets that show a sign
    edge = {"baseline": REPORT["baseline"], "policies": {
        "a": {"tbt_p50": 0.00004, "tbt_p99": -0.00004, "throughput_tokens_per_s": 0.00006},
        "b": {"tbt_p50": -0.00006, "tbt_p99": 1e-300, "throughput_tokens_per_s": -0.0}}}
    assert cells(regret_table(edge))[1:] == [["a", "0.00%", "0.00%", "+0.01%"],
                                              ["b", "-0.01%", "0.00%", "0"]]


def test_the_choices_table_shows_each_adaptive_policys_share_per_option_and_tenth():
    t = choices_table(REPORT)
    assert t.title == "options chosen over time (share of decided rounds per tenth of the run)"
    assert cells(t) == [  # a static policy (fetch) has no row; no round decided: a dash
        ["policy", "option", "1", "2", "3"],
        ["adaptive", "route", "25%", "—", "100%"],
        ["adaptive", "fetch", "74%", "—", "0%"],
        ["adaptive", "local", "1%", "—", "0%"],
    ]
    assert settings(t) == [("left", True), ("left", True)] + [("right", True)] * 3


def test_no_choices_table_when_only_static_policies_made_rounds():
    assert choices_table({**REPORT, "choices": {"fetch": REPORT["choices"]["fetch"]}}) is None
    assert choices_table({k: v for k, v in REPORT.items() if k != "choices"}) is None


def test_the_tables_print_whole_in_a_terminal_of_80_columns():
    out = io.StringIO()
    console = Console(file=out, width=80, color_system=None)
    console.print(regret_table(REPORT))
    console.print(choices_table(REPORT))
    text = out.getvalue()
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    for word in ("+12.34%", "-2.00%", "tokens/s regret", "100%", "adaptive"):
        assert word in text
