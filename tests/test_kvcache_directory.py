"""The block directory: placement schemes, capacity, LRU copies, host tier, determinism."""

from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from simulator.kvcache import (
    DROPPED,
    HBM,
    HOST,
    BlockDirectory,
    DirectoryConfig,
    capacity_blocks,
    stable_hash,
)
from simulator.kvcache.copystore import PAGE
from simulator.units import GB, MB


def make(scheme="first_writer", replicas=1, cap=100, gpus=4, per_machine=2, host=0, slots=4):
    machine = tuple(i // per_machine for i in range(gpus))
    dist = tuple(
        tuple(0.0 if a == b else (1e-6 if machine[a] == machine[b] else 1e-5) for b in range(gpus))
        for a in range(gpus)
    )
    caps = (cap,) * gpus if isinstance(cap, int) else tuple(cap)
    return BlockDirectory(DirectoryConfig(scheme, replicas, caps, host, machine, dist, slots))


# -- known answers ---------------------------------------------------------------------------


def test_capacity_is_hbm_minus_weights_minus_reserve():
    # 80 GB HBM, 10 % reserve (8 GB), 42 GB of weights → 30 GB free → 30e9 / 4.5 MB blocks
    assert capacity_blocks(GB(80), GB(42), 0.1, MB(4.5)) == 6666
    assert capacity_blocks(GB(80), GB(90), 0.1, MB(4.5)) == 0


def test_intern_gives_dense_indices_in_first_seen_order():
    d = make()
    assert d.intern([50, 7, 50, 9]).tolist() == [0, 1, 0, 2]
    assert d.intern([9, 11]).tolist() == [2, 3]
    assert d.n == 4
    assert not d.known(np.arange(4)).any()


def test_first_writer_owns_what_it_prefilled():
    d = make("first_writer")
    idx = d.intern([1, 2, 3])
    d.place(idx, writer=2, now=0.0)
    assert d.nearest(idx, src=0).tolist() == [2, 2, 2]
    assert d.owned.tolist() == [0, 0, 3, 0]
    assert d.known(idx).all()
    d.check()


def test_range_shards_a_prompt_contiguously():
    d = make("range", gpus=4)
    idx = d.intern(list(range(100, 108)))
    d.place(idx, writer=0, now=0.0)
    assert d.nearest(idx, src=0).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_repo_affinity_puts_a_repository_on_one_owner_and_the_rest_with_the_writer():
    d = make("repo_affinity", gpus=4)
    repo = d.intern([1, 2, 3, 4])
    d.place(repo, writer=0, now=0.0, repo=17)
    owner = int(stable_hash(np.array([17]))[0] % np.uint64(4))
    assert d.nearest(repo, 0).tolist() == [owner] * 4
    other = d.intern([9])
    d.place(other, writer=3, now=0.0)
    assert d.nearest(other, 0).tolist() == [3]


def test_hash_placement_is_a_stable_function_of_the_key():
    d1, d2 = make("hash"), make("hash")
    i1 = d1.intern([5, 6, 7, 8, 9])
    d1.place(i1, writer=0, now=0.0)
    i2 = d2.intern([9, 8, 7, 6, 5])
    d2.place(i2, writer=3, now=0.0)
    assert d1.nearest(i1, 0).tolist() == d2.nearest(i2, 0).tolist()[::-1]
    expect = (stable_hash(np.array([5, 6, 7, 8, 9])) % np.uint64(4)).astype(int).tolist()
    assert d1.nearest(i1, 0).tolist() == expect


def test_replicas_are_read_from_the_reader_itself_then_the_nearest():
    d = make("replicate", replicas=2, gpus=4, per_machine=2)
    idx = d.intern([1])
    d.place(idx, writer=0, now=0.0)
    first = int(stable_hash(np.array([1]))[0] % np.uint64(4))
    second = (first + 1) % 4
    assert sorted(d.holders(idx)[0].tolist()) == sorted([first, second])
    assert d.nearest(idx, first).tolist() == [first]
    assert d.nearest(idx, second).tolist() == [second]
    # a reader on the other machine: both replicas are equally far → the first one
    other = [g for g in range(4) if d.machine_of[g] != d.machine_of[first]]
    expected = second if d.machine_of[second] == d.machine_of[other[0]] else first
    assert d.nearest(idx, other[0]).tolist() == [expected]
    assert d.owned.sum() == 2
    d.check()


def test_copies_are_per_layer_slot_and_evicted_least_recently_used_first():
    d = make(cap=3, gpus=2, per_machine=2)
    idx = d.intern([10, 11, 12, 13])
    d.place(idx, writer=1, now=0.0)
    assert d.add_copies(0, idx[:2], slot=0, now=1.0) == 2
    assert d.has_copy(0, idx[:2], 0).all() and not d.has_copy(0, idx[:2], 1).any()
    assert d.add_copies(0, idx[:1], slot=1, now=2.0) == 0  # same block, another layer: no slot
    assert d.has_copy(0, idx[:1], 1).all()
    assert d.add_copies(0, idx[2:3], slot=0, now=3.0) == 1  # now full: 3 of 3
    d.touch(0, idx[1:2], now=4.0)
    assert d.add_copies(0, idx[3:4], slot=0, now=5.0) == 1  # evicts block 10 (used at 2.0)
    assert d.has_copy(0, idx, 0).tolist() == [False, True, True, True]
    assert d.copies.tolist() == [3, 0] and d.copies_evicted == 1
    d.check()


def test_copies_count_a_repeated_block_once_and_never_evict_the_blocks_being_added():
    d = make(cap=3, gpus=2, per_machine=2, slots=70)
    idx = d.intern([10, 11, 12, 13, 14])
    d.place(idx, writer=1, now=0.0)
    assert d.add_copies(0, idx[[1, 0, 1]], slot=66, now=1.0) == 2  # a repeat counts once
    assert d.add_copies(0, idx[[2]], slot=0, now=2.0) == 1  # now full: 3 of 3
    # two new blocks need room: both other copies go (10 and 12), never 11, which is re-read
    assert d.add_copies(0, idx[[4, 3, 1, 4]], slot=66, now=3.0) == 2
    assert d.has_copy(0, idx, 66).tolist() == [False, True, False, True, True]
    assert d.copies.tolist() == [3, 0] and d.copies_evicted == 2
    assert d.copy_used_at(0, idx).tolist() == [1.0, 3.0, 2.0, 3.0, 3.0]
    d.check()


def test_owned_overflow_demotes_lru_to_host_then_drops():
    d = make(cap=2, gpus=2, per_machine=2, host=1)
    a = d.intern([1, 2])
    d.place(a, writer=0, now=0.0)
    d.touch(0, a[1:], now=1.0)
    b = d.intern([3])
    d.place(b, writer=0, now=2.0)  # block 1 (oldest) → host
    assert d.tier[[0, 1, 2]].tolist() == [HOST, HBM, HBM]
    c = d.intern([4])
    d.place(c, writer=0, now=3.0)  # block 2 → host; host full → block 1 dropped
    assert d.tier[[0, 1, 2, 3]].tolist() == [DROPPED, HOST, HBM, HBM]
    assert d.demoted == 2 and d.dropped == 1
    assert not d.known(a[:1]).any()
    d.check()


def test_pinned_blocks_are_demoted_last():
    d = make(cap=2, gpus=1, per_machine=1, host=10)
    a = d.intern([1, 2])
    d.place(a, writer=0, now=0.0)
    d.pin(a[:1])
    d.place(d.intern([3]), writer=0, now=1.0)
    assert d.tier[[0, 1, 2]].tolist() == [HBM, HOST, HBM]
    d.unpin(a[:1])
    d.check()


def test_owning_a_block_drops_the_copy_of_it():
    d = make(gpus=2, per_machine=2)
    a = d.intern([1])
    d.add_copies(0, a, slot=0, now=0.0)
    assert d.copies.tolist() == [1, 0]
    d.place(a, writer=0, now=1.0)
    assert d.copies.tolist() == [0, 0] and d.owned.tolist() == [1, 0]
    d.check()


def test_layer_slots_beyond_64_use_more_words():
    d = make(gpus=2, slots=78)
    a = d.intern([1])
    d.add_copies(0, a, slot=77, now=0.0)
    assert d.has_copy(0, a, 77).all() and not d.has_copy(0, a, 13).any()


# -- properties ------------------------------------------------------------------------------

ops = st.lists(
    st.tuples(
        st.sampled_from(["place", "copy", "touch"]),
        st.lists(st.integers(0, 40), min_size=1, max_size=8),
        st.integers(0, 3),
        st.integers(0, 3),
    ),
    max_size=30,
)


@given(
    ops=ops,
    scheme=st.sampled_from(["first_writer", "hash", "range", "repo_affinity", "replicate"]),
    cap=st.integers(0, 12),
    host=st.integers(0, 6),
)
def test_capacity_is_never_exceeded_and_bookkeeping_holds(ops, scheme, cap, host):
    d = make(scheme, replicas=2, cap=cap, gpus=4, host=host)
    for t, (op, keys, gpu, slot) in enumerate(ops):
        idx = d.intern(keys)
        if op == "place":
            new = np.unique(idx[~d.known(idx)])
            d.place(new, writer=gpu, now=float(t), repo=gpu)
        elif op == "copy":
            d.add_copies(gpu, idx, slot, now=float(t))
        else:
            d.touch(gpu, idx, now=float(t))
        d.check()
        assert np.all(d.hbm_used() <= cap)


@given(keys=st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=30), seed=st.integers())
def test_same_inputs_same_directory(keys, seed):
    def build():
        d = make("hash", cap=5, host=3)
        d.place(np.unique(d.intern(keys)), writer=seed % 4, now=0.0)
        return d.base[: d.n].tolist(), d.tier[: d.n].tolist()

    assert build() == build()


