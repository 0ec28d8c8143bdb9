"""Measured tables: rows read with their sources, exact at measured shapes, log–log between them."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.errors import UserError
from simulator.gpu.profiles import calibration_dir
from simulator.gpu.table_loaders import load_rows, profile_label
from simulator.gpu.tables import Rows, Table, _cell_medians

CAL = calibration_dir()


@pytest.fixture(scope="module")
def h200():
    return load_rows(str(CAL / "h200"), "h200")


@pytest.fixture(scope="module")
def vidur():
    return load_rows(str(CAL / "vidur_h100"), "vidur_h100")


def test_a_measured_gemm_row_is_returned_exactly_with_its_file_and_line(h200):
    # h200/gemm.csv line 46: llama3-70b-tp4 qkv, m=1, n=2560, k=8192, 1.76731e-05 s
    t, src = Table(h200["gemm"]).lookup((2560, 8192, "bf16"), [1.0])
    assert t[0] == pytest.approx(1.76731e-05, rel=1e-13)  # exp(log(x)) rounds the last bit
    assert src[0] == "measured: h200/gemm.csv line 46"


def test_between_rows_the_table_is_linear_in_log_size_and_log_time(h200):
    # lines 47 (m=8: 1.66629e-05 s) and 48 (m=32: 1.74994e-05 s), asked at m = 16
    t, src = Table(h200["gemm"]).lookup((2560, 8192, "bf16"), [16.0])
    w = (math.log(16) - math.log(8)) / (math.log(32) - math.log(8))
    want = math.exp((1 - w) * math.log(1.66629e-05) + w * math.log(1.74994e-05))
    assert t[0] == pytest.approx(want, rel=1e-12)
    assert src[0] == "interpolated: h200/gemm.csv"


def test_outside_the_grid_or_an_unmeasured_shape_gives_nan_not_zero(h200):
    table = Table(h200["gemm"])
    t, src = table.lookup((2560, 8192, "bf16"), [0.5, 9000.0])
    assert np.isnan(t).all() and (src == "").all()
    t, _ = table.lookup((1234, 8192, "bf16"), [16.0])
    assert np.isnan(t).all()


def test_interpolated_times_grow_with_size_between_monotone_rows(h200):
    # from 64 KB up the measured copies take longer with every size; the table must too
    table = Table(h200["copy"])
    x = np.geomspace(65536, 2 * 1024**3, 200)
    t, _ = table.lookup((), x)
    assert np.all(np.isfinite(t))
    assert np.all(np.diff(t) > 0)


def test_an_interpolated_time_lies_between_its_two_measured_neighbours(h200):
    rows = h200["copy"]
    sizes, times = rows.data["bytes"].astype(float), rows.time
    order = np.argsort(sizes)
    sizes, times = sizes[order], times[order]
    rng = np.random.default_rng(0)
    x = rng.uniform(np.log(sizes[0]), np.log(sizes[-1]), 300)
    t, _ = Table(rows).lookup((), np.exp(x))
    i = np.searchsorted(np.log(sizes), x)
    lo, hi = np.minimum(times[i - 1], times[i]), np.maximum(times[i - 1], times[i])
    assert np.all((t >= lo * (1 - 1e-12)) & (t <= hi * (1 + 1e-12)))


def test_two_coordinates_interpolate_bilinearly_in_log_space(h200):
    table = Table(h200["attention"].subset(h200["attention"].data["layout"] == "contiguous"))
    key = (16, 2, 128, "contiguous", 0.0)
    # corners (batch 8, 32) × (context 512, 2048): lines 27-28 region, read from the table itself
    c = {(b, L): table.lookup(key, [b], [L])[0][0] for b in (8, 32) for L in (512, 2048)}
    t, src = table.lookup(key, [16.0], [1024.0])
    wb = (math.log(16) - math.log(8)) / (math.log(32) - math.log(8))
    wl = (math.log(1024) - math.log(512)) / (math.log(2048) - math.log(512))
    want = math.exp((1 - wb) * (1 - wl) * math.log(c[8, 512]) + wb * (1 - wl) * math.log(c[32, 512])
                    + (1 - wb) * wl * math.log(c[8, 2048]) + wb * wl * math.log(c[32, 2048]))
    assert t[0] == pytest.approx(want, rel=1e-12)
    assert src[0] == "interpolated: h200/attn_decode.csv"
    # one coordinate measured, the other between rows: still interpolated
    assert table.lookup(key, [8.0], [1024.0])[1][0] == "interpolated: h200/attn_decode.csv"


def test_rows_measured_twice_at_one_shape_merge_to_their_median():
    rows = Rows(("k",), ("x",), {"k": np.array([1, 1, 1]), "x": np.array([10.0, 10.0, 10.0])},
                np.array([1.0, 2.0, 6.0]), np.array(["f line 2", "f line 3", "f line 4"]))
    t, src = Table(rows).lookup((1,), [10.0])
    assert t[0] == pytest.approx(2.0)
    assert src[0] == "measured: f line 2"


def test_an_even_count_merges_to_the_mean_of_its_middle_two_and_each_cell_keeps_its_first_row():
    # rows out of order over two cells: x = 10 (times 8, 2, 4, 6: median 5) and x = 20 (7)
    rows = Rows(("k",), ("x",), {"k": np.ones(5, int),
                                 "x": np.array([10.0, 20.0, 10.0, 10.0, 10.0])},
                np.array([8.0, 7.0, 2.0, 4.0, 6.0]), np.array([f"f line {i}" for i in range(5)]))
    t, src = Table(rows).lookup((1,), [10.0, 20.0])
    assert t.tolist() == pytest.approx([5.0, 7.0])
    assert src.tolist() == ["measured: f line 0", "measured: f line 1"]


@given(st.lists(st.tuples(st.integers(0, 4), st.floats(1e-7, 1e3)), min_size=1, max_size=30))
def test_cell_medians_are_numpys_median_of_each_cell_bit_for_bit(rows):
    cell = np.array([c for c, _ in rows])
    time = np.array([t for _, t in rows])
    want = [float(np.median(time[cell == c])) for c in np.unique(cell)]
    assert _cell_medians(cell, time).tolist() == want


def test_vidur_rows_become_seconds_and_known_gemm_shapes(vidur):
    g = vidur["gemm"]
    # Llama-2-70B at TP 4 and 1 token, attn_pre_proj: GEMM(1, (64 + 16)·128/4, 8192) = 0.019 ms
    sel = np.flatnonzero((g.data["n"] == 2560) & (g.data["k"] == 8192) & (g.data["m"] == 1)
                         & np.array(["Llama-2-70b" in s for s in g.source]))
    assert sel.size == 1
    assert g.time[sel[0]] == pytest.approx(0.019e-3)
    assert g.data["op"][sel[0]] == "attn_pre_proj"
    # its mlp_down_proj: GEMM(m, 8192, 28672/4)
    assert {(8192.0, 7168.0), (14336.0, 8192.0), (8192.0, 2048.0)} <= set(
        zip(g.data["n"].astype(float), g.data["k"].astype(float), strict=True))
    s = vidur["sendrecv"]
    assert set(s.data["fabric"]) == {"nvlink", "rdma"}


def test_a_folder_without_measurements_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no measurements found"):
        load_rows(str(tmp_path), profile_label(tmp_path))


def test_a_csv_missing_a_column_names_the_file_and_column(tmp_path):
    (tmp_path / "gemm.csv").write_text("model,op,m,n\nx,qkv,1,2\n")
    with pytest.raises(UserError, match=r"gemm.csv: missing column\(s\) dtype, k, time_s"):
        load_rows(str(tmp_path), "t")


@pytest.mark.parametrize("op", ["gemm", "attention", "copy", "indexer", "prefill_attention"])
def test_one_point_lookups_are_the_array_lookups(h200, op):
    # lookup_one (a decode step's hot path, floats instead of arrays) gives the array lookup's
    # time and source at every point: measured rows, between them, on a grid line, beyond
    # either end and at 0 (None where the array gives NaN)
    table = Table(h200[op])
    rng = np.random.default_rng(len(op))
    checked = 0
    for key, (axes, _, _) in list(table._grids.items())[:12]:
        values = [np.exp(a) for a in axes]
        for _ in range(80):
            point = []
            for v in values:
                kind = rng.integers(5)
                if kind == 0:  # a measured coordinate
                    x = float(rng.choice(v))
                elif kind == 1 and v.size > 1:  # between two
                    i = int(rng.integers(v.size - 1))
                    x = float(v[i] + rng.random() * (v[i + 1] - v[i]))
                elif kind == 2:  # beyond the ends
                    x = float(v[0] / 2 if rng.random() < 0.5 else v[-1] * 2)
                elif kind == 3:
                    x = 0.0
                else:
                    x = float(np.exp(rng.uniform(np.log(v[0]), np.log(v[-1]) + 1e-12)))
                point.append(x)
            t, src = table.lookup(key, *[[x] for x in point])
            one = table.lookup_one(key, tuple(point))
            if np.isnan(t[0]):
                assert one is None
            else:
                assert one is not None and one[0] == pytest.approx(float(t[0]), rel=1e-12)
                assert one[1] == src[0]
                checked += 1
    assert checked >= 10  # points inside the grid were among them
    assert table.lookup_one(("no such", "shape"), (1.0,) * len(table.rows.coords)) is None
