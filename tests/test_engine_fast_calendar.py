"""The fast engine's work calendars and its closed-form sharing, by known answers computed by
hand (:mod:`simulator.engine.fast_streams`, :mod:`simulator.engine.fast_sharing`).

Durations, bytes and rates are chosen so that every answer is an exact float, compared with
``==``. Each test says which wrong line it catches (the mutation score of the ``fast`` group,
docs/mutation.md)."""

from __future__ import annotations

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.engine.fast_sharing import batched_max_min_finish, max_min_finish
from simulator.engine.fast_streams import (
    _PRUNE,
    Calendar,
    FastStream,
    folded_next,
    processor_sharing_end,
    reserve_each,
)

INF = float("inf")


def state(cal: Calendar) -> tuple:
    """Everything a calendar keeps (its items and counters)."""
    return (cal.at, cal.dur, cal.end, cal.end0, cal.own, cal.fold, cal.items, cal.busy_until(INF),
            cal.done_busy, cal.cut_busy, cal.last_end)


def ended_items(cal: Calendar, n: int) -> None:
    """``n`` items of 0.5 s issued at 0, 1, 2, … s (they end at k + 0.5 s), and the present
    moved to the first one's end, 0.5 s: that item has ended exactly now, the others not."""
    for k in range(n):
        cal.reserve(float(k), 0.5)
    cal.env.run(until=0.5)


# -- what a calendar says about the work it knows ----------------------------------------------


def test_an_empty_calendar_knows_no_work():
    cal = Calendar(simpy.Environment())
    assert cal.last_end == 0.0  # "0: idle" (a start of 1.0 is caught)
    assert cal.idle(0.0, INF) and cal.idle(0.0, 1.0)
    assert cal.free_at(5.0) == -INF
    assert (cal.items, cal.busy_until(INF), cal.done_busy, cal.busy_until(1.0)) == (0, 0.0, 0.0, 0.0)


def test_free_at_and_idle_around_fifo_items():
    cal = Calendar(simpy.Environment())
    assert cal.reserve(1.0, 2.0) == 3.0
    assert cal.reserve(2.0, 1.0) == 4.0  # queued behind the first: runs 3 to 4 s
    assert cal.reserve(6.0, 1.0) == 7.0  # after an idle gap
    assert cal.free_at(0.5) == -INF and cal.free_at(1.0) == 3.0 and cal.free_at(5.0) == 4.0
    # idle to the end of time: nothing at or after the last end
    assert cal.idle(7.0, INF) and not cal.idle(6.75, INF)
    # idle after the last end: the early return's True (not False or None)
    assert cal.idle(7.0, 8.0) is True
    # the gap: the 6 s item starts at 6 s exactly, outside [4, 6)
    assert cal.idle(4.0, 6.0) and not cal.idle(4.0, 6.25) and not cal.idle(3.5, 3.75)


def test_busy_until_counts_a_running_item_up_to_now_and_fast_stream_reports_it():
    cal = Calendar(simpy.Environment())
    cal.reserve(1.0, 2.0)  # 1 to 3 s
    cal.reserve(2.0, 1.0)  # 3 to 4 s
    cal.reserve(6.0, 1.0)  # 6 to 7 s
    assert cal.busy_until(0.5) == 0.0
    # at 3.5 s: the first item's 2 s and half of the second (it started at end - duration = 3 s:
    # catches `e + d` as its start, and `busy += now - start` deleted, negated or `now + start`)
    assert cal.busy_until(3.5) == 2.5
    assert cal.busy_until(6.5) == 3.5 and cal.busy_until(10.0) == 4.0
    # an item that ends exactly now counts its whole duration, not now - (end - duration):
    # 1.0 - 0.9 is 0.09999999999999998 in floats (catches `e < now` for `e <= now`)
    cal = Calendar(simpy.Environment())
    assert cal.reserve(0.9, 0.1) == 1.0
    assert cal.busy_until(1.0) == 0.1

    env = simpy.Environment()
    s = FastStream(env, [0.0, 0.0], gpu=1)
    assert s.issue(0.5) == 0.5
    env.run(until=0.25)
    assert s.busy_time == 0.25
    ev = s.run(1.0)  # issued at 0.25 s behind the first kernel: ends at 1.5 s
    env.run(ev)
    assert env.now == 1.5  # the event's delay is end - now (catches `end + now`)
    assert s.kernels_run == 2 and s.busy_time == 1.5 and s.cal.own == [1, 1]