def test_a_full_cache_evicts_down_to_its_low_watermark():
    # capacity 64 → the watermark frees 64 // 32 = 2 blocks beyond the one needed
    d = make(cap=64, gpus=2, per_machine=2)
    idx = d.intern(list(range(65)))
    d.place(idx, writer=1, now=0.0)  # owned by GPU 1 (it may demote its own to fit 64)
    for t, i in enumerate(idx[:64].tolist()):
        d.add_copies(0, np.array([i]), slot=0, now=float(t))
    assert d.copies[0] == 64
    d.add_copies(0, idx[64:], slot=0, now=100.0)
    assert d.copies[0] == 62 and d.copies_evicted == 3
    assert d.has_copy(0, idx[:3], 0).tolist() == [False, False, False]  # the three oldest
    d.check()


# -- more known answers (each pins a promise the mutation score found unchecked) ---------------


def splitmix64(key: int) -> int:
    """The published splitmix64 finaliser (Steele, Lea & Flood 2014), in Python integers: an
    oracle for :func:`stable_hash`, which placement by hash and by repository rests on."""
    m = (1 << 64) - 1
    z = (key + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def test_stable_hash_is_splitmix64():
    keys = [0, 1, 2, 12345, 2**40 + 7, -1, -(2**63)]
    got = stable_hash(np.array(keys, np.int64)).tolist()
    assert got == [splitmix64(k & ((1 << 64) - 1)) for k in keys]


def test_a_repository_is_placed_by_its_hash_even_repository_zero():
    d = make("repo_affinity", gpus=4)
    assert splitmix64(0) % 4 == 3  # so the writers below are not the owner
    idx = d.intern([1, 2, 3])
    d.place(idx, writer=1, now=0.0, repo=0)
    assert d.base[idx].tolist() == [3] * 3
    other = d.intern([4])
    d.place(other, writer=2, now=0.0)  # no repository: its writer
    assert d.base[other].tolist() == [2]


def test_range_places_positions_by_their_share_of_the_context():
    # 8 positions of a 16-block context over 4 GPUs: GPU = position * 4 // 16
    d = make("range", gpus=4)
    idx = d.intern(list(range(8)))
    d.place(idx, writer=0, now=0.0, positions=np.arange(0, 16, 2), n_context=16)
    assert d.base[idx].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_the_directory_grows_past_its_first_arrays():
    # 3,000 blocks in batches of 700 (the arrays start at 1,024 blocks and double); a layer
    # slot in a third word (129 slots: 3 words of 64)
    d = make(gpus=2, cap=10_000, slots=129)
    keys = np.arange(5_000, 8_000)
    for start in range(0, 3_000, 700):
        idx = d.intern(keys[start:start + 700])
        assert idx.tolist() == list(range(start, min(start + 700, 3_000)))
        assert not d.known(idx).any() and not d.pins[idx].any()
        assert not d.has_copy(0, idx, 128).any() and not d.has_copy(0, idx, 0).any()
        assert (d.holders(idx) == -1).all() and (d.nearest(idx, 0) == -1).all()
        d.place(idx, writer=(start // 700) % 2, now=float(start))
    assert d.n == 3_000 and d.intern(keys[[0, 2_999]]).tolist() == [0, 2_999]
    assert d.keys[:3_000].tolist() == keys.tolist()
    assert d.base[2_100:2_800].tolist() == [1] * 700 and d.used_at[2_999] == 2_800.0
    assert d.owned.tolist() == [1_600, 1_400]
    far = np.arange(2_100, 2_800)  # owned by GPU 1: GPU 0 copies slot 128 of them
    d.pin(far)
    assert d.add_copies(0, far, slot=128, now=9.0) == 700
    assert d.has_copy(0, far, 128).all() and not d.has_copy(0, far, 127).any()
    assert d.pins[far].tolist() == [1] * 700 and d.copy_used_at(0, np.array([2_799]))[0] == 9.0
    d.check()


def test_interning_more_than_twice_the_arrays_at_once_grows_them_enough():
    d = make(gpus=2, cap=10_000)
    idx = d.intern(np.arange(5_000))  # 1,024 → 5,000 in one step
    d.place(idx, writer=1, now=1.0)
    assert d.known(idx).all() and d.base[4_999] == 1 and d.used_at[4_999] == 1.0
    d.check()


def test_pins_count_each_request_and_touch_refreshes_the_lru_clock():
    d = make(cap=3, gpus=1, per_machine=1, host=10)
    a = d.intern([1, 2, 3])
    for i in range(3):
        d.place(a[i:i + 1], writer=0, now=float(i))
    d.pin(a[:1])
    d.pin(a[:1])
    d.unpin(a[:1])
    assert d.pins[a].tolist() == [1, 0, 0]
    d.unpin(a[:1])
    assert d.pins[a].tolist() == [0, 0, 0]
    d.touch(0, a[:1], now=5.0)  # block 1 is now the most recent: block 2 is demoted
    d.place(d.intern([4]), writer=0, now=6.0)
    assert d.tier[a].tolist() == [HBM, HOST, HBM] and d.used_at[a[0]] == 5.0
    d.check()


def test_a_reader_uses_its_own_replica_else_the_nearest_else_the_first():
    # replicate:2 on 4 GPUs (2 per machine): block k's holders are (h, h+1)
    d = make("replicate", replicas=2, gpus=4)
    idx = d.intern(list(range(40)))
    d.place(idx, writer=0, now=0.0)
    h = d.holders(idx)
    assert (h[:, 1] == (h[:, 0] + 1) % 4).all()
    for src in range(4):
        got = d.nearest(idx, src)
        for k in range(40):
            a, b = h[k]
            if src in (a, b):
                want = src
            elif d.dist[src][a] != d.dist[src][b]:
                want = a if d.dist[src][a] < d.dist[src][b] else b
            else:
                want = a  # equidistant: the first holder
            assert got[k] == want, (src, k, a, b)
    # even when a replica sits at distance 0 the reader's own copy wins
    d.dist[2][1] = 0.0
    one = idx[(h[:, 0] == 1)][:1]  # holders (1, 2)
    assert d.nearest(one, 2).tolist() == [2]
    assert d.nearest(d.intern([999]), 1).tolist() == [-1]  # unplaced


def test_a_replicate_scheme_of_one_keeps_one_holder():
    d = make("replicate", replicas=1, gpus=4)
    idx = d.intern(list(range(10)))
    d.place(idx, writer=0, now=0.0)
    assert d.holders(idx).shape == (10, 1) and d.owned.sum() == 10
    f = make("first_writer", gpus=4)
    f.place(f.intern([1, 2]), writer=1, now=0.0)
    assert f.holders(np.arange(2)).shape == (2, 1) and f.owned.tolist() == [0, 2, 0, 0]


def test_no_gpu_copies_a_block_it_holds():
    d = make(gpus=2, per_machine=2)
    a = d.intern([1, 2])
    d.place(a, writer=0, now=0.0)
    assert d.add_copies(0, a, slot=0, now=1.0) == 0
    assert d.add_copies(1, a[[0, 0]], slot=0, now=1.0) == 1  # a repeat of two counts once
    r = make("replicate", replicas=2, gpus=4)
    b = r.intern([5])
    r.place(b, writer=0, now=0.0)
    holders = r.holders(b)[0].tolist()
    for g in holders:
        assert r.add_copies(g, b, slot=0, now=1.0) == 0
    assert r.copies.sum() == 0
    (reader,) = sorted(set(range(4)) - set(holders))[:1]
    assert r.add_copies(reader, b, slot=0, now=1.0) == 1  # not a holder: it keeps a copy


def test_owned_and_copies_together_fill_a_gpu_down_to_the_low_watermark():
    # 64 blocks: the low watermark frees 64 // 32 = 2 blocks beyond what is needed; unpinned
    # owned blocks and copies go in one least-recently-used order
    d = make(cap=64, gpus=2, per_machine=2, host=100)
    other = d.intern(list(range(1000, 1004)))
    d.place(other, writer=1, now=0.0)
    mine = d.intern(list(range(60)))
    d.place(mine, writer=0, now=1.0)
    assert d.add_copies(0, other, slot=0, now=2.0) == 4  # 60 + 4 = 64: full, nothing evicted
    assert d.copies_evicted == 0 and d.demoted == 0
    d.place(d.intern([5000]), writer=0, now=3.0)  # 1 over: 1 + 2 freed, the owned of t=1.0
    assert (d.owned[0], d.copies[0], d.copies_evicted, d.demoted) == (58, 4, 0, 3)
    assert d.tier[mine[:4]].tolist() == [HOST, HOST, HOST, HBM]  # lowest index among ties
    d.touch(0, mine[3:], now=4.0)  # now the copies (t=2.0) are the least recent
    d.place(d.intern([5001, 5002, 5003]), writer=0, now=5.0)  # 1 over: 3 freed, copies first
    assert (d.owned[0], d.copies[0], d.copies_evicted, d.demoted) == (61, 1, 3, 3)
    assert d.has_copy(0, other, 0).tolist() == [False, False, False, True]
    d.check()


def test_a_copy_displaces_the_least_recent_unpinned_owned_block_never_a_pinned_one():
    # GPU 0 (8 blocks, watermark 0) owns 8: a, b (unpinned, used at 1 and 3) and 6 pinned
    d = make(cap=8, gpus=2, per_machine=2, host=10)
    own = d.intern(list(range(8)))
    d.place(own, writer=0, now=0.0)
    d.pin(own[2:])
    d.touch(0, own[:1], now=1.0)
    d.touch(0, own[1:2], now=3.0)
    theirs = d.intern([100, 101, 102])
    d.place(theirs, writer=1, now=0.0)
    assert d.add_copies(0, theirs[:1], slot=0, now=2.0) == 1  # block 0 (t=1) goes to host
    assert d.tier[own[:2]].tolist() == [HOST, HBM] and d.copies_evicted == 0
    # full again: the next copy displaces the older of the copy (t=2) and block 1 (t=3)
    assert d.add_copies(0, theirs[1:2], slot=0, now=4.0) == 1
    assert d.copies_evicted == 1 and d.tier[own[1]] == HBM
    # a tie between a copy and an owned block of the same last use: the copy goes
    d.touch(0, own[1:2], now=4.0)
    assert d.add_copies(0, theirs[2:3], slot=0, now=5.0) == 1
    assert d.has_copy(0, theirs, 0).tolist() == [False, False, True]
    assert d.tier[own[1]] == HBM and d.copies_evicted == 2
    # only pinned blocks and the copy being read are left: nothing may go
    d.touch(0, own[1:2], now=6.0)
    d.pin(own[1:2])
    assert d.add_copies(0, theirs[[0, 2]], slot=0, now=7.0) == 0
    assert d.has_copy(0, theirs, 0).tolist() == [False, False, True]
    assert (d.tier[own[1:]] == HBM).all() and d.demoted == 1
    d.check()


def test_demotion_is_reported_and_a_dropped_block_has_no_holder():
    d = make(cap=2, gpus=1, per_machine=1, host=1)
    seen = []
    d.on_demote = lambda gpu, n, machine: seen.append((gpu, n, machine))
    a = d.intern([1, 2, 3, 4])
    for i in range(4):
        d.place(a[i:i + 1], writer=0, now=float(i))
    # block 1 went to host, then block 2 — the host held one: block 1 dropped
    assert seen == [(0, 1, 0), (0, 1, 0)]
    assert d.tier[a].tolist() == [DROPPED, HOST, HBM, HBM]
    assert (d.demoted, d.dropped) == (2, 1)
    assert d.holders(a[:1]).tolist() == [[-1]] and d.nearest(a[:1], 0).tolist() == [-1]
    d.check()


def test_the_checker_catches_an_overfull_gpu():
    import pytest

    d = make(cap=4, gpus=2, per_machine=2)
    other = d.intern([10, 11])
    d.place(other, writer=1, now=0.0)
    d.place(d.intern([1, 2]), writer=0, now=0.0)
    d.add_copies(0, other, slot=0, now=1.0)
    d.check()  # 2 owned + 2 copies = 4 of 4
    d.capacity[0] = 3
    with pytest.raises(AssertionError, match="HBM capacity"):
        d.check()


def test_copies_fill_what_is_left_and_a_gpu_full_of_its_own_pinned_blocks_keeps_none():
    # GPU 0: 64 blocks (low watermark 2), owns 61 that running requests pin; GPU 1 owns the
    # blocks GPU 0 copies
    d = make(cap=64, gpus=2, per_machine=2, host=0)
    d.pin(pinned := d.intern(list(range(61))))
    d.place(pinned, writer=0, now=0.0)
    theirs = d.intern(list(range(1000, 1010)))
    d.place(theirs, writer=1, now=0.0)
    assert d.add_copies(0, theirs[:2], slot=0, now=1.0) == 2  # 63 of 64
    # 2 more copies, 1 free: evict 2 - 1 + 2 (watermark) = 3 LRU copies — but only 2 exist
    # that are not being added; both go, then 2 of the new fit (one slot left free)
    assert d.add_copies(0, theirs[2:4], slot=0, now=2.0) == 2
    assert d.copies_evicted == 2 and d.copies[0] == 2
    assert d.has_copy(0, theirs[:4], 0).tolist() == [False, False, True, True]
    assert d.add_copies(0, theirs[4:5], slot=0, now=3.0) == 1  # the last free block
    # full: 1 + 2 (watermark) copies evicted — all three others
    assert d.add_copies(0, theirs[5:6], slot=0, now=4.0) == 1
    assert d.copies_evicted == 5 and d.hbm_used().tolist() == [62, 10]
    assert np.flatnonzero(d.has_copy(0, theirs, 0)).tolist() == [5]
    d.check()
    full = make(cap=2, gpus=2, per_machine=2)
    full.pin(full_own := full.intern([1, 2]))
    full.place(full_own, writer=0, now=0.0)
    other = full.intern([3])
    full.place(other, writer=1, now=0.0)
    assert full.add_copies(0, other, slot=0, now=1.0) == 0  # nothing it may evict
    assert full.copies.tolist() == [0, 0]
    full.check()


def test_a_copy_being_read_again_is_never_evicted_for_the_new_ones():
    # GPU 0 (3 blocks) copies 8, 0 and 9; then reads 5, 6, 7 (new) and 8 (held): 3 new need
    # room but only 0 and 9 may go — 8 stays, 2 of the new fit
    d = make(cap=3, gpus=2, per_machine=2)
    b = d.intern(list(range(10)))
    d.place(b, writer=1, now=0.0)
    for t, blk in enumerate([8, 0, 9]):
        d.add_copies(0, b[[blk]], slot=0, now=float(t))
    assert d.add_copies(0, b[[5, 6, 7, 8]], slot=0, now=5.0) == 2
    assert np.flatnonzero(d.has_copy(0, b, 0)).tolist() == [5, 6, 8]
    d.check()


def _one_full_gpu(host: int, blocks: int):
    """One GPU of 4 blocks and a host of ``host``; ``blocks`` ids interned, the first 4 placed
    one per second (the GPU full, block 0 the least recent)."""
    d = make(cap=4, gpus=1, per_machine=1, host=host)
    a = d.intern(list(range(blocks)))
    for i in range(4):
        d.place(a[i:i + 1], writer=0, now=float(i))
    return d, a


def test_a_full_host_drops_only_what_it_must():
    # one GPU of 2 blocks, a host of 3; the host holds 2 blocks when 2 more are demoted at
    # once: 1 host block (the least recent) is dropped, the host ends full
    d, a = _one_full_gpu(host=3, blocks=6)
    d.place(a[4:6], writer=0, now=4.0)  # 6 > 4 blocks: 2 + watermark 0 demoted (0 and 1)
    assert d.tier[a].tolist() == [HOST, HOST, HBM, HBM, HBM, HBM]
    d.capacity[0] = 2  # the GPU shrinks: the next placement demotes 3 more
    b = d.intern([9])
    d.place(b, writer=0, now=5.0)
    assert (d.host_used[0], d.dropped, d.demoted) == (3, 2, 5)
    assert d.tier[a].tolist() == [DROPPED, DROPPED, HOST, HOST, HOST, HBM]
    assert d.holders(a[:2]).tolist() == [[-1], [-1]]
    # without a host tier demoted blocks are dropped at once, and have no holder
    n = make(cap=1, gpus=1, per_machine=1, host=0)
    c = n.intern([1, 2])
    n.place(c[:1], writer=0, now=0.0)
    n.place(c[1:], writer=0, now=1.0)
    assert n.tier[c].tolist() == [DROPPED, HBM] and n.dropped == 1
    assert n.holders(c[:1]).tolist() == [[-1]]
    n.check()


def test_a_gpu_filled_exactly_evicts_nothing_and_overflow_frees_down_to_the_watermark():
    # 64 blocks (watermark 2): 63 owned + 1 placed = 64, nothing moves
    d = make(cap=64, gpus=2, per_machine=2, host=100)
    d.place(d.intern(list(range(63))), writer=0, now=0.0)
    d.place(d.intern([100]), writer=0, now=1.0)
    assert (d.owned[0], d.demoted) == (64, 0)
    # copies: 58 owned, 5 copies, 1 free; 2 new copies need 2 - 1 + 2 = 3 evicted (the 3
    # least recent of the 5), not all of them
    e = make(cap=64, gpus=2, per_machine=2, host=0)
    e.pin(e_own := e.intern(list(range(58))))  # pinned: only copies may go
    e.place(e_own, writer=0, now=0.0)
    theirs = e.intern(list(range(1000, 1007)))
    e.place(theirs, writer=1, now=0.0)
    for t in range(5):
        e.add_copies(0, theirs[t:t + 1], slot=0, now=1.0 + t)
    assert e.add_copies(0, theirs[5:7], slot=0, now=9.0) == 2
    assert (e.copies_evicted, e.copies[0]) == (3, 4)
    assert np.flatnonzero(e.has_copy(0, theirs, 0)).tolist() == [3, 4, 5, 6]
    e.check()


def test_a_host_short_of_room_drops_just_enough_of_its_oldest_blocks():
    # GPU of 4 blocks, host of 4. 7 placed: 3 demoted (host 3 of 4). 2 more: 2 demoted, the
    # host has room for 1 — it drops 1 (its least recent), not more
    d, a = _one_full_gpu(host=4, blocks=9)
    d.place(a[4:7], writer=0, now=4.0)
    assert d.host_used.tolist() == [3] and d.dropped == 0
    d.place(a[7:9], writer=0, now=5.0)
    assert d.dropped == 1 and d.host_used.tolist() == [4]
    assert d.tier[a].tolist() == [DROPPED, HOST, HOST, HOST, HOST, HBM, HBM, HBM, HBM]
    d.check()


def _apply(d, op: str, idx, gpu: int, now: float) -> None:
    """One random operation other than a copy on directory ``d``."""
    if op == "place":
        d.place(np.unique(idx[~d.known(idx)]), writer=gpu, now=now, repo=gpu)
    elif op == "touch":
        d.touch(gpu, idx, now=now)


@given(
    ops=ops,
    scheme=st.sampled_from(["first_writer", "hash", "replicate"]),
    replicas=st.integers(1, 2),
    cap=st.integers(0, 12),
    host=st.integers(0, 6),
)
def test_add_copies_kept_counts_what_has_copy_reads_after_the_call(ops, scheme, replicas, cap,
                                                                  host):
    # the engines tell an observing policy how many of a round's distinct blocks its home then
    # keeps a copy of in the slot; add_copies_kept counts it without a second read — held
    # blocks, eviction under a tight capacity, host-tier blocks and repeats included
    d = make(scheme, replicas=replicas, cap=cap, gpus=4, host=host)
    twin = make(scheme, replicas=replicas, cap=cap, gpus=4, host=host)  # plain add_copies
    for t, (op, keys, gpu, slot) in enumerate(ops):
        for x in (d, twin):
            _apply(x, op, x.intern(keys), gpu, float(t))
        if op == "copy":
            idx = d.intern(keys)
            made, kept = d.add_copies_kept(gpu, idx, slot, now=float(t))
            assert made == twin.add_copies(gpu, twin.intern(keys), slot, now=float(t))
            assert kept == int(np.count_nonzero(d.has_copy(gpu, np.unique(idx), slot)))
        assert np.array_equal(d.copies, twin.copies)
        d.check()


def _copy_state(d) -> list:
    """Everything a copy can change in a directory: holders, tiers, counters, the copy store's
    bits and last uses (whole pool), and the copy lists' live entries per GPU."""
    store = d.copy_store
    state = [d.base[: d.n], d.tier[: d.n], d.used_at[: d.n], d.owned, d.copies, d.host_used,
             d.gains, d.demoted, d.dropped, d.copies_evicted, store.offset, store.n_pool,
             store.bits, store.used_at]
    every = np.arange(d.n)
    for gpu in range(d.n_gpus):
        state.append(d.copy_lists.live(gpu, d.has_copy_of(gpu)))
        state.append(d.hbm_lists.live(gpu, d.in_hbm_of(gpu)))
        state += [d.has_copy(gpu, every, slot) for slot in range(d.cfg.layer_slots)]
    return state


@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["place", "copy", "copy", "copy", "touch"]),
            st.lists(st.integers(0, 12), min_size=1, max_size=4),  # copied again often
            st.integers(0, 3),
            st.integers(0, 69),  # slots past 63 take the second word
        ),
        max_size=40,
    ),
    scheme=st.sampled_from(["first_writer", "hash", "replicate"]),
    cap=st.integers(0, 12),
    host=st.integers(0, 6),
    paged=st.booleans(),
    short_lists=st.booleans(),
)
def test_the_compiled_copy_pass_leaves_the_state_the_array_code_leaves(ops, scheme, cap, host,
                                                                       paged, short_lists):
    # add_copies_kept takes a round that needs no room made through a compiled pass
    # (simulator/kvcache/copy_kernels.py); a twin directory runs the array code alone. After
    # every operation the two agree on every return value and every piece of state: held,
    # host-tier, dropped and repeated blocks, eviction under tight capacity, both words of
    # copy bits, dense and paged stores, copy lists that fill
    from simulator.kvcache import copystore

    with mock.patch.object(copystore, "DENSE_BYTES", 0 if paged else copystore.DENSE_BYTES):
        d = make(scheme, replicas=2, cap=cap, gpus=4, host=host, slots=70)
        twin = make(scheme, replicas=2, cap=cap, gpus=4, host=host, slots=70)
    assert (d.copy_store.stride == 0) == paged
    if short_lists:  # copy lists of room for 4 entries: pruned and grown as they fill
        for x in (d, twin):
            x.copy_lists._buf = [np.zeros(4, np.int64) for _ in range(4)]
    for t, (op, keys, gpu, slot) in enumerate(ops):
        got = []
        for x, array_code in ((d, False), (twin, True)):
            idx = x.intern(keys)
            if op != "copy":
                _apply(x, op, idx, gpu, float(t))
            elif array_code:
                with mock.patch("simulator.kvcache.directory.keep_copies",
                                return_value=(-1, 0)):
                    got.append(x.add_copies_kept(gpu, idx, slot, now=float(t)))
            else:
                got.append(x.add_copies_kept(gpu, idx, slot, now=float(t)))
        assert got[:1] == got[1:]
        for a, b in zip(_copy_state(d), _copy_state(twin), strict=True):
            assert np.array_equal(a, b)
        d.check()


