"""Kernel profiles: fitted models against hand-computed answers, sources, extrapolation by
datasheet ratios, profile files and their references."""

import dataclasses
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import hardware
from simulator.errors import UserError
from simulator.gpu import operators as ops
from simulator.gpu import profiles
from simulator.gpu.profiles import (
    DEFAULT_PROFILES,
    calibration_dir,
    default_profile,
    fit_operator,
    load_profile,
    profile_names,
)
from simulator.gpu.table_loaders import load_rows, profile_label
from simulator.hardware import GPUSpec

H200 = hardware.gpu("H200")
P = dict(t0=4e-6, em=0.8, b0=5e5, ec=0.75, tau=7e-10, s=3.0)


def test_the_gemm_model_at_hand_computed_points():
    # m=1, n=k=8192, bf16 on an H200 (4.8 TB/s, 989 TFLOP/s):
    #   bytes = 8192·8192·2 + 2·8192·2 = 134,250,496; em·nk/(nk+b0) = 0.794083616
    #   memory = bytes / (4.8e12 · 0.794083616) = 35.2215 µs
    #   compute = 2·8192²/(989e12·0.75) + 8192·0.7 ns = 5.9153 µs
    #   t = 4 µs + (35.2215³ + 5.9153³)^(1/3) µs = 39.2771 µs
    assert ops.gemm(P, H200, 1, 8192, 8192) == pytest.approx(39.27707569e-6, rel=1e-8)
    # m=4096: compute-bound, 751.104 µs; in fp8 the bytes of W and x halve and π doubles
    assert ops.gemm(P, H200, 4096, 8192, 8192) == pytest.approx(751.1035758e-6, rel=1e-8)
    assert ops.gemm(P, H200, 4096, 8192, 8192, fp8=True) == pytest.approx(380.5152825e-6,
                                                                            rel=1e-8)


def test_the_prefill_indexer_at_a_hand_computed_point():
    # 4,096 new tokens after 8,192 cached, 64 heads × 128 on an H200 (989 TFLOP/s bf16, fp8 ×2):
    #   pairs = 4096·8192 + 4096·4097/2 = 41,945,088
    #   compute = 2·pairs·64·128 / (1978e12 · 1550/1979) = 0.4433 ms
    #   bytes = 12288·128 + 4096·64·128 + 8·pairs = 370,671,616 → / 4.8e12 = 77.22 µs
    #   t = t0 + (compute⁴ + memory⁴)^(1/4)
    pairs = 4096 * 8192 + 4096 * 4097 / 2
    compute = 2 * pairs * 64 * 128 / (2 * 989e12 * 1550 / 1979)
    memory = (12288 * 128 + 4096 * 64 * 128 + 8 * pairs) / 4.8e12
    want = 3e-6 + (compute**4 + memory**4) ** 0.25
    got = ops.indexer_prefill({"t0": 3e-6}, H200, 4096, 8192, 64, 128)
    assert got == pytest.approx(want, rel=1e-12)
    assert compute == pytest.approx(0.4433e-3, rel=1e-3)
    # causal: a chunk after the whole context costs what the pairs say — twice the chunk
    # alone at the start (c(c+1)/2 pairs) is less than one chunk after c cached keys
    alone = ops.indexer_prefill({"t0": 0.0}, H200, 4096, 0, 64, 128)
    after = ops.indexer_prefill({"t0": 0.0}, H200, 4096, 4096, 64, 128)
    assert after / alone == pytest.approx((4096 * 4096 + 4096 * 4097 / 2) / (4096 * 4097 / 2),
                                          rel=0.02)


def test_sparse_attention_makes_long_prompts_cheaper_not_dearer():
    # DeepSeek-V3.2's point (its tech report: prefill cost per token nearly flat in position,
    # V3.1's growing): with the fused fp8 indexer a 128k-token prompt of V3.2 costs well under
    # V3's dense MLA prefill, and its cost per token grows far more slowly with length
    from simulator.gpu.calibration import run_kernels
    from simulator.models import model

    km = run_kernels({}, cuda_graphs=None)
    h100, v32, v3 = hardware.gpu("H100"), model("deepseek-v3.2"), model("deepseek-v3")
    long32, long3 = km.prefill_time(h100, v32, 131072), km.prefill_time(h100, v3, 131072)
    assert long32 < long3 / 3
    short32 = km.prefill_time(h100, v32, 4096)
    short3 = km.prefill_time(h100, v3, 4096)
    assert (long32 / 32) / short32 < (long3 / 32) / short3


