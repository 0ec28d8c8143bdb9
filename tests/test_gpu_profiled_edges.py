"""ProfiledKernels at its edges: paged KV, fewer heads than a KV group, the prefill paths of
each family, launches per GPU kind and the profile choices it refuses. Each expected value is
the profile's own operator for the shape worked out here, plus its launches (CUDA graphs: one
graph node's cost per kernel, added)."""

import dataclasses

import pytest

from simulator import hardware
from simulator.errors import UserError
from simulator.gpu.kernels import KernelModel
from simulator.gpu.operators import REFERENCE_SMS
from simulator.gpu.profiled import (
    INDEXER_KERNELS,
    ProfiledKernels,
    check_profile_choice,
    profiled_kernels,
)
from simulator.gpu.profiles import load_profile
from simulator.models import Architecture, model

H100 = hardware.gpu("H100")
LLAMA = model("llama-3-70b")  # 64 query heads over 8 KV heads of 128


def _launch(pk: ProfiledKernels, kernels: float) -> float:
    return float(pk.profile(H100).launch(kernels).time)


def test_paged_kv_attention_is_the_measured_paged_row_at_its_page_size():
    # h200/attn_decode.csv line 116: paged, 64 heads over 8 KV heads of 128, 1 query over
    # 2,048 tokens in 16-token pages: 23.84 µs; with 32-token pages no row answers (the model)
    h200 = hardware.gpu("H200")
    pk16 = ProfiledKernels(paged_kv=True, page_tokens=16)
    launch = float(pk16.profile(h200).launch(1).time)
    assert pk16.attention_time(h200, LLAMA, 1, 2048) == pytest.approx(2.384e-05 + launch,
                                                                      rel=1e-12)
    pk32 = ProfiledKernels(paged_kv=True, page_tokens=32)
    want = float(pk32.profile(h200).attention(1, 2048, 64, 8, 128, paged=True,
                                              page_tokens=32).time)
    assert str(pk32.profile(h200).attention(1, 2048, 64, 8, 128, paged=True,
                                            page_tokens=32).source).startswith("fitted: ")
    assert pk32.attention_time(h200, LLAMA, 1, 2048) == pytest.approx(want + launch, rel=1e-12)
    # on an H100 (no table: the model) paged KV is the paged model, not the contiguous one
    paged100 = ProfiledKernels(paged_kv=True)
    p100 = paged100.profile(H100)
    want = float(p100.attention(1, 2048, 64, 8, 128, paged=True, page_tokens=16).time)
    assert paged100.attention_time(H100, LLAMA, 1, 2048) == pytest.approx(
        want + _launch(paged100, 1), rel=1e-12)
    assert want > float(p100.attention(1, 2048, 64, 8, 128).time)
    # contiguous KV: the dense rows (not the paged ones)
    dense = float(ProfiledKernels().profile(h200).attention(1, 2048, 64, 8, 128).time)
    assert ProfiledKernels().attention_time(h200, LLAMA, 1, 2048) == pytest.approx(
        dense + launch, rel=1e-12)
    assert dense != pytest.approx(2.384e-05, rel=1e-3)


def test_fewer_heads_than_a_kv_group_still_read_one_kv_head():
    pk = ProfiledKernels()
    p = pk.profile(H100)
    # 4 of Llama's heads are half a group of 8: one KV head, not zero or two
    want = float(p.attention(4, 1024, 4, 1, 128).time)
    assert pk.attention_time(H100, LLAMA, 4, 1024, heads=4) == pytest.approx(
        want + _launch(pk, 1), rel=1e-12)
    # its split-KV bound: 4 queries × 1 KV head of parallel work
    ls = p.fit("attention").params["Ls"]
    assert ls * REFERENCE_SMS / 4 in pk.attention_breakpoints(H100, LLAMA, 4, heads=4)
    # a merge of 4 heads' partial outputs
    want = float(p.merge(4, 4, 128, 2).time)
    assert pk.merge_time(H100, LLAMA, 4, heads=4) == pytest.approx(want + _launch(pk, 1),
                                                                   rel=1e-12)


