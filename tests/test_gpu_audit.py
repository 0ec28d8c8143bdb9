"""Faults found by the kernel-model audit: each test failed before its fix. Expected values are
the measured CSV rows themselves, or hand-worked."""

import numpy as np
import pytest

from simulator.gpu.profiles import load_profile


@pytest.fixture(scope="module")
def h200():
    return load_profile("h200")


@pytest.mark.parametrize("heads", [(8, 1), (16, 2), (64, 8)])
def test_a_whole_prompt_between_measured_lengths_is_interpolated(h200, heads):
    # prefill_attn.csv measures whole causal prompts of 512, 2,048, 8,192 and 32,768 tokens
    # (q_len = kv_len). Before: the table's grid spanned q_len × kv_len with only its diagonal
    # filled, so no prompt between two measured lengths was interpolated: the fitted model
    # answered there, 22% below the measured 8,192-token row one token either side of it (8/1
    # heads: 477 µs at 8,191 and 8,193 against 612 µs measured) and, at 64/8 heads, 9% above
    # the 32,768-token row one token below it — slower for a shorter prompt.
    hq, hk = heads
    lengths = [512, 2048, 8192, 32768]
    measured = [float(h200.prefill_attention(n, 0, hq, hk, 128).time) for n in lengths]
    for n, lo, hi in zip(lengths[1:], measured[:-1], measured[1:], strict=False):
        t = h200.prefill_attention(n // 2, 0, hq, hk, 128)  # between two measured lengths
        assert str(t.source) == "interpolated: h200/prefill_attn.csv"
        assert lo < float(t.time) < hi
    for i, (n, want) in enumerate(zip(lengths, measured, strict=True)):
        inside = [n + 1.0] * (i < 3) + [n - 1.0] * (i > 0)  # a token off, within the table
        near = h200.prefill_attention(np.array(inside), 0, hq, hk, 128).time
        assert near == pytest.approx(want, rel=5e-3)  # continuous at a measured length
    # log-log between 2,048 and 8,192 tokens: 4,096 is the geometric mean of their times
    mid = float(h200.prefill_attention(4096, 0, hq, hk, 128).time)
    assert mid == pytest.approx(np.sqrt(measured[1] * measured[2]), rel=1e-9)
