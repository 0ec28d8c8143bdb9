"""The copy store against a dense (GPUs × blocks) table: same bits, same last uses — dense,
paged, and turning paged as blocks come."""

from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.kvcache import copystore
from simulator.kvcache.copystore import PAGE, CopyStore

GPUS, WORDS = 3, 2

# one operation: (kind, gpu, blocks, word, bit, time)
ops = st.lists(
    st.tuples(st.sampled_from(["set", "clear", "touch", "grow"]), st.integers(0, GPUS - 1),
              st.lists(st.integers(0, 5 * PAGE - 1), min_size=1, max_size=12),
              st.integers(0, WORDS - 1), st.integers(0, 63), st.floats(0.0, 100.0)),
    max_size=40)


# the dense layout's size limit [B]: always paged; dense for up to two pages of blocks, then
# paged; always dense
LIMITS = (0.0, GPUS * 2 * PAGE * (8 * WORDS + 8), 1e12)


@settings(max_examples=90, deadline=None)
@given(ops, st.sampled_from(LIMITS))
def test_the_store_reads_as_a_dense_table_wherever_a_copy_exists(steps, limit):
    with mock.patch.object(copystore, "DENSE_BYTES", limit):
        check_against_a_dense_table(steps, limit)


def check_against_a_dense_table(steps, limit):
    store = CopyStore(GPUS, WORDS, PAGE)  # starts with one page of blocks: grows as they come
    bits = np.zeros((GPUS, 5 * PAGE, WORDS), np.uint64)
    used = np.zeros((GPUS, 5 * PAGE))
    cap = PAGE
    for kind, g, blocks, w, b, now in steps:
        idx = np.array(blocks, np.int64)
        if int(idx.max()) >= cap:  # the directory grows the map before it hands out an index
            cap = int(idx.max()) + 1
            store.grow(cap)
        if kind == "set":  # what add_copies does: pages, last use, one bit
            r = store.alloc(g, idx)
            store.used_at[r] = now
            store.bits[r, w] |= np.uint64(1 << b)
            used[g, idx] = now
            bits[g, idx, w] |= np.uint64(1 << b)
        elif kind == "clear":
            store.clear(g, idx)
            bits[g, idx] = 0
        elif kind == "touch":
            store.touch(g, idx, now)
            used[g, idx] = now
        every = np.arange(cap)
        for gpu in range(GPUS):
            held = bits[gpu, :cap].any(axis=1)
            assert np.array_equal(store.any(gpu, every), held)
            for word in range(WORDS):
                assert np.array_equal(store.word(gpu, every, word), bits[gpu, :cap, word])
            assert np.array_equal(store.word(gpu, every, every % WORDS),
                                  bits[gpu, every, every % WORDS])
            # last uses agree wherever the GPU keeps a copy (elsewhere nothing reads them)
            assert np.array_equal(store.last_used(gpu, every)[held], used[gpu, :cap][held])
            assert store.count(gpu) == int(held.sum())
    assert not store.bits[:PAGE].any()  # the zero page's bits are never set
    assert bool(store.stride) == (limit > 0 and cap <= (2 * PAGE if limit < 1e12 else 1e12))


def test_a_gpu_gets_pages_only_where_it_keeps_copies():
    store = CopyStore(1024, 1, 512 * PAGE)  # 8.6 GB dense: paged from the start
    assert store.stride == 0
    for g in range(1024):  # each GPU copies 100 blocks of one repository's pages
        store.alloc(g, np.arange(100) + (g % 8) * 3 * PAGE)
    assert store.n_pool == 1 + 1024  # the zero page and one page each
    # the dense table would hold 1,024 × 524,288 × 16 B = 8.6 GB; the store holds 37.7 MB
    assert store.nbytes < 0.05e9
    assert store.bits.shape[0] >= store.n_pool * PAGE


def test_a_dense_store_keeps_every_gpus_copies_when_it_grows():
    # the dense layout lays GPU after GPU: growing it moves each GPU's rows to a new place,
    # with their bits and last uses
    with mock.patch.object(copystore, "DENSE_BYTES", 1e12):
        store = CopyStore(GPUS, WORDS, PAGE)
        assert store.stride == 1
        for g in range(GPUS):
            r = store.alloc(g, np.array([g, PAGE - 1]))
            store.used_at[r] = 10.0 + g
            store.bits[r, g % WORDS] |= np.uint64(1 << (g + 3))
        store.grow(3 * PAGE)
        assert store.stride == 3
        for g in range(GPUS):
            blocks = np.array([g, PAGE - 1])
            assert store.word(g, blocks, g % WORDS).tolist() == [1 << (g + 3)] * 2
            assert store.last_used(g, blocks).tolist() == [10.0 + g] * 2
            assert not store.any(g, np.array([PAGE, 3 * PAGE - 1])).any()


