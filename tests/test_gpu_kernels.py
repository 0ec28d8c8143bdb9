"""GPU kernel times: the roofline model's known answers and properties."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.gpu import KernelModel
from simulator.gpu.kernels import _causal_attended
from simulator.hardware import GPUSpec, gpu
from simulator.models import Architecture, model
from simulator.units import TFLOPS, TBps, ms, us

H100 = gpu("H100")
#: A round-numbered GPU for hand-checked answers: 1 TB/s, 100 TFLOP/s.
TOY = GPUSpec("toy", hbm_bytes=1000.0, hbm_bandwidth=TBps(1), peak_flops=TFLOPS(100),
              nvlink_bandwidth=1e9)
EXACT = KernelModel(launch_time=us(2), memory_efficiency=1.0, compute_efficiency=1.0,
                    sparse_compute_efficiency=0.5, copy_efficiency=0.5, splice_time=ms(6))

# -- known answers ---------------------------------------------------------------------------


def test_attention_memory_bound_known_answer():
    # 1,000 B/token, no FLOPs: 4 queries × 250 tokens = 1 MB KV + 4 × (300 + 200) B of rows.
    arch = Architecture.custom("toy", 10, 500.0, 1000.0, return_bytes=200.0)
    t = EXACT.attention_time(TOY, arch, batch=4, tokens=250)
    assert t == pytest.approx(us(2) + (1e6 + 2000) / 1e12, rel=1e-12)


def test_attention_compute_bound_known_answer_and_sparse_efficiency():
    # 1e6 FLOP per attended token: 4 × 250 × 1e6 = 1e9 FLOP at 100 TFLOP/s = 10 µs > 1 µs memory.
    dense = Architecture.custom("toy", 10, 500.0, 1000.0, attention_flops_per_token=1e6)
    assert EXACT.attention_time(TOY, dense, 4, 250) == pytest.approx(us(2) + us(10), rel=1e-12)
    sparse = Architecture.custom("toy", 10, 500.0, 1000.0, attention_flops_per_token=1e6,
                                 topk_tokens=2048)
    assert EXACT.attention_time(TOY, sparse, 4, 250) == pytest.approx(us(2) + us(20), rel=1e-12)
    assert EXACT.attention_time(TOY, dense, 4, 0) == 0.0


def test_merge_gather_splice_known_answers():
    arch = Architecture.custom("toy", 10, 500.0, 1000.0, return_bytes=200.0)
    # 2 partials of 8 queries × 200 B read, 8 × 200 B written: 4,800 B at 1 TB/s.
    assert EXACT.merge_time(TOY, arch, batch=8) == pytest.approx(us(2) + 4800 / 1e12)
    assert EXACT.merge_time(TOY, arch, batch=8, partials=1) == 0.0
    # gather 1 MB: read + write 2 MB at half of 1 TB/s = 4 µs.
    assert EXACT.gather_time(TOY, 1e6) == pytest.approx(us(2) + us(4))
    assert EXACT.gather_time(TOY, 0.0) == 0.0
    # splice: 6 ms per chunk over 10 layers, 3 chunks → 1.8 ms per layer round.
    assert EXACT.splice_time_per_layer(arch, 3) == pytest.approx(ms(1.8))


def test_prefill_and_non_attention_known_answers():
    arch = Architecture.custom("toy", 2, 500.0, 100.0, weight_bytes=1e9,
                               non_attention_flops_per_token=1e12)
    # 10 tokens: weights 1e9 B (dense: every token touches all) + KV 10 × 100 × 2 layers;
    # FLOPs 10 × 1e12 = 1e13 at 1e14 → 0.1 s; memory 1e9 / 1e12 = 1 ms. Two launches.
    assert EXACT.prefill_time(TOY, arch, 10) == pytest.approx(2 * us(2) + 0.1)
    assert EXACT.prefill_time(TOY, arch, 10, gpus=4) == pytest.approx(2 * us(2) + 0.025)
    assert EXACT.non_attention_time(TOY, arch, batch=1) == pytest.approx(2 * us(2) + 0.01)


def test_moe_touches_only_active_weights_at_small_batch():
    ds = model("deepseek-v3")
    k = KernelModel()
    one = k.non_attention_time(H100, ds, batch=1)
    expected = ds.layers * k.launch_time + 37e9 / (H100.hbm_bandwidth * k.memory_efficiency)
    assert one == pytest.approx(expected)


def test_defaults_reproduce_flashmla_memory_bound_bandwidth():
    # A memory-bound kernel (no FLOPs) over a large KV reaches ~3,000 GB/s on an H800/H100
    # (FlashMLA README), once the launch overhead is amortized.
    arch = Architecture.custom("membound", 61, 2000.0, 1152.0)
    k = KernelModel()
    tokens = 1_000_000
    t = k.attention_time(H100, arch, 64, tokens) - k.launch_time
    assert 64 * tokens * 1152 / t == pytest.approx(3000e9, rel=1e-3)


@pytest.mark.parametrize("n, k", [(1, None), (7, None), (7, 3), (100, 64), (64, 64), (3, 2048)])
def test_causal_attended_matches_brute_force(n, k):
    brute = sum(i if k is None else min(i, k) for i in range(1, n + 1))
    assert _causal_attended(float(n), k) == brute


# -- properties ----------------------------------------------------------------------------------


@given(st.integers(1, 512), st.floats(0, 1e6), st.floats(0, 1e6))
def test_attention_time_is_monotone_in_tokens_and_batch(batch, t1, t2):
    arch = model("deepseek-v3.2")
    k = KernelModel()
    lo, hi = sorted((t1, t2))
    assert k.attention_time(H100, arch, batch, lo) <= k.attention_time(H100, arch, batch, hi)
    assert k.attention_time(H100, arch, batch, hi) <= k.attention_time(H100, arch, batch + 1, hi)
