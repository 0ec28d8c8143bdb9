"""Link accounting by hand (:class:`simulator.network.linkstats.LinkStats`): a link's bytes and
busy time from its load changes, lone flows spread over their routes' links, bytes by traffic
class, the timelines' bins and utilizations, records moved on to temporary columns (spilled)
changing nothing — on three links with round figures, without a fabric in between."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.network import linkstats
from simulator.network.linkstats import LinkStats
from simulator.network.traffic import TRAFFIC_CLASSES

EDGES = [("a", "b"), ("b", "c"), ("c", "a")]
KINDS = ["nvlink", "nvlink", "pcie"]
CAP = [100.0, 100.0, 10.0]  # [B/s]


def stats() -> LinkStats:
    return LinkStats(EDGES, KINDS, CAP)


def loads(s: LinkStats, now: float, **load_of) -> None:
    """Set links' loads at ``now`` (``l0=40.0``: link 0 carries 40 B/s from then on)."""
    res = [c - load_of.get(f"l{i}", s.load[i]) for i, c in enumerate(CAP)]
    s.update(range(len(EDGES)), res, now)


def test_bytes_and_busy_time_follow_the_load_changes():
    s = stats()
    loads(s, 1.0, l0=40.0)
    loads(s, 3.0, l0=0.5, l1=20.0)  # a load below 1 B/s still counts
    loads(s, 5.0, l0=0.0)
    f = s.frame(6.0).set_index("src")
    assert f.loc["a", "bytes"] == pytest.approx(40 * 2 + 0.5 * 2)
    assert f.loc["a", "busy_time"] == pytest.approx(4.0)
    # link 1 is still loaded at the end: its last load holds until now
    assert f.loc["b", "bytes"] == pytest.approx(20 * 3) and f.loc["b", "busy_time"] == 3.0
    assert f.loc["c", "bytes"] == 0.0 and f.loc["c", "busy_time"] == 0.0
    assert f.loc["a", "utilization"] == pytest.approx(81 / (100 * 6.0))
    assert s.frame(0.0)["utilization"].tolist() == [0.0, 0.0, 0.0]
    assert s.tl_link.tolist() == [0, 0, 1, 0]  # only the changes are recorded
    tl = s.timeline(0.5, 6.0)
    a = tl[tl["src"] == "a"]
    assert a["bytes"].tolist()[:4] == pytest.approx([0, 0, 20, 20])
    assert a["utilization"].tolist()[:4] == pytest.approx([0, 0, 0.4, 0.4])  # 20 B / (100 × 0.5)
    # link b: loaded from 3 s to the end, past its last change point
    assert tl[tl["src"] == "b"]["bytes"].tolist() == pytest.approx([0] * 6 + [10] * 6)


def test_a_link_still_loaded_below_one_byte_a_second_at_the_end_is_busy():
    s = stats()
    loads(s, 1.0, l2=0.25)
    f = s.frame(3.0).set_index("src")
    assert f.loc["c", "busy_time"] == 2.0 and f.loc["c", "bytes"] == pytest.approx(0.5)


def test_lone_flows_count_on_every_link_of_their_route():
    s = stats()
    r01, r2 = s.route((0, 1)), s.route((2,))
    assert s.route((0, 1)) == r01 and (r01, r2) == (0, 1)  # registered once
    s.interval(r01, 1.0, 2.0, 50.0)
    s.interval(r2, 0.0, 4.0, 8.0, tag=1)
    loads(s, 2.0, l0=10.0)  # a class on link 0 after the lone flow: the two parts add
    f = s.frame(4.0)
    assert f["bytes"].tolist() == pytest.approx([50 + 20, 50, 8])
    assert f["busy_time"].tolist() == pytest.approx([1 + 2, 1, 4])


def test_many_intervals_at_once_are_the_same_records_as_one_by_one():
    one, many = stats(), stats()
    for s in (one, many):
        s.route((0,))
        s.route((1, 2))
    rows = [(0, 0.0, 1.0, 5.0, 0), (1, 0.5, 2.0, 3.0, 1), (0, 1.0, 1.5, 2.0, 2)]
    for r in rows:
        one.interval(*r)
    cols = [np.array(c) for c in zip(*rows, strict=True)]
    many.intervals(*cols)
    many.intervals([0], [2.0], [3.0], [1.0], [0])  # sequences too
    one.interval(0, 2.0, 3.0, 1.0, 0)
    for name in ("lo_route", "lo_start", "lo_end", "lo_bytes", "lo_tag"):
        assert getattr(one, name).tolist() == getattr(many, name).tolist(), name


