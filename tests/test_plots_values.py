"""The numbers the figures draw (simulator/plots.py), from records written by hand: each line's
points, each bar's height and each stacked rate worked out here directly."""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from simulator import plots


@dataclasses.dataclass
class StandIn:
    """What the figures read of a run's result."""

    requests: pd.DataFrame
    iterations: pd.DataFrame
    rounds: pd.DataFrame
    link_timeline: pd.DataFrame
    summary: dict
    extras: dict = dataclasses.field(default_factory=dict)


def requests(arrival, first, completed=None) -> pd.DataFrame:
    n = len(arrival)
    return pd.DataFrame({"arrival_at": arrival, "first_token_at": first,
                         "completed": [True] * n if completed is None else completed})


def iterations(durations, tokens) -> pd.DataFrame:
    start = np.arange(len(durations), dtype=float)
    return pd.DataFrame({"started_at": start, "finished_at": start + np.asarray(durations),
                         "tokens": tokens})


def rounds(sim, cf, layers, **phases) -> pd.DataFrame:
    n = len(sim)
    cols = {"sim_time": sim, "cf_time": cf, "layers": layers}
    for ph in plots.PHASES:
        cols[f"{ph}_time"], cols[f"cf_{ph}_time"] = phases.get(ph, ([0.0] * n, [0.0] * n))
    return pd.DataFrame(cols)


def result(req=None, it=None, rd=None, tl=None, summary=None, extras=None) -> StandIn:
    empty = pd.DataFrame()
    return StandIn(requests=requests([], []) if req is None else req,
                   iterations=iterations([], []) if it is None else it,
                   rounds=rounds([], [], []) if rd is None else rd,
                   link_timeline=empty if tl is None else tl,
                   summary={"engine": "exact", "decode_tokens": 1.0, **(summary or {})},
                   extras=extras or {})


def steps(line) -> tuple[list[float], list[float]]:
    x, y = line.get_data()
    return np.asarray(x, float).tolist(), np.asarray(y, float).tolist()


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_the_ttft_cdf_steps_through_completed_requests_in_ms():
    req = requests([0.0, 1.0, 2.0, 3.0, 4.0], [0.004, 1.001, 2.002, 3.0, 4.5],
                   completed=[True, True, True, True, False])
    fig = plots.latency_cdfs({"route": result(req=req)})
    ttft, _ = fig.axes
    (line,) = ttft.get_lines()
    x, y = steps(line)
    # TTFTs 4, 1, 2 ms and one of 0 (not a sample on a log axis); the unfinished one is left out
    assert x == pytest.approx([1.0, 2.0, 4.0], rel=1e-9)
    assert y == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert line.get_drawstyle() == "steps-post"


def test_the_tbt_cdf_weighs_each_iteration_by_its_tokens():
    it = iterations([0.002, 0.001, 0.003, 0.004], [1, 3, 0, 4])
    fig = plots.latency_cdfs({"fetch": result(req=requests([0.0], [0.01]), it=it)})
    _, tbt = fig.axes
    x, y = steps(tbt.get_lines()[0])
    # the iteration without tokens is no sample; 1 ms × 3 tokens, 2 ms × 1, 4 ms × 4
    assert x == pytest.approx([1.0, 2.0, 4.0], rel=1e-9)
    assert y == pytest.approx([3 / 8, 4 / 8, 1.0])


def test_the_cdfs_axes_cover_the_pooled_runs_and_name_runs_without_samples():
    a = result(req=requests([0.0, 0.0], [0.001, 0.01]))
    b = result(req=requests([0.0, 0.0], [0.002, 0.1]))
    fig = plots.latency_cdfs({"a": a, "b": b, "c": result()})
    ttft, _ = fig.axes
    lo, hi, _ = plots._bulk([np.array([1.0, 10.0]), np.array([2.0, 100.0])], log=True)
    assert ttft.get_xlim() == pytest.approx((lo, hi))
    assert lo < 1.0 and hi > 100.0
    labels = [t.get_text() for t in ttft.get_legend().get_texts()]
    assert labels == ["a", "b", "c (no samples)"]


