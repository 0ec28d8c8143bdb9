"""GPU kernel times: the roofline model's known answers and properties."""

import dataclasses

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


#: A GPU whose FLOPs are dear (1 kFLOP/s, 1 TB/s): a single stray FLOP costs 1 ms, so a kernel
#: that should do none shows it, and FLOP terms dominate where they exist.
SLOW = GPUSpec("slow", hbm_bytes=1000.0, hbm_bandwidth=TBps(1), peak_flops=1e3,
               nvlink_bandwidth=TBps(1))


def test_the_constructor_takes_its_bounds_and_refuses_what_lies_outside():
    KernelModel(launch_time=0.0, splice_time=0.0)  # zero overheads are allowed
    assert KernelModel(memory_efficiency=1.0).memory_efficiency == 1.0  # 1 is allowed
    with pytest.raises(ValueError, match="launch_time"):
        KernelModel(launch_time=-1e-9)
    with pytest.raises(ValueError, match="splice_time"):
        KernelModel(splice_time=-1e-9)
    for field in ("memory_efficiency", "compute_efficiency", "sparse_compute_efficiency",
                  "copy_efficiency"):
        for bad in (0.0, 1.5, -0.1):
            with pytest.raises(ValueError, match=field):
                KernelModel(**{field: bad})


def test_one_query_over_one_token_and_the_empty_kernels():
    k = EXACT
    arch = Architecture.custom("toy", 10, 500.0, 1000.0, return_bytes=200.0)
    # 1 × 1 × 1,000 B of KV + 500 B of rows at 1 TB/s
    assert k.attention_time(TOY, arch, 1, 1) == pytest.approx(us(2) + 1500 / 1e12, rel=1e-12)
    assert k.attention_time(TOY, arch, 0, 250) == 0.0
    assert k.attention_time(TOY, arch, 4, 0) == 0.0
    assert k.merge_time(TOY, arch, 0) == 0.0
    assert k.gather_time(TOY, 0.0) == k.copy_time(TOY, 0.0) == 0.0
    assert k.prefill_time(TOY, arch, 0) == k.prefill_time(TOY, arch, 10, sequences=0) == 0.0
    assert k.prefill_attention_time(TOY, arch, 0, 100) == 0.0
    assert k.non_attention_time(TOY, arch, 0) == 0.0


def test_merge_is_compute_bound_where_flops_are_dear():
    # 2 partials × 8 queries × 200 B rows / 2 B per element × 3 FLOPs = 4,800 FLOP at 1 kFLOP/s;
    # bytes (4,800 B at 1 TB/s) are negligible
    arch = Architecture.custom("toy", 10, 500.0, 1000.0, return_bytes=200.0)
    assert EXACT.merge_time(SLOW, arch, batch=8) == pytest.approx(us(2) + 4.8, rel=1e-12)
    assert EXACT.merge_time(SLOW, arch, batch=8, partials=3) == pytest.approx(us(2) + 7.2)


def test_gather_and_copy_do_no_flops_and_pay_their_launches():
    k = EXACT
    # one byte: read + write 2 B at half of 1 TB/s; not a FLOP (1 ms on SLOW)
    assert k.gather_time(SLOW, 1.0) == pytest.approx(us(2) + 4e-12, rel=1e-12)
    # 1 MB in 3 kernels: three launches + 2 MB at 0.5 TB/s = 4 µs
    assert k.copy_time(SLOW, 1e6, kernels=3) == pytest.approx(3 * us(2) + us(4), rel=1e-12)
    assert k.copy_time(SLOW, 1.0) == pytest.approx(us(2) + 4e-12, rel=1e-12)


def test_prefill_of_one_token_and_of_one_sequence():
    arch = Architecture.custom("toy", 2, 500.0, 100.0, weight_bytes=1e9,
                               non_attention_flops_per_token=1e12)
    # 1 token: 1e12 FLOP at 1e14 = 10 ms (memory 1 ms); two launches
    assert EXACT.prefill_time(TOY, arch, 1) == pytest.approx(2 * us(2) + 0.01, rel=1e-12)
    # 2 sequences of 10 tokens: twice the FLOPs of one
    assert EXACT.prefill_time(TOY, arch, 10, sequences=2) == pytest.approx(
        2 * us(2) + 0.2, rel=1e-12)


