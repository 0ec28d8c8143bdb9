"""Scalar and batched hot paths against the general code they shortcut, bit for bit.

Each shortcut promises the general path's exact value (the records of a run must not move):
decode attention on Python floats against 0-d arrays, a profile's float answer against its
array answer, a batched byte counter against one addition after another, a stream's chained
idle spans against an oracle that adds each kernel's run time by hand.
"""

from __future__ import annotations

from functools import reduce
from operator import add

import numpy as np
import pytest
import simpy
from hypothesis import example, given, settings
from hypothesis import strategies as st

from simulator import hardware
from simulator.errors import UserError
from simulator.gpu import operators as ops
from simulator.gpu.profiles import default_profile
from simulator.gpu.streams import Stream
from simulator.network.fabric import fold_sum

H100, H200 = hardware.gpu("H100"), hardware.gpu("H200")
FIT = default_profile(H100).fit("attention").params


@settings(max_examples=300, deadline=None)
@given(batch=st.integers(1, 4096), context=st.floats(1.0, 2e6), q=st.sampled_from([8, 16, 64]),
       kv=st.sampled_from([1, 2, 8]), dim=st.sampled_from([64, 128]),
       gpu=st.sampled_from([H100, H200]))
def test_decode_attention_on_floats_is_its_value_on_0d_arrays(batch, context, q, kv, dim, gpu):
    args = [float(v) for v in (batch, context, q, kv, dim)]
    scalar = ops.decode_attention(FIT, gpu, *args)
    array = ops.decode_attention(FIT, gpu, *[np.asarray(v) for v in args])
    assert float(scalar) == float(array)  # the same bits, not merely close


def test_a_profiles_float_attention_is_its_timing_or_none_where_a_table_answers():
    answered = []
    for gpu in (H100, H200):
        p = default_profile(gpu)
        for b, n in ((1, 17.0), (32, 1234.5), (256, 131072.0), (7, 3.0)):
            got = p.attention_seconds(b, n, 64.0, 8.0, 128.0)
            if got is None:  # a measured table exists here: the caller asks attention()
                assert p._table("attention", "attention", ("layout", "contiguous")) is not None
                continue
            answered.append(gpu.name)
            assert got == float(p.attention(b, n, 64.0, 8.0, 128.0).time)
    assert "H100" in answered  # the path the homogeneous TP4 workload takes is exercised


@settings(max_examples=200, deadline=None)
@given(batch=st.sampled_from([0, 1, 3, 32, 255, 4096]), tokens=st.floats(-1.0, 2e6),
       model=st.sampled_from(["llama-3-70b", "deepseek-v3"]), heads=st.sampled_from([None, 2]),
       gpu=st.sampled_from(["H100", "H200"]), kind=st.sampled_from(["measured", "paged",
                                                                     "roofline"]))
@example(batch=0, tokens=100.0, model="llama-3-70b", heads=None, gpu="H100", kind="measured")
@example(batch=8, tokens=0.0, model="llama-3-70b", heads=None, gpu="H100", kind="measured")
def test_an_attention_timer_gives_attention_times_floats(batch, tokens, model, heads, gpu,
                                                         kind):
    # the timer a loop keeps (lookups done once) against the general call, bit for bit: GQA
    # with a fitted model (H100: its fast path), a measured table (H200), paged KV, MLA, the
    # roofline; no queries or no tokens: 0
    from simulator.gpu.kernels import KernelModel
    from simulator.gpu.profiled import ProfiledKernels
    from simulator.models import model as architecture

    km = KernelModel() if kind == "roofline" else ProfiledKernels(paged_kv=kind == "paged")
    spec, arch = hardware.gpu(gpu), architecture(model)
    heads = heads if arch.attention in ("gqa", "mha") else None
    timer = km.attention_timer(spec, arch, heads)
    assert timer(batch, tokens) == km.attention_time(spec, arch, batch, tokens, heads)


def _table_shapes(gpu, op: str) -> list[tuple]:
    """The exact-match keys of ``gpu``'s measured ``op`` table (empty where it has none)."""
    table = default_profile(gpu)._table(op, op)
    return [] if table is None else sorted(table._grids, key=str)


