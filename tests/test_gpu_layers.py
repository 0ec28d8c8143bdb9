"""Layers composed from a profile's operators, behind KernelModel's interface (ProfiledKernels).

Each composition is recomputed here from the profile's operator calls, shape by shape, so a
wrong shape, count or launch rule in simulator/gpu/layers.py or profiled.py fails a test."""

import math

import pytest

from simulator import hardware
from simulator.gpu import layers
from simulator.gpu.calibration import run_kernels
from simulator.gpu.kernels import KernelModel
from simulator.gpu.profiled import ProfiledKernels, profiled_kernels
from simulator.gpu.profiles import load_profile
from simulator.models import model

H100, H200 = hardware.gpu("H100"), hardware.gpu("H200")


@pytest.fixture(scope="module")
def vidur():
    return load_profile("h100-vidur")


def t(x) -> float:
    return float(x.time)


def test_a_llama_layer_is_the_sum_of_its_operators(vidur):
    pk = ProfiledKernels({"H100": vidur})
    arch, m, tp = model("llama-2-70b"), 32, 4
    d, inter, hd = 8192, 28672 / tp, 128
    rms = t(vidur.elementwise("rmsnorm", m, d))
    layer = (2 * rms
             + t(vidur.gemm(m, (64 / tp + 2 * 8 / tp) * hd, d))      # QKV
             + t(vidur.elementwise("rotary", m, (16 + 2) * hd))
             + t(vidur.gemm(m, d, 16 * hd))                          # O
             + 2 * t(vidur.elementwise("add", m, d))
             + t(vidur.gemm(m, 2 * inter, d))                        # gate/up
             + t(vidur.elementwise("activation", m, inter))
             + t(vidur.gemm(m, d, inter)))                           # down
    step = rms + t(vidur.gemm(m, 32000 / tp, d))                     # final norm, LM head
    kernels = 80 * 10 + 2  # 2 norms, 4 GEMMs, rotary, activation, 2 adds; norm + head
    want = 80 * layer + step + kernels * vidur.launch_cost.graph_time
    assert pk.non_attention_time(H100, arch, m, gpus=tp) == pytest.approx(want, rel=1e-12)
    # eager: the host enqueues 10.4 µs per kernel, slower than these kernels
    eager = ProfiledKernels({"H100": vidur}, cuda_graphs=False)
    assert eager.non_attention_time(H100, arch, m, gpus=tp) == pytest.approx(
        max(80 * layer + step, kernels * vidur.launch_cost.eager_time), rel=1e-12)


