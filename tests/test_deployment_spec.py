"""The ``[deployment]`` section at its bounds: every field refused just past them with its own
name, taken at them; and what needs the model and the topology checked before a run, so that a
layout that passes the checks is one the engine can build."""

from __future__ import annotations

import dataclasses

import pytest

from simulator.deployment import build_layout, check_against, validate_deployment
from simulator.deployment.spec import DeploymentSpec, PoolSpec, TransferSpec
from simulator.deployment.weights import expert_params, moe_layers, weights_per_gpu
from simulator.errors import UserError
from simulator.models import model

V32 = model("deepseek-v3.2")
LLAMA = model("llama-3-70b")
WITH_PREFILL = {"prefill": {}}


def bad(raw: dict, field: str, words: str = "") -> None:
    with pytest.raises(UserError, match=f"x.toml: field 'deployment.{field}'") as got:
        validate_deployment(raw, "x.toml")
    assert words in str(got.value)


@pytest.mark.parametrize("raw, field, words", [
    ({"prefill": {}, "transfer": {"rate": 1e9}}, "transfer.rate", "known fields: bandwidth"),
    ({"prefill": {}, "transfer": 3}, "transfer", "must be a table"),
    ({"prefill": {}, "transfer": {"bandwidth": 0}}, "transfer.bandwidth", "rate >= 1 B/s"),
    ({"prefill": {}, "transfer": {"bandwidth": float("inf")}}, "transfer.bandwidth", "rate >= 1"),
    # a rate no link has (and a denormal): refused at load, not run into inf-second transfers
    ({"prefill": {}, "transfer": {"bandwidth": 1e-300}}, "transfer.bandwidth", "rate >= 1 B/s"),
    ({"prefill": {}, "transfer": {"bandwidth": 5e-324}}, "transfer.bandwidth", "rate >= 1 B/s"),
    ({"prefill": {}, "transfer": {"bandwidth": True}}, "transfer.bandwidth", "expected a number"),
    ({"prefill": {}, "transfer": {"message_overhead_time": -1e-9}},
     "transfer.message_overhead_time", "[0, 1)"),
    ({"prefill": {}, "transfer": {"message_overhead_time": 1}},
     "transfer.message_overhead_time", "[0, 1)"),
    ({"transfer": {"bandwidth": 1e9}}, "transfer", "only with a prefill pool"),
    ({"zipf_exponent": 0, "popularity": "zipf"}, "zipf_exponent", "(0, 10]"),
    ({"zipf_exponent": 10.5, "popularity": "zipf"}, "zipf_exponent", "(0, 10]"),
    ({"zipf_exponent": 1.0}, "zipf_exponent", 'only with popularity = "zipf"'),
    ({"zipf_exponent": 1.0, "popularity": "uniform"}, "zipf_exponent", "only with"),
    ({"popularity": "hot"}, "popularity", "is not one of uniform, zipf"),
    ({"popularity": [1, -0.5]}, "popularity", "weight 1 is -0.5"),
    ({"popularity": [1, True]}, "popularity", "weight 1 is True"),
    ({"popularity": [1, "a"]}, "popularity", "weight 1 is 'a'"),
    ({"popularity": [1, float("nan")]}, "popularity", "weight 1 is nan"),
    ({"popularity": 3}, "popularity", "expected \"uniform\""),
    ({"external_prefill": True, "prefill": {}}, "external_prefill", "one or the other"),
    ({"external_prefill": 1}, "external_prefill", "expected true/false"),
    ({"combine_dtype": "fp4"}, "combine_dtype", "not one of fp8, bf16"),
    ({"dense_layers": 1.0}, "dense_layers", "expected an integer"),
    ({"dense_layers": True}, "dense_layers", "expected an integer"),
    ({"redundant_experts": -1}, "redundant_experts", "give an integer >= 0"),
    ({"attention_tp": 0}, "attention_tp", "give an integer >= 1"),
    ({"ep": 0}, "ep", "give an integer >= 1"),
    ({"experts_per_rank": 0}, "experts_per_rank", "give an integer >= 1"),
    ({"prefill": {"instances": 0}}, "prefill.instances", "give an integer >= 1"),
    ({"moe_kernels": "fast"}, "moe_kernels", "not one of low_latency, normal"),
    ({"prefill": {"moe_kernels": "fast"}}, "prefill.moe_kernels", "not one of"),
    ({"prefill": {"two_batch_overlap": "yes"}}, "prefill.two_batch_overlap", "true/false"),
    ({"gpu": 100}, "gpu", "expected a GPU kind"),
    ({"gpu": "H300"}, "gpu", "unknown GPU 'H300'"),
    ({"prefill": {"gpu": "H300"}}, "prefill.gpu", "unknown GPU"),
    ({"attention_dp": 8, "ep": 4}, "ep", "not the instance's 8 GPUs"),
    ({"attention_dp": 4, "attention_tp": 2, "ep": 4}, "ep", "set ep = 8"),
])
def test_each_bad_field_is_named_with_what_to_do(raw, field, words):
    bad(raw, field, words)


