"""The paged copy store against a dense (GPUs × blocks) table: same bits, same last uses."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.kvcache.copystore import PAGE, CopyStore

GPUS, WORDS = 3, 2

# one operation: (kind, gpu, blocks, word, bit, time)
ops = st.lists(
    st.tuples(st.sampled_from(["set", "clear", "touch", "grow"]), st.integers(0, GPUS - 1),
              st.lists(st.integers(0, 5 * PAGE - 1), min_size=1, max_size=12),
              st.integers(0, WORDS - 1), st.integers(0, 63), st.floats(0.0, 100.0)),
    max_size=40)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_the_paged_store_reads_as_a_dense_table_wherever_a_copy_exists(steps):
    store = CopyStore(GPUS, WORDS, PAGE)  # starts with one page of map: grows as blocks come
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
    assert not store.bits[:PAGE].any() and not store.used_at[:PAGE].any()  # the zero page


def test_a_gpu_gets_pages_only_where_it_keeps_copies():
    store = CopyStore(1024, 1, 512 * PAGE)
    for g in range(1024):  # each GPU copies 100 blocks of one repository's pages
        store.alloc(g, np.arange(100) + (g % 8) * 3 * PAGE)
    assert store.n_pool == 1 + 1024  # the zero page and one page each
    # the dense table would hold 1,024 × 524,288 × 16 B = 8.6 GB; the store holds ~17 MB
    assert store.nbytes < 0.05e9
    assert store.bits.shape[0] >= store.n_pool * PAGE
