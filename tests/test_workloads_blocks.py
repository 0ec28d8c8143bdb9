"""Trace blocks → engine blocks: ids derived from (trace id, sub-block), sharing kept."""

import numpy as np
import pytest
from hypothesis import given

from simulator.errors import UserError
from simulator.testing.traces import request_traces
from workloads.blocks import block_ratio, refine_block_ids, refine_trace
from workloads.schema import make_trace
from workloads.spans import hit_rates


def test_a_512_token_block_becomes_eight_64_token_blocks():
    assert refine_block_ids([5, 9], input_tokens=1024).tolist() == list(range(40, 48)) + list(
        range(72, 80))


def test_a_partial_last_block_yields_only_the_pages_it_needs():
    # 600 tokens: one full 512-token block and 88 tokens = 2 pages of the second
    assert refine_block_ids([5, 9], input_tokens=600).tolist() == list(range(40, 48)) + [72, 73]


def test_block_sizes_must_divide():
    with pytest.raises(UserError, match="does not divide"):
        refine_block_ids([1], input_tokens=10, trace_block_tokens=512, engine_block_tokens=48)


def test_refining_a_trace_rescales_spans_and_keeps_prefix_sharing():
    df = make_trace(arrival_at=[0, 1], input_tokens=[1024, 700], output_tokens=[1, 1],
                    block_ids=[[0, 1], [0, 2]], block_tokens=512, spans=[[1, 2], []])
    fine = refine_trace(df, 64)
    assert (fine["block_tokens"] == 64).all()
    assert fine["spans"].iloc[0].tolist() == [8, 16]
    assert len(fine["block_ids"].iloc[1]) == 11
    assert fine["block_ids"].iloc[1][:8].tolist() == fine["block_ids"].iloc[0][:8].tolist()


@given(request_traces(block_tokens=__import__("hypothesis").strategies.sampled_from([64, 512])))
def test_refinement_preserves_hit_rates_per_token_block(df):
    """Every engine block inherits its trace block's fate: hit fractions weighted by pages."""
    fine = refine_trace(df, 16)
    assert [len(b) for b in fine["block_ids"]] == (-(-df["input_tokens"] // 16)).tolist()
    coarse, refined = hit_rates(df), hit_rates(fine)
    if coarse["reuse_fraction"] == 0:
        assert refined["reuse_fraction"] == 0
    if coarse["prefix_hit_fraction"] == 1:
        assert refined["prefix_hit_fraction"] == 1
    ids = np.concatenate(fine["block_ids"].tolist())
    parents = np.concatenate(df["block_ids"].tolist())
    ratio = int(df["block_tokens"].iloc[0]) // 16
    assert set(np.unique(ids // ratio)) <= set(np.unique(parents))


def test_a_block_size_of_zero_is_a_user_error_either_way():
    for trace, engine in [(64, 0), (0, 64), (-512, 64), (512, -64)]:
        with pytest.raises(UserError, match="block sizes must be > 0"):
            block_ratio(trace, engine)
    assert block_ratio(512, 64) == 8 and block_ratio(64, 64) == 1


def test_refining_splits_each_trace_block_into_its_engine_blocks_in_order():
    from workloads.blocks import refine_flat
    from workloads.schema import FlatBlocks

    flat = FlatBlocks(np.array([0, 3, 4]), np.array([10, 20, 30, 7]))
    # 128-token trace blocks into 64-token pages: 2 each; the first prompt's 300 tokens need
    # 5 pages (its third block half used), the second's 64 one page
    got = refine_flat(flat, [300, 64], 128, 64)
    assert [x.tolist() for x in got.to_lists()] == [[20, 21, 40, 41, 60], [14]]
    with pytest.raises(UserError, match="block_tokens differs"):
        refine_flat(flat, [300, 64], np.array([128, 256]), 64)
    assert block_ratio(1, 1) == 1 and block_ratio(64, 1) == 64


@pytest.mark.parametrize("ratio", [8, 3])
def test_the_largest_block_id_that_refines_without_overflow(ratio):
    from workloads.blocks import refine_flat
    from workloads.schema import FlatBlocks

    limit = (2**63 - ratio) // ratio  # limit · ratio + ratio − 1 = 2^63 − 1 at most
    got = refine_flat(FlatBlocks(np.array([0, 1]), np.array([limit])), [64 * ratio],
                      64 * ratio, 64)
    assert got.values.max() == limit * ratio + ratio - 1 <= 2**63 - 1
    with pytest.raises(UserError, match=f"max id must be <= {limit}"):
        refine_flat(FlatBlocks(np.array([0, 1]), np.array([limit + 1])), [64 * ratio],
                    64 * ratio, 64)


@pytest.mark.parametrize("ratio", [8, 3])
def test_the_smallest_block_id_that_refines_without_overflow(ratio):
    # a negative id (a nested judge's prompt holds another request's generated blocks) splits
    # into id · ratio + j; below -2^63 / ratio that would wrap round to a positive id
    from workloads.blocks import refine_flat
    from workloads.schema import FlatBlocks

    low = -(2**63 // ratio)
    got = refine_flat(FlatBlocks(np.array([0, 1]), np.array([low])), [64 * ratio], 64 * ratio,
                      64)
    assert got.values.min() == low * ratio >= -(2**63)
    with pytest.raises(UserError, match=f"min id must be >= {low}"):
        refine_flat(FlatBlocks(np.array([0, 1]), np.array([low - 1])), [64 * ratio],
                    64 * ratio, 64)