def test_counted_work_without_items_adds_to_the_counters_and_the_last_end():
    # account / account_each: work no one else can queue behind, counted but not kept (catches
    # each counter's update deleted or subtracted, and the last end not moved)
    cal = Calendar(simpy.Environment())
    cal.account(0.75, 3, 2.0)
    assert (cal.busy_until(INF), cal.done_busy, cal.items, cal.last_end) == (0.75, 0.75, 3, 2.0)
    assert cal.busy_until(0.0) == 0.75 and cal.at == []
    cal.account(0.25, 1, 1.0)  # ends before the last: the last end stays
    assert (cal.busy_until(INF), cal.done_busy, cal.items, cal.last_end) == (1.0, 1.0, 4, 2.0)
    cal.account_each([0.5, 0.25], 3, 5.0)
    assert (cal.busy_until(INF), cal.done_busy, cal.items, cal.last_end) == (1.75, 1.75, 7, 5.0)
    cal.account_each([0.5], 1, 4.0)
    assert (cal.busy_until(INF), cal.done_busy, cal.items, cal.last_end) == (2.25, 2.25, 8, 5.0)


# -- reservations out of issue-time order: pushes and debts --------------------------------


def test_a_push_is_charged_to_other_gpus_steps_only_and_moves_the_last_end():
    debts = [0.0, 0.0, 0.0]
    cal = Calendar(simpy.Environment(), debts)
    assert cal.reserve(0.0, 1.0, owner=0) == 1.0
    assert cal.reserve(1.0, 1.0, owner=0) == 2.0
    # GPU 0's own item issued at 0.5 s, composed later: it pushes GPU 0's second item 1 s back,
    # which its own step already waits for: no debt (catches the first `and` -> `or`)
    assert cal.reserve(0.5, 1.0, owner=0) == 2.0
    assert cal.end == [1.0, 2.0, 3.0] and cal.end0 == [1.0, 2.0, 2.0]
    assert debts == [0.0, 0.0, 0.0]
    # the pushed item is the last: the last end moves with it (catches `end_l[1]` or
    # `end_l[-2]` for `end_l[-1]`, and the update deleted)
    assert cal.last_end == 3.0 and not cal.idle(2.5, INF)
    # an item of no step (-1) pushed: no one is charged (debts[-1] is GPU 2's)
    assert cal.reserve(4.0, 1.0) == 5.0
    assert cal.reserve(3.5, 1.0, owner=1) == 4.5
    assert cal.end[-1] == 5.5 and debts == [0.0, 0.0, 0.0]
    assert cal.items == 5 and cal.busy_until(INF) == 5.0


def test_a_settled_debt_is_not_charged_again_by_a_push_an_idle_gap_absorbs():
    debts = [0.0, 0.0, 0.0]
    cal = Calendar(simpy.Environment(), debts)
    assert cal.reserve(10.0, 1.0, owner=1) == 11.0
    assert cal.reserve(9.5, 1.0, owner=2) == 10.5  # pushes GPU 1's item 0.5 s
    assert debts == [0.0, 0.5, 0.0]
    debts[1] = 0.0  # GPU 1's step settles it (fast.py, _slot_start)
    # issued at 0 s: the gap before 9.5 s absorbs it, so the items after it keep their ends and
    # the loop stops there — it does not reach GPU 1's item to charge its old push again
    # (catches the `break` deleted)
    assert cal.reserve(0.0, 1.0, owner=2) == 1.0
    assert cal.end == [1.0, 10.5, 11.5] and cal.end0 == [1.0, 10.5, 11.0]
    assert debts == [0.0, 0.0, 0.0]


