"""One EP rank's kernels from the kernel profile."""

import pytest

from simulator import hardware
from simulator.costmodel.rank_kernels import RankKernels
from simulator.gpu.profiled import default_kernels
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