def test_splices_are_the_rooflines_and_indexers_only_run_on_sparse_models_with_heads():
    pk = ProfiledKernels()
    v32 = model("deepseek-v3.2")
    assert pk.splice_time_per_layer(v32, 3) == KernelModel().splice_time_per_layer(v32, 3)
    assert pk.indexer_time(H100, dataclasses.replace(v32, indexer_heads=0), 4, 1000) == 0.0
    assert pk.indexer_time(H100, dataclasses.replace(v32, topk_tokens=None), 4, 1000) == 0.0
    want = pk.profile(H100).indexer_time(4, 1000, v32.indexer_heads, v32.indexer_head_dim)
    assert pk.indexer_time(H100, v32, 4, 1000) == pytest.approx(
        want + _launch(pk, INDEXER_KERNELS), rel=1e-12)


def test_an_mla_first_chunk_and_a_sparse_one_without_an_indexer():
    pk = ProfiledKernels()
    p = pk.profile(H100)
    v32 = dataclasses.replace(model("deepseek-v3.2"), indexer_heads=0)
    h = float(v32.query_heads)
    nope, rope, vd = v32.qk_nope_head_dim, v32.qk_rope_head_dim, v32.v_head_dim
    # a first chunk of 100 tokens (a negative cache counts as none): the decompression of its
    # own 100 tokens' latents, then its top-k attention; no indexer, 2 kernels a layer
    per_layer = float(p.gemm(100.0, h * (nope + vd), v32.kv_lora_rank, "bf16").time) + \
        float(p.prefill_attention(100.0, 0.0, h, h, nope + rope, vd, topk=v32.topk_tokens).time)
    want = per_layer * v32.layers + _launch(pk, 2.0 * v32.layers)
    assert pk.prefill_attention_time(H100, v32, 100, 0) == pytest.approx(want, rel=1e-12)
    assert pk.prefill_attention_time(H100, v32, 100, -5) == pytest.approx(want, rel=1e-12)


def test_gqa_prefill_splits_heads_over_gpus_and_a_generic_model_does_not():
    pk = ProfiledKernels()
    p = pk.profile(H100)
    # Llama over 16 GPUs: 4 query heads each, and one KV head (8 over 16 rounds up to 1)
    want = float(p.prefill_attention(200.0, 50.0, 4.0, 1.0, 128.0).time) * LLAMA.layers
    assert pk.prefill_attention_time(H100, LLAMA, 200, 50, gpus=16) == pytest.approx(
        want + _launch(pk, LLAMA.layers), rel=1e-12)
    # over 4 GPUs: 16 heads and 2 KV heads each
    want = float(p.prefill_attention(200.0, 50.0, 16.0, 2.0, 128.0).time) * LLAMA.layers
    assert pk.prefill_attention_time(H100, LLAMA, 200, 50, gpus=4) == pytest.approx(
        want + _launch(pk, LLAMA.layers), rel=1e-12)
    # a model without layer dimensions keeps its one head on every GPU, 1,000 B of query row
    # per head = 500 bf16 elements wide
    toy = Architecture.custom("toy", 2, 1500.0, 100.0, return_bytes=500.0)
    want = float(p.prefill_attention(200.0, 0.0, 1.0, 1.0, 500.0).time) * 2
    assert pk.prefill_attention_time(H100, toy, 200, 0, gpus=4) == pytest.approx(
        want + _launch(pk, 2), rel=1e-12)


def test_launches_are_asked_of_the_named_gpus_profile():
    eager = load_profile("h200").with_cuda_graphs(False)
    pk = ProfiledKernels({"H200": eager})
    h200 = hardware.gpu("H200")
    assert pk.launch_overhead_time(3, h200) == pytest.approx(float(eager.launch(3).time))
    assert pk.launch_overhead_time(3) == pytest.approx(float(pk.profile(H100).launch(3).time))
    assert pk.launch_overhead_time(3, h200) != pk.launch_overhead_time(3)


def test_profile_choices_naming_no_profile_are_refused():
    with pytest.raises(UserError, match="unknown kernel profile 'no-such'"):
        check_profile_choice({"H100": "no-such"})
    with pytest.raises(UserError, match="H100 = 3: give a profile name"):
        profiled_kernels({"H100": 3})
    with pytest.raises(UserError, match="GPU kind 'Z9' is not one of"):
        profiled_kernels({"Z9": "h200"})
