"""Plots worth looking at: nothing empty or all-zero (skipped, with the reason), axes set by the
bulk with the points outside counted, every line in its legend, identical series told apart."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
from clitools import SMALL

from simulator import Scenario, plots, run
from workloads.schema import make_trace, write_trace

SCENARIO = SMALL.format(name="tiny", top="")


def tiny(tmp) -> Scenario:
    """The small scenario (2 layer slots) over a three-request trace, written in ``tmp``."""
    write_trace(make_trace(arrival_at=[0.0, 0.01, 0.02], input_tokens=[3000, 3500, 4000],
                           output_tokens=[6, 8, 4], block_ids=[list(range(47)), list(range(55)),
                                                               list(range(63))],
                           block_tokens=64), tmp / "tiny.parquet")
    (tmp / "tiny.toml").write_text(SCENARIO)
    return Scenario.load(tmp / "tiny.toml")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    sc = tiny(tmp_path_factory.mktemp("plots"))
    return {p: run(sc, p) for p in ("route", "adaptive_static", "fetch", "colocated")}


def no_rounds(res):
    """The same run as a pool loop reports it: no per-round records."""
    return dataclasses.replace(res, rounds=res.rounds.iloc[:0])


def legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_a_run_without_rounds_skips_those_plots_and_says_why(results, tmp_path):
    lamina_like = {p: no_rounds(results[p]) for p in ("route", "fetch")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written, skipped = plots.write_all(lamina_like, tmp_path)
    assert sorted(skipped) == ["closed_form_scatter.png", "phase_breakdown.png"]
    assert all("no rounds recorded" in why for why in skipped.values())
    assert sorted(p.name for p in written) == ["latency_cdf.png", "link_utilization.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latency_cdf.png",
                                                          "link_utilization.png"]


def test_a_run_without_requests_or_traffic_skips_every_plot(results, tmp_path):
    r = results["colocated"]
    empty = dataclasses.replace(r, requests=r.requests.iloc[:0], iterations=r.iterations.iloc[:0],
                                rounds=r.rounds.iloc[:0], link_timeline=pd.DataFrame())
    written, skipped = plots.write_all({"colocated": empty}, tmp_path)
    assert written == [] and len(skipped) == 4 and not list(tmp_path.iterdir())
    assert skipped["link_utilization.png"] == "no link carried traffic"


def test_identical_series_say_so_and_every_policy_is_in_the_legend(results):
    subset = {p: results[p] for p in ("route", "adaptive_static", "fetch")}
    subset["nothing"] = dataclasses.replace(results["fetch"], iterations=results["fetch"]
                                            .iterations.iloc[:0],
                                            requests=results["fetch"].requests.iloc[:0])
    fig = plots.latency_cdfs(subset)
    ttft, tbt = fig.axes
    # adaptive_static routes every round here, exactly like route: it says so instead of
    # hiding it
    assert legend(ttft)[:2] == ["route", "adaptive_static (= route)"]
    assert legend(ttft)[2].startswith("fetch") and legend(ttft)[3] == "nothing (no samples)"
    assert legend(tbt)[:2] == ["route", "adaptive_static (= route)"]
    assert "nothing (no samples)" in legend(tbt)
    styles = {(line.get_linestyle(), line.get_linewidth()) for line in ttft.get_lines()}
    assert len(styles) == 4  # drawn differently, the widest first
    scatter = plots.closed_form_scatter(subset).axes[0]
    assert "adaptive_static (= route)" in legend(scatter) and "fetch" in legend(scatter)


def test_the_phase_breakdown_names_policies_without_rounds(results):
    ax = plots.phase_breakdown({p: results[p] for p in ("route", "colocated")}).axes[0]
    assert "no rounds: colocated" in ax.get_title()
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["route", "route"]


def test_link_utilization_names_both_lines_of_each_kind(results):
    ax = plots.link_utilization({"route": results["route"]}).axes[0]
    labels = legend(ax)
    assert len(labels) == len(ax.get_lines()) and any("(mean)" in x for x in labels)


def test_a_folded_runs_link_figure_says_its_records_are_one_layer_per_slot(results, tmp_path):
    # the scenario simulates 2 layer slots: its link records carry one layer of each, so the
    # summary names the fold (the model's layers over 2) and both panels' axes say so; a run
    # that plays every layer has neither
    from simulator.models import model

    r = results["route"]
    sc = tiny(tmp_path)
    layers = model(sc.model.name).layers
    assert r.summary["layers_per_slot"] == layers / 2
    fig = plots.link_utilization({"route": r})
    want = f"1 layer per slot (×{layers / 2:.1f} for all)"
    assert all(want in ax.get_ylabel() for ax in fig.axes if ax.get_ylabel())
    whole = run(sc.with_changes(engine=dataclasses.replace(sc.engine, layer_groups=0)), "route")
    assert "layers_per_slot" not in whole.summary
    assert "layer per slot" not in plots.link_utilization({"route": whole}).axes[0].get_ylabel()


def test_axes_follow_the_bulk_and_count_what_lies_outside(results):
    bulk = np.arange(1.0, 1001.0)
    lo, hi, outside = plots._bulk([np.concatenate([bulk, [1e9] * 4])], log=True)
    assert 1 < hi < 2000 and lo < 10 and outside >= 4
    r = results["route"]
    rounds = pd.concat([r.rounds] * 100, ignore_index=True)  # 2,400 rounds of a few µs ...
    rounds.loc[rounds.index[:3], "sim_time"] = 10.0  # ... and three of 10 s
    ax = plots.closed_form_scatter({"route": dataclasses.replace(r, rounds=rounds)}).axes[0]
    assert ax.get_ylim()[1] < 1e6  # µs: the outliers would put it at 1e7
    notes = [t.get_text() for t in ax.texts]
    assert any(t.startswith("3 of ") and "outside the axes" in t for t in notes)


def test_readable_log_ticks_over_less_than_a_decade(results):
    fig = plots.latency_cdfs({"route": results["route"]})
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[1].get_xticklabels() if t.get_text()]
    assert labels and all("times" not in x and "^" not in x for x in labels)


def test_an_axis_without_values_is_a_valid_one():
    assert plots._bulk([], log=True) == (1.0, 10.0, 0)  # a log axis cannot reach 0
    assert plots._bulk([np.array([0.0, -1.0, np.nan])], log=True) == (1.0, 10.0, 0)
    assert plots._bulk([np.array([np.inf])], log=False) == (0.0, 1.0, 0)


def test_values_outside_are_counted_against_the_padded_limits():
    # 1,000 values spread over [1, 1000] (evenly on the axis's scale): the 0.5 % and 99.5 %
    # quantiles cut about five off each end, but the padding takes them back in; only the two
    # far ones lie outside
    v = np.concatenate([np.geomspace(1.0, 1000.0, 1000), [1e-6, 1e9]])
    lo, hi, outside = plots._bulk([v], log=True)
    assert lo < 1.0 and hi > 1000.0 and outside == 2
    lo, hi, outside = plots._bulk([np.linspace(1.0, 1000.0, 1000), [-1e6, 1e6]], log=False)
    assert lo < 1.0 and hi > 1000.0 and outside == 2
    # one value repeated: padded on both sides, nothing outside
    assert plots._bulk([np.full(5, 4.0)], log=True) == (2.0, 8.0, 0)
    assert plots._bulk([np.full(5, 4.0)], log=False) == pytest.approx((3.8, 4.2, 0))