def _spied(d, calls):
    """``d.add_copies_kept`` of each call, with what the compiled pass answered for each."""
    from simulator.kvcache import copy_kernels

    answers, got = [], []

    def spy(*a):
        answers.append(copy_kernels.keep_copies(*a))
        return answers[-1]

    with mock.patch("simulator.kvcache.directory.keep_copies", spy):
        for gpu, blocks, slot, now in calls:
            got.append(d.add_copies_kept(gpu, blocks, slot, now))
    return got, answers


def test_the_compiled_copy_pass_makes_the_copies_that_fit_and_leaves_the_rest():
    # GPU 0 has room for 3 blocks. Two new copies fit (a repeat counted once); slot 1 of them
    # sets a bit beside slot 0's; two more new ones do not fit beside them (eviction: the
    # array code); GPU 1 holds every block itself (no copy)
    d = make("first_writer", cap=(3, 10, 10, 10), host=10, slots=4)
    idx = d.intern([1, 2, 3, 4])
    d.place(idx, writer=1, now=0.0)
    got, answers = _spied(d, [(0, idx[[0, 1, 0]], 0, 1.0), (0, idx[:2], 1, 2.0)])
    assert answers == [(2, 2), (2, 0)] and got == [(2, 2), (0, 2)]
    assert d.has_copy(0, idx, 0).tolist() == [True, True, False, False]  # slot 0's bits kept
    assert d.has_copy(0, idx, 1).tolist() == [True, True, False, False]
    store = d.copy_store
    assert store.used_at[store.rows(0, idx[:2])].tolist() == [2.0, 2.0]
    d.check()  # the copy lists hold what a scan finds
    got, answers = _spied(d, [(0, idx[1:], 1, 3.0), (1, idx, 0, 4.0)])
    assert answers == [(-1, 0), (0, 0)]
    assert got == [(2, 3), (0, 0)]  # block 1 (the oldest, not in the round) evicted for them
    assert d.copies.tolist() == [3, 0, 0, 0] and d.copies_evicted == 1
    d.check()


