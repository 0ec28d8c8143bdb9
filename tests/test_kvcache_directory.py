"""The block directory: placement schemes, capacity, LRU copies, host tier, determinism."""

from __future__ import annotations

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
    assert d.copy_used_at[0, idx].tolist() == [1.0, 3.0, 2.0, 3.0, 3.0]
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
    d.promote(a[[1, 1]], now=4.0)  # back into HBM (asked twice: once); LRU block 3 → host
    assert d.tier[[1, 2, 3]].tolist() == [HBM, HOST, HBM]
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
        st.sampled_from(["place", "copy", "touch", "promote"]),
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
        elif op == "touch":
            d.touch(gpu, idx, now=float(t))
        else:
            d.promote(idx, now=float(t))  # repeats included
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
