"""A kernel profile's answers where its tables and models meet: measured rows asked as arrays
and one by one, the shapes a table may not answer, the causal pairs of a prefill chunk, and
the sources each answer names. Expected values are the CSV rows themselves or worked by hand."""

import csv
from dataclasses import replace

import numpy as np
import pytest

from simulator import hardware
from simulator.gpu import operators as ops
from simulator.gpu.answers import datasheet_ratios
from simulator.gpu.operators import FLASHMLA_DENSE, FLASHMLA_MEMORY, FLASHMLA_SPARSE, REFERENCE_SMS
from simulator.gpu.profile import KernelProfile, causal_pairs
from simulator.gpu.profiled import ProfiledKernels
from simulator.gpu.profiles import calibration_dir, load_profile
from simulator.gpu.table_loaders import load_rows
from simulator.models import model


@pytest.fixture(scope="module")
def h200():
    return load_profile("h200")


@pytest.fixture(scope="module")
def vidur():
    return load_profile("h100-vidur")


def test_causal_pairs_known_answers():
    # 3 new tokens after 2 cached: pairs 3·2 + 6 = 12, of which the triangle 6 (a half)
    pairs, tri = causal_pairs(3.0, 2.0)
    assert (float(pairs), float(tri)) == (12.0, 0.5)
    # a first chunk of one token is all triangle; half a token (a fraction of a chunk) too
    assert float(causal_pairs(1.0, 0.0)[1]) == 1.0
    assert float(causal_pairs(0.5, 0.0)[1]) == pytest.approx(1.0)
    # nothing new: no pairs, and no triangle share (not 0/0)
    assert [float(x) for x in causal_pairs(0.0, 5.0)] == [0.0, 0.0]
    # top-3: Σ_{i=3..5} min(i, 3) = 9; the triangle share as dense
    pairs, tri = causal_pairs(3.0, 2.0, topk=3)
    assert (float(pairs), float(tri)) == (9.0, 0.5)
    assert [float(x) for x in causal_pairs(1.0, 0.0, topk=3)] == [1.0, 1.0]
    assert [float(x) for x in causal_pairs(0.0, 5.0, topk=3)] == [0.0, 0.0]
    # arrays: element by element
    pairs, _ = causal_pairs(np.array([1.0, 3.0]), np.array([0.0, 2.0]), topk=3)
    assert pairs.tolist() == [1.0, 9.0]


def test_measured_gemm_rows_asked_together_are_each_row(h200):
    # h200/gemm.csv lines 46 and 47: n = 2560, k = 8192, m = 1 and 8
    got = h200.gemm(np.array([1.0, 8.0]), 2560, 8192)
    np.testing.assert_allclose(got.time, [1.76731e-05, 1.66629e-05], rtol=1e-12)
    assert list(got.source) == ["measured: h200/gemm.csv line 46",
                                "measured: h200/gemm.csv line 47"]
    for i, m in enumerate((1.0, 8.0)):
        one = h200.gemm(m, 2560, 8192)
        assert float(one.time) == got.time[i] and str(one.source) == got.source[i]
    # grouped GEMMs are the model's, even at a measured shape
    assert h200.gemm(np.array([1.0, 8.0]), 2560, 8192, groups=2.0).source[0].startswith(
        "fitted: ")


def _allreduce_row(ranks: int) -> tuple[float, float, str]:
    rows = load_rows(str(calibration_dir() / "vidur_h100"), "vidur_h100")["allreduce"]
    i = np.flatnonzero((rows.data["ranks"] == ranks) & (rows.data["bytes"] == 1048576))[0]
    return float(rows.data["bytes"][i]), float(rows.time[i]), str(rows.source[i])


def test_collectives_asked_for_one_and_many_ranks_at_once(vidur):
    # one rank moves nothing; 2 and 8 ranks at a measured size are their measured rows
    size, t2, src2 = _allreduce_row(2)
    _, t8, src8 = _allreduce_row(8)
    got = vidur.collective("allreduce", size, np.array([1.0, 2.0, 8.0]))
    assert got.time[0] == 0.0 and got.source[0] == "measured: nothing to move (one rank)"
    assert got.time[1] == pytest.approx(t2, rel=1e-12) and got.source[1] == "measured: " + src2
    assert got.time[2] == pytest.approx(t8, rel=1e-12) and got.source[2] == "measured: " + src8
    one = vidur.collective("allreduce", size, 2.0)
    assert float(one.time) == pytest.approx(t2, rel=1e-12)
    assert str(one.source) == "measured: " + src2