# -- pruning: items ended before now are cut off the front ---------------------------------


def _reserve(cal: Calendar, at: float, duration: float) -> None:
    cal.reserve(at, duration)


def _reserve_each(cal: Calendar, at: float, duration: float) -> None:
    # a message on one link, idle at ``at``: the item goes after all others
    reserve_each([cal], at, at + duration, duration, [1.0], -1, 1)


@pytest.mark.parametrize("reserve", [_reserve, _reserve_each])
def test_reserve_cuts_the_ended_front_once_more_than_prune_items_are_known(reserve):
    assert _PRUNE == 64
    cal = Calendar(simpy.Environment())
    ended_items(cal, 64)
    reserve(cal, 70.0, 0.5)  # 64 known: not more than _PRUNE, nothing cut (catches `>=`)
    assert len(cal.at) == 65 and cal.cut_busy == 0.0
    # 65 known and the first ended exactly now: it is cut (catches `<` for `<=`, `end_l[1]`
    # for `end_l[0]`, the prune deleted, and its work subtracted from cut_busy)
    reserve(cal, 71.0, 0.5)
    assert len(cal.at) == 65 and cal.at[0] == 1.0 and cal.cut_busy == 0.5
    assert cal.busy_until(0.5) == 0.5  # the cut item still counts
    assert cal.busy_until(INF) == 33.0 and cal.items == 66


# -- chain: a run of a step's items, the same as one reserve per item ------------------------


def reserved_one_by_one(cal: Calendar, at: float, busy, folds, owner: int, kernels) -> float:
    """What :meth:`Calendar.chain` promises to equal: one reserve per item."""
    for d, fold, k in zip(busy, folds, kernels, strict=True):
        e = cal.reserve(at, d, owner, fold, k)
        at = folded_next(at, e, fold)
    return at


def twins(prepare) -> tuple[Calendar, Calendar, list[float], list[float]]:
    """Two calendars (each with its own debts) prepared alike by ``prepare(cal)``."""
    out = []
    for _ in range(2):
        debts = [0.0, 0.0]
        cal = Calendar(simpy.Environment(), debts)
        prepare(cal)
        out += [cal, debts]
    return out[0], out[2], out[1], out[3]


def chain(cal: Calendar, *args) -> float:
    """A whole run of items chained (nothing stops it): when the last one's layers are done."""
    return cal.chain_until(*args, INF)[0]


def test_chain_on_an_empty_calendar():
    cal = Calendar(simpy.Environment())
    # catches `n or at < at_l[-1]` (an index into an empty list)
    assert chain(cal, 0.0, [1.0], [1], 0, [1]) == 1.0
    assert cal.end == [1.0] and cal.last_end == 1.0


def test_chain_after_every_known_item_folds_each_items_layers():
    def prepare(cal):
        cal.reserve(0.0, 1.0, owner=1)

    a, b, _, _ = twins(prepare)
    # item i + 1 is issued when item i's folded layers are done: end + (end - issue)(fold - 1)
    #   2 s: 1 s of work -> 3 s; fold 1 -> next at 3 s
    #   3 s: 0.5 s -> 3.5 s; fold 4 -> next at 3.5 + 0.5 x 3 = 5 s
    #   5 s: 0.25 s -> 5.25 s; fold 2 -> done at 5.5 s
    assert chain(a, 2.0, [1.0, 0.5, 0.25], [1, 4, 2], 0, [2, 1, 1]) == 5.5
    assert a.at == [0.0, 2.0, 3.0, 5.0] and a.end == [1.0, 3.0, 3.5, 5.25] and a.end0 == a.end
    assert a.own == [1, 0, 0, 0] and a.fold == [1, 1, 4, 2]
    # the counters (catches the items' durations' and counts' updates deleted or subtracted, and the
    # last end not moved)
    assert (a.items, a.busy_until(INF), a.last_end) == (5, 2.75, 5.25)
    assert not a.idle(5.0, INF) and a.idle(5.25, INF)
    assert reserved_one_by_one(b, 2.0, [1.0, 0.5, 0.25], [1, 4, 2], 0, [2, 1, 1]) == 5.5
    assert state(a) == state(b)


