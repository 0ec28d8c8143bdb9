"""Trace blocks → engine blocks: ids derived from (trace id, sub-block), sharing kept."""

import numpy as np
import pytest
from hypothesis import given

from simulator.errors import UserError
from simulator.testing.traces import request_traces
from workloads.blocks import refine_block_ids, refine_trace
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
