"""``kvfabric trace stats``' numbers on traces small enough to count by hand."""

from __future__ import annotations

import numpy as np
import pytest

from workloads.schema import make_trace
from workloads.stats import agentic_stats, trace_stats


def _three(**extra):
    """Three requests: the second extends the first's two blocks, the third reads its own."""
    return make_trace(arrival_at=[1.0, 2.5, 4.0], input_tokens=[100, 150, 64],
                      output_tokens=[10, 30, 20], block_ids=[[1, 2], [1, 2, 3], [9]],
                      block_tokens=64, session_id=[0, 0, 1], **extra)


def test_the_summary_of_three_requests_counted_by_hand():
    df = _three(turn_id=[0, 0, 0], tool_calls=[2, 1, 0])
    df.attrs["skipped_lines"] = 3
    got = trace_stats(df)
    # 6 references; blocks 1 and 2 of the second request are reused, and so are its first
    # two prefixes; 4 distinct blocks; no span, so position-independent = prefix
    assert (got["requests"], got["block_refs"], got["distinct_blocks"]) == (3, 6, 4)
    assert got["reuse_fraction"] == got["prefix_hit_fraction"] == 2 / 6
    assert got["span_hit_fraction"] == 2 / 6
    # linear-interpolated percentiles: p99 of 64, 100, 150 sits 0.98 of the way to 150
    assert got["input_tokens"] == pytest.approx({"mean": 314 / 3, "p50": 100.0, "p99": 149.0})
    assert got["output_tokens"] == pytest.approx({"mean": 20.0, "p50": 20.0, "p99": 29.8})
    assert got["duration"] == 3.0 and got["block_tokens"] == 64 and got["skipped_lines"] == 3
    # two sessions of one turn each; 3 tool calls over 2 turns; the second request's two
    # prefix-hit blocks (128 tokens) of 314 prompt tokens are cached
    assert got["sessions"] == 2 and got["turns_per_session"] == 1.0
    assert got["calls_per_turn"] == 1.5 and got["tool_calls_per_turn"] == 1.5
    assert got["prompt_tokens_per_call"] == pytest.approx(314 / 3)
    assert got["completion_tokens_per_call"] == 20.0
    assert got["cached_prompt_fraction"] == pytest.approx(128 / 314)
    assert agentic_stats(df) == {k: got[k] for k in agentic_stats(df)}


def test_turn_and_tool_keys_are_empty_unless_every_request_has_them():
    got = agentic_stats(_three())
    assert got["turns_per_session"] is got["calls_per_turn"] is got["tool_calls_per_turn"] \
        is None
    partial = agentic_stats(_three(turn_id=[0, 0, 0], tool_calls=[1, -1, 0]))  # -1: none
    assert partial["calls_per_turn"] == 1.5 and partial["tool_calls_per_turn"] is None
    mixed_sizes = make_trace(arrival_at=[0.0, 1.0], input_tokens=[64, 128],
                             output_tokens=[1, 1], block_ids=[[1], [1]],
                             block_tokens=[64, 128])
    assert trace_stats(mixed_sizes)["block_tokens"] == [64, 128]


def test_a_trace_of_no_request_sums_to_zeros():
    df = make_trace(arrival_at=[], input_tokens=[], output_tokens=[], block_ids=[],
                    block_tokens=64)
    got = trace_stats(df)
    zero = {"mean": 0.0, "p50": 0.0, "p99": 0.0}
    assert got["input_tokens"] == got["output_tokens"] == zero
    assert (got["requests"], got["block_refs"], got["distinct_blocks"]) == (0, 0, 0)
    assert got["reuse_fraction"] == got["prefix_hit_fraction"] == 0.0
    assert got["duration"] == 0.0 and got["sessions"] == 0
    assert got["turns_per_session"] is None
    assert got["prompt_tokens_per_call"] == got["completion_tokens_per_call"] == 0.0
    assert got["cached_prompt_fraction"] == 0.0
    assert np.isfinite(got["duration"])


def test_a_trace_of_one_request():
    df = make_trace(arrival_at=[2.0], input_tokens=[70], output_tokens=[9], block_ids=[[4, 5]],
                    block_tokens=64, session_id=[3], turn_id=[0], tool_calls=[4])
    got = trace_stats(df)
    assert got["input_tokens"] == {"mean": 70.0, "p50": 70.0, "p99": 70.0}
    assert got["duration"] == 0.0 and got["distinct_blocks"] == 2
    assert got["skipped_lines"] == 0  # a trace that did not count any
    assert got["turns_per_session"] == 1.0 and got["tool_calls_per_turn"] == 4.0