def test_chain_among_known_items_reserves_each_and_charges_its_pushes():
    def prepare(cal):
        cal.reserve(0.0, 1.0, owner=1)
        cal.reserve(5.0, 1.0, owner=1)

    a, b, debts_a, debts_b = twins(prepare)
    # issued before the last known item: one reserve each
    #   0.5 s: queued behind the 0 s item -> 1 to 2 s; fold 2 -> next at 2 + 1.5 = 3.5 s
    #   3.5 s: 2 s -> 5.5 s; fold 3 -> done at 5.5 + 2 x 2 = 9.5 s; it pushes GPU 1's 5 s item
    #   from 6 to 6.5 s
    # (catches each operator and constant of `at + ((e - at) + (e - at) * (fold - 1))`, and None)
    assert chain(a, 0.5, [1.0, 2.0], [2, 3], 0, [2, 1]) == 9.5
    assert a.at == [0.0, 0.5, 3.5, 5.0] and a.end == [1.0, 2.0, 5.5, 6.5]
    assert a.end0 == [1.0, 2.0, 5.5, 6.0] and a.fold == [1, 2, 3, 1]
    assert debts_a == [0.0, 0.5] and a.items == 5 and a.last_end == 6.5
    assert reserved_one_by_one(b, 0.5, [1.0, 2.0], [2, 3], 0, [2, 1]) == 9.5
    assert state(a) == state(b) and debts_a == debts_b


def test_chain_cuts_the_ended_front_where_its_last_reserve_would():
    # 60 known items, the first ended exactly now. A chain of 5 after them: one reserve per
    # item would know at most 64 before its last: nothing cut (catches `n + len(busy) + 1`,
    # `>=` for `>`, and `n or ...` for `n and ...`)
    a, b, _, _ = twins(lambda cal: ended_items(cal, 60))
    busy, folds, kernels = [0.5] * 5, [1] * 5, [1] * 5
    assert chain(a, 100.0, busy, folds, 0, kernels) == 102.5
    assert len(a.at) == 65 and a.cut_busy == 0.0
    reserved_one_by_one(b, 100.0, busy, folds, 0, kernels)
    assert state(a) == state(b)
    # a chain of 6: the last reserve would know 65, so the first item (ended now) is cut
    # (catches `<` for `<=`, `n - len(busy)`, `- 2`, and the prune deleted)
    a, b, _, _ = twins(lambda cal: ended_items(cal, 60))
    busy, folds, kernels = [0.5] * 6, [1] * 6, [1] * 6
    assert chain(a, 100.0, busy, folds, 0, kernels) == 103.0
    assert len(a.at) == 65 and a.at[0] == 1.0 and a.cut_busy == 0.5
    reserved_one_by_one(b, 100.0, busy, folds, 0, kernels)
    assert state(a) == state(b)


# -- reserve_each: a message's work on every link of its path --------------------------------