def test_turning_paged_keeps_only_the_pages_with_copies_gpu_by_gpu():
    # dense for up to two pages of blocks; growing to three turns the store paged
    with mock.patch.object(copystore, "DENSE_BYTES", GPUS * 2 * PAGE * (8 * WORDS + 8)):
        store = CopyStore(GPUS, WORDS, 2 * PAGE)
        assert store.stride == 2 and store.base == [PAGE, 3 * PAGE, 5 * PAGE]
        # GPU 0 holds copies in pages 1 and 0 (written in that order), GPU 1 none (only a last
        # use, which is not a copy), GPU 2 one in page 1; GPU 0's page 1 copy is cleared again
        # in one of its blocks but kept in another
        held = {(0, 5): (1, 11.0), (0, PAGE + 7): (2, 12.0), (0, PAGE + 8): (0, 0.0),
                (2, 2 * PAGE - 1): (1 << 63, 13.0)}
        for (g, i), (bit, now) in held.items():
            r = store.alloc(g, np.array([i]))
            store.bits[r, 1] |= np.uint64(bit)
            store.used_at[r] = now
        store.touch(1, np.array([3]), 14.0)
        store.grow(3 * PAGE)
        assert store.stride == 0 and store.base == []
        assert store.n_pool == 1 + 3  # the zero page, GPU 0's pages 0 and 1, GPU 2's page 1
        assert store.offset.shape == (GPUS, 3)
        # pool pages in order: GPU 0 page 0, GPU 0 page 1, GPU 2 page 1; the rest the zero page
        assert store.offset.tolist() == [[PAGE, PAGE, -2 * PAGE], [0, -PAGE, -2 * PAGE],
                                         [0, 2 * PAGE, -2 * PAGE]]
        for (g, i), (bit, now) in held.items():
            row = store.rows(g, np.array([i]))
            assert store.bits[row, 1].tolist() == [bit] and store.bits[row, 0].tolist() == [0]
            if bit:
                assert store.last_used(g, np.array([i])).tolist() == [now]
        assert not store.any(1, np.arange(3 * PAGE)).any()
        assert [store.count(g) for g in range(GPUS)] == [2, 0, 1]
        assert not store.bits[:PAGE].any() and not store.used_at[:PAGE].any()
        # the pool has room for twice the pages kept; a new page goes after the kept ones
        assert len(store.bits) == len(store.used_at) == PAGE * (1 + 2 * 3)
        assert store.alloc(1, np.array([2 * PAGE + 4])).tolist() == [4 * PAGE + 4]
        assert store.n_pool == 5


def test_pages_allocated_at_once_come_in_page_order_and_the_pool_doubles():
    store = CopyStore(2, 1, 64 * PAGE)  # 64 pages × 2 GPUs: dense would be small, so force
    store._to_paged()  # paged: no page kept, a pool of the zero page and room for two
    assert store.n_pool == 1 and len(store.bits) == len(store.used_at) == 3 * PAGE
    first = store.alloc(0, np.array([1]))
    store.bits[first, 0] = np.uint64(9)
    store.used_at[first] = 3.0
    assert store.alloc(0, np.array([20 * PAGE])).tolist() == [2 * PAGE]
    assert store.n_pool == 3 and len(store.bits) == 3 * PAGE  # full, not past it: kept
    assert store.alloc(0, np.array([21 * PAGE])).tolist() == [3 * PAGE]
    assert len(store.bits) == len(store.used_at) == 6 * PAGE  # past it: doubled
    # nine new pages in one call, named out of order and one twice: more than doubling holds
    pages = np.array([40, 7, 3, 40, 9, 12, 30, 31, 32, 33])
    idx = pages * PAGE + np.arange(len(pages))
    rows = store.alloc(0, idx)
    assert store.n_pool == 4 + 9
    # ascending pages get ascending pool pages after the three already held
    rank = {p: 4 + i for i, p in enumerate(sorted(set(pages.tolist())))}
    assert rows.tolist() == [rank[p] * PAGE + i for i, p in enumerate(pages.tolist())]
    assert len(store.bits) == len(store.used_at) == 13 * PAGE  # what the pages need
    assert store.bits[first, 0].tolist() == [9] and store.used_at[first].tolist() == [3.0]
    assert store.nbytes == store.offset.nbytes + 13 * PAGE * 8 + 13 * PAGE * 8
    assert store.rows(1, idx).tolist() == (idx % PAGE).tolist()  # the zero page