_GEMM_KEYS = {g.name: _table_shapes(g, "gemm") for g in (H100, H200)}
_ELEM_KEYS = {g.name: _table_shapes(g, "elementwise") for g in (H100, H200)}
_A100 = hardware.gpu("A100")  # no table: every answer extrapolated from another GPU's fit
_rows = st.one_of(st.integers(1, 4096).map(float), st.floats(0.05, 2e6))


@settings(max_examples=300, deadline=None)
@given(m=_rows, n=st.floats(1.0, 4e4), k=st.floats(1.0, 4e4), fp8=st.booleans(),
       groups=st.sampled_from([1.0, 8.0, 256.0, 0.5, 1.5]), gpu=st.sampled_from([H100, H200]))
def test_the_gemm_model_on_floats_is_its_value_on_0d_arrays(m, n, k, fp8, groups, gpu):
    fit = default_profile(gpu).fit("gemm").params
    params = {key: float(v) for key, v in fit.items()}
    scalar = ops.gemm(params, gpu, m, n, k, fp8, groups)
    array = ops.gemm(fit, gpu, *[np.asarray(v) for v in (m, n, k)], np.asarray(fp8),
                     np.asarray(groups))
    assert type(scalar) is float and scalar == float(array)


def test_floats_mixed_with_arrays_take_the_array_path_element_by_element():
    # one argument an array is enough for the array path: GEMMs of two widths, one bf16 and one
    # fp8, with the rows as a Python float, give each shape's value on floats
    fit = default_profile(H100).fit("gemm").params
    params = {key: float(v) for key, v in fit.items()}
    n, fp8 = np.array([1024.0, 7168.0]), np.array([False, True])
    got = ops.gemm(fit, H100, 64.0, n, 4096.0, fp8, 1.0)
    assert got.shape == (2,)
    # (close, not equal: numpy may take a vectorized pow over an array of several elements)
    assert list(got) == pytest.approx([ops.gemm(params, H100, 64.0, 1024.0, 4096.0, False, 1.0),
                                       ops.gemm(params, H100, 64.0, 7168.0, 4096.0, True, 1.0)],
                                      rel=1e-12)


@settings(max_examples=300, deadline=None)
@given(m=_rows, w=st.floats(1.0, 4e4), kind=st.sampled_from(sorted(ops.ELEMENTWISE_KINDS)),
       gpu=st.sampled_from([H100, H200]))
def test_the_elementwise_model_on_floats_is_its_value_on_0d_arrays(m, w, kind, gpu):
    fit = default_profile(gpu).fit("elementwise").params
    params = {key: float(v) for key, v in fit.items()}
    scalar = ops.elementwise(params, gpu, kind, m, w)
    assert type(scalar) is float
    assert scalar == float(ops.elementwise(fit, gpu, kind, np.asarray(m), np.asarray(w)))


@settings(max_examples=400, deadline=None)
@given(data=st.data(), m=_rows, gpu=st.sampled_from([H100, H200, _A100]),
       groups=st.sampled_from([1.0, 1.0, 1.0, 16.0]), dtype=st.sampled_from(["bf16", "fp8"]))
def test_a_profiles_float_gemm_is_its_timing_and_source(data, m, gpu, groups, dtype):
    # shapes a measured table holds (H100, H200), where it answers or interpolates, and any other
    keys = _GEMM_KEYS.get(gpu.name, [])
    if keys and data.draw(st.booleans()):
        n, k, dtype = data.draw(st.sampled_from(keys))
        n, k, dtype = float(n), float(k), str(dtype)
    else:
        n, k = data.draw(st.floats(1.0, 4e4)), data.draw(st.floats(1.0, 4e4))
    p = default_profile(gpu)
    want = p.gemm(m, n, k, dtype, groups)
    assert p.gemm_seconds(m, n, k, dtype, groups) == (float(want.time), str(want.source))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), m=_rows, gpu=st.sampled_from([H100, H200, _A100]))