def test_every_field_at_its_bounds_is_taken():
    spec = validate_deployment({
        "instances": 1, "attention_dp": 2, "attention_tp": 1, "ep": 2, "experts_per_rank": 1,
        "redundant_experts": 0, "dense_layers": 0, "popularity": "zipf", "zipf_exponent": 10,
        "external_prefill": False, "moe_on_fabric": False, "dispatch_dtype": "bf16",
        "combine_dtype": "fp8", "moe_kernels": "normal", "two_batch_overlap": True,
        "gpu": "h200"})
    assert spec.decode == PoolSpec(1, 2, 1, 2, 1, 0, "normal", True, "H200")
    assert (spec.dense_layers, spec.zipf_exponent, spec.moe_on_fabric) == (0, 10.0, False)
    assert (spec.dispatch_dtype, spec.combine_dtype) == ("bf16", "fp8")
    pd = validate_deployment({"prefill": {"ep": 1, "redundant_experts": 0},
                              "transfer": {"bandwidth": 1, "message_overhead_time": 0.0}})
    assert pd.transfer == TransferSpec(1.0, 0.0, True)  # MIN_BANDWIDTH, the slowest rate taken
    assert pd.prefill == PoolSpec(ep=1, moe_kernels="normal")  # a prefill pool's own default
    near_one = validate_deployment({"prefill": {}, "transfer": {"message_overhead_time": 0.999}})
    assert near_one.transfer.message_overhead_time == 0.999
    tiny = validate_deployment({"zipf_exponent": 1e-9, "popularity": "zipf"})
    assert tiny.zipf_exponent == 1e-9
    weights = validate_deployment({"popularity": [0, 2, 1]})
    assert weights.popularity == (0.0, 2.0, 1.0)
    assert validate_deployment({"popularity": [0, 0.5]}).popularity == (0.0, 0.5)  # sum < 1


def test_the_pools_size_themselves_from_their_ranks():
    pool = PoolSpec(instances=3, attention_dp=4, attention_tp=2)
    assert (pool.instance_gpus, pool.gpus, pool.ep_degree) == (8, 24, 8)
    assert PoolSpec(attention_dp=4, ep=4).ep_degree == 4
    assert [n for n, _ in DeploymentSpec().pools()] == ["decode"]


def check(raw: dict, kinds: list[str], arch=V32, reserve: float = 0.1) -> None:
    """:func:`check_against` of section ``raw`` for ``arch`` on GPUs of ``kinds``."""
    check_against(validate_deployment(raw, "x.toml"), arch, kinds, "x.toml", reserve)


def refused(raw: dict, kinds: list[str], field: str, words: str, arch=V32) -> None:
    with pytest.raises(UserError, match=f"x.toml: field 'deployment.{field}'") as got:
        check(raw, kinds, arch)
    assert words in str(got.value)


def test_the_models_layers_and_experts_bound_the_section():
    # DeepSeek-V3.2: 61 layers, 256 routed experts
    check({"attention_dp": 16, "dense_layers": 60}, ["H100"] * 16)
    refused({"attention_dp": 16, "dense_layers": 61}, ["H100"] * 16, "dense_layers",
            "give fewer than 61")
    check({"attention_dp": 16, "popularity": [1.0] * 256}, ["H100"] * 16)
    refused({"attention_dp": 16, "popularity": [1.0] * 257}, ["H100"] * 16, "popularity",
            "257 weights for model 'deepseek-v3.2''s 256 experts")
    refused({"attention_dp": 16, "attention_tp": 2}, ["H100"] * 32, "attention_tp",
            "tensor-parallel attention is not simulated")
    refused({"prefill": {"attention_dp": 8, "attention_tp": 2}, "attention_dp": 16},
            ["H100"] * 32, "prefill.attention_tp", "use attention_tp = 1")


