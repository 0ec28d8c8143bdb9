"""One EP rank's kernels from the kernel profile."""

import dataclasses

import pytest

from simulator import hardware
from simulator.costmodel.rank_kernels import RankKernels, expert_layers
from simulator.gpu.layers import decode_ops
from simulator.gpu.profiled import default_kernels, profiled_kernels
from simulator.models import model

ARCH = model("deepseek-v3.2")


def test_rank_kernels_split_the_profiles_layer_and_add_up_to_its_time():
    k = default_kernels()
    spec = hardware.gpu("H100")
    rk = RankKernels(k, spec, ARCH)
    m = 64
    # without the routed experts, the parts are what the profile composes for one GPU
    parts = rk.pre_time(m) + rk.ffn_time(m, True) + rk.shared_time(m) + rk.post_time(m)
    ops = k.decode_ops(spec, ARCH, m, 1)
    moe_ops = [o for o in ops if o.per in ("layer", "moe_layer")
               and o.name not in ("experts_gate_up", "experts_activation", "experts_down")]
    gpu_time = sum(o.time * o.count for o in moe_ops)
    assert parts >= gpu_time and parts == pytest.approx(gpu_time, rel=0.3)
    assert rk.expert_time(0, 0) == 0.0
    assert rk.expert_time(512, 2) < rk.expert_time(512, 16)  # weights of active experts only
    assert rk.expert_time(4096, 16) > rk.expert_time(512, 16)


def _launched(profile, gpu_time, kernels):
    launch = float(profile.launch(kernels).time)
    return gpu_time + launch if profile.cuda_graphs else max(gpu_time, launch)


@pytest.mark.parametrize("m", [1, 48])
@pytest.mark.parametrize("graphs", [True, False])
def test_each_part_is_the_profiles_kernels_of_its_kind_with_their_launches(graphs, m):
    # one GPU's decode kernels at the rank's own tokens, sorted by what they do: per layer the
    # projections (per == "layer"), a dense layer's FFN, an MoE layer's router and top-k, the
    # shared experts, the combine's add; per step the final norm and LM head for the logits;
    # each part with the launches of its kernels (CUDA-graph nodes, or eager: the longer)
    spec = hardware.gpu("H100")
    k = profiled_kernels("measured", cuda_graphs=graphs)
    profile = k.profile(spec)
    assert profile.cuda_graphs == graphs
    rk = RankKernels(k, spec, ARCH)
    ops = list(decode_ops(profile, ARCH, float(m), 1, None))

    def part(keep, with_ops=ops):
        sel = [o for o in with_ops if keep(o)]
        return _launched(profile, sum(o.time * o.count for o in sel), sum(o.count for o in sel))

    assert rk.pre_time(m) == pytest.approx(part(lambda o: o.per == "layer"), rel=1e-12)
    assert rk.ffn_time(m, False) == pytest.approx(part(lambda o: o.per == "dense_layer"),
                                                  rel=1e-12)
    assert rk.ffn_time(m, True) == pytest.approx(
        part(lambda o: o.name in ("router", "topk_select")), rel=1e-12)
    assert rk.shared_time(m) == pytest.approx(part(lambda o: o.name.startswith("shared_")),
                                              rel=1e-12)
    assert rk.post_time(m) == pytest.approx(part(lambda o: o.name == "experts_combine"),
                                            rel=1e-12)
    head = list(decode_ops(profile, ARCH, float(m), 1, 3.0))
    assert rk.step_time(m, 3) == pytest.approx(part(lambda o: o.per == "step", head), rel=1e-12)
    assert rk.step_time(m, 3) < rk.step_time(m, 48)  # the LM head over 3 rows, not 48
    assert rk.pre_time(m) > 0 and rk.shared_time(m) > 0
    for f in (rk.pre_time, rk.shared_time, rk.post_time):
        assert f(0) == 0.0
    assert rk.ffn_time(0, True) == rk.step_time(0, 0) == 0.0
    # the routed experts at received rows: gate/up and down grouped GEMMs over the active
    # experts (fp8 weights) and the activation, three kernels
    d, ie = ARCH.hidden_size, ARCH.expert_intermediate_size
    gpu = (float(profile.gemm(300, 2 * ie, d, "fp8", 5).time)
           + float(profile.elementwise("activation", 300, ie).time)
           + float(profile.gemm(300, d, ie, "fp8", 5).time))
    assert rk.expert_time(300, 5) == pytest.approx(_launched(profile, gpu, 3), rel=1e-12)
    assert rk.expert_time(0, 5) == rk.expert_time(300, 0) == 0.0
    one = (float(profile.gemm(1, 2 * ie, d, "fp8", 1).time)
           + float(profile.elementwise("activation", 1, ie).time)
           + float(profile.gemm(1, d, ie, "fp8", 1).time))
    assert rk.expert_time(1, 1) == pytest.approx(_launched(profile, one, 3), rel=1e-12)


def test_a_bf16_models_experts_run_bf16_gemms_and_a_model_without_experts_no_router():
    spec = hardware.gpu("H100")
    k = default_kernels()
    profile = k.profile(spec)
    bf16 = dataclasses.replace(ARCH, weight_bytes_per_param=2.0)
    d, ie = ARCH.hidden_size, ARCH.expert_intermediate_size
    gpu = (float(profile.gemm(64, 2 * ie, d, "bf16", 4).time)
           + float(profile.elementwise("activation", 64, ie).time)
           + float(profile.gemm(64, d, ie, "bf16", 4).time))
    rk = RankKernels(k, spec, bf16)
    assert rk.expert_time(64, 4) == pytest.approx(_launched(profile, gpu, 3), rel=1e-12)
    assert rk.expert_time(64, 4) > RankKernels(k, spec, ARCH).expert_time(64, 4)
    # a dense model (its FFN is a per-layer kernel there, in pre_time): no router, no launch
    dense = RankKernels(k, spec, model("llama-3-70b"))
    assert dense.ffn_time(8, True) == 0.0 and dense.pre_time(8) > 0


def test_a_rank_of_a_model_given_more_dense_layers_and_the_moe_layers_left():
    rk = RankKernels(default_kernels(), hardware.gpu("H100"), ARCH, dense_layers=5)
    assert rk.arch.dense_layers == 5 and ARCH.dense_layers == 3
    assert RankKernels(default_kernels(), hardware.gpu("H100"), ARCH, dense_layers=3).arch is ARCH
    assert expert_layers(ARCH) == 61 - 3 and expert_layers(ARCH, 5) == 56
    assert expert_layers(model("llama-3-70b")) == 0
