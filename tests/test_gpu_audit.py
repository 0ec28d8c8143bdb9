"""Faults found by the kernel-model audit: each test failed before its fix. Expected values are
the measured CSV rows themselves, or hand-worked."""

import tomllib

import numpy as np
import pytest

from simulator import hardware
from simulator.gpu import layers
from simulator.gpu.profiles import calibration_dir, load_profile
from simulator.models import model


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


def test_a_grouped_gemm_streams_at_the_share_of_all_its_weights(h200):
    # DeepSeek-V3's absorbed W_UK at one token: 128 heads' 128 × 512 matrices in one kernel
    # (16.8 MB). Before: the H200 fit's small-matrix term (b0 = 514k elements, fitted on single
    # matrices of 4.1M–470M) was applied to each 65,536-element head, so the kernel streamed at
    # 11% of its share: 39.9 µs on the H200 against 10.1 µs on the H100 (b0 ≈ 0), and the H200's
    # DeepSeek-V3.2 decode step (non-attention, one token) came out slower than the H100's.
    p = tomllib.loads((calibration_dir() / "profiles" / "h200.toml").read_text())
    q = p["operators"]["gemm"]["params"]
    beta, peak = 4.8e12, 989e12  # the H200 datasheet
    m, n, k, g = 1.0, 512.0, 128.0, 128.0
    nbytes = g * n * k * 2 + m * k * 2 + m * n * 2
    rate = beta * q["em"] * g * n * k / (g * n * k + q["b0"])
    compute = 2 * m * n * k / (peak * q["ec"]) + k * q["tau"]
    want = q["t0"] + ((nbytes / rate) ** q["s"] + compute ** q["s"]) ** (1 / q["s"])
    got = float(h200.gemm(m, n, k, "bf16", groups=g).time)
    assert got == pytest.approx(want, rel=1e-9)
    assert got < 9e-6  # 16.8 MB at ~4 TB/s and the floor (39.9 µs before)
    v32, h100 = model("deepseek-v3.2"), load_profile("h100-vidur")
    counts = layers.layer_counts(v32)

    def step(prof):
        return sum(o.time * o.count * counts[o.per] for o in layers.decode_ops(prof, v32, 1.0))
    assert step(h200) < step(h100.at(hardware.gpu("H100")))