def test_a_grouped_gemm_streams_every_groups_weights():
    one = ops.gemm({**P, "t0": 0.0, "tau": 0.0, "s": 50.0}, H200, 8, 4096, 7168)
    four = ops.gemm({**P, "t0": 0.0, "tau": 0.0, "s": 50.0}, H200, 8, 4096, 7168, groups=4.0)
    # memory-bound: the time is the bytes — 4 weight matrices and the same activations; the
    # weights at the share of all four (b0 = 5e5 elements against 4·nk), the rest at one's
    m, n, k = 8, 4096, 7168
    nk = n * k
    one_share, four_share = nk / (nk + 5e5), 4 * nk / (4 * nk + 5e5)
    want = ((4 * nk * 2 / four_share + (m * k * 2 + m * n * 2) / one_share)
            / ((nk * 2 + m * k * 2 + m * n * 2) / one_share))
    assert four / one == pytest.approx(want, rel=1e-9)


def test_a_grouped_gemm_of_small_matrices_streams_at_the_share_of_all_of_them():
    # MLA's absorbed W_UK: 128 heads of 512 × 128 (65,536 elements each, far below b0 = 5e5),
    # one token per head, memory-bound (t0 = τ = 0, a sharp maximum). By hand: the weights'
    # 128·65,536·2 B = 16,777,216 B at 0.8·8,388,608/(8,388,608 + 5e5) = 0.754998... of
    # 4.8 TB/s; the activations (128·128·2 B) and output (128·512·2 B) at one head's share,
    # 0.8·65,536/(65,536 + 5e5) = 0.0927...
    p = {**P, "t0": 0.0, "tau": 0.0, "s": 50.0}
    got = ops.gemm(p, H200, 128.0, 512.0, 128.0, groups=128.0)
    weights = 16_777_216 / (4.8e12 * 0.8 * 8_388_608 / 8_888_608)
    rest = (128 * 128 * 2 + 128 * 512 * 2) / (4.8e12 * 0.8 * 65_536 / 565_536)
    assert got == pytest.approx(weights + rest, rel=1e-3)  # the compute term adds < 1e-3
    assert got < 6e-6  # not 128 heads each at a 65,536-element matrix's 9 % (38 µs)
    # 128 kernels of one head each would pay one head's share on every byte
    assert got < 128 * ops.gemm(p, H200, 1.0, 512.0, 128.0) / 5
    # the floats path and the arrays path agree
    assert float(ops.gemm(p, H200, np.array(128.0), 512.0, 128.0, groups=128.0)) == got


@settings(max_examples=200, deadline=None)
@given(m=st.floats(1.0, 8192.0), n=st.sampled_from([128.0, 512.0, 2048.0, 7168.0]),
       k=st.sampled_from([128.0, 512.0, 2048.0, 7168.0]), g=st.floats(0.0, 256.0),
       dg=st.floats(0.0, 64.0), gpu=st.sampled_from(["H200", "H100", "H20"]))
def test_a_grouped_gemm_never_gets_faster_with_more_groups(m, n, k, g, dg, gpu):
    # with the rows fixed, another group adds weights and never speeds the kernel up (the share
    # of all the weights, applied to the activations too, made it fall: stop 72's audit)
    spec = hardware.gpu(gpu)
    params = {key: float(v) for key, v in default_profile(spec).fit("gemm").params.items()}
    a = ops.gemm(params, spec, m, n, k, groups=g)
    b = ops.gemm(params, spec, m, n, k, groups=g + dg)
    assert b >= a * (1 - 1e-12)