def test_attention_on_floats_where_no_table_answers(h200, vidur):
    # the H200 profile measured attention on this GPU: its table may answer, so no float
    assert h200.attention_seconds(4, 1024, 64, 8, 128) is None
    # the H100 profile's attention was measured on an H200: the model, the same as attention's
    got = vidur.attention_seconds(4, 1024, 64, 8, 128)
    assert got == float(vidur.attention(4, 1024, 64, 8, 128).time)


def test_paged_attention_adds_the_page_gather(vidur):
    # 4 queries over 1,024 tokens in 16-token pages, 8 KV heads of 128: K and V pages,
    # 2 × 4 × 1024 / 16 = 512 blocks of 16 × 8 × 128 × 2 B = 32 KiB
    dense = float(vidur.attention(4, 1024, 64, 8, 128).time)
    paged = float(vidur.attention(4, 1024, 64, 8, 128, paged=True, page_tokens=16).time)
    gather = float(vidur.gather(512, 32768).time)
    assert paged == pytest.approx(dense + gather, rel=1e-12)


def test_sparse_mla_attention_by_default_when_given_top_k(h200):
    on = h200.mla_attention(64, 8192, 128, topk=2048, sparse=True)
    default = h200.mla_attention(64, 8192, 128, topk=2048)
    off = h200.mla_attention(64, 8192, 128, topk=2048, sparse=False)
    assert float(default.time) == float(on.time) != float(off.time)
    assert str(default.source).startswith("extrapolated: FlashMLA README (H800) roofline × "
                                          "H200/H100 datasheet (HBM ×1.43")


def test_the_indexer_on_floats_is_the_table_where_one_answers(h200):
    # h200/dsa_indexer.csv: batch 8 over 4,096 keys, scores + top-k: 8.1024e-05 s
    assert h200.indexer_time(8, 4096) == pytest.approx(8.1024e-05, rel=1e-12)
    assert h200.indexer_time(8, 5000) == float(h200.indexer(8, 5000).time)


def test_prefill_attention_uses_its_table_only_for_a_first_causal_chunk(h200):
    # h200/prefill_attn.csv line 2: 512 tokens, 8 query heads, 1 KV head of 128: 22.144 µs
    first = h200.prefill_attention(512, 0, 8, 1, 128)
    assert float(first.time) == pytest.approx(2.2144e-05, rel=1e-12)
    assert str(first.source) == "measured: h200/prefill_attn.csv line 2"
    for other in (h200.prefill_attention(512, 1, 8, 1, 128),  # after cached tokens
                  h200.prefill_attention(512, 0, 8, 1, 128, v_dim=64),  # MLA-like widths
                  h200.prefill_attention(512, 0, 8, 1, 128, topk=2048)):  # sparse
        assert str(other.source).startswith("fitted: ")
    assert float(h200.prefill_attention(0, 100, 8, 1, 128).time) == 0.0
    assert float(h200.prefill_attention(1, 0, 8, 1, 128).time) > 0.0


def test_launch_sources_on_a_gpu_it_was_not_measured_on():
    a100 = load_profile("a100")
    assert str(a100.launch(1).source) == (
        "extrapolated: h200/launch.csv lines 9 and 11 (tiny_add_1elem: host_enqueue_per_call, "
        "graph_per_node) (CUDA-graph node), measured on H200, assumed equal on A100")
    assert datasheet_ratios(hardware.gpu("A100"), "no-such-gpu") == "A100 datasheet"


def _dense_contexts(q_heads: int, variant: str) -> list[float]:
    """The contexts h200/attn_decode.csv measured for ``q_heads`` heads (read here with csv)."""
    with open(calibration_dir() / "h200" / "attn_decode.csv", newline="") as f:
        return sorted({float(r["context"]) for r in csv.DictReader(f)
                       if r["variant"] == variant and int(r["q_heads"]) == q_heads})