def test_an_mla_moe_dsa_step_is_the_sum_of_its_operators():
    p = load_profile("h200")
    pk = ProfiledKernels({"H200": p})
    arch, tokens, g = model("deepseek-v3.2"), 64.0, 8.0
    m, d, h = tokens / g, 7168, 128
    fp8 = "fp8"
    rms = lambda w: t(p.elementwise("rmsnorm", m, w))  # noqa: E731
    attn_side = (rms(d) + t(p.gemm(m, 1536, d, fp8)) + rms(1536)
                 + t(p.gemm(m, h * 192, 1536, fp8)) + t(p.gemm(m, 576, d, fp8)) + rms(512)
                 + t(p.gemm(m * h, 512, 128, "bf16", h))  # W_UK: every token through each head
                 + t(p.elementwise("rotary", m, 129 * 64))
                 + t(p.gemm(m, 64 * 128, 1536, fp8)) + t(p.gemm(m, 128, d, fp8))
                 + t(p.gemm(m, 64, d, "bf16")) + rms(128)
                 + t(p.elementwise("rotary", m, 65 * 64))
                 + t(p.gemm(m * h, 128, 512, "bf16", h)) + t(p.gemm(m, d, h * 128, fp8))
                 + 2 * t(p.elementwise("add", m, d)) + rms(d))
    dense = (t(p.gemm(m, 2 * 18432, d, fp8)) + t(p.elementwise("activation", m, 18432))
             + t(p.gemm(m, d, 18432, fp8)))
    # routing assumption: 64·8/8 = 64 rows on this GPU, over its 32 experts' expected active
    rows = tokens * 8 / g
    active = 32 * (1 - (1 - 1 / 256) ** (tokens * 8))
    moe = (t(p.gemm(m, 256, d, "bf16")) + t(p.elementwise("activation", m, 256))
           + t(p.gemm(rows, 4096, d, fp8, active)) + t(p.elementwise("activation", rows, 2048))
           + t(p.gemm(rows, d, 2048, fp8, active)) + t(p.gemm(m, 4096, d, fp8))
           + t(p.elementwise("activation", m, 2048)) + t(p.gemm(m, d, 2048, fp8))
           + t(p.elementwise("add", rows, d)))
    step = rms(d) + t(p.gemm(tokens / g, 129280, d, "bf16"))
    gpu_time = 61 * attn_side + 3 * dense + 58 * moe + step
    kernels = 61 * 18 + 3 * 3 + 58 * 9 + 2
    want = gpu_time + kernels * p.launch_cost.graph_time
    assert pk.non_attention_time(H200, arch, tokens, gpus=int(g)) == pytest.approx(want,
                                                                                  rel=1e-12)
    # a step of prefill tokens only runs no absorbed products (two kernels a layer fewer)
    absorbed = t(p.gemm(m * h, 512, 128, "bf16", h)) + t(p.gemm(m * h, 128, 512, "bf16", h))
    want = (gpu_time - 61 * absorbed) + (kernels - 2 * 61) * p.launch_cost.graph_time
    assert pk.non_attention_time(H200, arch, tokens, gpus=int(g), decode_rows=0) == \
        pytest.approx(want, rel=1e-12)


def test_only_a_steps_decoding_rows_take_mlas_absorbed_products(vidur):
    """W_UK / W_UV: each decoding token is a row of every head's matrix (H·B rows over H
    groups); prefill tokens take none (their attention is the unabsorbed path)."""
    ds = model("deepseek-v3.2")
    h = 128.0
    for decode, tokens, g in ((3, 3, 1), (8, 2056, 8), (0, 512, 1), (64, 64, 8)):
        ops = {o.name: o for o in layers.decode_ops(vidur, ds, tokens, g, decode_rows=decode)}
        rows = h * decode / g
        if decode:
            assert ops["w_uk_absorb"].time == t(vidur.gemm(rows, 512, 128, "bf16", h))
            assert ops["w_uv_absorb"].time == t(vidur.gemm(rows, 128, 512, "bf16", h))
        else:
            assert "w_uk_absorb" not in ops and "w_uv_absorb" not in ops
        # the rest of the layer is the step's tokens' either way
        assert ops["q_b_proj"].time == t(vidur.gemm(tokens / g, h * 192, 1536, "fp8"))
    # their FLOPs grow with the rows: at 256 decoding tokens on one GPU the products are past
    # their weights' streaming time (16.8 MB each at one row)
    one = {o.name: o.time for o in layers.decode_ops(vidur, ds, 1, 1)}
    many = {o.name: o.time for o in layers.decode_ops(vidur, ds, 256, 1)}
    assert many["w_uk_absorb"] > 2 * one["w_uk_absorb"]


def test_decode_attention_is_the_profile_operator_plus_its_launch(vidur):
    pk = ProfiledKernels({"H100": vidur})
    lam = vidur.launch_cost.graph_time
    # Llama-3-70B, 16 query heads (TP 4): GQA group 8 → 2 KV heads
    arch = model("llama-3-70b")
    assert pk.attention_time(H100, arch, 32, 4096, heads=16) == pytest.approx(
        t(vidur.attention(32, 4096, 16, 2, 128)) + lam)
    # DeepSeek-V3.2: absorbed MLA at FlashMLA's sparse efficiency, split + combine kernels
    ds = model("deepseek-v3.2")
    want = t(vidur.mla_attention(8, 2048, 128, kv_bytes_per_token=1152, row_bytes_per_head=2180,
                                 flops_per_token_per_head=2 * 1088, sparse=True)) + 2 * lam
    assert pk.attention_time(H100, ds, 8, 2048) == pytest.approx(want)
    assert pk.attention_time(H100, ds, 0, 2048) == 0.0
    assert pk.attention_time(H100, ds, 8, 0) == 0.0