def test_experts_must_spread_evenly_and_replicas_need_ranks_to_hold_them():
    check({"attention_dp": 16, "experts_per_rank": 16}, ["H100"] * 16)  # 256 = 16 × 16
    refused({"attention_dp": 16, "experts_per_rank": 17}, ["H100"] * 16, "experts_per_rank",
            "17 × ep 16 = 272 slots, but the model's 256 experts + 0 redundant need 256; set "
            "experts_per_rank = 16")
    refused({"attention_dp": 16, "redundant_experts": 8}, ["H100"] * 16, "redundant_experts",
            "(e.g. 16)")
    # one rank holds every expert: a replica has no other rank to go to
    refused({"attention_dp": 1, "redundant_experts": 1}, ["B200"], "redundant_experts",
            "more replicas than ranks")
    # two ranks: up to 256 replicas (each expert on both), which passes on to the weights
    # (the whole model on each GPU does not fit); 258 have no rank left to go to
    refused({"attention_dp": 2, "redundant_experts": 256}, ["B200"] * 2, "attention_dp",
            "each GPU would hold")
    refused({"attention_dp": 2, "redundant_experts": 258}, ["B200"] * 2, "redundant_experts",
            "more replicas than ranks")
    # a model without experts takes neither field
    refused({"experts_per_rank": 1}, ["H100"] * 8, "experts_per_rank", "has no experts",
            arch=LLAMA)
    refused({"prefill": {"redundant_experts": 2}}, ["H100"] * 8, "prefill.redundant_experts",
            "has no experts", arch=LLAMA)


def test_the_pools_must_fit_the_topology_by_count_and_kind():
    check({"attention_dp": 16, "prefill": {"attention_dp": 16}}, ["H100"] * 32)
    refused({"attention_dp": 16, "prefill": {"attention_dp": 16}}, ["H100"] * 31,
            "prefill.instances", "the pools need 32 GPUs, the topology has 31")
    refused({"attention_dp": 16, "gpu": "H200"}, ["H100"] * 16 + ["H200"] * 8, "instances",
            "the pools need 16 H200 GPUs, the topology has 8")
    # a prefill pool of a kind that fits, a decode pool of any kind that does not: the decode
    # pool is named
    refused({"attention_dp": 16, "prefill": {"attention_dp": 16, "gpu": "H100"}},
            ["H100"] * 24, "instances", "the pools need 32 GPUs, the topology has 24")


def test_a_pool_of_any_kind_before_one_of_a_kind_leaves_it_its_gpus_or_is_refused():
    # the prefill pool (any kind) takes the topology's first 16 GPUs — the H200s the decode
    # pool asks for; the counts alone (16 of each) would pass, the engine could not lay it out
    raw = {"attention_dp": 16, "gpu": "H200", "prefill": {"attention_dp": 16}}
    kinds = ["H200"] * 16 + ["H100"] * 16
    refused(raw, kinds, "prefill.gpu",
            "16 of them H200s, and leaves the decode pool 0 of the 16 H200 GPUs it needs")
    # the same pools with the H100s first: the prefill pool takes those, the layout exists
    kinds = ["H100"] * 16 + ["H200"] * 16
    check(raw, kinds)
    lay = build_layout(validate_deployment(raw), [str(g) for g in range(32)], kinds)
    assert lay.gpus_of("decode") == list(range(16, 32))


def test_a_pool_of_any_kind_is_held_to_the_gpus_it_is_laid_on():
    # the prefill pool takes the 16 H100s; the decode pool (any kind) gets the 8 H200s, where
    # DeepSeek-V3.2 over 8 ranks fits (~82 GB of 126.9 GB usable) — on an H100 it would not
    check({"attention_dp": 8, "prefill": {"attention_dp": 16, "gpu": "H100"}},
          ["H100"] * 16 + ["H200"] * 8)
    refused({"attention_dp": 8, "prefill": {"attention_dp": 16, "gpu": "H100"}},
            ["H100"] * 24, "attention_dp", "more than a H100's 72.0 GB usable")


def test_weights_that_fill_a_gpu_exactly_leave_no_room_and_are_refused():
    # an H100 (80 GB) kept whole (no reserve): 80 GB of weights leave no KV room; a byte less
    # does; the messages give the weights in GB
    dense = dataclasses.replace(LLAMA, weight_bytes=80e9)
    with pytest.raises(UserError, match="'deployment.attention_tp'.*\\(80.0 GB\\)"):
        check({}, ["H100"], arch=dense, reserve=0.0)
    check({}, ["H100"], arch=dataclasses.replace(LLAMA, weight_bytes=80e9 - 1), reserve=0.0)
    # a mixture of experts on one rank: 16 experts of 58 layers (40.9 GB) and the rest (39.1
    # GB), 80 GB to the byte
    moe = dataclasses.replace(V32, experts=16, weight_bytes=80e9)
    assert weights_per_gpu(moe, PoolSpec()) == 80e9
    with pytest.raises(UserError, match="'deployment.attention_dp': each GPU would hold 80.0 GB"):
        check({"attention_dp": 1}, ["H100"], arch=moe, reserve=0.0)
    check({"attention_dp": 1}, ["H100"], arch=dataclasses.replace(moe, weight_bytes=80e9 - 1),
          reserve=0.0)