def test_a_cdf_of_nothing_or_of_zero_weight_draws_nothing():
    fig, ax = plt.subplots()
    plots._cdf(ax, [])
    plots._cdf(ax, [1.0, 2.0], weights=[0.0, 0.0])
    assert ax.get_lines() == []
    plots._cdf(ax, [2.0, 1.0], weights=[1.0, 3.0], label="x")
    assert steps(ax.get_lines()[0]) == ([1000.0, 2000.0], [0.75, 1.0])


def test_phase_bars_are_round_time_per_decoded_token_in_us():
    rd = rounds([1e-5, 2e-5], [1e-5, 1e-5], [2, 3],
                probe=([1e-6, 2e-6], [3e-6, 0.0]), transfer=([4e-6, 0.0], [0.0, 5e-6]),
                compute=([1e-6, 1e-6], [1e-6, 1e-6]))
    res = result(rd=rd, summary={"decode_tokens": 4.0})
    ax = plots.phase_breakdown({"route": res}).axes[0]
    bars = {}
    for container in ax.containers:
        bars[container.get_label()] = [p.get_height() for p in container.patches]
    # (1e-6 × 2 + 2e-6 × 3) / 4 tokens = 2 µs; closed form (3e-6 × 2) / 4 = 1.5 µs
    assert bars["probe"] == pytest.approx([2.0, 1.5])
    assert bars["transfer"] == pytest.approx([2.0, 3.75])
    assert bars["compute"] == pytest.approx([1.25, 1.25])
    assert bars["return"] == bars["merge"] == [0.0, 0.0]
    bottoms = [p.get_y() for p in ax.containers[2].patches]  # compute sits on probe+transfer
    assert bottoms == pytest.approx([4.0, 5.25])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["route\nsimulated",
                                                            "route\nclosed form"]


def test_a_run_without_decoded_tokens_counts_one():
    rd = rounds([1e-5], [1e-5], [1], probe=([3e-6], [1e-6]))
    ax = plots.phase_breakdown({"p": result(rd=rd, summary={"decode_tokens": 0.0})}).axes[0]
    assert [p.get_height() for p in ax.containers[0].patches] == pytest.approx([3.0, 1.0])


def timeline(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["kind", "start_at", "utilization"])


def test_link_utilization_draws_the_busiest_and_the_mean_link_of_each_kind():
    tl = timeline([("nvlink", 0.0, 0.2), ("nvlink", 0.0, 0.6), ("nvlink", 1.0, 0.1),
                   ("nvlink", 1.0, 0.3), ("ib", 0.0, 0.5), ("ib", 1.0, 0.0)])
    ax = plots.link_utilization({"route": result(tl=tl)}).axes[0]
    lines = {line.get_label(): steps(line) for line in ax.get_lines()}
    assert list(lines) == ["ib (busiest)", "ib (mean)", "nvlink (busiest)", "nvlink (mean)"]
    assert lines["nvlink (busiest)"] == ([0.0, 1.0], pytest.approx([60.0, 30.0]))
    assert lines["nvlink (mean)"] == ([0.0, 1.0], pytest.approx([40.0, 20.0]))
    assert lines["ib (busiest)"] == lines["ib (mean)"] == ([0.0, 1.0], [50.0, 0.0])
    ib = [line for line in ax.get_lines() if line.get_label().startswith("ib")]
    assert ib[0].get_color() == ib[1].get_color() and ib[1].get_linestyle() == "--"


def test_a_policy_whose_links_stayed_idle_says_so():
    fig = plots.link_utilization({"a": result(tl=timeline([("ib", 0.0, 0.0)])),
                                  "b": result(tl=timeline([("ib", 0.0, 0.5)]))})
    a, b = fig.axes
    assert [t.get_text() for t in a.texts] == ["no link carried traffic"]
    assert len(b.get_lines()) == 2 and a.get_title() == "a" and b.get_title() == "b"