def test_the_collective_model_at_a_hand_computed_point():
    p = dict(ar_t0=20e-6, ar_c=1e-6, ar_e=0.8, ar_r0=0.5, sr_nvlink_t0=5e-6, sr_nvlink_e=0.8,
             sr_rdma_t0=20e-6, sr_rdma_e=0.7)
    h100 = hardware.gpu("H100")
    # all-reduce of 1 MiB over 4 ranks: 20 + 3·1 µs + 1.5 · 2^20 / (450e9 · 0.8·4/4.5) µs
    want = 20e-6 + 3e-6 + 1.5 * 2**20 / (450e9 * 0.8 * 4 / 4.5)
    assert ops.collective(p, h100, "allreduce", 2**20, 4, "nvlink") == pytest.approx(want)
    # all-gather moves half the bytes; RDMA send/recv runs at 0.7 of a 50 GB/s NIC
    assert ops.collective(p, h100, "allgather", 2**20, 4, "nvlink") == pytest.approx(
        20e-6 + 3e-6 + 0.75 * 2**20 / (450e9 * 0.8 * 4 / 4.5))
    assert ops.collective(p, h100, "sendrecv", 1e6, 2, "rdma") == pytest.approx(
        20e-6 + 1e6 / (50e9 * 0.7))
    assert ops.collective(p, h100, "allreduce", 1e6, 1, "nvlink") == 0.0


def test_a_profile_answers_arrays_with_a_source_per_element():
    p = load_profile("h200")
    t = p.gemm([1, 16, 3000], 2560, 8192)
    assert t.time.shape == (3,)
    assert list(t.kind) == ["measured", "interpolated", "interpolated"]
    t = p.gemm(20000, 2560, 8192)  # beyond the largest measured m
    assert t.source.item() == "fitted: h200 gemm model"
    assert float(t) == pytest.approx(float(ops.gemm(p.fit("gemm").params, H200, 20000, 2560,
                                                    8192)))


def test_a_missing_table_falls_back_to_the_model_never_to_zero():
    p = load_profile("h200")
    t = p.attention(3, 300, 40, 8, 128)  # 40 query heads were never measured
    assert t.source.item() == "fitted: h200 attention model"
    assert float(t) > 0


def test_extrapolation_scales_memory_and_compute_terms_by_the_datasheet_ratios():
    p = load_profile("h200").fitted_only()
    twice = GPUSpec("H200x2", H200.hbm_bytes, 2 * H200.hbm_bandwidth, 2 * H200.peak_flops,
                    2 * H200.nvlink_bandwidth)
    q = p.at(twice)
    t0 = p.fit("attention").params["t0"]
    a, b = float(p.attention(32, 8192, 64, 8, 128)), float(q.attention(32, 8192, 64, 8, 128))
    assert (b - t0) == pytest.approx((a - t0) / 2, rel=1e-9)
    c0 = p.fit("copy").params["t0"]
    assert float(q.copy(1e9)) - c0 == pytest.approx((float(p.copy(1e9)) - c0) / 2, rel=1e-9)
    assert q.copy(1e9).source.item().startswith(
        "extrapolated: h200 copy model (measured on H200) × H200x2")
    # a real catalog GPU: H20's decode attention is the H200 fit at 4.0 instead of 4.8 TB/s
    h20 = load_profile("h20")
    assert h20.gpu.name == "H20"
    src = h20.attention(8, 4096, 8, 1, 128).source.item()
    assert src.startswith("extrapolated: h200 attention model (measured on H200) × H20/H200 "
                          "datasheet (HBM ×0.83, FLOP/s ×0.15, NVLink ×1.00)")


def test_tables_answer_only_on_the_gpu_they_were_measured_on():
    h200 = load_profile("h200")
    assert h200.gemm(1, 2560, 8192).kind.item() == "measured"
    assert h200.at(hardware.gpu("H100")).gemm(1, 2560, 8192).kind.item() == "extrapolated"


def test_each_operator_of_the_shipped_profiles_resolves_to_a_measured_gpu():
    assert set(profile_names()) >= {"h200", "h100-vidur", "h20", "a100", "b200"}
    for name in profile_names():
        p = load_profile(name)
        for op, fit in p.fits.items():
            assert fit.measured_on in ("H200", "H100"), (name, op)
            assert fit.summary["median_error"] < 0.10
    vidur = load_profile("h100-vidur")
    assert vidur.fit("gemm").profile == "h100-vidur"
    assert vidur.fit("attention").profile == "h200"
    assert load_profile("a100").fit("gemm").profile == "h100-vidur"
    for gpu_name, name in DEFAULT_PROFILES.items():
        assert default_profile(hardware.gpu(gpu_name)).name == name


def test_an_unknown_gpu_gets_the_nearest_measured_profile():
    slow = GPUSpec("L40", 48e9, 0.86e12, 362e12, 64e9)
    assert default_profile(slow).name == "h100-vidur"
    assert default_profile(slow).gpu is slow
    fast = GPUSpec("X", 288e9, 8e12, 2.5e15, 900e9)
    assert default_profile(fast).name == "h200"