def test_a_profiles_float_elementwise_is_its_timing_and_source(data, m, gpu):
    keys = _ELEM_KEYS.get(gpu.name, [])
    if keys and data.draw(st.booleans()):
        kind, w = data.draw(st.sampled_from(keys))
        kind, w = str(kind), float(w)
    else:
        kind = data.draw(st.sampled_from(sorted(ops.ELEMENTWISE_KINDS)))
        w = data.draw(st.floats(1.0, 4e4))
    p = default_profile(gpu)
    want = p.elementwise(kind, m, w)
    assert p.elementwise_seconds(kind, m, w) == (float(want.time), str(want.source))


def test_the_float_profile_answers_cover_tables_and_models():
    # the properties above meet every kind of answer: a measured point, an interpolation, the
    # fit on the GPU measured, and an extrapolation to another GPU
    h100, a100 = default_profile(H100), default_profile(_A100)
    n, k, _ = _GEMM_KEYS["H100"][0]
    kind, w = _ELEM_KEYS["H100"][0]
    seen = {h100.gemm_seconds(1.0, float(n), float(k))[1].split(":")[0],
            h100.gemm_seconds(3.5, float(n), float(k))[1].split(":")[0],
            h100.gemm_seconds(3.5, 777.0, 333.0)[1].split(":")[0],
            a100.gemm_seconds(3.5, 777.0, 333.0)[1].split(":")[0],
            h100.elementwise_seconds(str(kind), 3.5, float(w))[1].split(":")[0]}
    assert seen == {"measured", "interpolated", "fitted", "extrapolated"}
    with pytest.raises(UserError, match="elementwise kind 'softmax'"):
        h100.elementwise_seconds("softmax", 1.0, 1.0)


