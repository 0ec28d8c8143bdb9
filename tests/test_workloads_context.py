"""The generators' shared parts (workloads/context.py): lengths of a given mean, fresh ids, a
prompt under construction."""

from __future__ import annotations

import numpy as np
import pytest

from workloads.context import BlockIds, Context, length, lognormal, positive_int


@pytest.mark.parametrize("mean, sigma", [(5.0, 0.8), (400.0, 0.5), (3.0, 1.0)])
def test_lognormal_lengths_have_the_asked_mean_not_median(mean, sigma):
    # mean exp(μ + σ²/2) with μ = log(mean) − σ²/2; 400,000 draws: the mean within ~0.3 %
    # (coefficient of variation √(exp σ² − 1) ≤ 1.31), the median exp(μ) within ~0.3 %
    x = lognormal(np.random.default_rng(1), mean, sigma, size=400_000)
    assert x.mean() == pytest.approx(mean, rel=0.01)
    assert np.median(x) == pytest.approx(mean * np.exp(-sigma**2 / 2), rel=0.01)
    assert np.log(x).std() == pytest.approx(sigma, rel=0.01)


def test_lognormal_without_spread_is_the_mean_itself():
    assert lognormal(np.random.default_rng(0), 7.5, 0.0) == 7.5
    np.testing.assert_array_equal(lognormal(np.random.default_rng(0), 7.5, 0.0, size=3),
                                  [7.5, 7.5, 7.5])


def test_a_mean_of_zero_is_nothing_drawn_from_nothing():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert lognormal(rng, 0.0, 1.0) == 0.0
    np.testing.assert_array_equal(lognormal(rng, 0.0, 1.0, size=2), [0.0, 0.0])
    assert rng.bit_generator.state == state  # no draw: the stream is where it was


def test_a_length_is_a_lognormal_rounded_to_a_whole_token_of_at_least_one():
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    got = [length(a, 40.0, 0.8) for _ in range(50)]
    want = [int(positive_int(lognormal(b, 40.0, 0.8))) for _ in range(50)]
    assert got == want and all(type(x) is int for x in got)
    assert length(a, 0.2, 0.0) == 1 and length(a, 7.4, 0.0) == 7


def test_positive_int_rounds_to_nearest_and_floors_at_one():
    np.testing.assert_array_equal(positive_int([0.0, 0.2, 0.6, 1.4, 1.6, 2.5, 3.5, 1e6]),
                                  [1, 1, 1, 1, 2, 2, 4, 1_000_000])
    assert positive_int(np.float64(0.4)) == 1 and positive_int(9.7) == 10


def test_block_ids_count_up_from_their_start_and_are_never_reused():
    ids = BlockIds()
    np.testing.assert_array_equal(ids.take(3), [0, 1, 2])
    assert len(ids.take(0)) == 0
    np.testing.assert_array_equal(ids.take(2), [3, 4])
    later = BlockIds(100)
    np.testing.assert_array_equal(later.take(np.int64(2)), [100, 101])
    assert later.next == 102 and ids.take(1).dtype == np.int64


def _ids(ctx: Context) -> list[int]:
    return ctx.snapshot()[0].tolist()


def test_an_empty_context_is_no_block_no_token_no_span():
    blocks, tokens, spans = Context(BlockIds(), 64).snapshot()
    assert len(blocks) == 0 and blocks.dtype == np.int64 and tokens == 0
    assert len(spans) == 0 and spans.dtype == np.int64


def test_private_tokens_fill_the_partial_block_under_a_fresh_id():
    ctx = Context(BlockIds(100), 64)
    ctx.add_private(0)  # nothing
    assert _ids(ctx) == [] and ctx.tokens == 0
    ctx.add_private(1)  # one token: a block of its own, partly filled
    assert _ids(ctx) == [100] and ctx.tokens == 1
    ctx.add_private(0)  # still nothing: the partial block keeps its id
    assert _ids(ctx) == [100] and ctx.tokens == 1
    ctx.add_private(10)  # fills the partial block further: its content changed, a fresh id
    assert _ids(ctx) == [101] and ctx.tokens == 11
    ctx.add_private(100)  # 53 fill block 101's successor, 47 start a new block
    assert _ids(ctx) == [102, 103] and ctx.tokens == 111


def test_shared_blocks_and_spans_start_on_a_page_and_empty_ones_add_nothing():
    ctx = Context(BlockIds(100), 64)
    ctx.add_private(10)  # block 100, 10 tokens of 64
    ctx.add_shared(np.array([7, 8]))  # padded to the page: 54 tokens of padding
    assert _ids(ctx) == [100, 7, 8] and ctx.tokens == 64 * 3 and ctx.padding == 54
    ctx.add_span(np.zeros(0, dtype=np.int64))  # an empty span is no span
    assert ctx.snapshot()[2].tolist() == [] and ctx.tokens == 64 * 3
    ctx.add_private(1)
    ctx.add_span(np.array([5]))
    blocks, tokens, spans = ctx.snapshot()
    assert blocks.tolist() == [100, 7, 8, 101, 5] and spans.tolist() == [4, 5]
    assert tokens == 64 * 5 and ctx.padding == 54 + 63