def test_merge_gather_indexer_and_collectives_are_their_operators_plus_launches(vidur):
    pk = ProfiledKernels({"H100": vidur})
    lam = vidur.launch_cost.graph_time
    ds = model("deepseek-v3.2")
    assert pk.merge_time(H100, ds, 16, 2) == pytest.approx(t(vidur.merge(16, 128, 512, 2)) + lam)
    assert pk.merge_time(H100, ds, 16, 1) == 0.0
    assert pk.gather_time(H100, 73728 * 32) == pytest.approx(t(vidur.gather(32, 73728)) + lam)
    assert pk.indexer_time(H100, ds, 8, 65536) == pytest.approx(
        t(vidur.indexer(8, 65536, 64, 128)) + 2 * lam)
    assert pk.indexer_time(H100, model("kimi-k2"), 8, 65536) == 0.0
    assert pk.allreduce_time(H100, 2**20, 4) == pytest.approx(
        t(vidur.collective("allreduce", 2**20, 4)) + lam)
    assert pk.alltoall_time(H100, 2**20, 8, "rdma") == pytest.approx(
        t(vidur.collective("alltoall", 2**20, 8, "rdma")) + lam)
    assert pk.allreduce_time(H100, 2**20, 1) == 0.0
    assert pk.launch_overhead_time(10, H100) == pytest.approx(10 * lam)


def test_prefill_is_its_step_of_non_attention_plus_each_sequences_attention(vidur):
    pk = ProfiledKernels({"H100": vidur})
    arch = model("llama-3-70b")
    lam = vidur.launch_cost.graph_time
    chunk = pk.prefill_attention_time(H100, arch, 2048, 4096, gpus=4)
    assert chunk == pytest.approx(80 * t(vidur.prefill_attention(2048, 4096, 16, 2, 128))
                                  + 80 * lam)
    whole = pk.prefill_time(H100, arch, 1024, sequences=3, gpus=4)
    assert whole == pytest.approx(pk.non_attention_time(H100, arch, 3072, 4, logits=3)
                                  + 3 * pk.prefill_attention_time(H100, arch, 1024, 0, 4))
    # the LM head computes one row per prompt, not one per token
    assert pk.non_attention_time(H100, arch, 3072, 4, logits=3) < \
        pk.non_attention_time(H100, arch, 3072, 4)
    # MLA: a sequence's attention runs on one rank; sequences spread over the ranks
    ds = model("deepseek-v3.2")
    assert pk.prefill_time(H100, ds, 512, sequences=8, gpus=8) == pytest.approx(
        pk.non_attention_time(H100, ds, 4096, 8, logits=8, decode_rows=0)
        + pk.prefill_attention_time(H100, ds, 512, 0, 8))


def test_tensor_parallelism_shrinks_the_gemms_and_data_parallelism_the_tokens(vidur):
    pk = ProfiledKernels({"H100": vidur})
    llama = model("llama-3-70b")
    ops4 = {o.name: o for o in pk.decode_ops(H100, llama, 64, 4)}
    ops1 = {o.name: o for o in pk.decode_ops(H100, llama, 64, 1)}
    assert ops4["gate_up_proj"].time < ops1["gate_up_proj"].time
    assert ops4["input_norm"].time == ops1["input_norm"].time  # norms are replicated
    ds = model("deepseek-v3")
    per = {o.name: o for o in pk.decode_ops(H100, ds, 64, 8)}
    alone = {o.name: o for o in pk.decode_ops(H100, ds, 8, 1)}
    assert per["q_a_proj"].time == alone["q_a_proj"].time  # 64 tokens / 8 ranks = 8 each