def test_reserve_each_returns_the_latest_end_and_whether_every_link_was_idle():
    debts = [0.0]
    a, b = Calendar(simpy.Environment(), debts), Calendar(simpy.Environment(), debts)
    # 1024 B at 2**-10 s/B on a (1 s) and 2**-11 s/B on b (0.5 s), both idle in [1, 2)
    # (catches `alone` starting False, `or` for `and`, and `not` dropped)
    assert reserve_each((a, b), 1.0, 2.0, 1024.0, (2.0**-10, 2.0**-11), 0, 1) == (2.0, True)
    assert a.end == [2.0] and b.end == [1.5]
    # the next message at 1.5 s: b is idle from 1.5 s, a busy until 2 s — checked second,
    # it makes the message not alone (catches `alone = True` for `alone = False`)
    assert reserve_each((b, a), 1.5, 2.5, 1024.0, (2.0**-11, 2.0**-10), 0, 1) == (3.0, False)
    assert a.end == [2.0, 3.0] and b.end == [1.5, 2.0]
    # a busy first link: not alone, whatever the others
    c = Calendar(simpy.Environment(), debts)
    assert reserve_each((a, c), 2.5, 3.0, 1024.0, (2.0**-11, 2.0**-11), 0, 1) == (3.5, False)



@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True),
                          st.integers(0, 40), st.integers(1, 64), st.integers(0, 2),
                          st.sampled_from([1, 1, 4]), st.integers(0, 6)),
                min_size=1, max_size=150))
def test_reserve_each_leaves_every_calendar_as_one_reserve_per_calendar_would(messages):
    # messages (links, issued at [¼ s], bytes, owner, fold, how far the clock moves first),
    # on three links whose calendars grow past _PRUNE and get cut, idle and busy, against one
    # reserve and one idle check per link (catches any part of an item, its counter, the cut of
    # the ended front or the end left out of a faster path through reserve_each)
    envs = [simpy.Environment(), simpy.Environment()]
    debts = [[0.0] * 3, [0.0] * 3]
    fast = [Calendar(envs[0], debts[0]) for _ in range(3)]
    slow = [Calendar(envs[1], debts[1]) for _ in range(3)]
    spb = (2.0**-6, 2.0**-5, 2.0**-4)
    for links, at, nbytes, owner, fold, advance in messages:
        for env in envs:  # the clock moves on (never past a message's issue)
            env._now += advance * 0.125
        at = max(envs[0].now, at * 0.25)
        until = at + 1.0
        got = reserve_each([fast[i] for i in links], at, until, float(nbytes),
                           [spb[i] for i in links], owner, fold)
        alone, last = True, -INF
        for i in links:
            alone = alone and slow[i].idle(at, until)
            last = max(last, slow[i].reserve(at, nbytes * spb[i], owner, fold))
        assert got == (last, alone)
        assert [state(c) for c in fast] == [state(c) for c in slow] and debts[0] == debts[1]


# -- fast_sharing: the closed-form sharing of a phase's own flows ------------------------------

ONE_LINK = [(0,), (0,)]
UNCAPPED = [1e30, 1e30]


def test_a_flow_within_the_completion_tolerance_finishes_with_the_flow_that_ends():
    # two flows at 1 B/s each on a 2 B/s link: the first ends at 999,999,999 s; the second has
    # 1 B left then, exactly 1e-9 of its 1e9 B (the tolerance, inclusive): it finishes too
    # (catches `<` for `<=` and `1e-9 / nbytes` for `1e-9 * nbytes`)
    a = 1e9 - 1.0
    assert max_min_finish([0.0, 0.0], [a, 1e9], UNCAPPED, ONE_LINK, [2.0]) == [a, a]
    # 2 B left of 1e9 + 1 B (beyond 1e-9 of it): it goes on alone at 2 B/s, 1 s more
    # (catches a tolerance of 2e-9)
    assert max_min_finish([0.0, 0.0], [a, 1e9 + 1.0], UNCAPPED, ONE_LINK, [2.0]) == [a, a + 1.0]