def test_traffic_classes_stack_bytes_per_second_of_each_bin():
    classes = pd.DataFrame({
        "traffic_class": ["kv_route", "kv_route", "kv_fetch", "kv_fetch"],
        "start_at": [0.0, 0.5, 0.0, 0.5], "end_at": [0.5, 2.5, 0.5, 2.5],
        "bytes": [1e9, 4e9, 3e9, 0.0]})
    res = result(tl=timeline([("ib", 0.0, 0.5)]), extras={"class_timeline": classes})
    fig = plots.link_utilization({"route": res})
    util, traffic = fig.axes
    assert traffic.get_title() == "route: traffic by class"
    assert [t.get_text() for t in traffic.get_legend().get_texts()] == ["kv_fetch", "kv_route"]
    # stacked: kv_fetch 6 GB/s then 0; kv_route on top, 2 GB/s then 2 GB/s
    tops = [np.asarray(p.get_paths()[0].vertices)[:, 1].max() for p in traffic.collections]
    assert tops == pytest.approx([6.0, 8.0])


def test_a_class_timeline_without_bytes_is_no_panel_of_its_own():
    empty = pd.DataFrame({"traffic_class": ["kv_route"], "start_at": [0.0], "end_at": [1.0],
                          "bytes": [0.0]})
    res = result(tl=timeline([("ib", 0.0, 0.5)]), extras={"class_timeline": empty})
    assert len(plots.link_utilization({"route": res}).axes) == 1
    other = result(tl=timeline([("ib", 0.0, 0.5)]))
    classes = pd.DataFrame({"traffic_class": ["kv_fetch"], "start_at": [0.0], "end_at": [1.0],
                            "bytes": [1e9]})
    fig = plots.link_utilization({"a": other, "b": result(tl=timeline([("ib", 0.0, 0.5)]),
                                                          extras={"class_timeline": classes})})
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert texts == ["no traffic classes recorded"]  # a's panel beside b's


def test_the_scatter_draws_every_round_in_us_and_thins_past_its_limit():
    sim = np.arange(1, 11) * 1e-6
    rd = rounds(sim, sim * 2, np.ones(10))
    ax = plots.closed_form_scatter({"route": result(rd=rd)}).axes[0]
    points = ax.collections[0].get_offsets()
    np.testing.assert_allclose(np.asarray(points), np.column_stack(
        [np.arange(1, 11) * 2.0, np.arange(1, 11) * 1.0]), rtol=1e-12)
    thin = plots.closed_form_scatter({"route": result(rd=rd)}, max_points=3).axes[0]
    # every third round (10 // 3): rounds 0, 3, 6, 9
    assert np.asarray(thin.collections[0].get_offsets())[:, 1].tolist() == pytest.approx(
        [1.0, 4.0, 7.0, 10.0])
    line = [x for x in ax.get_lines() if x.get_label() == "y = x"][0]
    lo, hi = ax.get_xlim()
    assert steps(line) == ([lo, hi], [lo, hi]) and ax.get_ylim() == (lo, hi)


def test_the_scatter_counts_rounds_outside_on_either_axis():
    sim = np.full(400, 1e-5)
    cf = np.full(400, 1e-5)
    sim[0], cf[1] = 1.0, 1e-12  # one round far out on each axis
    ax = plots.closed_form_scatter({"route": result(rd=rounds(sim, cf, np.ones(400)))}).axes[0]
    assert [t.get_text() for t in ax.texts] == ["2 of 400 rounds outside the axes"]


def test_every_written_figure_names_the_engine(tmp_path):
    rd = rounds([1e-5], [1e-5], [1], probe=([3e-6], [1e-6]))
    res = {"a": result(req=requests([0.0], [0.01]), rd=rd, tl=timeline([("ib", 0.0, 0.5)]),
                       summary={"engine": "fast"}),
           "b": result(req=requests([0.0], [0.02]), rd=rd, tl=timeline([("ib", 0.0, 0.5)]))}
    seen = []
    real = plots.plt.close

    def close(fig):
        seen.append([t.get_text() for t in fig.texts])
        real(fig)

    plots.plt.close = close
    try:
        written, skipped = plots.write_all(res, tmp_path)
    finally:
        plots.plt.close = real
    assert skipped == {} and len(written) == 4 and all(p.is_file() for p in written)
    assert seen == [["exact + fast engine"]] * 4