_int_bytes = st.integers(0, 2 ** 40).map(float)
_any = st.floats(-1e15, 1e15, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(start=st.one_of(_int_bytes, _any, st.just(2.0 ** 53 - 4)),
       values=st.lists(st.one_of(_int_bytes, _any, st.just(3.0)), max_size=40))
def test_fold_sum_is_one_addition_after_another(start, values):
    want = reduce(add, values, start)
    got = fold_sum(start, np.array(values, float))
    assert got == want and np.signbit(got) == np.signbit(want)
    assert fold_sum(start, values) == want  # a list: the additions themselves


def test_fold_sum_keeps_a_negative_zero_as_the_additions_do():
    # numpy's sum of [-0.0] is 0.0 (it starts from +0.0); one addition after another keeps the
    # sign: -0.0 + -0.0 = -0.0, and only an exact zero start of either sign is integral
    for start, values, negative in ((-0.0, [-0.0], True), (-0.0, [-0.0, -0.0], True),
                                    (0.0, [-0.0], False), (-0.0, [0.0], False)):
        got = fold_sum(start, np.array(values))
        assert got == 0.0 and bool(np.signbit(got)) is negative


def test_fold_sum_keeps_order_where_integers_stop_being_exact():
    # past 2**53 a sum of integers depends on its order: the exact branch must not be taken
    start, values = 2.0 ** 53, np.array([1.0, 1.0, 2.0])
    assert fold_sum(start, values) == ((start + 1.0) + 1.0) + 2.0 != start + values.sum()


def _ran_by_hand(kernels: list[float], waits: list[float], at: float, now: float) -> float:
    """Kernel time run by ``now`` of a chain issued at ``at`` on an idle stream [s]."""
    t, total = at, 0.0
    for k, w in zip(kernels, waits, strict=True):
        total += max(0.0, min(t + k, now) - t) if now > t else 0.0
        t += k + w
    return total


@settings(max_examples=150, deadline=None)
@given(kernels=st.lists(st.floats(0.001, 1.0), min_size=1, max_size=12),
       waits=st.data(), stop=st.floats(0.0, 1.0))
def test_busy_time_of_a_chain_counts_what_ran_by_now(kernels, waits, stop):
    w = waits.draw(st.lists(st.sampled_from([0.0, 0.01, 0.3]), min_size=len(kernels),
                            max_size=len(kernels)))
    env = simpy.Environment()
    s = Stream(env)
    s.issue(0.05)  # a kernel already queued: the chain starts after an idle span
    times = s.chain(0.2, np.array(kernels), np.array(w))
    end = float(times[-1])
    now = 0.2 + stop * (end - 0.2)
    env.run(until=now) if now > 0 else None
    assert s.busy_time == pytest.approx(0.05 + _ran_by_hand(kernels, w, 0.2, now), abs=1e-12)
    env.run(until=end + 1.0)
    assert s.busy_time == pytest.approx(0.05 + sum(kernels), abs=1e-12)
    assert s.kernels_run == len(kernels) + 1


def test_busy_time_reads_single_spans_and_chained_spans_together():
    env = simpy.Environment()
    s = Stream(env)
    nxt = s.quiet_layer(0.5, 0.1, 0.2, 1)  # idle 0–0.5, then 0.3 s of kernels: a float span
    assert nxt == pytest.approx(0.8)
    s.chain(1.0, np.array([0.2, 0.2]), np.array([0.1, 0.0]))  # idle 0.8–1.0, then 1.2–1.3
    env.run(until=1.25)  # ran: 0.3 (layer) + 0.2 (first chained kernel)
    assert s.busy_time == pytest.approx(0.5, abs=1e-12)
    env.run(until=1.4)  # and 0.1 of the second
    assert s.busy_time == pytest.approx(0.6, abs=1e-12)


def _tables():
    from simulator.gpu.profiles import calibration_dir
    from simulator.gpu.table_loaders import load_rows
    from simulator.gpu.tables import Table

    cal = calibration_dir()
    out = []
    for folder, label in (("h200", "h200"), ("vidur_h100", "vidur_h100")):
        for op, rows in sorted(load_rows(str(cal / folder), label).items()):
            if len(rows) and rows.coords:  # (a table with no coordinate is not looked up)
                out.append((f"{label}/{op}", Table(rows)))
    return out


TABLES = _tables()


@settings(max_examples=400, deadline=None)
@given(which=st.integers(0, len(TABLES) - 1), data=st.data())
def test_lookup_one_is_lookup_at_one_point(which, data):
    # measured points, points between them, outside, at zero: time and source the same
    name, table = TABLES[which]
    key = data.draw(st.sampled_from(sorted(table._grids, key=repr)))
    axes = table._grids[key][0]
    coords = []
    for a in axes:
        kind = data.draw(st.sampled_from(["measured", "near", "between", "any", "zero"]))
        if kind == "measured":
            coords.append(float(np.exp(data.draw(st.sampled_from(a.tolist())))))
        elif kind == "near":  # a hair above a measured point: still that point (1e-9 in log)
            coords.append(float(np.exp(data.draw(st.sampled_from(a.tolist())) + 5e-10)))
        elif kind == "between":
            coords.append(float(np.exp(data.draw(st.floats(float(a[0]), float(a[-1]))))))
        elif kind == "any":
            coords.append(data.draw(st.floats(1e-3, 1e12)))
        else:
            coords.append(0.0)
    t, s = table.lookup(key, *[np.array([c]) for c in coords])
    got = table.lookup_one(key, tuple(coords))
    if np.isfinite(t[0]):
        assert got == (float(t[0]), s[0]), name
    else:
        assert got is None, name


def test_lookup_one_answers_measured_and_interpolated_points():
    kinds = set()
    for _, table in TABLES:
        for key, (axes, _, _) in list(table._grids.items())[:3]:
            a = axes[0]
            if a.size < 2:
                continue
            point = [float(np.exp(x[0])) for x in axes]
            kinds.add((table.lookup_one(key, tuple(point)) or (0, "none:"))[1].split(":")[0])
            point[0] = float(np.exp((a[0] + a[1]) / 2))
            kinds.add((table.lookup_one(key, tuple(point)) or (0, "none:"))[1].split(":")[0])
    assert {"measured", "interpolated"} <= kinds


def _spread_one_by_one(key, start, end, nbytes, edges_at, nkeys):
    """The oracle: each record's bytes over its bins by a loop, the one-bin records first."""
    nbins = len(edges_at) - 1
    out = np.zeros((nkeys, nbins))
    first = np.clip(np.searchsorted(edges_at, start, "right") - 1, 0, nbins - 1)
    last = np.clip(np.searchsorted(edges_at, end, "left") - 1, 0, nbins - 1)
    for i in range(len(key)):  # within one bin: all its bytes there
        if first[i] >= last[i]:
            out[key[i], first[i]] += nbytes[i]
    for i in range(len(key)):  # across bin edges: in proportion to the overlap
        if first[i] < last[i]:
            for b in range(first[i], last[i] + 1):
                overlap = min(edges_at[b + 1], end[i]) - max(edges_at[b], start[i])
                out[key[i], b] += nbytes[i] * overlap / (end[i] - start[i])
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0.0, 10.0), st.floats(0.0, 6.0),
                          st.floats(0.0, 1e6)), max_size=40),
       st.floats(0.3, 4.0), st.booleans())