def test_each_flow_gets_its_own_cap_and_the_whole_residual_of_its_link():
    # caps 2**40 and 2**40 + 1.5 B/s (1.4e-12 apart, relatively): the second is not frozen at
    # the first's cap but filled to its own, so its 2**40 + 1.5 B take 1 s exactly (catches a
    # cap tolerance of 2e-12)
    big = 2.0**40
    assert max_min_finish([0.0, 0.0], [2 * big, big + 1.5], [big, big + 1.5], ONE_LINK,
                          [4 * big]) == [2.0, 1.0]
    # a link of 2**41 + 3 B/s: the flow capped at 2**40 leaves 2**40 + 3 B/s to the other, 3 B/s
    # (1.4e-12 of the line) more than an equal share: not a saturated link yet (catches a
    # saturation tolerance of 2e-12)
    assert max_min_finish([0.0, 0.0], [2 * big, big + 3.0], [big, 1e30], ONE_LINK,
                          [2 * big + 3.0]) == [2.0, 1.0]


@settings(max_examples=300, deadline=None)
@given(
    flows=st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.0, 1e-6, 2.5e-6, 1.0]),  # ties and staggered starts
            st.one_of(st.floats(1.0, 1e9), st.sampled_from([1e3, 1e6, 147456.0])),
            st.sampled_from([1e30, 5e10, 2.5e10, 4.5e11, 1e9]),  # uncapped, NIC-, NVLink-like
            st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True),
        ),
        min_size=1,
        max_size=8,
    ),
    line=st.lists(st.sampled_from([5e10, 6.4e10, 4.5e11, 1e9, 2.0]), min_size=6, max_size=6),
    as_array=st.booleans(),
)
def test_the_compiled_filling_gives_the_python_fillings_floats(flows, line, as_array):
    # max_min_finish runs a compiled kernel (simulator/engine/sharing_kernels.py); the Python it
    # replaced is kept as the reference. Every end is the same float: ties, flows that start
    # while others run, caps and links that bind, links shared by some flows and not others
    import numpy as np

    from simulator.testing.sharing_reference import python_max_min_finish

    starts = [f[0] for f in flows]
    nbytes = [f[1] for f in flows]
    caps = [f[2] for f in flows]
    links = [tuple(f[3]) for f in flows]
    want = python_max_min_finish(starts, nbytes, caps, links, line)
    got = max_min_finish(starts, nbytes, caps, links, np.array(line) if as_array else line)
    assert got == want


def test_the_compiled_filling_numbers_the_phases_links_and_orders_its_flows():
    # link 7 of a fabric of 9 (at 2 B/s) carries both flows, link 3 (8 B/s) only flow 0,
    # which is listed first but starts 1 s later: flow 1 runs alone at 2 B/s for 1 s (2 of its
    # 4 B), then both at 1 B/s: flow 0's 1 B ends at 2 s; flow 1's last 1 B goes alone at
    # 2 B/s and ends at 2.5 s. An empty phase has no ends
    line = [1.0] * 9
    line[7] = 2.0
    line[3] = 8.0
    assert max_min_finish([1.0, 0.0], [1.0, 4.0], UNCAPPED, [(3, 7), (7,)], line) == [2.0, 2.5]
    assert max_min_finish([], [], [], [], line) == []


def test_a_flow_within_the_cap_tolerance_of_its_cap_is_frozen_there():
    # flow 1's cap (1e12 - 1 B/s) sets the level both flows rise to; flow 0 is then 1 B/s short
    # of its cap of 1e12 B/s, exactly 1e-12 of it (the tolerance, inclusive): frozen there, it
    # runs at 1e12 - 1 B/s until it ends at 1e12 / (1e12 - 1) s; if not frozen, it would be
    # filled to its cap and end at 1 s (catches `<` for `<=` and `1e-12 / caps` for
    # `1e-12 * caps`)
    assert max_min_finish([0.0, 0.0], [1e12, 2e12], [1e12, 1e12 - 1.0], [(0,), (0,)],
                          [1e30]) == [1e12 / (1e12 - 1.0), 2e12 / (1e12 - 1.0)]