def test_axis_limits_are_the_bulk_quantiles_padded_by_a_known_amount():
    # 500 values at 10 and 500 at 1000, one far below and one far above: the 0.5 % and
    # 99.5 % quantiles are 10 and 1000 exactly
    v = np.concatenate([[1e-3], np.full(500, 10.0), np.full(500, 1000.0), [1e6]])
    pad = 100.0 ** 0.05  # (1000 / 10) ** 0.05 on a log axis
    assert plots._bulk([v], log=True) == pytest.approx((10.0 / pad, 1000.0 * pad, 2))
    assert plots._bulk([v], log=False) == pytest.approx((10.0 - 49.5, 1000.0 + 49.5, 1))
    # (on a linear axis the padding takes in 1e-3.) A log axis keeps every positive value,
    # below 1 too
    small = np.concatenate([np.full(500, 0.01), np.full(500, 0.1)])
    assert plots._bulk([small], log=True) == pytest.approx((0.01 / 10 ** 0.05,
                                                            0.1 * 10 ** 0.05, 0))
    # one value repeated, negative, on a linear axis: padded by 5 % of its size
    assert plots._bulk([np.full(3, -40.0)], log=False) == pytest.approx((-42.0, -38.0, 0))


def test_a_cdf_of_one_sample_is_one_step():
    fig, ax = plt.subplots()
    plots._cdf(ax, [0.005])
    assert steps(ax.get_lines()[0]) == ([5.0], [1.0])


def test_iterations_of_no_time_are_no_tbt_sample():
    it = iterations([0.0, 0.002], [4, 1])
    fig = plots.latency_cdfs({"fetch": result(req=requests([0.0], [0.01]), it=it)})
    x, y = steps(fig.axes[1].get_lines()[0])
    assert x == pytest.approx([2.0]) and y == [1.0]


def test_the_latency_axes_are_log_scaled_in_ms_and_count_what_lies_outside():
    first = np.concatenate([np.full(999, 0.010), [100.0]])  # one TTFT of 100 s
    req = requests(np.zeros(1000), first)
    fig = plots.latency_cdfs({"route": result(req=req, it=iterations([0.001], [1]))})
    ttft, tbt = fig.axes
    assert (ttft.get_xlabel(), ttft.get_ylabel()) == ("time to first token [ms]",
                                                      "fraction of requests")
    assert (tbt.get_xlabel(), tbt.get_ylabel()) == ("time between tokens [ms]",
                                                    "fraction of tokens")
    assert ttft.get_xscale() == tbt.get_xscale() == "log"
    assert (ttft.get_title(), tbt.get_title()) == ("TTFT", "TBT")
    assert [t.get_text() for t in ttft.texts] == ["1 of 1,000 requests (all runs) outside the "
                                                  "axes"]
    assert list(tbt.texts) == []


def test_the_tbt_cdf_counts_the_tokens_outside_its_axes_as_its_axis_counts_tokens():
    # 999 one-token iterations of 1 ms and one of 10 s that made 32 tokens: the y axis is a
    # fraction of tokens (1,031 of them), and so is the note — not "1 of 1,000 iterations"
    it = iterations(np.concatenate([np.full(999, 0.001), [10.0]]), [1] * 999 + [32])
    tbt = plots.latency_cdfs({"route": result(req=requests([0.0], [0.01]), it=it)}).axes[1]
    assert tbt.get_ylabel() == "fraction of tokens"
    assert [t.get_text() for t in tbt.texts] == ["32 of 1,031 tokens (all runs) outside the axes"]
    x, y = steps(tbt.get_lines()[0])
    assert y[-2] == pytest.approx(999 / 1031) and tbt.get_xlim()[1] < 10_000.0