def test_a_catalog_gpu_named_in_lower_case_gets_its_own_profile():
    # the H20 is nearer the H100's bandwidth than the H200's: the nearest measured profile
    # would be h100-vidur, its own is h20
    h20 = dataclasses.replace(hardware.gpu("H20"), name="h20")
    assert default_profile(h20).name == "h20"


def test_a_profile_without_a_cuda_graph_flag_replays_graphs(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text('[profile]\nname = "p"\ngpu = "H200"\nbase = "h200"\n')
    got = load_profile(str(p))
    assert got.cuda_graphs is True
    assert float(got.launch(10)) == float(load_profile("h200").launch(10))


@pytest.mark.parametrize("head", ['gpu = "H200"', 'name = "p"', ""])
def test_a_profile_head_without_name_or_gpu_is_refused(tmp_path, head):
    p = tmp_path / "p.toml"
    p.write_text(f"[profile]\n{head}\n")
    with pytest.raises(UserError, match="missing \\[profile\\] with name and gpu"):
        load_profile(str(p))


@pytest.mark.parametrize("drop", ["indexer", "indexer_topk"])
def test_the_indexer_is_fitted_only_from_its_parts_and_the_whole_pass(drop):
    # the whole pass's rows hold the fit to what it predicts; without them, or without the
    # top-k part, the profile takes the indexer from the one that measured it
    folder = calibration_dir() / "h200"
    rows = dict(load_rows(str(folder.resolve()), profile_label(folder)))
    assert fit_operator("indexer", rows, H200) is not None
    del rows[drop]
    assert fit_operator("indexer", rows, H200) is None


def test_launch_costs_follow_the_cuda_graph_flag():
    p = load_profile("h200")
    # h200/launch.csv: tiny_add_1elem, 1.10195 µs per graph node, 10.3988 µs eager enqueue
    assert float(p.launch(10)) == pytest.approx(11.0195e-6)
    assert float(p.with_cuda_graphs(False).launch(10)) == pytest.approx(103.988e-6)
    assert "extrapolated" in load_profile("h100-vidur").launch(1).source.item()


def test_mla_decode_keeps_flashmla_figures_on_the_h100():
    p = load_profile("h100-vidur")
    t0 = p.fit("attention").params["t0"]
    h100 = hardware.gpu("H100")
    # memory-bound: 64 queries × 32k tokens × 1,152 B at 3,000 GB/s
    t = float(p.mla_attention(64, 32768, 128))
    mem = (64 * 32768 * 1152 + 64 * 128 * 2180) / 3000e9
    comp = 64 * 32768 * 128 * 2 * 1088 / (660e12)
    assert t == pytest.approx(t0 + (mem**4 + comp**4) ** 0.25, rel=1e-6)
    assert h100.hbm_bandwidth * ops.FLASHMLA_MEMORY == pytest.approx(3000e9)
    assert p.mla_attention(1, 100, 128).source.item().startswith("fitted: FlashMLA README")


def test_profile_files_that_refer_in_a_circle_or_lack_parameters_are_user_errors(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(f'[profile]\nname = "a"\ngpu = "H100"\nbase = "{b}"\n')
    b.write_text(f'[profile]\nname = "b"\ngpu = "H100"\nbase = "{a}"\n')
    with pytest.raises(UserError, match="in a circle"):
        load_profile(str(a))
    c = tmp_path / "c.toml"
    c.write_text('[profile]\nname = "c"\ngpu = "H100"\n[operators.gemm]\nmeasured_on = "H100"\n')
    with pytest.raises(UserError, match="gemm entry is malformed"):
        load_profile(str(c))
    with pytest.raises(UserError, match="unknown kernel profile 'nope'"):
        load_profile("nope")


def test_causal_pairs_count_every_query_key_pair_once():
    from simulator.gpu.profile import causal_pairs

    pairs, tri = causal_pairs(4, 0)
    assert pairs == 10 and tri == 1.0  # 1 + 2 + 3 + 4
    pairs, tri = causal_pairs(2, 3)
    assert pairs == 4 + 5 and tri == pytest.approx(3 / 9)
    pairs, _ = causal_pairs(3, 2, topk=3)
    assert pairs == 3 + 3 + 3  # keys 3, 4, 5 each capped at 3


def test_timings_broadcast_their_inputs():
    p = load_profile("h200")
    t = p.elementwise("rmsnorm", np.array([1, 10, 100]), 8192)
    assert t.time.shape == (3,) and np.all(np.diff(t.time) >= 0)
    with pytest.raises(UserError, match="elementwise kind 'softmax'"):
        p.elementwise("softmax", 1, 1)
    assert dataclasses.is_dataclass(t)


PA = dict(t0=5e-6, sh=1.0, pc=16.0, elo=0.3, ehi=0.9, Ls=1024.0, r1=0.01)


@pytest.mark.parametrize("as_floats", [True, False])
def test_the_decode_attention_model_at_hand_computed_points(as_floats):
    # GQA decode on an H100 (3.35 TB/s; FlashMLA's dense 660 TFLOP/s), bf16 KV, head dim 128.
    # Python floats take the scalar path, arrays the array path: the same values.
    #   b=1, L=8192, 64 q / 8 kv heads: bytes 2·8192·8·128·2 + 2·64·128·2 = 33,587,200;
    #   parallelism b·hk = 8: η = 0.3 + 0.6/(1 + 8/16) = 0.7; splits min(132/8, 8192/1024) = 8;
    #   rate = 1/(1/(8·8·0.01·β) + 1/(0.7β)) = 1.12 TB/s → 29.9886 µs; FLOPs 0.4067 µs;
    #   t = 5 µs + smax₄ = 34.98857 µs
    #   b=64, L=4096, 128 q / 1 kv heads: bytes 138,412,032, parallelism 64: η = 0.42,
    #   splits 132/64 = 2.0625, rate 1.067379 TB/s → 129.6746 µs; FLOPs 4·64·4096·128·128 at
    #   660 TFLOP/s = 26.0301 µs, which the smooth maximum adds 0.05 µs of: t = 134.72725 µs
    def f(*shape):
        args = [float(x) for x in shape] if as_floats else [np.array([x], float) for x in shape]
        return float(np.asarray(ops.decode_attention(PA, hardware.gpu("H100"), *args)).ravel()[0])

    assert f(1, 8192, 64, 8, 128) == pytest.approx(34.988571682e-6, rel=1e-9)
    assert f(64, 4096, 128, 1, 128) == pytest.approx(134.727247374e-6, rel=1e-9)


def test_an_rdma_all_reduce_at_a_hand_computed_point():
    # over RDMA the all-reduce takes the send/recv fit's floor and efficiency and the per-rank
    # step of the NVLink fit: 1 MiB over 8 ranks, 20 + 7·1 µs + 1.75 · 2^20 / (50e9 · 0.7)
    p = dict(ar_t0=9e-6, ar_c=1e-6, ar_e=0.8, ar_r0=0.5, sr_nvlink_t0=5e-6, sr_nvlink_e=0.8,
             sr_rdma_t0=20e-6, sr_rdma_e=0.7)
    h100 = hardware.gpu("H100")
    assert ops.collective(p, h100, "allreduce", 2**20, 8, "rdma") == pytest.approx(79.4288e-6,
                                                                                   rel=1e-9)
    assert ops.collective(p, h100, "sendrecv", 1e6, 1, "rdma") == 0.0


#: GPUs where one roofline term vanishes beside the other: memory-bound (1 GB/s, 1e30 FLOP/s)
#: and compute-bound (1e30 B/s, 1 GFLOP/s); the smooth maximum then is the larger term exactly.
MEM_BOUND = GPUSpec("membound", hbm_bytes=1.0, hbm_bandwidth=1e9, peak_flops=1e30,
                    nvlink_bandwidth=1.0)
CMP_BOUND = GPUSpec("cmpbound", hbm_bytes=1.0, hbm_bandwidth=1e30, peak_flops=1e9,
                    nvlink_bandwidth=1.0)
PREFILL = {"t0": 1e-6, "ec": 0.8, "L0": 100.0, "c0": 4.0, "kc": 0.5}


def test_a_prefill_chunks_bytes_and_its_compute_efficiency_by_hand():
    # 256 new tokens over 40,000 pairs, half of them causal, reading 2,000 keys; 8 query heads
    # over 1 KV head, 128-wide Q/K and V
    c, pairs, tri, ctx, hq, hk, d = 256.0, 40_000.0, 0.5, 2000.0, 8.0, 1.0, 128.0
    # bytes: the chunk's Q and O rows and the context's K and V, bf16, at 90 % of the bandwidth
    nbytes = c * hq * (d + d) * 2 + ctx * hk * (d + d) * 2
    t = ops.prefill_attention(PREFILL, MEM_BOUND, c, pairs, tri, ctx, hq, hk, d, d)
    assert float(t) == pytest.approx(1e-6 + nbytes / (1e9 * 0.9), rel=1e-12)
    # FLOPs 2·8·256·40,000; efficiency 0.8 / (1 + 100/156.25) / (1 + 4/16) × (1 − 0.5·0.5)
    # (mean keys per query 40,000/256; 2 row tiles of 128 × 8 heads = 16 CTAs)
    ec = 0.8 / (1 + 100 / 156.25) / (1 + 4 / 16) * 0.75
    t = ops.prefill_attention(PREFILL, CMP_BOUND, c, pairs, tri, ctx, hq, hk, d, d)
    assert float(t) == pytest.approx(1e-6 + 2 * 8 * 256 * 40_000 / (1e9 * ec), rel=1e-12)


def test_merge_and_indexer_scores_by_hand():
    # merge of 2 partials of 2 × 16 rows of 512: each row 1,024 B + a 4 B LSE, read twice and
    # written once, at half of 1 GB/s
    t = ops.merge({"t0": 1e-6, "e": 0.5}, MEM_BOUND, 2, 16, 512, 2)
    assert float(t) == pytest.approx(1e-6 + 3 * 2 * 16 * 1028 / 0.5e9, rel=1e-12)
    # indexer scores: 2·B·L·H·D FLOPs at the dense FlashMLA efficiency
    t = ops.indexer_scores({"t0": 0.0, "s": 4.0}, CMP_BOUND, 3, 1000, 64, 128)
    assert float(t) == pytest.approx(2 * 3 * 1000 * 64 * 128 / (1e9 * ops.FLASHMLA_DENSE),
                                     rel=1e-12)


def test_an_installed_copy_reads_the_profiles_where_the_package_puts_them(tmp_path,
                                                                         monkeypatch):
    # outside a checkout (no calibration/profiles beside the package) the profiles are the
    # ones pyproject's data-files install under <prefix>/share/kvfabric/calibration
    monkeypatch.setattr(profiles, "__file__", str(tmp_path / "site" / "simulator" / "gpu" / "x.py"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    assert calibration_dir() == tmp_path / "venv" / "share" / "kvfabric" / "calibration"
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    data_files = pyproject["tool"]["setuptools"]["data-files"]
    assert data_files["share/kvfabric/calibration/profiles"] == ["calibration/profiles/*.toml"]


def test_the_grouped_gemm_measurements_compare_with_the_model_and_its_old_form(tmp_path, capsys):
    # benchmarks/gpu/measure_grouped_gemm.py --compare: measured rows (here made up: twice the
    # model's time) beside the model and the pre-stop-80 model (every byte at one head's share)
    from benchtools import benchmark

    script = benchmark("gpu.measure_grouped_gemm")
    h200 = load_profile("h200")
    p = {key: float(v) for key, v in h200.fit("gemm").params.items()}
    rows = [(1, 1.0), (128, 128.0)]  # (groups, m): W_UK, one token per head
    path = tmp_path / "h200_grouped_gemm.csv"
    with path.open("w") as f:
        f.write(",".join(script.HEADER) + "\n")
        for g, m in rows:
            t = 2.0 * float(ops.gemm(p, H200, m, 512.0, 128.0, False, float(g)))
            f.write(f"deepseek-v3,w_uk_absorb,bf16,{g},{m},512,128,2,{t!r},{t!r},{t!r},1,1\n")
    out = script.compare(path, "H200", None)
    assert [r["err"] for r in out] == pytest.approx([-0.5, -0.5], rel=1e-12)
    assert out[0]["before_s"] == pytest.approx(out[0]["model_s"], rel=1e-12)  # one matrix
    assert out[1]["before_s"] > 4 * out[1]["model_s"]  # 128 heads at one head's 11 % share
    assert "median |error| 50.0%" in capsys.readouterr().out