def test_the_measured_profiles_are_the_default_and_a_profile_is_chosen_by_name():
    assert isinstance(run_kernels({}), ProfiledKernels)
    assert run_kernels({"launch_time": 4e-6}) == KernelModel(launch_time=4e-6)  # coefficients
    assert run_kernels({"profile": "roofline", "launch_time": 5e-6}) == KernelModel(
        launch_time=5e-6)
    pk = run_kernels({"profile": "h200"}, cuda_graphs=False)
    assert isinstance(pk, ProfiledKernels)
    assert pk.profile(H200).name == "h200" and not pk.profile(H200).cuda_graphs
    assert pk.profile(H100).name == "h100-vidur"  # other GPUs: their shipped profile
    table = profiled_kernels({"H100": "h200"})
    assert table.profile(H100).name == "h200"
    assert table.profile(H100).gemm(1, 2560, 8192).kind.item() == "extrapolated"


def test_breakpoints_are_where_the_roofline_attention_time_bends():
    km = KernelModel()
    ds = model("deepseek-v3.2")
    (kink,) = km.attention_breakpoints(H100, ds, 4)

    def slope(x):
        return (km.attention_time(H100, ds, 4, x * 1.001) - km.attention_time(H100, ds, 4, x)) \
            / (x * 0.001)
    assert slope(kink * 0.9) != pytest.approx(slope(kink * 1.1), rel=1e-3)
    assert slope(kink * 0.5) == pytest.approx(slope(kink * 0.9), rel=1e-6)
    assert km.attention_breakpoints(H100, model("llama-3-70b"), 4) == []  # always memory-bound
    pk = ProfiledKernels()
    assert all(x > 0 for x in pk.attention_breakpoints(H100, model("llama-3-70b"), 4))


def test_roofline_additions_match_hand_computed_answers():
    km = KernelModel()
    # ring all-reduce: 3 µs + 2·3/4 · 1 MB / 450 GB/s; RDMA at one 50 GB/s NIC
    assert km.allreduce_time(H100, 1e6, 4) == pytest.approx(3e-6 + 1.5 * 1e6 / 450e9)
    assert km.allgather_time(H100, 1e6, 4, "rdma") == pytest.approx(3e-6 + 0.75 * 1e6 / 50e9)
    assert km.launch_overhead_time(7) == pytest.approx(21e-6)
    ds = model("deepseek-v3.2")
    # the chunk's attention: context KV read, the chunk's written; Σ min(i, 2048) over the chunk
    pairs = (2048 * 2049 / 2 + (6000 - 2048) * 2048) - (2048 * 2049 / 2 + (4000 - 2048) * 2048)
    want = km.roofline(H100, 61 * (4000 + 2 * 2000) * 1152,
                       61 * ds.attention_flops_per_token * pairs, launches=61).total
    assert km.prefill_attention_time(H100, ds, 2000, 4000) == pytest.approx(want)
    assert km.indexer_time(H100, model("kimi-k2"), 4, 1000) == 0.0
    assert km.indexer_time(H100, ds, 4, 1000) == pytest.approx(
        km.roofline(H100, 1000 * 128 * 2 + 4 * 64 * 128 * 2, 2 * 4 * 1000 * 64 * 128).total)


def test_the_crossover_search_works_with_a_profiled_kernel_model():
    import topologies
    from simulator.costmodel import CostModel

    g = topologies.build("dgx_h100", nodes=2)
    cm = CostModel("deepseek-v3.2", g, "ibgda", kernels=profiled_kernels("measured"))
    k = cm.crossover("n0/gpu0", "n1/gpu0", "blocks", batch=8)
    assert k is not None and k > 0
    route = cm.route("n0/gpu0", "n1/gpu0", k, 8).total
    fetch = cm.fetch("n0/gpu0", "n1/gpu0", k, 8).total
    assert math.isclose(route, fetch, rel_tol=1e-6)


