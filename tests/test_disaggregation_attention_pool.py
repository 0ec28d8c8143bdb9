"""Lamina's attention pool (simulator/disaggregation/attention_pool.py): where a request's KV bytes
live on the attention GPUs, worked by hand, and the bytes kept per GPU under any sequence of
admissions, growth and releases (a hypothesis property against a ledger kept here)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.disaggregation.attention_pool import AttentionPool


def requests(inp, out) -> SimpleNamespace:
    """The request arrays the pool reads: prompt and output tokens, tokens generated so far."""
    inp = np.asarray(inp, np.int64)
    return SimpleNamespace(n=len(inp), inp=inp, out=np.asarray(out, np.int64),
                           gen=np.zeros(len(inp), np.int64))


def pool(reqs, cap, by_heads=False, share=None) -> AttentionPool:
    """One byte per token, KV grown as computed, every prompt token computed here."""
    cap = np.asarray(cap, float)
    share = np.full(len(cap), 1.0 / len(cap)) if share is None else np.asarray(share, float)
    return AttentionPool(reqs, 1.0, cap, False, lambda r: int(reqs.inp[r]), share, by_heads)


def test_by_requests_a_request_goes_whole_to_the_gpu_with_the_most_room():
    p = pool(requests([10, 10, 10], [5, 5, 5]), [100, 100])
    for r, chunk in enumerate((30, 50)):
        assert p.admit(r) == 10  # its prompt is computed: nothing held yet
        assert p.grow(r, chunk)
    # r0 took GPU 0 (the first of two empty ones), r1 the emptier GPU 1; r2 the emptier GPU 0
    assert p.admit(2) == 10 and p.grow(2, 40)
    assert p.att_of.tolist() == [0, 1, 0]
    assert p.used.tolist() == [70, 50] and p.peak.tolist() == [70, 50]
    assert not p.grow(2, 31) and p.grow(2, 30)  # GPU 0 has 30 left, GPU 1's 50 do not help
    assert p.used.tolist() == [100, 50]


def test_a_request_that_gave_its_kv_back_is_placed_anew():
    # r0 is preempted from GPU 0, which r2 then fills: GPU 1 has room, so r0's recompute goes
    # there (it used to stay bound to GPU 0 and wait for it)
    p = pool(requests([10, 10, 10], [5, 5, 5]), [100, 100])
    assert p.admit(0) == 10 and p.grow(0, 60)
    assert p.admit(1) == 10 and p.grow(1, 20)
    assert p.att_of.tolist() == [0, 1, -1]
    p.release(0)
    assert p.att_of[0] == -1 and p.used.tolist() == [0, 20]
    assert p.admit(2) == 10 and p.grow(2, 90)  # GPU 0 now the emptier one
    assert p.att_of[2] == 0
    assert p.admit(0) == 10 and p.grow(0, 60)
    assert p.att_of[0] == 1 and p.used.tolist() == [90, 80]


def test_by_heads_every_gpu_holds_its_share_and_each_must_have_room():
    p = pool(requests([10, 10], [5, 5]), [100, 60], by_heads=True, share=[0.75, 0.25])
    assert p.admit(0) == 10 and p.grow(0, 80)
    assert p.used.tolist() == [60, 20]
    assert not p.grow(0, 54) and p.grow(0, 53)  # GPU 0's 40 bytes bound: 53 × 0.75 = 39.75
    assert p.used == pytest.approx([99.75, 33.25])
    assert p.att_of[0] == -1  # no placement by request
    assert p.admit(1) == 10 and not p.grow(1, 1) and p.used == pytest.approx([99.75, 33.25])
    p.release(0)  # r1's room comes back on every GPU
    assert p.used.tolist() == [0, 0] and p.peak == pytest.approx([99.75, 33.25])
    assert p.grow(1, 40) and p.admit(0) == 10 and p.grow(0, 8)
    assert p.used.tolist() == [36, 12]
    p.release(1)
    assert p.used.tolist() == [6, 2]  # r0's 8 bytes by share: r1 gave its 40 back
    even = pool(requests([10], [5]), [100, 60], by_heads=True, share=[0.5, 0.5])
    assert even.admit(0) == 10 and even.grow(0, 119)
    assert not even.grow(0, 2) and even.grow(0, 1)  # fills GPU 1 to its last byte
    assert even.used.tolist() == [60, 60] and not even.grow(0, 1)


def test_a_request_fits_alone_if_some_gpu_could_hold_it_by_requests_or_every_share_by_heads():
    reqs = requests([60, 60], [30, 31])  # 90 and 91 bytes in all
    assert pool(reqs, [90, 50]).fits_alone(0, 90.0)
    assert not pool(reqs, [90, 50]).fits_alone(0, 91.0)
    heads = pool(reqs, [90, 50], by_heads=True, share=[0.5, 0.5])
    assert heads.fits_alone(0, 100.0) and not heads.fits_alone(0, 101.0)
    assert heads.admit(1) == 60  # 91 × 0.5 fits both
    assert pool(reqs, [90, 50]).admit(1) is None  # 91 bytes fit no one GPU: rejected


def test_what_a_release_gives_back_never_leaves_a_gpu_below_nothing():
    # three growths of 7 by thirds add up to a hair more than 21 × (1/3, 2/3): what is given
    # back would leave -8.9e-16 and -1.8e-15 bytes; the pool holds nothing, not less
    p = pool(requests([10], [30]), [100, 100], by_heads=True, share=[1 / 3, 2 / 3])
    assert p.admit(0) == 10 and all(p.grow(0, 7) for _ in range(3))
    p.release(0)
    assert p.used.tolist() == [0.0, 0.0]


OPS = st.lists(st.tuples(st.sampled_from(["admit", "grow", "release"]), st.integers(0, 2),
                         st.integers(1, 40)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(OPS, st.lists(st.integers(30, 120), min_size=1, max_size=4))
def test_each_gpu_holds_exactly_the_bytes_of_the_requests_placed_on_it(ops, caps):
    reqs = requests([5] * 6, [25] * 6)  # 30 bytes in all: every request fits alone
    p = pool(reqs, caps)
    held = {}  # the ledger: request → (GPU, bytes)
    for op, r, n in ops:
        if op == "admit" and r not in held:
            room = np.asarray(caps, float) - p.used
            assert p.admit(r) == 5  # its prompt computed here: admitted, nothing held yet
            assert int(p.att_of[r]) == int(np.argmax(room))  # the most room, now
            held[r] = (int(p.att_of[r]), 0)
        elif op == "grow" and r in held:
            w, b = held[r]
            if p.grow(r, n):
                held[r] = (w, b + n)
            else:
                assert caps[w] - p.used[w] < n
        elif op == "release" and r in held:
            p.release(r)
            del held[r]
        for w in range(len(caps)):
            assert p.used[w] == sum(b for x, b in held.values() if x == w)
            assert p.used[w] <= caps[w] and p.peak[w] >= p.used[w]
        for x in range(reqs.n):
            assert int(p.att_of[x]) == (held[x][0] if x in held else -1)


@settings(max_examples=200, deadline=None)
@given(OPS, st.sampled_from([[1.0], [0.5, 0.5], [0.75, 0.25], [0.5, 0.25, 0.25]]),
       st.integers(30, 120))
def test_by_heads_each_gpu_holds_its_share_of_every_request_held(ops, share, cap):
    reqs = requests([5] * 6, [25] * 6)
    caps = [cap * s for s in share]  # every GPU has room for the same tokens: cap
    p = pool(reqs, caps, by_heads=True, share=share)
    held = {}  # the ledger: request → bytes
    for op, r, n in ops:
        if op == "admit" and r not in held:
            assert p.admit(r) == 5
            held[r] = 0
        elif op == "grow" and r in held:
            fits = sum(held.values()) + n <= cap  # shares of quarters: exact in binary
            assert p.grow(r, n) == fits
            if fits:
                held[r] += n
        elif op == "release" and r in held:
            p.release(r)
            del held[r]
        assert p.used.tolist() == [s * sum(held.values()) for s in share]
        assert (p.att_of == -1).all()