def test_a_link_left_within_the_tolerance_of_its_line_rate_freezes_its_flows():
    # a 1e12 B/s link: flow 0's cap (499,999,999,999.5 B/s) sets the level; the link is left
    # with 1 B/s, exactly 1e-12 of its line rate (the tolerance, inclusive): saturated, flow 1
    # is frozen at the level too, until flow 0 ends at 1 s and it has the link alone; filled on
    # by the last 1 B/s, it would end 1e-12 s earlier (catches `<` for `<=` and
    # `1e-12 / line` for `1e-12 * line`)
    c = 499_999_999_999.5
    assert max_min_finish([0.0, 0.0], [c, 2e12], [c, 1e30], [(0,), (0,)],
                          [1e12]) == [1.0, 1.0 + (2e12 - c) / 1e12]


def test_batched_filling_lets_a_flow_join_early_within_the_tolerance_of_its_lone_time():
    # one 0.5 B/s link, flows capped at 0.5 B/s. B starts at 1 s with 1.5 B (3 s alone): with a
    # tolerance of 0.5 it joins at 0 s, 0.5 x 3 s before its start, and the two share the link
    # from 0 s: B's 1.5 B at 0.25 B/s end at 6 s, then A's last 0.5 B alone at 7 s (catches
    # `tolerance / b / c` and `tolerance * b * c` for the join time)
    line, caps = [0.5], [0.5, 0.5]
    assert batched_max_min_finish([0.0, 1.0], [2.0, 1.5], caps, ONE_LINK, line,
                                  tolerance=0.5) == [7.0, 6.0]
    # without the tolerance B joins at its start: A has 1.5 B left, and both end at 7 s
    assert batched_max_min_finish([0.0, 1.0], [2.0, 1.5], caps, ONE_LINK, line,
                                  tolerance=0.0) == [7.0, 7.0]


def test_batched_filling_stops_a_batch_at_the_next_start():
    # A from 1 s (2 B, 4 s alone at 0.5 B/s), B from 3 s (0.5 B): the first batch is cut at 3 s,
    # when B starts (not run to A's end at 5 s: catches `start + t` for `start - t`); they share
    # the link, B ends at 5 s, A's last 0.5 B at 6 s
    assert batched_max_min_finish([1.0, 3.0], [2.0, 0.5], [0.5, 0.5], ONE_LINK,
                                  [0.5]) == [6.0, 5.0]


def test_a_batch_completes_its_last_flow_so_it_takes_no_share_of_the_next_filling():
    # eight flows of 1..8 B on an 8 B/s link, tolerance 0.75: the first batch is the six that
    # end by 6 s (the sixth exactly at the step). The last two then share the link alone: 4 B/s
    # each, ends at 6.25 and 6.375 s. Were the sixth left with 0 B (a completion test of
    # `d <= step / (1 + 1e-12)` or `step * (1 - 1e-12)`), it would take a third of the next
    # filling and the seventh would end at 6.375 s
    got = batched_max_min_finish([0.0] * 8, [float(b) for b in range(1, 9)], [1e30] * 8,
                                 [(0,)] * 8, [8.0], tolerance=0.75)
    assert got == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 6.25, 6.375]


def test_the_batch_takes_flows_due_within_a_relative_1e_12_of_its_step():
    big = 2.0**40
    # the second flow due exactly at step x (1 + 1e-12) (the tolerance, inclusive): it ends in
    # the batch, at its own time (catches `<` for `<=`)
    edge = big * (1.0 + 1e-12)
    assert batched_max_min_finish([0.0, 0.0], [big, edge], UNCAPPED, ONE_LINK, [2.0],
                                  tolerance=0.0) == [big, edge]
    # due 1.5 s later (1.4e-12 of the step): not in the batch; its last 1.5 B go alone at 2 B/s
    # (catches a tolerance of 2e-12)
    assert batched_max_min_finish([0.0, 0.0], [big, big + 1.5], UNCAPPED, ONE_LINK, [2.0],
                                  tolerance=0.0) == [big, big + 0.75]