def test_weighted_values_outside_count_their_weight():
    v, w = np.concatenate([np.full(1000, 5.0), [1e6]]), np.concatenate([np.ones(1000), [7.0]])
    assert plots._bulk([v], log=True, weights=[w])[2] == 7
    assert plots._bulk([v], log=True)[2] == 1


def test_no_bars_are_drawn_when_no_run_has_rounds():
    ax = plots.phase_breakdown({"colocated": result()}).axes[0]
    assert all(len(c.patches) == 0 for c in ax.containers)
    assert ax.get_title() == "Phase breakdown (no rounds: colocated)"
    assert ax.get_ylabel().startswith("round time per generated token [µs]")


def test_a_class_missing_from_a_bin_carried_nothing_there():
    classes = pd.DataFrame({
        "traffic_class": ["kv_route", "kv_route", "kv_fetch"],
        "start_at": [0.0, 0.5, 0.0], "end_at": [0.5, 2.5, 0.5], "bytes": [1e9, 4e9, 3e9]})
    res = result(tl=timeline([("ib", 0.0, 0.5)]), extras={"class_timeline": classes})
    traffic = plots.link_utilization({"route": res}).axes[1]
    ys = [sorted({round(float(y), 9) for y in p.get_paths()[0].vertices[:, 1]})
          for p in traffic.collections]
    # kv_fetch: 6 GB/s, then nothing; kv_route on top of it: 2 GB/s in both bins
    assert ys == [[0.0, 6.0], [0.0, 2.0, 6.0, 8.0]]
    assert traffic.get_ylabel() == "GB/s on links"


def test_one_byte_of_a_class_is_traffic_to_draw():
    one = pd.DataFrame({"traffic_class": ["kv_route"], "start_at": [0.0], "end_at": [1.0],
                        "bytes": [1.0]})
    res = result(tl=timeline([("ib", 0.0, 0.5)]), extras={"class_timeline": one})
    assert len(plots.link_utilization({"route": res}).axes) == 2


def test_the_scatter_leaves_runs_without_rounds_out_and_uses_a_log_axis():
    sim = np.geomspace(1e-6, 1e-3, 50)
    rd = rounds(sim, sim, np.ones(50))
    ax = plots.closed_form_scatter({"none": result(), "route": result(rd=rd)}).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["route", "y = x"]
    lo, hi, _ = plots._bulk([np.concatenate([sim, sim]) * 1e6], log=True)
    assert ax.get_xlim() == pytest.approx((lo, hi)) and lo > 0
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("closed form [µs]", "simulated [µs]")


def test_all_idle_links_are_no_traffic_to_plot(tmp_path):
    res = result(req=requests([0.0], [0.01]), tl=timeline([("ib", 0.0, 0.0)]))
    written, skipped = plots.write_all({"route": res}, tmp_path)
    assert skipped["link_utilization.png"] == "no link carried traffic"
    assert [p.name for p in written] == ["latency_cdf.png"]
    data = written[0].read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def grid(over: str) -> pd.DataFrame:
    rows = [(b, v, d) for v, ds in ((1e9 if over == "bandwidth" else 1e-6,
                                     ("route", "route", "fetch")),
                                    (1e11 if over == "bandwidth" else 1e-5,
                                     ("route", "fetch", "local")))
            for b, d in zip((1.0, 10.0, 100.0), ds, strict=True)]
    return pd.DataFrame(rows, columns=["blocks", "value", "decision"])


@pytest.mark.parametrize(("over", "scale", "ylabel"), [
    ("bandwidth", 1e-9, "path line rate [GB/s]"),
    ("probe", 1e6, "per-message overhead + latency [µs]")])