def test_a_prefill_chunks_attention_known_answers():
    k = EXACT
    # 3 new tokens after 2 cached, dense: pairs Σ_{i=3..5} i = 12; bytes per layer (2 + 2·3)·kv
    mem = Architecture.custom("toy", 4, 500.0, 1e6)  # memory-bound: no attention FLOPs
    # 4 layers × 8 tokens × 1 MB = 32 MB at 1 TB/s = 32 µs, split over 2 GPUs; 4 launches
    assert k.prefill_attention_time(TOY, mem, 3, 2, gpus=2) == pytest.approx(
        4 * us(2) + us(16), rel=1e-12)
    assert k.prefill_attention_time(TOY, mem, 1, 0) == pytest.approx(
        4 * us(2) + 4 * 2 * 1e6 / 1e12, rel=1e-12)
    cmp = Architecture.custom("toy", 4, 500.0, 1.0, attention_flops_per_token=1e12)
    # 4 layers × 1e12 × 12 pairs = 4.8e13 FLOP at 1e14 = 0.48 s, over 2 GPUs 0.24 s
    assert k.prefill_attention_time(TOY, cmp, 3, 2, gpus=2) == pytest.approx(
        4 * us(2) + 0.24, rel=1e-12)
    # sparse, top-3: Σ_{i=3..5} min(i, 3) = 9 pairs (at the sparse efficiency only in decode:
    # a prefill chunk runs at the dense one)
    top3 = Architecture.custom("toy", 4, 500.0, 1.0, attention_flops_per_token=1e12,
                               topk_tokens=3)
    assert k.prefill_attention_time(TOY, top3, 3, 2) == pytest.approx(
        4 * us(2) + 4 * 9 * 1e12 / 1e14, rel=1e-12)


def _with_head(arch: Architecture, vocab: int, hidden: int) -> Architecture:
    return dataclasses.replace(arch, vocab_size=vocab, hidden_size=hidden)


def test_non_attention_known_answers_with_fewer_logits_and_more_gpus():
    k = EXACT
    base = Architecture.custom("toy", 2, 500.0, 100.0, weight_bytes=1e9,
                               non_attention_flops_per_token=1e12)
    arch = _with_head(base, vocab=1000, hidden=1000)  # the head: 2e6 FLOP per row
    # 4 rows, 1 with logits: 4e12 − 3 × 2e6 FLOP at 1e14; over 2 GPUs, half of each
    flops = 4e12 - 3 * 2e6
    assert k.non_attention_time(TOY, arch, 4, logits=1) == pytest.approx(
        2 * us(2) + flops / 1e14, rel=1e-12)
    assert k.non_attention_time(TOY, arch, 4, gpus=2, logits=1) == pytest.approx(
        2 * us(2) + flops / 2e14, rel=1e-12)
    assert k.non_attention_time(TOY, arch, 4, logits=4) == pytest.approx(
        2 * us(2) + 4e12 / 1e14, rel=1e-12)
    # memory-bound across GPUs: 1e9 B of weights over 2 GPUs at 1 TB/s
    membound = Architecture.custom("toy", 2, 500.0, 100.0, weight_bytes=1e9)
    assert k.non_attention_time(TOY, membound, 1, gpus=2) == pytest.approx(
        2 * us(2) + 5e-4, rel=1e-12)
    # a head dearer than the rest: the FLOPs left are clamped at zero, not negative, on a GPU
    # where one FLOP would cost 1 ms (the weights take 1 µs, 1 MB at 1 TB/s)
    tiny = _with_head(Architecture.custom("toy", 2, 500.0, 100.0, weight_bytes=1e6,
                                          non_attention_flops_per_token=1.0), 1000, 1000)
    assert k.non_attention_time(SLOW, tiny, 4, logits=0) == pytest.approx(
        2 * us(2) + us(1), rel=1e-12)
    assert k.non_attention_time(SLOW, tiny, 4, logits=3) == pytest.approx(
        2 * us(2) + us(1), rel=1e-12)