def test_processor_sharing_ends_by_hand():
    # (the share a fast-engine all-to-all gets on a link with known work: on one link the
    # Fabric's max-min among uncapped flows; held to the Fabric in test_engine_fast_instances)
    # a job of 2 arriving at 1 beside one of 10 arrived at 0: it gets half the server, so it
    # needs 4 → 5
    assert processor_sharing_end([0.0], [10.0], 1.0, 2.0) == 5.0
    # a third of 10 arrives at 2: from then a third each, 1.5 left at 1/3 → 6.5
    assert processor_sharing_end([0.0, 2.0], [10.0, 10.0], 1.0, 2.0) == 6.5
    # a job done before it arrives, and one arriving after it ends, take nothing
    assert processor_sharing_end([0.0, 9.0], [1.0, 5.0], 5.0, 2.0) == 7.0
    # a short job present: 1 left of it at 1, shared until it ends at 3, then alone → 4
    assert processor_sharing_end([0.0], [2.0], 1.0, 2.0) == 4.0
    # three equal jobs at once: all end together
    assert processor_sharing_end([0.0, 0.0], [3.0, 3.0], 0.0, 3.0) == 9.0
    cal = Calendar(simpy.Environment())
    cal.reserve(0.0, 10.0)
    assert cal.shared_end(1.0, 2.0) == 5.0
    assert cal.items == 1  # reserves nothing


def test_a_calendar_s_busy_time_does_not_depend_on_when_it_cut_its_front():
    # the items' work is added one by one in issue order, cut off or not: the same float (a
    # cut's work summed on its own, then added, gave 28.500000000000025 against ...02)
    durations = [0.1, 0.2, 0.3] * 47
    busy = []
    for cut_at in (None, 5.0, 20.0):
        env = simpy.Environment()
        cal = Calendar(env)
        cal.account(0.3, 1, 0.0)
        at = 0.0
        for k, d in enumerate(durations):
            if cut_at is not None and k == 70:
                env.run(until=cut_at)
            at = cal.reserve(max(at, env.now), d)
        busy.append(cal.busy_until(INF))
    assert busy[0] == busy[1] == busy[2]
    total = 0.0
    for d in durations:
        total += d
    assert busy[0] == 0.3 + total


# -- chain_until: the leading items issued before a time ------------------------------------------


@pytest.mark.parametrize("known", [0, 3, 70])
@pytest.mark.parametrize("until", [0.0, 0.5, 1.5, 2.0, 3.25, INF])
def test_chain_until_reserves_the_leading_items_issued_before_its_bound_as_reserves_would(
        known, until):
    # items issued at 0, 1.5, 2.0 (folded) and 3.25; ``known`` items already there, ended by
    # now (70: a prune on the way); 3 of them end after the chain's start (one reserve each)
    def prepare(cal):
        if known == 70:
            ended_items(cal, 70)
        for k in range(known if known != 70 else 0):
            cal.reserve(float(k), 0.25, 1)

    busy, folds, kernels = [0.5, 0.25, 0.25, 1.0], [3, 2, 5, 1], [2, 1, 2, 1]
    start = 0.0 if known != 70 else 100.0
    a, b, da, db = twins(prepare)
    bound = until + (start if until != INF else 0.0)
    at, k = a.chain_until(start, busy, folds, 0, kernels, bound)
    assert reserved_one_by_one(b, start, busy[:k], folds[:k], 0, kernels[:k]) == at
    assert state(a) == state(b) and da == db
    # every item reserved is issued before the bound; it stops only at one that is not
    mine = [t for t, o in zip(a.at, a.own, strict=True) if o == 0]
    assert len(mine) == k and all(t < bound for t in mine)
    assert k == 4 or at >= bound
    if known != 3:  # unobstructed: issued at 0, 1.5, 2.0 and 3.25 s after the start
        issued = [start + x for x in (0.0, 1.5, 2.0, 3.25)]
        assert k == sum(t < bound for t in issued)
        assert at == [*issued, start + 4.25][k]
