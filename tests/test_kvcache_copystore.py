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