@pytest.mark.parametrize("paged", [False, True])
def test_gqa_breakpoints_are_the_split_bounds_and_the_measured_contexts(paged):
    llama = model("llama-3-70b")  # 64 query heads over 8 KV heads
    h200_spec, h100_spec = hardware.gpu("H200"), hardware.gpu("H100")
    pk = ProfiledKernels(paged_kv=paged)
    ls = pk.profile(h200_spec).fit("attention").params["Ls"]
    # batch 4 × 8 KV heads = 32 blocks of parallel work: split-KV bounds at Ls and Ls·132/32
    bounds = {ls, ls * REFERENCE_SMS / 32}
    measured = _dense_contexts(64, "paged_gather_attn" if paged else "dense")
    assert measured  # the table holds 64-head rows
    assert pk.attention_breakpoints(h200_spec, llama, 4) == sorted(bounds | set(measured))
    # half the heads: 4 KV heads → 16 blocks of work; the table's 32-head contexts
    assert pk.attention_breakpoints(h200_spec, llama, 4, heads=32) == sorted(
        {ls, ls * REFERENCE_SMS / 16} | set(_dense_contexts(
            32, "paged_gather_attn" if paged else "dense")))
    # on an H100 the attention table (measured on an H200) does not answer: the bounds only
    ls100 = pk.profile(h100_spec).fit("attention").params["Ls"]
    assert pk.attention_breakpoints(h100_spec, llama, 4) == sorted({ls100,
                                                                    ls100 * REFERENCE_SMS / 32})


def test_an_mla_knee_is_where_its_memory_and_compute_times_meet():
    h100 = hardware.gpu("H100")
    pk = ProfiledKernels()
    for name, eff in (("deepseek-v3.2", FLASHMLA_SPARSE), ("deepseek-v3", FLASHMLA_DENSE)):
        arch = model(name)
        batch, h = 4.0, float(arch.query_heads)
        (knee,) = pk.attention_breakpoints(h100, arch, batch)
        row = arch.query_bytes_per_head + arch.return_bytes_per_head
        memory = batch * (knee * arch.kv_bytes_per_token + h * row) / (
            h100.hbm_bandwidth * FLASHMLA_MEMORY)
        compute = batch * knee * h * (arch.attention_flops_per_token / arch.query_heads) / (
            h100.peak_flops * eff)
        assert memory == pytest.approx(compute, rel=1e-9)
        # 8 of the 128 heads: a token's FLOPs no longer outrun its KV bytes, no knee
        assert pk.attention_breakpoints(h100, arch, batch, heads=8) == []
    # Kimi K2 (64 heads, dense): memory-bound at every context on an H100
    assert pk.attention_breakpoints(h100, model("kimi-k2"), 4.0) == []


def test_a_later_prefill_chunk_is_the_model_over_its_whole_context(h200):
    # 512 new tokens after 1,024 cached, 8 heads over 1 KV head of 128: pairs 512·1024 +
    # 512·513/2 = 655,616, 131,328 of them (about a fifth) under the triangle; the keys read are
    # all 1,536 tokens'
    pairs, tri = 512 * 1024 + 512 * 513 / 2, (512 * 513 / 2) / (512 * 1024 + 512 * 513 / 2)
    want = ops.prefill_attention(h200.fit("prefill_attention").params, h200.gpu, 512.0, pairs,
                                 tri, 1536.0, 8.0, 1.0, 128.0, 128.0)
    got = h200.prefill_attention(512, 1024, 8, 1, 128)
    assert float(got.time) == pytest.approx(float(want), rel=1e-12)


def test_the_first_folder_holding_an_operators_rows_answers(h200, tmp_path):
    # a second folder whose one GEMM row (n = 2560, k = 8192, m = 1) took 1 ms
    (tmp_path / "gemm.csv").write_text("model,op,dtype,m,n,k,time_s\nx,qkv,bf16,1,2560,8192,1e-3\n")
    cal = str(calibration_dir() / "h200")

    def with_folders(*folders):
        fits = dict(h200.fits)
        fits["gemm"] = replace(fits["gemm"], folders=folders)
        return KernelProfile(h200.name, h200.gpu, fits, h200.launch_cost, h200.cuda_graphs,
                             h200.description)

    assert float(with_folders(cal, str(tmp_path)).gemm(1, 2560, 8192).time) == pytest.approx(
        1.76731e-05, rel=1e-12)
    assert float(with_folders(str(tmp_path), cal).gemm(1, 2560, 8192).time) == pytest.approx(
        1e-3, rel=1e-12)
