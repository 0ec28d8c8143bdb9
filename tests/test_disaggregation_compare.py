"""The side-by-side comparison of the two pool loops (simulator/disaggregation/compare.py):
the frame's columns from each run's summary (a closed loop's steady capacity as its
throughput), the ratio row, and the table the CLI prints, in display units."""

from __future__ import annotations

import math

import pytest
from rich.console import Console

from simulator.disaggregation import comparison_frame, comparison_table

DIS = {"throughput_tokens_per_s": 900.0, "capacity_tokens_per_s": 1200.0, "tbt_p50": 0.02,
       "tbt_p99": 0.05, "mean_batch": 40.0, "cost_per_hour": 30.0,
       "tokens_per_s_per_dollar_hour": 40.0}
HOM = {"throughput_tokens_per_s": 600.0, "tbt_p50": 0.025, "tbt_p99": 0.04, "mean_batch": 16.0,
       "cost_per_hour": 40.0, "tokens_per_s_per_dollar_hour": 15.0}


def test_the_frame_takes_a_closed_loops_capacity_as_its_throughput_and_adds_the_ratio():
    df = comparison_frame({"disaggregated": DIS, "homogeneous": HOM})
    assert list(df.index) == ["disaggregated", "homogeneous",
                              "ratio (disaggregated/homogeneous)"]
    assert df.loc["disaggregated"].tolist() == [1200.0, 0.02, 0.05, 40.0, 30.0, 40.0]
    assert df.loc["homogeneous"].tolist() == [600.0, 0.025, 0.04, 16.0, 40.0, 15.0]
    assert df.iloc[2].tolist() == pytest.approx([2.0, 0.8, 1.25, 2.5, 0.75, 40 / 15],
                                                rel=1e-12)


def test_a_missing_metric_is_nan_and_one_run_has_no_ratio():
    df = comparison_frame({"homogeneous": {"tbt_p50": 0.01}})
    assert list(df.index) == ["homogeneous"]
    assert df.loc["homogeneous", "tbt_p50"] == 0.01
    assert math.isnan(df.loc["homogeneous", "mean_batch"])


def test_the_table_shows_each_metric_in_display_units_and_the_ratio_as_a_factor():
    res = {"disaggregated": DIS, "homogeneous": dict(HOM, mean_batch=float("nan"))}
    console = Console(record=True, width=200)
    console.print(comparison_table(res, title="t"))
    rows = [line.replace("┃", "│").split("│")[1:-1] for line in console.export_text().splitlines()
            if line.startswith(("│", "┃"))]
    cells = [[c.strip() for c in row] for row in rows]
    assert cells[0] == ["policy", "throughput [tok/s]", "TBT p50 [ms]", "TBT p99 [ms]",
                        "mean batch", "$/hour", "tok/s per $/h"]
    assert cells[1] == ["disaggregated", "1200.0", "20.00", "50.00", "40.0", "30.00", "40.00"]
    assert cells[2] == ["homogeneous", "600.0", "25.00", "40.00", "-", "40.00", "15.00"]
    assert cells[3] == ["ratio (disaggregated/homogeneous)", "2.000×", "0.800×", "1.250×", "-",
                        "0.750×", "2.667×"]