def test_spread_is_a_loop_over_the_records_bit_for_bit(rows, bin_time, sort):
    # straddling records are spread as arrays (np.add.at): each cell gets the same additions
    # in the same order as a loop over the records, bin after bin, gives it; only the keys
    # that occur get rows
    from simulator.network.binning import bin_edges, spread

    if sort:
        rows = sorted(rows, key=lambda r: r[1])
    key = np.array([r[0] for r in rows], np.int64)
    start = np.array([r[1] for r in rows])
    end = start + np.array([r[2] for r in rows])
    nbytes = np.array([r[3] for r in rows])
    _, edges = bin_edges("t", bin_time, 12.0)
    keys, rows = spread(key, start, end, nbytes, edges, 4)
    want = _spread_one_by_one(key, start, end, nbytes, edges, 4)
    if 4 * (len(edges) - 1) <= len(key):  # every key's row: no more than the records
        assert keys == slice(None) and rows.shape == want.shape
    else:  # only the keys that occur
        assert keys.tolist() == sorted(set(key.tolist()))
    got = np.zeros_like(want)
    got[keys] += rows
    assert got.tolist() == want.tolist()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.floats(0.0, 10.0),
                          st.floats(0.0, 6.0), st.floats(0.0, 1e6)), max_size=40),
       st.floats(0.3, 4.0))
def test_spread_under_two_keyings_at_once_is_each_alone_bit_for_bit(rows, bin_time):
    # one pass for a route keying and a (route, class) keying gives what each spread alone
    # gives: the same keys, rows and floats (the link and class timelines share the pass)
    from simulator.network.binning import bin_edges, spread, spread_keys

    route = np.array([r[0] for r in rows], np.int64)
    tag = np.array([r[1] for r in rows], np.int8)
    start = np.array([r[2] for r in rows])
    end, nbytes = start + np.array([r[3] for r in rows]), np.array([r[4] for r in rows])
    _, edges = bin_edges("t", bin_time, 12.0)
    both = spread_keys([(route, 4), (route * 3 + tag, 12)], start, end, nbytes, edges)
    for (keys, got), (key, nkeys) in zip(both, [(route, 4), (route * 3 + tag, 12)],
                                         strict=True):
        want_keys, want = spread(key, start, end, nbytes, edges, nkeys)
        assert str(keys) == str(want_keys) and got.tobytes() == want.tobytes()

@settings(max_examples=200, deadline=None)
@given(st.floats(0.3, 4.0), st.data())
def test_spread_puts_records_on_bin_edges_where_searchsorted_does(bin_time, data):
    # starts and ends on the bin edges themselves, before the first and past the last: a start
    # on an edge opens the bin after it, an end on an edge closes the bin before it (the
    # oracle's searchsorted, right and left), times outside [0, now] in the end bins
    from simulator.network.binning import bin_edges, spread

    _, edges = bin_edges("t", bin_time, 12.0)
    times = st.one_of(st.sampled_from(edges.tolist()), st.floats(-1.0, 14.0))
    pairs = data.draw(st.lists(st.tuples(times, times), max_size=30))
    start = np.array([min(a, b) for a, b in pairs])
    end = np.array([max(a, b) for a, b in pairs])
    key = np.array(data.draw(st.lists(st.integers(0, 3), min_size=len(pairs),
                                      max_size=len(pairs))), np.int64)
    nbytes = np.array(data.draw(st.lists(st.floats(0.0, 1e6), min_size=len(pairs),
                                         max_size=len(pairs))))
    keys, rows = spread(key, start, end, nbytes, edges, 4)
    got = np.zeros((4, len(edges) - 1))
    got[keys] += rows
    assert got.tolist() == _spread_one_by_one(key, start, end, nbytes, edges, 4).tolist()
