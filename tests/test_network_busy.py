"""The busy-time sweep (:mod:`simulator.network.busy`) by hand: records handed over out of the
order of their starts, rows held until no piece to come can start before them, each link's
greatest end carried from piece to piece, and the records read twice; and the compiled sweep
held to the numpy one it replaced (:mod:`simulator.testing.busy_reference`), bit for bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from simulator.network.busy import _settle_before, overlap_per_link
from simulator.testing.busy_reference import (
    _greatest_before,
    _run_starts,
    numpy_overlap_per_link,
)


def pieces(*rows):
    """Pieces of records ``(route id, start, end)``: one tuple of rows per piece."""
    return [(np.array([r for r, _, _ in p], np.int32), np.array([s for _, s, _ in p], float),
             np.array([e for _, _, e in p], float)) for p in rows]


def test_the_greatest_end_before_each_row_within_its_link_and_after_what_was_settled():
    link = np.array([0, 0, 0, 2, 2])
    end = np.array([5.0, 3.0, 7.0, 1.0, 4.0])
    top = np.array([6.0, -np.inf, -np.inf])
    first = _run_starts(link)
    assert first.tolist() == [True, False, False, True, False]
    assert _greatest_before(link, end, top, first).tolist() == [6.0, 6.0, 6.0, -np.inf, 1.0]
    top[0] = -np.inf
    assert _greatest_before(link, end, top, first).tolist() == [-np.inf, 5.0, 5.0, -np.inf, 1.0]
    # a long run: the doubling reaches back across it (row 9 sees row 0's end)
    link, end = np.zeros(10, np.int64), np.array([9.0] + [1.0] * 9)
    before = _greatest_before(link, end, np.full(1, -np.inf), _run_starts(link))
    assert before.tolist() == [-np.inf] + [9.0] * 9


def test_records_out_of_order_across_pieces_and_links_carried_between_them():
    # routes: 0 crosses links 0 and 1, 1 link 1, 2 link 2. The second piece holds a record that
    # starts before the first piece's last ([0.5, 2.5] on link 2), and the third one that starts
    # inside a record settled two pieces before ([4, 6] inside [3, 8] on links 0, 1)
    routes = [(0, 1), (1,), (2,)]
    recs = pieces([(0, 0.0, 2.0), (2, 3.0, 3.5), (0, 3.0, 8.0)],
                  [(2, 0.5, 2.5), (1, 1.0, 4.0)],
                  [(0, 4.0, 6.0), (2, 3.2, 3.4)])
    calls = []

    def records():
        calls.append(1)
        return iter(recs)

    got = overlap_per_link(routes, records, 4)
    assert len(calls) == 2  # the least starts, then the sweep
    # link 0: [0, 2], [3, 8], [4, 6] -> 2; link 1: the same and [1, 4]: 1 + 1 + 2 = 4;
    # link 2: [0.5, 2.5], [3, 3.5], [3.2, 3.4] -> 0.2
    np.testing.assert_allclose(got, [2.0, 4.0, 3.4 - 3.2, 0.0], rtol=0, atol=1e-15)


def test_a_piece_whose_rows_all_wait_for_a_later_one_settles_nothing_then():
    # the second piece's record starts after the third's: it is held through it, alone
    routes = [(0,)]
    recs = pieces([(0, 0.0, 1.0)], [(0, 5.0, 7.0)], [(0, 4.0, 6.0)])
    got = overlap_per_link(routes, lambda: iter(recs), 1)
    assert got.tolist() == [1.0]  # [5, 7] overlaps [4, 6] by 1 s


def test_records_that_touch_or_are_apart_do_not_overlap_and_a_record_inside_another_does():
    recs = pieces([(0, 0.0, 1.0), (0, 1.0, 2.0), (0, 3.0, 5.0), (0, 3.5, 4.0)])
    assert overlap_per_link([(0,)], lambda: iter(recs), 1).tolist() == [0.5]
    assert overlap_per_link([(0,)], lambda: iter([]), 1).tolist() == [0.0]  # no records


def test_a_piece_settles_the_rows_starting_before_every_later_piece():
    # pieces' least starts 4, 1, 6, 3 (not in order): after piece 0 a row may still start at
    # 1 (piece 1), after piece 1 at 3 (piece 3), after piece 2 at 3, after the last never
    assert _settle_before([4.0, 1.0, 6.0, 3.0]).tolist() == [1.0, 3.0, 3.0, np.inf]
    assert _settle_before([2.0]).tolist() == [np.inf]
    assert _settle_before([np.inf, 0.5]).tolist() == [0.5, np.inf]  # an empty piece first


def test_a_links_greatest_end_is_carried_from_its_whole_run_to_later_pieces():
    # one piece settles rows on links 0, 1, 1, 2 (link 1's first row ends last, at 5); a later
    # piece's row on link 1 at [3, 4] lies inside [1, 5]: 1 s of overlap, whichever of link 1's
    # rows was settled last
    routes = [(0,), (1,), (2,)]
    recs = pieces([(0, 0.0, 9.0), (1, 1.0, 5.0), (1, 1.5, 2.0), (2, 0.2, 0.4)],
                  [(1, 3.0, 4.0)])
    assert overlap_per_link(routes, lambda: iter(recs), 3).tolist() == [0.0, 1.0 + 0.5, 0.0]



def test_a_piece_in_order_that_ends_on_the_next_ones_first_start_holds_that_row():
    # pieces in order of start, the first ending on the start the second begins with (2.0):
    # that row waits for the second piece, so its overlap (2^-51 s) is added with the second
    # piece's (another 2^-51): 4 + 2^-50. Settled with the first piece, 4 + 2^-51 would round
    # back to 4 (a tie, to even), and so would the second piece's addition
    tiny = 2.0 ** -51
    recs = pieces([(0, 0.0, 8.0), (0, 0.0, 4.0), (0, 2.0, 2.0 + tiny)],
                  [(0, 2.0, 2.0 + tiny)])
    assert overlap_per_link([(0,)], lambda: iter(recs), 1).tolist() == [4.0 + 2.0 ** -50]


def test_a_piece_is_in_order_below_a_limit_when_no_start_falls_or_reaches_it():
    from simulator.network.kernels import ordered_below

    def below(starts, limit):
        return ordered_below(np.array(starts, float), limit)

    assert below([1.0, 2.0, 2.0, 3.0], 4.0) is True  # equal starts are in order
    assert below([], 4.0) is True
    assert below([1.0, 3.0, 2.0], 4.0) is False  # a fall, from the row just before
    assert below([2.0, 1.0], 4.0) is False  # a fall at the second row
    assert below([1.0, 2.0, 4.0], 4.0) is False  # a start at the limit waits for a later piece
    assert below([np.nan], 4.0) is False

# routes over five links, some sharing links, one crossing the same links as another
ROUTES = [(0, 1), (1,), (2, 3, 4), (4,), (0, 1, 2, 3, 4), (3,)]


@given(st.lists(st.lists(st.tuples(st.integers(0, len(ROUTES) - 1),
                                   st.floats(0.0, 10.0, allow_subnormal=False),
                                   st.floats(0.0, 3.0, allow_subnormal=False)),
                         max_size=12), max_size=6),
       st.integers(0, 3), st.booleans())
def test_the_compiled_sweep_gives_the_numpy_sweeps_floats_bit_for_bit(piece_rows, ties,
                                                                      in_order):
    # arbitrary float times (sums and overlaps round), pieces out of order, and (ties > 0)
    # every time snapped to a grid of 1/ties s so that equal starts and ends are likely: every
    # link's overlap is the same float as the vectorized sweep's, so busy times did not move.
    # In order: the rows sorted by start across the pieces (cut as before), as an engine's
    # records mostly come — pieces swept as they are, except where a piece ends on a start
    # the next one begins with (that row waits for the next piece)
    snap = (lambda x: round(x * ties) / ties) if ties else (lambda x: x)
    rows = [[(r, snap(s), snap(s) + snap(d)) for r, s, d in p] for p in piece_rows]
    if in_order:
        flat = iter(sorted((x for p in rows for x in p), key=lambda x: x[1]))
        rows = [[next(flat) for _ in p] for p in rows]
    recs = pieces(*rows)
    got = overlap_per_link(ROUTES, lambda: iter(recs), 6)
    want = numpy_overlap_per_link(ROUTES, lambda: iter(recs), 6)
    assert got.tobytes() == want.tobytes()
    assert np.all(got >= 0.0) and got[5] == 0.0  # link 5 carries no route
