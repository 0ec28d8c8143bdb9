"""The closed form and the engine against an independent oracle, and known answers by hand.

The oracle (:mod:`simulator.testing.oracle`) counts bytes and FLOPs itself, finds paths with
networkx and takes kernel times from the roofline's coefficients (or a profile's operator-level
answers) — never from ``CostModel`` or the engine. Known answers are worked out in the comments
from the catalog's numbers (H100: 3.35 TB/s, 989 TFLOP/s; H20: 4.0 TB/s, 148 TFLOP/s; the
roofline's 3 µs launch, memory efficiency 3000/3350, compute 660/989, sparse 410/989).
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.costmodel import CostModel
from simulator.gpu.kernels import KernelModel
from simulator.hardware import gpu
from simulator.models import MODELS, model
from simulator.testing.costs import two_node_graph
from simulator.testing.oracle import decode_step_time, round_phases
from simulator.testing.profiles import examples

ROOF = KernelModel()
PHASES = ("probe", "transfer", "compute", "ret", "merge")


def hetero_graph():
    """Two machines: n0 with H100s (homes), n1 with H20s (owners)."""
    g = two_node_graph()
    for i in range(2):
        g.nodes[f"n1/gpu{i}"]["gpu"] = "H20"
    return g


def close(a, b, rel=1e-9):
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-18)


# -- the closed form against the oracle -----------------------------------------------------


@settings(max_examples=examples(60))
@given(name=st.sampled_from(sorted(MODELS)), option=st.sampled_from(["route", "fetch", "local"]),
       pair=st.sampled_from([("n0/gpu0", "n1/gpu0"), ("n0/gpu0", "n0/gpu1"),
                             ("n1/gpu1", "n0/gpu0"), ("n0/gpu1", "n1/gpu1")]),
       blocks=st.integers(0, 600), batch=st.integers(1, 16),
       reuse=st.sampled_from([1.0, 3.0]), stack=st.sampled_from(["ideal", "nccl", "ibgda"]),
       bt=st.sampled_from([16, 64]), fp8=st.booleans())
def test_closed_form_equals_the_oracle(name, option, pair, blocks, batch, reuse, stack, bt, fp8):
    # model families MLA, MLA+DSA, GQA, MHA; homes and owners on H100 or H20; every stack
    arch = model(name).with_kv_dtype("fp8" if fp8 else "bf16")
    g = hetero_graph()
    src, dst = pair
    cm = CostModel(arch, g, stack, kernels=ROOF, block_tokens=bt, instance_gpus=4)
    got = cm.option(option, src, dst, blocks, batch, reuse=reuse)
    want = round_phases(option, g, arch, ROOF, src, dst, blocks, batch, stack=stack,
                        block_tokens=bt, reuse=reuse, instance_gpus=4)
    for p in PHASES:
        assert close(getattr(got, p), getattr(want, p)), (p, getattr(got, p), getattr(want, p))


@pytest.mark.parametrize("name", ["deepseek-v3", "deepseek-v3.2", "llama-3.1-8b"])
@pytest.mark.parametrize("option", ["route", "fetch", "local"])
def test_closed_form_composes_the_profiles_operators_as_the_oracle(name, option):
    # measured profiles: the oracle takes the kernel object's operator answers and checks which
    # GPU runs what, over how many tokens, per layer and per reuse — and the messages
    from simulator.gpu.profiled import default_kernels

    kernels = default_kernels()
    g = hetero_graph()
    cm = CostModel(name, g, "ibgda", kernels=kernels)
    for src, dst in [("n0/gpu0", "n1/gpu0"), ("n1/gpu0", "n0/gpu1")]:
        got = cm.option(option, src, dst, 24, 3, reuse=2.0)
        want = round_phases(option, g, model(name), kernels, src, dst, 24, 3, stack="ibgda",
                            reuse=2.0)
        for p in PHASES:
            assert close(getattr(got, p), getattr(want, p)), (p, src, dst)


# -- known answers ----------------------------------------------------------------------------


def test_local_with_reuse_known_answer():
    # DeepSeek-V3.2 on an H100 home, 2 blocks of 64 tokens (n = 128), batch 1, reuse 4, the home
    # one of an instance's 8 GPUs, each recomputing as much (8 sequences over 8 GPUs).
    # prefill of 128 tokens, all 61 layers: causal pairs 128·129/2 = 8,256 (< top-k 2,048);
    #   bytes = min(671e9, 8 · 128 · 37e9) / 8 + 128 · 1,152 · 61   (its share of the weights,
    #           its own sequence's KV)
    #   FLOPs = 128 · 74e9 + 61 · 278,528 · 8,256                 (its own sequence's)
    #   memory 83,883,994,816 B / 3e12 B/s = 27.9613 ms ≫ compute 9.612e12 / 660e12 = 14.6 ms
    #   + 61 launches × 3 µs  →  28.1443 ms for all layers; one layer's share / reuse 4
    mem = (671e9 / 8 + 128 * 1152 * 61) / 3e12
    assert mem > (128 * 74e9 + 61 * 278_528 * 8_256) / 660e12
    recompute = (61 * 3e-6 + mem) / 61 / 4
    # attention at home over 128 tokens: 128 · 1,152 + 147,456 + 131,584 = 426,496 B / 3e12
    #   (memory-bound: 128 · 278,528 FLOPs / 410e12 = 87 ns < 142 ns) + one 3 µs launch
    attention = 3e-6 + 426_496 / 3e12
    # LSE merge of 2 partials at home: 3 · 131,584 B / 3e12 + 3 µs
    merge = 3e-6 + 3 * 131_584 / 3e12
    cm = CostModel("deepseek-v3.2", two_node_graph(), "ibgda", kernels=ROOF, instance_gpus=8)
    got = cm.local("n0/gpu0", "n1/gpu0", 2, 1, reuse=4.0)
    assert (got.probe, got.transfer, got.ret) == (0.0, 0.0, 0.0)
    assert close(got.compute, recompute + attention)
    assert close(got.merge, merge)
    assert close(got.compute, 118.49e-6, rel=1e-3)  # 115.35 µs recompute + 3.14 µs attention
    # reuse divides the recompute only; without it the recompute is 4× as large
    assert close(cm.local("n0/gpu0", "n1/gpu0", 2, 1).compute, 4 * recompute + attention)


def test_route_merge_on_a_heterogeneous_pair():
    # H100 home, H20 owner: the owner attends, the home merges. DeepSeek-V3.2, 4 blocks, batch 2.
    g = hetero_graph()
    cm = CostModel("deepseek-v3.2", g, "ideal", kernels=ROOF)
    got = cm.route("n0/gpu0", "n1/gpu0", 4, 2)
    # merge on the H100: 3 · 2 · 131,584 B / (3.35e12 · 3000/3350) + 3 µs = 3.263168 µs
    assert close(got.merge, 3e-6 + 3 * 2 * 131_584 / 3e12)
    # (on the H20 it would be 3 µs + 789,504 B / (4e12 · 0.8955) = 3.2204 µs)
    h20 = 3e-6 + 3 * 2 * 131_584 / (4e12 * 3000 / 3350)
    assert not close(got.merge, h20, rel=1e-3)
    # attention on the H20 over 2 × 256 tokens: bytes 2·256·1,152 + 2·279,040 = 1,147,904
    #   → 0.3204 µs; FLOPs 2·256·278,528 = 142.6e6 on 148e12 · 410/989 = 61.35e12 → 2.324 µs:
    #   compute-bound on the H20 (it would be memory-bound on an H100)
    flops = 2 * 256 * 278_528 / (148e12 * 410 / 989)
    assert flops > 1_147_904 / (4e12 * 3000 / 3350)
    assert close(got.compute, 3e-6 + flops)
    # messages: route over ideal → no overhead; latencies 0.25 + 0.3 + 0.3 + 0.2 per side
    lat = 2 * (0.3e-6 + 0.3e-6 + 0.2e-6)  # gpu→pcie→nic→leaf→nic→pcie→gpu
    assert close(got.probe, lat)
    assert close(got.transfer, 2 * 147_456 / 50e9)  # bottleneck: 400 Gb/s = 50 GB/s
    assert close(got.ret, lat + 2 * 131_584 / 50e9)


def test_window_and_block_counts_at_sizes_that_do_not_divide():
    from workloads.sparse import SparseSelector

    # 48-token pages: DSA's 2,048 top-k tokens touch ceil(42.67) = 43 blocks, a 100-token window
    # ceil(2.08) = 3 blocks; NSA's 16 × 64 selected tokens ceil(21.33) = 22, its 512-token
    # window ceil(10.67) = 11
    dsa = SparseSelector(kind="dsa", top_k_tokens=2048, block_tokens=48, recent_tokens=100)
    assert (dsa.sampled_per_layer, dsa.window_blocks) == (43, 3)
    nsa = SparseSelector(kind="nsa", block_tokens=48, recent_tokens=100)
    assert (nsa.sampled_per_layer, nsa.window_blocks) == (22, 11)
    assert dsa.counts([1, 45, 46, 47, 5000]).tolist() == [1, 45, 46, 46, 46]
    picks = dsa.select(np.random.default_rng(0), 500, 4)
    assert picks.shape == (4, 46)
    assert (picks[:, -3:] == [497, 498, 499]).all()  # the window: the last 3 blocks
    # a window of exactly one page is one block, one token more is two
    assert SparseSelector(kind="dsa", block_tokens=64, recent_tokens=64).window_blocks == 1
    assert SparseSelector(kind="dsa", block_tokens=64, recent_tokens=65).window_blocks == 2
    assert SparseSelector(kind="dsa", block_tokens=64, recent_tokens=0).window_blocks == 0
    assert SparseSelector(kind="dsa", top_k_tokens=65, block_tokens=64).sampled_per_layer == 2


# -- the engine against the oracle ------------------------------------------------------------


def _one_gpu_run(name: str, prompt: int, output: int, policy: str = "route"):
    from simulator import Scenario, run
    from workloads.schema import make_trace

    sc = Scenario.from_dict({
        "name": "oracle", "stack": "ideal", "policies": [policy],
        "topology": {"spec": "single_node:gpus=1"},
        "model": {"name": name},
        "workload": {"kind": "trace", "trace": "<given>"},
        "placement": {"weights_per_gpu": 1e9},
        "engine": {"max_batch": 1, "layer_groups": 0},
        "serving": {"step_overhead_time": 0.0, "chunked_prefill": False},
        "calibration": {"profile": "roofline"},
    })
    bt = 64
    trace = make_trace(arrival_at=[0.0], input_tokens=[prompt], output_tokens=[output],
                       block_ids=[list(range(-(-prompt // bt)))], block_tokens=bt,
                       source="test")
    return run(sc, policy=policy, seed=0, trace=trace)


@pytest.mark.parametrize("name", ["deepseek-v3", "deepseek-v3.2", "llama-3.1-8b"])
def test_one_decode_step_known_answer(name):
    # one request alone on one GPU, every block local: a decode step is, per layer, the home's
    # attention over the selected whole blocks, the DSA indexer over the context, and the
    # projections + FFN (one layer's share); 1,000 prompt tokens = 16 blocks of 64 (all selected
    # under DSA's 32 + window)
    prompt, output = 1000, 4
    res = _one_gpu_run(name, prompt, output)
    it = res.iterations
    dec = it[(it["batch"] == 1) & (it["prefill_time"] == 0)].sort_values("started_at")
    assert len(dec) == output - 1  # the first token comes with the prefill
    arch, spec = model(name), gpu("H100")
    for j, (_, row) in enumerate(dec.iterrows()):
        context = prompt + 1 + j  # tokens generated so far: the first with the prefill
        blocks = -(-context // 64)  # whole blocks are read
        want = decode_step_time(arch, ROOF, spec, selected_tokens=blocks * 64,
                                context_tokens=context)
        assert close(row["finished_at"] - row["started_at"], want), (j, row.to_dict(), want)
    # the projections + FFN are most of it: at least 90 % of the step for these models
    na = ROOF.non_attention_time(spec, arch, 1)
    assert na > 0.5 * want


def test_engine_rounds_equal_the_oracle_phase_by_phase():
    # a lone request on 2 GPUs whose blocks live on the other GPU (range placement, the request
    # homed on the first): each round runs alone, so its simulated phases equal the oracle's —
    # not only the closed form the engine records beside them
    import topologies
    from simulator import Scenario, run
    from workloads.schema import make_trace

    g = topologies.build("single_node", gpus=2)
    for policy in ("route", "fetch", "local"):
        sc = Scenario.from_dict({
            "name": "oracle", "stack": "ideal", "policies": [policy],
            "topology": {"spec": "single_node:gpus=2"}, "model": {"name": "deepseek-v3.2"},
            "workload": {"kind": "trace", "trace": "<given>"},
            "placement": {"scheme": "range", "weights_per_gpu": 40e9},
            "engine": {"max_batch": 1, "layer_groups": 2},
            "serving": {"step_overhead_time": 0.0, "chunked_prefill": False},
            "calibration": {"profile": "roofline"},
        })
        trace = make_trace(arrival_at=[0.0], input_tokens=[40 * 64], output_tokens=[3],
                           block_ids=[list(range(40))], block_tokens=64, source="test")
        rd = run(sc, policy=policy, seed=1, trace=trace).rounds
        # the first step's first layer: nothing else is on the streams or links yet
        rd = rd[(rd["iteration"] == rd["iteration"].min()) & (rd["layer"] == 0)]
        assert len(rd) == 1 and set(rd["option"].astype(str)) == {policy}
        for _, r in rd.iterrows():
            want = round_phases(policy, g, model("deepseek-v3.2"), ROOF, str(r["src"]),
                                str(r["owner"]), r["blocks"] / r["batch"], r["batch"],
                                stack="ideal", instance_gpus=2)
            got = [r["probe_time"], r["transfer_time"], r["compute_time"], r["return_time"],
                   r["merge_time"]]
            for p, a in zip(PHASES, got, strict=True):
                assert close(a, getattr(want, p), rel=1e-6), (policy, p, a, want)


def test_hand_answers_table():
    # the numbers the known answers above use, from the catalog (a changed catalog fails here
    # first, with the field to look at)
    a = model("deepseek-v3.2")
    assert (a.layers, a.kv_bytes_per_token, a.query_bytes(), a.return_bytes(),
            a.attention_flops_per_token, a.weight_bytes, a.active_weight_bytes,
            a.non_attention_flops_per_token) == (61, 1152.0, 147456.0, 131584.0, 278528.0,
                                                 671e9, 37e9, 74e9)
    assert (gpu("H100").hbm_bandwidth, gpu("H100").peak_flops) == (3.35e12, 989e12)
    assert (gpu("H20").hbm_bandwidth, gpu("H20").peak_flops) == (4e12, 148e12)