def test_the_compiled_copy_pass_leaves_a_page_to_allocate_and_a_full_list_to_the_array_code():
    from simulator.kvcache import copystore

    with mock.patch.object(copystore, "DENSE_BYTES", 0):
        d = make("first_writer", cap=100, host=10, slots=4)
    assert d.copy_store.stride == 0  # paged
    idx = d.intern([1, 2, 3, 4, 5])
    d.place(idx, writer=1, now=0.0)
    d.copy_lists._buf[0] = np.zeros(3, np.int64)  # room for three entries
    got, answers = _spied(d, [(0, idx[:1], 0, 1.0), (0, idx[1:3], 0, 2.0),
                              (0, idx[3:], 0, 3.0)])
    assert answers == [(-1, 0), (2, 2), (-1, 0)]  # no page yet; then the list is full
    assert got == [(1, 1), (2, 2), (2, 2)]
    assert d.copies.tolist() == [5, 0, 0, 0]
    d.check()
    # a block in the second page of block indices: that page is not GPU 0's yet
    far = d.intern(list(range(100, 100 + PAGE)))[-2:]
    d.place(far, writer=1, now=4.0)
    got, answers = _spied(d, [(0, far, 0, 5.0), (0, far, 1, 6.0)])
    assert answers == [(-1, 0), (2, 0)] and got == [(2, 2), (0, 2)]
    assert d.copy_store.bits[:PAGE].sum() == 0  # the zero page stays clear
    d.check()


def test_add_copies_kept_leaves_out_a_block_the_gpu_holds_itself():
    # GPU 0 already copies block 1 and owns block 2: nothing new is made, block 1 counts,
    # block 2 (no copy of one's own block) does not
    d = make("first_writer", cap=100, host=10)
    idx = d.intern([1, 2, 1])
    d.place(idx[:1], writer=1, now=0.0)
    d.place(idx[1:2], writer=0, now=0.0)
    d.add_copies(0, idx[:1], 0, now=1.0)
    assert d.add_copies_kept(0, idx, 0, now=2.0) == (0, 1)
    # slot 1 of block 1: its bit set, on a block already copied (no new block copy)
    assert d.add_copies_kept(0, idx, 1, now=3.0) == (0, 1)
    assert d.has_copy(0, idx[:1], 1).all()
