"""Eviction order: the partitioned LRU pick equals a full sort by (last use, block index)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.kvcache.eviction import least_recent
from simulator.testing.profiles import examples


@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from([0.0, 1.0, 2.5, 3.0, 7.25])),
                max_size=80, unique_by=lambda t: t[0]),
       st.integers(0, 90))
def test_least_recent_is_the_head_of_the_full_lru_order(rows, count):
    # few distinct times: ties at the partition's edge are the rule, not the exception
    blocks = np.array([b for b, _ in rows], np.int64)
    used_at = np.array([t for _, t in rows], float)
    full = blocks[np.lexsort((blocks, used_at))]
    assert np.array_equal(least_recent(blocks, used_at, count), full[:max(count, 0)])


def test_least_recent_known_answers():
    blocks = np.array([7, 3, 9, 1, 5])
    used = np.array([4.0, 1.0, 3.0, 2.0, 0.5])
    assert least_recent(blocks, used, 2).tolist() == [5, 3]
    assert least_recent(blocks, used, 4).tolist() == [5, 3, 1, 9]
    assert least_recent(blocks, used, 5).tolist() == [5, 3, 1, 9, 7]
    ties = np.array([1.0, 1.0, 0.0, 1.0, 2.0])
    assert least_recent(blocks, ties, 3).tolist() == [9, 1, 3]  # ties by block index
    assert least_recent(blocks, used, 0).tolist() == []


# -- one LRU over copies and unpinned owned blocks, held to a plain-Python oracle ---------------

def _two_gpus(cap: int, host: int):
    """A first-writer directory of two GPUs on one machine: GPU 0 with ``cap`` HBM blocks, GPU 1
    with 1,000, a host tier of ``host`` blocks."""
    from simulator.kvcache.directory import BlockDirectory, DirectoryConfig

    return BlockDirectory(DirectoryConfig("first_writer", 1, (cap, 1000), host, (0, 0),
                                          ((0.0, 1e-6), (1e-6, 0.0)), 1))


def _oracle_free(own, pins, copies, count, keep=()):
    """The documented order (kvcache/eviction.py): the least recently used of the copies (not
    in ``keep``) and the unpinned owned blocks, ties copy first then block index; then pinned
    owned blocks. Mutates ``own``/``copies``; returns the demoted blocks."""
    cands = [(t, 0, b) for b, t in copies.items() if b not in keep]
    cands += [(t, 1, b) for b, t in own.items() if pins.get(b, 0) <= 0]
    demoted = []
    for _, kind, b in sorted(cands)[:count]:
        if kind == 0:
            del copies[b]
        else:
            del own[b]
            demoted.append(b)
    return demoted


_OPS = st.lists(st.tuples(st.sampled_from(["place", "touch", "touch_other", "pin", "unpin",
                                           "copy"]),
                          st.lists(st.integers(0, 29), min_size=1, max_size=6)),
                min_size=3, max_size=40)


@settings(max_examples=examples(150))
@given(st.integers(3, 40) | st.integers(3, 10), _OPS)
def test_owned_blocks_and_copies_share_one_lru_order(cap, ops):
    # GPU 0 (capacity `cap`, watermark cap // 32) owns blocks 0..29 as it places them and copies
    # blocks 100..129 that GPU 1 owns; the directory's state after every step is the oracle's
    from simulator.kvcache.tiers import HBM, HOST

    d = _two_gpus(cap, 1000)
    mine = d.intern(np.arange(30))
    theirs = d.intern(np.arange(100, 130))
    d.place(theirs, writer=1, now=0.0)
    own, pins, copies, host = {}, {}, {}, set()
    slack = cap // 32
    for step, (op, picks) in enumerate(ops, start=1):
        now = float(step // 2)  # repeated times: ties are common
        if op == "place":
            new = [p for p in dict.fromkeys(picks) if p not in own and p not in host]
            d.place(mine[picks], writer=0, now=now)
            own.update({p: now for p in new})
            over = len(own) + len(copies) - cap
            if over > 0:
                gone = _oracle_free(own, pins, copies, over + slack)
                left = len(own) + len(copies) - cap + slack  # what that pass did not free
                for b in sorted(own, key=lambda b: (own[b], b))[:max(left, 0)]:  # pinned only
                    del own[b]
                    gone.append(b)
                host.update(gone)
        elif op in ("touch", "touch_other"):
            gpu = 0 if op == "touch" else 1
            d.touch(gpu, mine[picks], now=now)
            d.touch(gpu, theirs[picks], now=now)
            for p in picks:
                if p in own:
                    own[p] = now
                if gpu == 0 and p in copies:
                    copies[p] = now
        elif op == "pin":
            d.pin(mine[picks])
            for p in picks:
                pins[p] = pins.get(p, 0) + 1
        elif op == "unpin":
            for p in picks:  # one at a time: never below zero
                if pins.get(p, 0) > 0:
                    d.unpin(mine[[p]])
                    pins[p] -= 1
        else:  # copy
            idx = sorted(set(picks))
            d.add_copies(0, theirs[idx], slot=0, now=now)
            for p in idx:
                if p in copies:
                    copies[p] = now
            new = [p for p in idx if p not in copies]
            free = cap - len(own) - len(copies)
            fit = len(new)
            if free < len(new):
                host.update(_oracle_free(own, pins, copies, len(new) - max(free, 0) + slack,
                                         keep=set(idx)))
                fit = max(0, min(len(new), cap - len(own) - len(copies)))
            copies.update({p: now for p in new[:fit]})
        tier = d.tier[mine]
        assert sorted(np.flatnonzero(tier == HBM).tolist()) == sorted(own), (step, op)
        assert sorted(np.flatnonzero(tier == HOST).tolist()) == sorted(host), (step, op)
        assert sorted(np.flatnonzero(d.has_copy(0, theirs, 0)).tolist()) == sorted(copies)
        assert (int(d.owned[0]), int(d.copies[0])) == (len(own), len(copies))
        d.check()


# -- only pinned blocks left: the LRU of them goes to the host tier ----------------------------


def _pinned_gpu(cap: int, host: int, pins: dict[int, int]):
    """GPU 0 of two (capacity ``cap`` blocks, host tier ``host`` blocks per machine) holding
    blocks 0, 1, … placed at 0, 1, … s, each pinned ``pins[b]`` times before it is placed (so no
    unpinned block is ever there to evict first)."""
    d = _two_gpus(cap, host)
    blocks = d.intern(np.arange(len(pins)))
    for b, n in pins.items():
        for _ in range(n):
            d.pin(blocks[[b]])
        d.place(blocks[[b]], writer=0, now=float(b))
    return d, blocks


def test_with_only_pinned_blocks_the_least_recently_used_is_demoted():
    # capacity 4 (watermark 4 // 32 = 0): the fifth pinned block puts GPU 0 one over; nothing is
    # unpinned, so make_room demotes the least recently used pinned block — block 0 — to the
    # host tier and keeps the other four (catches make_room's `target > 0` as `> 1`, the demote
    # call deleted, demote's take as max(count, len) and its _demote deleted)
    from simulator.kvcache.tiers import HBM, HOST

    d, blocks = _pinned_gpu(4, 100, {0: 1, 1: 1, 2: 1, 3: 1, 4: 1})
    assert d.tier[blocks].tolist() == [HOST, HBM, HBM, HBM, HBM]
    assert (int(d.owned[0]), int(d.host_used[0]), d.demoted, d.dropped) == (4, 1, 1, 0)
    d.check()


def test_demote_orders_pinned_blocks_by_last_use_whatever_their_pin_count():
    # block 0 is pinned twice and the oldest, block 1 once: the LRU one goes, not the one with
    # fewer pins (catches the "unpinned" key read as pins > 1, which would put block 1 first)
    from simulator.kvcache.tiers import HBM, HOST

    d, blocks = _pinned_gpu(2, 100, {0: 2, 1: 1, 2: 1})
    assert d.tier[blocks].tolist() == [HOST, HBM, HBM]
    # a full host tier drops the block instead (it leaves HBM either way)
    d, blocks = _pinned_gpu(2, 0, {0: 2, 1: 1, 2: 1})
    assert (int(d.owned[0]), d.demoted, d.dropped) == (2, 0, 1)


def test_a_gpu_with_room_for_no_block_demotes_its_only_block():
    # capacity 0: the one placed block is over at once and is the only one in HBM (catches
    # demote's empty check as `len(mine) == 1` or `!= 0`)
    from simulator.kvcache.tiers import HOST

    d, blocks = _pinned_gpu(0, 100, {0: 1})
    assert d.tier[blocks].tolist() == [HOST] and int(d.owned[0]) == 0
