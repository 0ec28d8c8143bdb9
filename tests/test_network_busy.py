"""The busy-time sweep (:mod:`simulator.network.busy`) by hand: links grouped for a bounded
sort, one pass over the records per group, and the overlap of records on a link."""

from __future__ import annotations

import numpy as np

from simulator.network.busy import _groups, overlap_per_link


def test_links_are_grouped_in_order_up_to_the_rows_a_sort_may_take():
    per_link = np.array([3, 0, 5, 2])
    assert [g.tolist() for g in _groups(per_link, 5)] == [[0], [2], [3]]
    assert [g.tolist() for g in _groups(per_link, 8)] == [[0, 2], [3]]  # 3 + 5 fills it
    assert [g.tolist() for g in _groups(per_link, 7)] == [[0], [2, 3]]
    assert [g.tolist() for g in _groups(per_link, 10)] == [[0, 2, 3]]
    assert [g.tolist() for g in _groups(per_link, 1)] == [[0], [2], [3]]  # one link past it
    assert _groups(np.zeros(3, np.int64), 4) == []


def test_the_records_are_read_once_to_count_then_once_per_group():
    # routes: 0 crosses links 0 and 1, 1 crosses link 2; link 0 and 1 carry 3 rows each,
    # link 2 two: with 4 rows a sort, links 0, 1 and 2 are three groups; with 6, two
    routes = [(0, 1), (2,)]
    rid = np.array([0, 1, 0, 0, 1], np.int32)
    start = np.array([0.0, 0.0, 1.0, 5.0, 0.5])
    end = np.array([2.0, 1.0, 3.0, 6.0, 2.0])
    for rows, passes in ((4, 1 + 3), (6, 1 + 2), (100, 1 + 1)):
        calls = []

        def records(calls=calls):
            calls.append(1)
            return iter([(rid[:2], start[:2], end[:2]), (rid[2:], start[2:], end[2:])])

        got = overlap_per_link(routes, records, 4, rows=rows)
        assert len(calls) == passes
        # links 0, 1: [0, 2], [1, 3], [5, 6] overlap 1 s; link 2: [0, 1], [0.5, 2] 0.5 s
        assert got.tolist() == [1.0, 1.0, 0.5, 0.0]


def test_records_that_touch_or_are_apart_do_not_overlap_and_a_record_inside_another_does():
    routes = [(0,)]
    rid = np.zeros(4, np.int32)
    start, end = np.array([0.0, 1.0, 3.0, 3.5]), np.array([1.0, 2.0, 5.0, 4.0])
    got = overlap_per_link(routes, lambda: iter([(rid, start, end)]), 1)
    assert got.tolist() == [0.5]  # [3.5, 4] inside [3, 5]; [0, 1] and [1, 2] only touch