def test_an_mla_chunks_attention_is_its_decompression_attention_and_indexer(vidur):
    # DeepSeek-V3.2's prefill chunk of 512 tokens after 1,536: the kv_b GEMM decompresses the
    # whole context (2,048 rows of 128 × (128 + 128) from the 512-wide latent, bf16), the
    # attention runs 192-wide query/key heads (128 + 64 RoPE) and 128-wide values over at most
    # the 2,048 top-k keys, and DSA's indexer scores the chunk; three kernels (two for the
    # indexer), every layer
    pk = ProfiledKernels({"H100": vidur})
    ds = model("deepseek-v3.2")
    lam = vidur.launch_cost.graph_time
    per_layer = (t(vidur.gemm(2048, 128 * (128 + 128), 512, "bf16"))
                 + t(vidur.prefill_attention(512, 1536, 128, 128, 192, 128, topk=2048))
                 + t(vidur.indexer_prefill(512, 1536, 64, 128)))
    got = pk.prefill_attention_time(H100, ds, 512, 1536)
    assert got == pytest.approx(61 * per_layer + 61 * 4 * lam, rel=1e-12)
    # without DSA (Kimi K2's MLA): no indexer, two kernels per layer, all keys attended
    kimi = model("kimi-k2")
    per_layer = (t(vidur.gemm(2048, 64 * (128 + 128), 512, "bf16"))
                 + t(vidur.prefill_attention(512, 1536, 64, 64, 192, 128)))
    assert pk.prefill_attention_time(H100, kimi, 512, 1536) == pytest.approx(
        kimi.layers * (per_layer + 2 * lam), rel=1e-12)
    # a chunk of nothing costs nothing; one token, something
    assert pk.prefill_attention_time(H100, ds, 0, 1536) == 0.0
    assert pk.prefill_attention_time(H100, ds, 1, 0) > 0.0


def test_every_time_is_zero_for_no_work_and_positive_for_the_least(vidur):
    pk = ProfiledKernels({"H100": vidur})
    ds, llama = model("deepseek-v3.2"), model("llama-3-70b")
    zero = [pk.attention_time(H100, llama, 1, 0), pk.attention_time(H100, llama, 0, 8),
            pk.merge_time(H100, ds, 0, 2), pk.gather_time(H100, 0.0),
            pk.copy_time(H100, 0.0), pk.indexer_time(H100, ds, 0, 8),
            pk.indexer_time(H100, ds, 8, 0), pk.non_attention_time(H100, ds, 0),
            pk.prefill_time(H100, ds, 0), pk.prefill_time(H100, ds, 64, sequences=0),
            pk.allgather_time(H100, 0.0, 8)]
    assert zero == [0.0] * len(zero)
    least = [pk.attention_time(H100, llama, 1, 1), pk.merge_time(H100, ds, 1, 2),
             pk.gather_time(H100, 1.0), pk.copy_time(H100, 1.0), pk.indexer_time(H100, ds, 1, 1),
             pk.non_attention_time(H100, ds, 1), pk.prefill_time(H100, ds, 1),
             pk.allgather_time(H100, 1.0, 2)]
    assert all(x > 0 for x in least)
    # a copy in k launches: k copies of a k-th of the bytes, each launched
    lam = vidur.launch_cost.graph_time
    assert pk.copy_time(H100, 8e6, kernels=4) == pytest.approx(4 * t(vidur.copy(2e6)) + 4 * lam)


def test_eager_launches_overlap_the_gpu_time(vidur):
    # without CUDA graphs the host enqueues each kernel: a part takes the longer of its GPU
    # time and its launches, not their sum
    eager = ProfiledKernels({"H100": vidur}, cuda_graphs=False)
    p = eager.profile(H100)
    assert not p.cuda_graphs
    ds = model("deepseek-v3.2")
    gpu = t(p.merge(16, 128, 512, 2))
    assert eager.merge_time(H100, ds, 16, 2) == max(gpu, float(p.launch(1).time))
    kernels = 4.0
    assert eager.launch_overhead_time(kernels, H100) == float(p.launch(kernels).time)