@pytest.mark.parametrize("later", ["row", "batch", "spill, row", "spill, batch",
                                   "spill, batch of 4", "route"])
def test_a_report_between_records_sees_the_records_added_after_it(monkeypatch, later):
    # the lone records' tables are kept between reports (the links table and the bytes by
    # class read the same sums, the two timelines the same bins) — until a record is added,
    # however it is kept (array rows, a batch held, rows moved on), or a route appears. The
    # record counts are chosen so that a count that left out where rows are kept, or took
    # one from another, would come out the same before and after
    monkeypatch.setattr(linkstats, "BULK_ROWS", 2)
    early, twin = stats(), stats()
    for s in (early, twin):
        s.route((0,))
        s.intervals(np.array([0, 0], np.int32), np.array([0.0, 0.5]), np.array([1.0, 1.0]),
                    np.array([2.0, 3.0]), np.array([1, 1], np.int8))  # 5 B, held as a batch
    reports = (lambda s: s.frame(4.0), lambda s: s.by_class(),
               lambda s: s.timeline(0.5, 4.0), lambda s: s.class_timeline(0.5, 4.0))
    for report in reports:  # kept: the tables of these records
        report(early)
    for s in (early, twin):
        if later.startswith("spill"):  # the first batch moved on first
            s.spill(rows=1)
        if later.endswith("row"):
            s.interval(0, 1.0, 2.0, 3.0, tag=2)
        elif "batch" in later:  # 4 B in two records (or four)
            n = 4 if later.endswith("of 4") else 2
            s.intervals(np.zeros(n, np.int32), np.linspace(1.0, 2.0, n), np.full(n, 3.0),
                        np.full(n, 4.0 / n), np.array([2, 1] * (n // 2), np.int8))
        else:  # a flow that shared links: a route, no lone record
            s.shared(s.route((1, 2)), 2, 0.0, 2.0, 3.0)
    for report in reports:
        pd.testing.assert_frame_equal(report(early), report(twin), check_exact=True)
    # lone bytes over all links: 5 B first, then 3 B in a row, 4 B in a batch (none, route)
    want = 5.0 + (3.0 if later.endswith("row") else 4.0 if "batch" in later else 0.0)
    assert early.frame(4.0)["bytes"].sum() == want


def test_a_class_timeline_too_large_to_keep_with_the_link_timeline_is_the_same(monkeypatch):
    # above KEEP_CELLS the class timeline makes its own pass over the lone records: the same
    # table as from the one kept beside the link timeline (lone records of two classes on
    # shared links, and a record of a flow that shared links, in the class timeline only)
    from simulator.network import lone_tables

    tables = []
    cells = 3 * len(TRAFFIC_CLASSES) * 8  # routes × classes × bins: kept up to this many
    for keep in (cells, cells - 1):
        monkeypatch.setattr(lone_tables, "KEEP_CELLS", keep)
        s = stats()
        s.interval(s.route((0, 2)), 0.2, 1.7, 6.0, tag=0)
        s.interval(s.route((0,)), 1.1, 3.2, 0.7, tag=3)
        s.shared(s.route((1,)), 2, 0.5, 2.0, 4.0)
        s.timeline(0.5, 4.0)
        tables.append(s.class_timeline(0.5, 4.0))
        per_class = s._lone_spread(np.linspace(0.0, 4.0, 9))[1]  # kept by the timeline
        assert (per_class is None) == (keep < cells)
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)
    assert set(tables[0]["traffic_class"]) == {TRAFFIC_CLASSES[t] for t in (0, 2, 3)}


def test_timelines_of_other_bins_are_not_the_kept_ones():
    # the lone tables kept for one bin length do not answer for another
    early, twin = stats(), stats()
    for s in (early, twin):
        s.interval(s.route((0, 2)), 0.2, 1.7, 6.0, tag=0)
        s.interval(s.route((1,)), 1.1, 3.2, 0.7, tag=3)
    early.timeline(0.5, 4.0), early.class_timeline(0.5, 4.0)
    for report in (lambda s: s.timeline(1.0, 4.0), lambda s: s.class_timeline(1.0, 4.0),
                   lambda s: s.timeline(1.0, 3.0)):
        pd.testing.assert_frame_equal(report(early), report(twin), check_exact=True)

def test_bytes_by_class_spread_over_the_routes_links():
    s = stats()
    r = s.route((0, 2))
    s.interval(r, 0.0, 1.0, 6.0, tag=0)
    s.interval(r, 1.0, 2.0, 0.5, tag=1)  # half a byte is still listed
    s.shared(s.route((1,)), 2, 0.0, 2.0, 4.0)
    got = s.by_class()
    want = pd.DataFrame([("a", "b", "nvlink", TRAFFIC_CLASSES[0], 6.0),
                         ("a", "b", "nvlink", TRAFFIC_CLASSES[1], 0.5),
                         ("b", "c", "nvlink", TRAFFIC_CLASSES[2], 4.0),
                         ("c", "a", "pcie", TRAFFIC_CLASSES[0], 6.0),
                         ("c", "a", "pcie", TRAFFIC_CLASSES[1], 0.5)],
                        columns=["src", "dst", "kind", "traffic_class", "bytes"])
    pd.testing.assert_frame_equal(got, want)


def test_the_class_timeline_bins_bytes_and_utilization_per_kind():
    s = stats()
    r = s.route((0, 2))
    s.interval(r, 0.5, 1.5, 10.0, tag=0)  # straddles the edge at 1: half in each of two bins
    tl = s.class_timeline(0.5, 2.0)
    assert tl.index.tolist() == list(range(len(tl)))
    nv = tl[tl["kind"] == "nvlink"]
    assert nv["start_at"].tolist() == [0.0, 0.5, 1.0, 1.5]
    assert nv["end_at"].tolist() == [0.5, 1.0, 1.5, 2.0]
    assert nv["bytes"].tolist() == pytest.approx([0.0, 5.0, 5.0, 0.0])
    # utilization: bytes over the kind's summed line rate (two nvlinks: 200 B/s) × 0.5 s
    assert nv["utilization"].tolist() == pytest.approx([0, 5 / 100, 5 / 100, 0])
    pc = tl[tl["kind"] == "pcie"]
    assert pc["utilization"].tolist() == pytest.approx([0, 5 / 5, 5 / 5, 0])
    assert set(tl["traffic_class"]) == {TRAFFIC_CLASSES[0]}
    assert stats().class_timeline(1.0, 2.0).empty


def test_a_timeline_of_a_run_of_no_time_is_one_empty_bin():
    s = stats()
    s.interval(s.route((0,)), 0.0, 0.0, 5.0)  # bytes at the instant 0: a bin of no length
    tl = s.timeline(1.0, 0.0)
    assert tl["start_at"].tolist() == [0.0] * 3 and tl["end_at"].tolist() == [0.0] * 3
    assert tl["bytes"].tolist() == [5.0, 0.0, 0.0]
    assert tl["utilization"].tolist() == [0.0] * 3  # not 5 B over 0 s
    ct = s.class_timeline(1.0, 0.0)
    assert ct["bytes"].tolist() == [5.0] and ct["utilization"].tolist() == [0.0]


def test_spilling_moves_records_on_once_a_column_is_long_and_changes_nothing(monkeypatch):
    monkeypatch.setattr(linkstats, "PIECE_ROWS", 2)  # totals over pieces of two records
    kept, moved = stats(), stats()
    for s in (kept, moved):
        r = s.route((0, 1))
        for k in range(5):
            s.interval(r, float(k), k + 0.5, 1.0 + k, tag=k % 2)
    loads(kept, 1.0, l2=5.0)
    loads(moved, 1.0, l2=5.0)
    moved.spill(rows=6)  # no column holds 6 records yet: nothing moves
    assert moved._spills is None
    moved.spill(rows=5)  # the lone flows' columns do
    assert moved._spills is not None and len(moved.lo_route) == 0
    for s in (kept, moved):  # records after the spill join those moved on
        s.interval(s.route((0, 1)), 6.0, 7.0, 100.0)
        loads(s, 7.0, l2=0.0)
    pd.testing.assert_frame_equal(moved.frame(8.0), kept.frame(8.0))
    pd.testing.assert_frame_equal(moved.by_class(), kept.by_class())
    pd.testing.assert_frame_equal(moved.timeline(1.0, 8.0), kept.timeline(1.0, 8.0))
    assert kept.frame(8.0)["bytes"].tolist() == pytest.approx([115, 115, 30])


@pytest.mark.parametrize("piece_rows", [2, 3, 1 << 20])
def test_a_links_timeline_carries_its_bytes_across_pieces_of_records(monkeypatch, piece_rows):
    # the change points are taken CHANGE_ROWS at a time: a link's bytes so far, its last time
    # and load carry over from one piece to the next
    monkeypatch.setattr(linkstats, "CHANGE_ROWS", piece_rows)
    s = stats()
    for t, l0 in ((1.0, 10.0), (2.0, 30.0), (3.0, 0.0), (4.0, 20.0), (6.0, 0.0)):
        loads(s, t, l0=l0, l1=l0 / 2)
    tl = s.timeline(1.0, 7.0)
    assert tl[tl["src"] == "a"]["bytes"].tolist() == pytest.approx([0, 10, 30, 0, 20, 20, 0])
    assert tl[tl["src"] == "b"]["bytes"].tolist() == pytest.approx([0, 5, 15, 0, 10, 10, 0])
    assert tl[tl["src"] == "a"]["utilization"].tolist() == pytest.approx(
        [0, 0.1, 0.3, 0, 0.2, 0.2, 0])
    assert (tl[tl["src"] == "c"]["bytes"] == 0).all()


def test_a_flow_at_the_runs_last_instant_or_past_it_counts_in_the_last_bin():
    s = stats()
    r = s.route((0,))
    s.interval(r, 2.0, 2.0, 4.0)   # no length, at the end
    s.interval(r, 1.5, 3.0, 30.0)  # reserved past the instant the timeline is drawn at
    s.interval(r, 0.25, 0.75, 2.0)
    tl = s.timeline(1.0, 2.0)
    assert tl[tl["src"] == "a"]["bytes"].tolist() == pytest.approx([2.0, 34.0])
    assert (tl[tl["src"] != "a"]["bytes"] == 0).all()


@pytest.mark.parametrize("column", ["tl_link", "lo_route", "sh_route"])
def test_any_one_column_at_the_limit_moves_the_records_on(column):
    s = stats()
    r = s.route((0,))
    for k in range(3):
        if column == "tl_link":
            loads(s, float(k + 1), l0=float(k + 1))
        elif column == "lo_route":
            s.interval(r, float(k), k + 0.5, 1.0)
        else:
            s.shared(r, 1, float(k), k + 0.5, 1.0)
    before = s.frame(4.0)
    s.spill(rows=4)
    assert s._spills is None and len(getattr(s, column)) == 3
    s.spill(rows=3)
    assert s._spills is not None and len(getattr(s, column)) == 0
    pd.testing.assert_frame_equal(s.frame(4.0), before)


ROUTE_LINKS = ((0,), (0, 1), (2,))


@given(st.lists(st.one_of(
    st.tuples(st.just("one"), st.integers(0, 2), st.floats(0.0, 9.0), st.floats(0.0, 2.0),
              st.floats(0.0, 50.0), st.integers(0, 2)),
    st.tuples(st.just("batch"), st.integers(1, 9), st.integers(0, 1 << 16)),
    st.tuples(st.just("spill"), st.integers(0, 6))), max_size=12),
    st.integers(1, 5), st.integers(1, 4))
def test_records_handed_over_in_batches_held_or_moved_on_give_the_same_bits(
        ops, piece_rows, bulk_rows):
    # a twin takes every record one by one (the array columns); the other takes batches of at
    # least BULK_ROWS as arrays (held as they are), moves records on to spill columns at random
    # — the totals, bytes by class and both timelines are equal bit for bit, since pieces are
    # cut at the same rows wherever the records are kept
    import simulator.network.linkstats as ls

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ls, "PIECE_ROWS", piece_rows)
        mp.setattr(ls, "BULK_ROWS", bulk_rows)
        one_by_one, handed = stats(), stats()
        one_by_one.timed = handed.timed = True  # both count overlaps once (a sweep)
        for s in (one_by_one, handed):
            for links in ROUTE_LINKS:
                s.route(links)
        for op in ops:
            if op[0] == "one":
                _, rid, start, length, nbytes, tag = op
                for s in (one_by_one, handed):
                    s.interval(rid, start, start + length, nbytes, tag)
            elif op[0] == "batch":
                _, n, seed = op
                rng = np.random.default_rng(seed)
                rid = rng.integers(0, 3, n).astype(np.int32)
                start = np.sort(rng.uniform(0.0, 9.0, n))
                end = start + rng.uniform(0.0, 2.0, n)
                nbytes, tag = rng.uniform(0.0, 50.0, n), rng.integers(0, 3, n).astype(np.int8)
                handed.intervals(rid, start, end, nbytes, tag)
                for row in zip(rid.tolist(), start.tolist(), end.tolist(), nbytes.tolist(),
                               tag.tolist(), strict=True):
                    one_by_one.interval(*row)
            else:
                handed.spill(rows=op[1], spill_bytes=16)  # a file once past 16 B
        assert any(op[0] == "batch" and op[1] >= bulk_rows for op in ops) or not handed._held
        for got, want in ((handed.frame(11.0), one_by_one.frame(11.0)),
                          (handed.by_class(), one_by_one.by_class()),
                          (handed.timeline(1.5, 11.0), one_by_one.timeline(1.5, 11.0)),
                          (handed.class_timeline(1.5, 11.0),
                           one_by_one.class_timeline(1.5, 11.0))):
            pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_a_batch_is_held_after_the_rows_before_it_and_moved_on_before_the_rows_after_it(
        monkeypatch):
    monkeypatch.setattr(linkstats, "BULK_ROWS", 2)
    s = stats()
    r = s.route((0,))
    s.interval(r, 0.0, 1.0, 1.0)
    s.intervals(np.array([r, r], np.int32), np.array([1.0, 2.0]), np.array([2.0, 3.0]),
                np.array([2.0, 3.0]), np.zeros(2, np.int8))
    assert len(s.lo_route) == 0 and [len(b[0]) for b in s._held] == [1, 2]
    s.intervals([r], [3.0], [4.0], [4.0], [0])  # a list, or an array under BULK_ROWS: the
    s.intervals(np.array([r], np.int32), np.array([4.0]), np.array([5.0]), np.array([5.0]),
                np.zeros(1, np.int8))  # array columns
    assert len(s.lo_route) == 2
    s.spill(rows=5)  # five lone records in all: every one moves on, batches first
    assert not s._held and len(s.lo_route) == 0
    assert s._spills["lo_bytes"].array().tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_bins_end_at_now_and_a_remainder_under_a_billionth_of_a_bin_joins_the_last():
    from simulator.network.binning import bin_edges

    # 3 bins and a hair: the hair (0.5e-9 of a bin, float noise in a run's end) joins bin 3,
    # whose edge is pinned to now; 1.5e-9 of a bin is a fourth bin of its own
    now, edges = bin_edges("t", 1.0, 3.0 + 0.5e-9)
    assert edges.tolist() == [0.0, 1.0, 2.0, now] and now == 3.0 + 0.5e-9
    now, edges = bin_edges("t", 1.0, 3.0 + 1.5e-9)
    assert edges.tolist() == [0.0, 1.0, 2.0, 3.0, now]


@pytest.mark.parametrize(("piece", "sizes"), [(4, [4, 4, 1]), (5, [5, 4])])
def test_records_are_read_in_whole_pieces_in_order_across_where_they_are_kept(monkeypatch, piece,
                                                                             sizes):
    # 3 records moved on, a held batch of 4, then 2 in the arrays: pieces cut across the three
    # (of 4 rows: the last one the arrays' alone; of 5: the last one held rows and array rows),
    # every record once, in the order recorded
    monkeypatch.setattr(linkstats, "PIECE_ROWS", piece)
    monkeypatch.setattr(linkstats, "BULK_ROWS", 4)
    s = stats()
    r = s.route((0,))
    for k in range(3):
        s.interval(r, float(k), k + 0.5, float(k))
    s.spill(rows=1)
    n = np.arange(3.0, 7.0)
    s.intervals(np.full(4, r, np.int32), n, n + 0.5, n, np.zeros(4, np.int8))
    for k in (7, 8):
        s.interval(r, float(k), k + 0.5, float(k))
    pieces = list(s._pieces(("lo_start", "lo_bytes")))
    assert [len(p[0]) for p in pieces] == sizes
    assert np.concatenate([p[1] for p in pieces]).tolist() == [float(k) for k in range(9)]


def test_records_an_engine_timed_that_overlap_on_a_link_count_their_common_time_once():
    # route A crosses links 0 and 1, route B link 1 only; handed over out of time order:
    # link 0 carries A's [0, 2] and [5.5, 7]: 2 + 1.5 s; link 1 carries [0, 2] ∪ [1, 3] and
    # [5, 6] ∪ [5.5, 7] — 3 + 2 = 5 s, where the sum of the four would be 6.5 s
    s = stats()
    a, b = s.route((0, 1)), s.route((1,))
    s.intervals([a, b], [5.5, 5.0], [7.0, 6.0], [1.0, 1.0], [0, 0])
    s.intervals([b, a], [1.0, 0.0], [3.0, 2.0], [1.0, 1.0], [0, 0])
    f = s.frame(8.0)
    assert f["busy_time"].tolist() == [3.5, 5.0, 0.0]
    assert f["bytes"].tolist() == [2.0, 4.0, 0.0]  # bytes are summed: each message's own


def test_the_fabrics_own_lone_flows_are_summed_without_a_sweep(monkeypatch):
    # the Fabric's lone flows (interval()) are alone on their links by construction: their
    # busy time is the sum, and the sweep is not run for them
    import simulator.network.linkstats as ls

    s = stats()
    r = s.route((0,))
    s.interval(r, 0.0, 2.0, 1.0)
    s.interval(r, 3.0, 4.0, 1.0)
    monkeypatch.setattr(ls, "overlap_per_link", lambda *a, **k: pytest.fail("swept"))
    assert s.frame(5.0)["busy_time"].tolist() == [3.0, 0.0, 0.0]


def _union_by_hand(intervals: list[tuple[float, float]]) -> float:
    """Length [s] of the union of ``intervals``: merged in order of start (the oracle)."""
    total, cur_s, cur_e = 0.0, None, None
    for a, b in sorted(intervals):
        if cur_e is None or a > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = a, b
        else:
            cur_e = max(cur_e, b)
    return total + (cur_e - cur_s if cur_e is not None else 0.0)


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 40), st.integers(0, 12)),
                max_size=40),
       st.integers(1, 7), st.booleans())
def test_a_links_busy_time_is_the_union_of_its_records_in_any_order_and_pieces(
        rows, piece_rows, spill):
    # integer times (quarter seconds), so sums and unions are exact: on each link the busy time
    # is the union's length merged by hand, however the records are ordered, cut into pieces
    # (the sweep holds rows until no later piece can start before them) or moved on
    import simulator.network.linkstats as ls

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ls, "PIECE_ROWS", piece_rows)
        s = stats()
        for links in ROUTE_LINKS:
            s.route(links)
        half = len(rows) // 2
        for part in (rows[:half], rows[half:]):
            if part:
                rid, start, length = (list(c) for c in zip(*part, strict=True))
                s.intervals(rid, [x / 4 for x in start], [(x + n) / 4 for x, n in
                                                          zip(start, length, strict=True)],
                            [1.0] * len(part), [0] * len(part))
            if spill:
                s.spill(rows=1, spill_bytes=16)
        got = s.frame(20.0)["busy_time"].tolist()
    want = [_union_by_hand([(x / 4, (x + n) / 4) for r, x, n in rows if k in ROUTE_LINKS[r]])
            for k in range(len(EDGES))]
    assert got == want