def test_the_dsa_indexer_known_answers():
    k = EXACT
    base = Architecture.custom("toy", 4, 500.0, 100.0, topk_tokens=64)
    arch = dataclasses.replace(base, indexer_heads=2, indexer_head_dim=4)  # 2 B per element
    # 3 queries over 10 keys: 2 × 3 × 10 × 2 × 4 = 480 FLOP at 1 kFLOP/s (bytes: 10·8 + 3·16)
    assert k.indexer_time(SLOW, arch, 3, 10) == pytest.approx(us(2) + 0.48, rel=1e-12)
    # memory-bound on TOY: (10·4·2 + 3·2·4·2) B = 128 B at 1 TB/s
    assert k.indexer_time(TOY, arch, 3, 10) == pytest.approx(us(2) + 128e-12, rel=1e-12)
    assert k.indexer_time(SLOW, arch, 1, 1) == pytest.approx(us(2) + 16 / 1e3, rel=1e-12)
    assert k.indexer_time(SLOW, arch, 0, 10) == k.indexer_time(SLOW, arch, 3, 0) == 0.0
    dense = dataclasses.replace(arch, topk_tokens=None)  # heads, but no sparse selection
    assert k.indexer_time(SLOW, dense, 3, 10) == 0.0
    assert k.indexer_time(SLOW, base, 3, 10) == 0.0  # sparse without an indexer


def test_collectives_known_answers():
    k = EXACT
    nv = TOY.nvlink_bandwidth  # 1 GB/s
    assert k.alltoall_time(TOY, 4e6, 4) == pytest.approx(us(2) + 0.75 * 4e6 / nv, rel=1e-12)
    assert k.allgather_time(TOY, 4e6, 4) == pytest.approx(us(2) + 0.75 * 4e6 / nv, rel=1e-12)
    assert k.allreduce_time(TOY, 4e6, 4) == pytest.approx(us(2) + 1.5 * 4e6 / nv, rel=1e-12)
    assert k.alltoall_time(TOY, 1.0, 2) == pytest.approx(us(2) + 0.5 / nv, rel=1e-12)
    for ranks, nbytes in ((1, 4e6), (4, 0.0), (0, 4e6)):
        assert k.allreduce_time(TOY, nbytes, ranks) == 0.0
        assert k.alltoall_time(TOY, nbytes, ranks) == 0.0


def test_attention_breakpoints_known_answers():
    k = EXACT
    # 1 query, 1,000 B of KV per token and 5,000 B of rows at 1 TB/s against 2e5 FLOP per
    # token at 100 TFLOP/s: memory (T·1000 + 5000)/1e12, compute T·2e5/1e14 meet at T = 5
    arch = Architecture.custom("toy", 10, 5000.0, 1000.0, attention_flops_per_token=2e5)
    (kink,) = k.attention_breakpoints(TOY, arch, 1)
    assert kink == pytest.approx(5.0, rel=1e-12)
    roof = k.attention_roofline(TOY, arch, 1, kink)
    assert roof.memory_time == pytest.approx(roof.compute_time, rel=1e-12)
    # a kink below one token is still a kink (rows of 500 B: T = 0.5)
    half = Architecture.custom("toy", 10, 500.0, 1000.0, attention_flops_per_token=2e5)
    assert k.attention_breakpoints(TOY, half, 1) == [pytest.approx(0.5, rel=1e-12)]
    # memory-bound everywhere (no FLOPs): no kink
    assert k.attention_breakpoints(TOY, Architecture.custom("toy", 10, 500.0, 1000.0), 1) == []
    # equal slopes, exact in binary (4 B and 4 FLOP per token at 1,024 B/s and FLOP/s): none
    pow2 = GPUSpec("pow2", hbm_bytes=1.0, hbm_bandwidth=1024.0, peak_flops=1024.0,
                   nvlink_bandwidth=1.0)
    same = Architecture.custom("toy", 1, 8.0, 4.0, attention_flops_per_token=4.0)
    assert k.attention_breakpoints(pow2, same, 1) == []
    # no rows at all: both lines start at 0 and the compute one is above from the first
    # token, so the "kink" sits at 0 tokens, which is not one (> 0 only)
    bare = dataclasses.replace(arch, query_bytes_per_head=0.0, return_bytes_per_head=0.0)
    assert k.attention_breakpoints(TOY, bare, 1) == []


# -- properties ----------------------------------------------------------------------------------


@given(st.integers(1, 512), st.floats(0, 1e6), st.floats(0, 1e6))
def test_attention_time_is_monotone_in_tokens_and_batch(batch, t1, t2):
    arch = model("deepseek-v3.2")
    k = KernelModel()
    lo, hi = sorted((t1, t2))
    assert k.attention_time(H100, arch, batch, lo) <= k.attention_time(H100, arch, batch, hi)
    assert k.attention_time(H100, arch, batch, hi) <= k.attention_time(H100, arch, batch + 1, hi)