def test_a_decision_map_colours_each_cell_by_its_cheapest_option(over, scale, ylabel):
    fig, ax = plt.subplots()
    curve = pd.DataFrame({"value": grid(over)["value"].unique(),
                          "crossover_blocks": [np.nan, 5.0]})
    assert plots.decision_map(ax, grid(over), curve, over=over, title="t") is ax
    mesh = ax.collections[0]
    # codes by option (route 0, fetch 1, local 2), rows by value, columns by blocks
    assert np.asarray(mesh.get_array()).reshape(2, 3).tolist() == [[0, 0, 1], [0, 1, 2]]
    assert mesh.get_clim() == (-0.5, 2.5)
    values = sorted(grid(over)["value"].unique())
    corners = mesh.get_coordinates()  # cell edges halfway between the values drawn
    assert ((corners[:-1, 0, 1] + corners[1:, 0, 1]) / 2).tolist() == pytest.approx(
        [v * scale for v in values])
    assert corners[0, :, 0].tolist() == pytest.approx([-3.5, 5.5, 55.0, 145.0])  # 1, 10, 100
    assert ax.get_xlim() == (1.0, 100.0)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    (line,) = ax.get_lines()
    assert steps(line)[1] == pytest.approx([v * scale for v in values])
    assert ax.get_ylabel() == ylabel and ax.get_title() == "t"
    assert ax.get_xlabel() == "selected blocks per query (64 tokens each)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "route cheapest", "fetch cheapest", "local cheapest", "route = fetch (closed form)"]
    colours = [h.get_facecolor() for h in ax.get_legend().legend_handles[:3]]
    from matplotlib.colors import to_rgba
    assert colours == [to_rgba(c) for c in plots.DECISION_COLORS.values()]


def test_a_decision_map_without_a_crossover_draws_no_curve():
    fig, ax = plt.subplots()
    curve = pd.DataFrame({"value": [1e9, 1e11], "crossover_blocks": [np.nan, np.nan]})
    plots.decision_map(ax, grid("bandwidth"), curve)
    assert ax.get_lines() == [] and ax.get_title() == ""
    assert len(ax.get_legend().get_texts()) == 3
    fig, ax = plt.subplots()
    plots.decision_map(ax, grid("bandwidth"))
    assert ax.get_lines() == [] and len(ax.get_legend().get_texts()) == 3


def test_edge_cases_of_the_bulk_on_a_linear_axis():
    assert plots._bulk([], log=False) == (0.0, 1.0, 0)
    assert plots._bulk([np.full(3, 0.5)], log=False) == pytest.approx((0.45, 0.55, 0))


def test_lines_are_drawn_widest_first_in_cycled_styles():
    styles = [plots._style(i) for i in range(6)]
    assert [s["lw"] for s in styles] == pytest.approx([3.0, 2.4, 1.8, 1.2, 1.0, 1.0])
    assert [s["ls"] for s in styles] == ["-", "--", "-.", ":", "-", "--"]


def test_link_panels_share_their_time_axis_and_say_what_they_show():
    classes = pd.DataFrame({"traffic_class": ["kv_fetch"], "start_at": [0.0], "end_at": [1.0],
                            "bytes": [1e9]})
    fig = plots.link_utilization({"a": result(tl=timeline([("ib", 0.0, 0.5)])),
                                  "b": result(tl=timeline([("ib", 0.0, 0.5)]),
                                              extras={"class_timeline": classes})})
    (a_util, a_traffic), (b_util, b_traffic) = np.reshape(fig.axes, (2, 2))
    assert a_util.get_shared_x_axes().joined(a_util, b_util)
    assert a_util.get_ylabel() == b_util.get_ylabel() == "util. [%]"
    assert a_util.get_xlabel() == "" and b_util.get_xlabel() == "simulated time [s]"
    assert b_traffic.get_xlabel() == "simulated time [s]"
    assert a_traffic.get_title() == "a: traffic by class"
    assert b_traffic.get_title() == "b: traffic by class"
    empty = plots.link_utilization({})  # nothing to draw: one empty panel, no error
    assert len(empty.axes) == 1 and empty.axes[0].get_lines() == []