@pytest.mark.parametrize(("arch", "raw", "kind", "field"),
                         [(V32, {"attention_dp": 8}, "H200", "attention_dp"),
                          (model("llama-3.1-8b"), {}, "H100", "attention_tp")])
def test_each_pools_gpus_keep_room_for_one_kv_block(arch, raw, kind, field):
    # the engine's rule (kvcache.capacity_blocks): HBM less the reserve and the pool's weights
    # must hold one block. Reserves that leave half a block and one and a half, by hand from
    # the weights and one 64-token block's bytes over every layer
    weights = weights_per_gpu(arch, PoolSpec(**raw))
    block = 64 * arch.kv_bytes_per_token * arch.layers
    hbm = {"H100": 80e9, "H200": 141e9}[kind]
    spec = validate_deployment(raw, "x.toml")
    leaves_half = 1 - (weights + block / 2) / hbm
    leaves_more = 1 - (weights + 1.5 * block) / hbm
    check_against(spec, arch, [kind] * 8, "x.toml", leaves_more, block_bytes=block)
    check_against(spec, arch, [kind] * 8, "x.toml", leaves_half)  # no block size: weights only
    with pytest.raises(UserError, match=f"x.toml: field 'deployment.{field}'") as got:
        check_against(spec, arch, [kind] * 8, "x.toml", leaves_half, block_bytes=block)
    assert f"less than one KV block ({block / 1e6:.3g} MB)" in str(got.value)
    assert "lower placement.reserve_fraction" in str(got.value)
    # exactly one block of room is room (capacity_blocks counts it: ⌊free / block⌋ = 1)
    exact = hbm * (1 - leaves_half) - weights
    check_against(spec, arch, [kind] * 8, "x.toml", leaves_half, block_bytes=exact)
    with pytest.raises(UserError):
        check_against(spec, arch, [kind] * 8, "x.toml", leaves_half, block_bytes=exact * 1.001)


def test_the_room_asked_is_one_kv_block_unless_the_weights_per_gpu_are_given():
    # DeepSeek-V3.2's MLA cache: 1,152 B per token per layer (512 latent + 64 rope, bf16) × 64
    # tokens × 61 layers = 4,497,408 B; with
    # placement.weights_per_gpu set the engine counts room with that figure, so none is asked here
    from types import SimpleNamespace

    from simulator.deployment.checks import room_block_bytes

    pl = SimpleNamespace(block_tokens=64, weights_per_gpu=None)
    assert room_block_bytes(pl, V32) == 4_497_408
    assert room_block_bytes(SimpleNamespace(block_tokens=16, weights_per_gpu=None), V32) == 1_124_352
    assert room_block_bytes(SimpleNamespace(block_tokens=64, weights_per_gpu=40e9), V32) == 0.0


def test_a_model_must_fit_each_gpu_kind_it_may_run_on():
    # DeepSeek-V3.2 over 8 ranks: ~82 GB per GPU, over an H100's 72 GB usable, within an
    # H200's 126.9 GB
    check({"attention_dp": 8, "gpu": "H200"}, ["H100"] * 8 + ["H200"] * 8)
    refused({"attention_dp": 8}, ["H100"] * 8 + ["H200"] * 8, "attention_dp",
            "more than a H100's 72.0 GB usable")
    refused({"prefill": {"attention_dp": 8}, "attention_dp": 16}, ["H100"] * 24,
            "prefill.attention_dp", "raise prefill.attention_dp")
    # Llama-3-70B (141 GB in bf16) does not fit one H100 and is not split over GPUs
    refused({}, ["H100"], "attention_tp", "(137.5 GB) does not fit a H100's 72.0 GB usable",
            arch=LLAMA)
    check({}, ["B200"], arch=LLAMA)


def test_the_weights_of_a_gpu_by_hand():
    # DeepSeek-V3: 3 dense layers of 61; one routed expert is 3 × 7168 × 2048 parameters
    assert expert_params(V32) == 3 * 7168 * 2048
    assert moe_layers(V32) == 58 and moe_layers(V32, 10) == 51 and moe_layers(LLAMA) == 0
    per = 3 * 7168 * 2048
    rest = V32.weight_bytes - 256 * 58 * per
    # 8 experts per rank given outright, over the 51 MoE layers of 10 dense ones
    got = weights_per_gpu(V32, PoolSpec(attention_dp=32, experts_per_rank=8), dense_layers=10)
    assert got == pytest.approx(rest + 8 * 51 * per)
    # a model without experts: its whole weights on each GPU of a rank
    assert weights_per_gpu(LLAMA, PoolSpec()) == LLAMA.weight_bytes
