"""Lamina-style disaggregation and its homogeneous baseline, told as stories.

Known answers first (bytes per layer, prices, the staggered schedule on an ideal network), then
properties (KV capacity, conservation), then oracle comparisons (closed form vs simulation),
errors, and the shipped scenarios.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine_causality import ended_before

import topologies
from simulator.disaggregation import (
    compare,
    comparison_frame,
    comparison_table,
    simulate,
    spec_of,
    stack_study,
)
from simulator.disaggregation.homogeneous import simulate_homogeneous
from simulator.disaggregation.lamina import _Lamina, simulate_disaggregated
from simulator.disaggregation.shards import head_shard
from simulator.disaggregation.spec import (
    DisaggregationSpec,
    check_against,
    validate_disaggregation,
)
from simulator.disaggregation.staggered import layer_bytes
from simulator.errors import UserError
from simulator.gpu import KernelModel
from simulator.hardware import gpu
from simulator.models import model
from simulator.policies.disaggregated import Disaggregated
from simulator.policies.homogeneous import Homogeneous
from simulator.scenario import Scenario
from simulator.testing.invariants import check_run
from simulator.testing.profiles import examples
from workloads import make_trace

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("lamina_*.toml"))


def load_scenario(path: Path):
    """A scenario file and its ``[disaggregation]`` section."""
    sc = Scenario.load(path)
    return sc, spec_of(sc)
TOPO = "lamina_h100_h20:h100_nodes=1,h20_nodes=1,gpus_per_node=4"


def scenario(stack: str = "ideal", topo: str = TOPO, serving: dict | None = None,
             **engine) -> Scenario:
    return Scenario.from_dict({
        "topology": {"spec": topo}, "model": {"name": "llama-3-70b"},
        "workload": {"kind": "trace", "trace": "azure_llm_2023_code"},
        "engine": engine, "stack": stack, "serving": serving or {}})


def trace(inp, out, arrival=None):
    inp = np.asarray(inp, np.int64)
    n = len(inp)
    arrival = np.zeros(n) if arrival is None else np.sort(np.asarray(arrival, float))
    blocks = [np.arange(-(-int(x) // 512), dtype=np.int64) + 10_000 * i for i, x in enumerate(inp)]
    return make_trace(arrival_at=arrival, input_tokens=inp, output_tokens=out, block_ids=blocks)


def small(name: str, layers: int, **changes):
    """A catalog model cut to ``layers`` layers (weights and FLOPs scaled with them)."""
    a = model(name)
    f = layers / a.layers
    return dataclasses.replace(a, layers=layers, weight_bytes=a.weight_bytes * f,
                               active_params=a.active_params * f,
                               non_attention_flops_per_token=a.non_attention_flops_per_token * f,
                               **changes)


def ideal_graph(topo: str = TOPO):
    """The topology with (practically) infinite bandwidth and zero latency on every link."""
    g = topologies.parse_spec(topo)
    for _, _, d in g.edges(data=True):
        d["bandwidth"], d["latency"] = 1e30, 0.0
    return g


def step_allreduces(km, arch, tokens: int, gpus: int) -> float:
    """A tensor-parallel group's two all-reduces per layer of ``tokens`` tokens' hidden states
    on one H100 node, all layers, at their measured time [s] (none on one GPU; the ideal
    network's wire time is nothing)."""
    if gpus == 1:
        return 0.0
    nbytes = tokens * arch.bytes_per_element * arch.hidden_size
    return 2 * arch.layers * km.allreduce_time(gpu("H100"), nbytes, gpus, "nvlink")


# -- known answers -----------------------------------------------------------------------------

def test_per_layer_bytes_follow_lamina_formula():
    # Llama-3-70B: G = 64 / 8 = 8, e = 2, d = 8192 → (2 + 2/8)·2·8192 out, 2·8192 back
    q, kv, ret = layer_bytes(model("llama-3-70b"))
    assert q + kv == (2 + 2 / 8) * 2 * 8192 == 36_864
    assert kv == 2 * 2 * 8192 / 8 and ret == 16_384
    # LLaMA-65B is MHA (G = 1): (2 + 2)·2·8192
    q, kv, ret = layer_bytes(model("llama-65b"))
    assert (q + kv, ret) == (4 * 2 * 8192, 2 * 8192)


def test_simulated_bytes_are_the_formula_times_tokens_and_layers():
    arch = small("llama-3-70b", 8)
    tr = trace([3000] * 6 + [1000] * 5, [5] * 6 + [9] * 5, arrival=np.linspace(0, 0.05, 11))
    res = simulate_disaggregated(scenario(), trace=tr, arch=arch, spec=DisaggregationSpec())
    tokens = res.iterations["tokens"].sum()
    q, kv, ret = layer_bytes(arch)
    assert tokens == (4 * 6 + 8 * 5)  # first tokens come from the (external) prefill
    assert res.summary["bytes_moved"] == pytest.approx(tokens * arch.layers * (q + kv + ret),
                                                       rel=1e-12)
    # and with folded layers (2 slots of 4) the bytes are the same
    res2 = simulate_disaggregated(scenario(layer_groups=2), trace=tr, arch=arch)
    assert res2.summary["bytes_moved"] == pytest.approx(res.summary["bytes_moved"], rel=1e-12)


def test_equal_cost_prices_from_reference():
    spec = DisaggregationSpec()  # DOP (2, 4) vs 4 × H100
    assert spec.disaggregated_cost_per_hour() == pytest.approx(2 * 11.06 + 4 * 4.63)  # 40.64
    assert spec.baseline_cost_per_hour() == pytest.approx(44.24)
    s33 = DisaggregationSpec(model_gpus=1, attention_gpus=2, micro_batches=2, baseline_gpus=2,
                             baseline_tp=2)
    assert s33.disaggregated_cost_per_hour() == pytest.approx(20.32)
    assert s33.baseline_cost_per_hour() == pytest.approx(22.12)


@pytest.mark.parametrize("case", ["model_bound", "attention_bound", "ping_pong"])
def test_ideal_network_iterations_follow_the_staggered_schedule(case):
    """Infinitely fast, zero-latency fabric: once the rotation settles, every iteration takes
    L · max(n·t_a, n·t_m/(n−1), t_m + t_a), computed here from the kernel model alone."""
    n, b, per, ctx = {"model_bound": (3, 4, 4, 1024), "attention_bound": (3, 1, 8, 60_000),
                      "ping_pong": (2, 4, 4, 1024)}[case]
    arch = small("llama-3-70b", 4, topk_tokens=ctx)  # sparse: attended tokens stay = ctx
    spec = DisaggregationSpec(micro_batches=n, attention_gpus=b)
    tr = trace([ctx + 1000] * (n * per), [12] * (n * per))
    # no host overhead: the staggered schedule of the kernels alone (it adds to every iteration);
    # the roofline kernels, which this test computes by hand
    sc = scenario(serving={"step_overhead_time": 0.0}).with_changes(
        calibration=(("profile", "roofline"),))
    res = simulate_disaggregated(sc, trace=tr, spec=spec, arch=arch, graph=ideal_graph())
    km = KernelModel()
    slice_gpus = 2 // (n - 1)
    t_m = km.non_attention_time(gpu("H100"), arch, per, gpus=slice_gpus) / arch.layers
    if slice_gpus > 1:  # a tensor-parallel slice: two all-reduces of the step's hidden states
        # per layer, at their measured time (the ideal network's wire time is nothing)
        t_m += 2 * km.allreduce_time(gpu("H100"), per * 2 * arch.hidden_size, slice_gpus,
                                     "nvlink")
    t_a = km.attention_time(gpu("H20"), head_shard(arch, 8 // b), per, ctx)
    expect = arch.layers * max(n * t_a, n * t_m / (n - 1), t_m + t_a)
    it = res.iterations
    steady = it[(it["iteration"] >= 3) & (it["iteration"] <= 9)]
    dur = (steady["finished_at"] - steady["started_at"]).to_numpy()
    assert len(dur) == 7 * n
    np.testing.assert_allclose(dur, expect, rtol=1e-9)
    np.testing.assert_allclose(steady["cf_time"], expect, rtol=1e-9)  # the run's own formula
    if case == "attention_bound":
        assert res.summary["attention_pool_idle"] < 0.05 < res.summary["model_pool_idle"]
    else:
        assert res.summary["model_pool_idle"] < 0.05 < res.summary["attention_pool_idle"]


@pytest.mark.parametrize("slice_gpus", [1, 2])
@pytest.mark.parametrize("chunked", [True, False])
def test_a_lone_request_prefilled_on_the_model_pool_takes_the_kernels_time(chunked, slice_gpus):
    """Local prefill, one request, an ideal network: each iteration is the model slice's work
    and the attention GPU's, worked out here from the roofline kernel model. Chunked, the
    1,500-token prompt takes two steps under a 1,024-token budget — the projections and FFN of
    the chunk's tokens with the LM head for none of them, then for the last one, plus the
    chunk's attention over what came before; whole, one step of the prompt's prefill. Then
    decode steps of one token over a context one longer each time. A slice of two GPUs (n = 2)
    splits the model work and adds two all-reduces of the step's hidden states per layer at
    their measured time (the ideal network's wire time is nothing)."""
    arch = small("llama-3-70b", 4)
    spec = DisaggregationSpec(micro_batches=3 if slice_gpus == 1 else 2, attention_gpus=1,
                              prefill="local")
    serving = {"step_overhead_time": 0.0, "max_num_batched_tokens": 1024,
               "chunked_prefill": chunked}
    sc = scenario(serving=serving).with_changes(calibration=(("profile", "roofline"),))
    res = simulate_disaggregated(sc, trace=trace([1500], [4]), spec=spec, arch=arch,
                                 graph=ideal_graph())
    km, h100, h20, s = KernelModel(), gpu("H100"), gpu("H20"), slice_gpus
    if chunked:
        prefill = [km.non_attention_time(h100, arch, 1024, gpus=s, logits=0)
                   + km.prefill_attention_time(h100, arch, 1024, 0, gpus=s),
                   km.non_attention_time(h100, arch, 476, gpus=s, logits=1)
                   + km.prefill_attention_time(h100, arch, 476, 1024, gpus=s)]
        first = [prefill[0] + step_allreduces(km, arch, 1024, s),
                 prefill[1] + step_allreduces(km, arch, 476, s)]
    else:
        prefill = [km.prefill_time(h100, arch, 1500, gpus=s)]
        first = [prefill[0] + step_allreduces(km, arch, 1500, s)]
    decode = [km.non_attention_time(h100, arch, 1, gpus=s) + step_allreduces(km, arch, 1, s)
              + arch.layers * km.attention_time(h20, head_shard(arch, 8), 1, 1500 + k)
              for k in (1, 2, 3)]  # the prefill gave the first token
    it = res.iterations
    took = (it["finished_at"] - it["started_at"]).to_numpy()
    np.testing.assert_allclose(took, first + decode, rtol=1e-9)
    np.testing.assert_allclose(it["prefill_time"], prefill + [0.0] * 3, rtol=1e-9)
    np.testing.assert_allclose(it["cf_time"], took, rtol=1e-9)
    assert it["prefill_tokens"].tolist() == ([1024, 476] if chunked else [1500]) + [0] * 3


# -- properties ------------------------------------------------------------------------------

requests = st.lists(st.tuples(st.integers(1, 60_000), st.integers(1, 12), st.floats(0, 0.2)),
                    min_size=1, max_size=14)


@settings(max_examples=15)
@given(requests, st.sampled_from(["heads", "requests"]), st.integers(2, 3),
       st.booleans(), st.sampled_from(["ideal", "nccl"]))
def test_kv_capacity_and_conservation(reqs, split, n, early_q, stack):
    inp, out, at = (np.array(x) for x in zip(*reqs, strict=True))
    arch = small("llama-65b", 4)  # MHA: 8 KB... per token per layer, easy to fill
    spec = DisaggregationSpec(micro_batches=n, attention_split=split, early_q=early_q,
                              attention_gpus=2)
    sc = scenario(stack=stack, duration=0.3)
    sc = sc.with_changes(placement=dataclasses.replace(sc.placement, reserve_fraction=0.9))
    for res in (simulate_disaggregated(sc, trace=trace(inp, out, at), spec=spec, arch=arch),
                simulate_homogeneous(sc, trace=trace(inp, out, at), spec=spec, arch=arch)):
        g = res.gpus
        assert (g["kv_peak_bytes"] <= g["kv_capacity_bytes"] * (1 + 1e-12)).all()
        r = res.requests
        assert len(r) == len(reqs)  # every request accounted for
        assert (r["completed"] | (r["reason"] != "")).all()
        assert (r.loc[r["completed"], "tokens_generated"] == r.loc[r["completed"],
                                                                   "output_tokens"]).all()
        assert (r["tokens_generated"] <= r["output_tokens"]).all()
        assert res.summary["completed"] + (r["reason"] != "").sum() == len(reqs)
        assert 0 <= res.summary["model_pool_idle"] <= 1
        assert 0 <= res.summary["attention_pool_idle"] <= 1


def test_batch_is_bounded_by_the_attention_pools_kv():
    """Both sides KV-bound: the pool with more free HBM decodes the larger batch."""
    arch = small("llama-65b", 8)
    tr = trace([20_000] * 60, [6] * 60)
    sc = scenario()
    dis = simulate_disaggregated(sc, trace=tr, arch=arch)
    hom = simulate_homogeneous(sc, trace=tr, arch=arch)
    per_req = 20_006 * arch.kv_bytes_per_token * arch.layers
    cap_dis = dis.summary["kv_capacity_bytes"]
    assert dis.iterations.groupby("started_at")["batch"].sum().max() <= cap_dis // per_req
    assert hom.iterations["batch"].max() == hom.summary["kv_capacity_bytes"] // per_req
    assert dis.summary["mean_batch"] > hom.summary["mean_batch"]
    assert dis.summary["completed"] == hom.summary["completed"] == 60


# -- oracle comparisons ---------------------------------------------------------------------------

def test_homogeneous_iterations_equal_their_closed_form_when_uncontended():
    tr = trace([2000, 500, 7000, 300] * 3, [7, 3, 5, 9] * 3, arrival=np.linspace(0, 0.3, 12))
    res = simulate_homogeneous(scenario(stack="nccl"), trace=tr, arch=small("llama-3-70b", 8))
    assert res.summary["closed_form_error_p99"] < 1e-9
    assert res.summary["completed"] == 12
    # two replicas of TP 2 instead: the same, and each replica's ring stays in its node
    spec = DisaggregationSpec(baseline_tp=2)
    res2 = simulate_homogeneous(scenario(stack="nccl"), trace=tr, arch=small("llama-3-70b", 8),
                                spec=spec)
    assert res2.summary["closed_form_error_p99"] < 1e-9
    assert set(res2.gpus["pool"]) == {"replica0", "replica1"}


@pytest.mark.parametrize("fast", [False, True])
def test_a_lone_request_on_a_homogeneous_replica_takes_the_kernels_time(fast):
    """One request (1,500 prompt tokens prefilled here, 4 tokens) arriving at 0.25 s on the
    first of two TP-2 replicas, an ideal network, the roofline: its prefill step and three decode
    steps are the replica's kernels (half the model and four of Llama-3's eight KV heads per GPU)
    and two all-reduces of the step's hidden states per layer at their measured time; the
    records say where, when and how busy — both loops."""
    arch = small("llama-3-70b", 4)
    sc = scenario(serving={"step_overhead_time": 0.0}).with_changes(
        calibration=(("profile", "roofline"),))
    spec = DisaggregationSpec(baseline_tp=2, prefill="local")
    res = simulate_homogeneous(sc, trace=trace([1500], [4], arrival=[0.25]), spec=spec,
                               arch=arch, graph=ideal_graph(), fast=fast)
    km, h100, L = KernelModel(), gpu("H100"), arch.layers
    hidden = arch.bytes_per_element * arch.hidden_size
    kernels = [km.non_attention_time(h100, arch, 1500, gpus=2, logits=1)
               + km.prefill_attention_time(h100, arch, 1500, 0, gpus=2)]
    kernels += [km.non_attention_time(h100, arch, 1, gpus=2)
                + L * km.attention_time(h100, head_shard(arch, 4), 1, 1500 + k)
                for k in (1, 2, 3)]
    took = np.array(kernels) + [step_allreduces(km, arch, n, 2) for n in (1500, 1, 1, 1)]
    it = res.iterations
    assert it["iteration"].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(it["started_at"], 0.25 + np.concatenate([[0], np.cumsum(took)[:-1]]),
                               rtol=1e-12)
    np.testing.assert_allclose(it["finished_at"], 0.25 + np.cumsum(took), rtol=1e-12)
    np.testing.assert_allclose(it["cf_time"], took, rtol=1e-9)
    req = res.requests.iloc[0]
    assert req["home"] == res.gpus["gpu"].iloc[0] and req["tokens_generated"] == 4
    bt = sc.placement.block_tokens
    assert (req["prefilled_blocks"], req["reused_blocks"]) == (-(-1500 // bt), 0)
    assert req["first_token_at"] == pytest.approx(0.25 + took[0], rel=1e-12)
    end = 0.25 + took.sum()
    assert req["finished_at"] == pytest.approx(end, rel=1e-12)
    busy = sum(kernels)  # the replica's stream; all-reduces run on the fabric
    g = res.gpus
    np.testing.assert_allclose(g["busy_time"], [busy, busy, 0, 0], rtol=1e-12)
    np.testing.assert_allclose(g["utilization"], [busy / end, busy / end, 0, 0], rtol=1e-12)
    s = res.summary
    # idle over the time since the first step started (0.25 s), over both replicas' GPUs
    assert s["model_pool_idle"] == pytest.approx(1 - 2 * busy / (4 * took.sum()), rel=1e-12)
    assert s["kv_capacity_bytes"] == pytest.approx(2 * g["kv_capacity_bytes"].iloc[0] * 2,
                                                   rel=1e-12)  # 2 replicas of 2 GPUs
    assert s["replicas"] == 2 and s["preemptions"] == 0
    assert (s["policy"], s["seed"]) == ("homogeneous", sc.seed)
    # each of the 2 GPUs sends (t - 1) / t of each all-reduce's buffer twice (reduce-scatter,
    # all-gather), 2 all-reduces a layer, of the 1,500 + 3 tokens' hidden states
    assert res.extras["bytes_by_class"]["tp_collective"] == pytest.approx(
        2 * (2 * L * 2 * (1 / 2) * 1503 * hidden), rel=1e-12)
    assert s["mean_batch"] == pytest.approx(took[1:].sum() / took.sum(), rel=1e-12)
    assert s["tokens_per_s_per_dollar_hour"] == pytest.approx(
        s["throughput_tokens_per_s"] / s["cost_per_hour"], rel=1e-12)
    assert s["cost_per_hour"] == pytest.approx(4 * 11.06)
    # the links' timeline in 100 bins of the run's length, the last ending with it
    bins = np.sort(res.link_timeline["end_at"].unique())
    assert len(bins) == 100 and bins[-1] == pytest.approx(end, rel=1e-12)
    assert bins[0] == pytest.approx(end / 100, rel=1e-9)


@pytest.mark.parametrize("fast", [False, True])
def test_a_lone_request_on_a_replica_of_one_gpu_takes_its_kernels_time_and_no_ring(fast):
    """TP 1: one GPU holds the whole model and all eight KV heads; a step is its kernels, with
    no all-reduce to wait for and no collective bytes — both loops."""
    arch = small("llama-3-70b", 4)
    sc = scenario(serving={"step_overhead_time": 0.0}).with_changes(
        calibration=(("profile", "roofline"),))
    spec = DisaggregationSpec(baseline_tp=1, prefill="local")
    res = simulate_homogeneous(sc, trace=trace([1500], [3]), spec=spec, arch=arch,
                               graph=ideal_graph(), fast=fast)
    km, h100, L = KernelModel(), gpu("H100"), arch.layers
    took = [km.non_attention_time(h100, arch, 1500, gpus=1, logits=1)
            + km.prefill_attention_time(h100, arch, 1500, 0, gpus=1)]
    took += [km.non_attention_time(h100, arch, 1, gpus=1)
             + L * km.attention_time(h100, arch, 1, 1500 + k) for k in (1, 2)]
    it = res.iterations
    np.testing.assert_allclose(it["finished_at"] - it["started_at"], took, rtol=1e-12)
    np.testing.assert_allclose(it["cf_time"], took, rtol=1e-9)
    assert res.extras["bytes_by_class"].get("tp_collective", 0.0) == 0.0
    assert res.summary["replicas"] == 4


def test_network_stack_costs_tbt_and_throughput():
    """With a fast model pool (4 H100, ping-pong) a micro-batch's own chain — model, send,
    attention, return — is the bottleneck, so NCCL's 66.6 µs round trip (vs IBGDA's 33 µs)
    lengthens every layer."""
    tr = trace([80_000] * 24, [10] * 24)  # long contexts: attention as long as the model part
    spec = DisaggregationSpec(model_gpus=4, micro_batches=2)
    df = stack_study(scenario(layer_groups=4), ("ibgda", "nccl"), trace=tr, spec=spec,
                     arch=small("llama-3-70b", 16))
    assert df.loc["nccl", "tbt_p50"] > df.loc["ibgda", "tbt_p50"]
    assert df.loc["nccl", "throughput_ratio"] < 1.0 == df.loc["ibgda", "throughput_ratio"]
    assert df.loc["nccl", "tbt_p50_delta"] == df.loc["nccl", "tbt_p50"] - df.loc["ibgda", "tbt_p50"]
    assert df.loc["ibgda", "tbt_p50_delta"] == 0.0


def test_sending_q_first_hides_the_kv_transfer():
    tr = trace([30_000] * 12, [6] * 12)
    arch = small("llama-65b", 8)
    early = simulate_disaggregated(scenario(stack="nccl"), trace=tr, arch=arch)
    late = simulate_disaggregated(scenario(stack="nccl"), trace=tr, arch=arch,
                                  spec=DisaggregationSpec(early_q=False))
    assert early.summary["tbt_p50"] < late.summary["tbt_p50"]
    assert early.summary["bytes_moved"] == pytest.approx(late.summary["bytes_moved"])


# -- errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, field", [
    ({"model_gpus": 0}, "disaggregation.model_gpus"),
    ({"attention_gpus": 0}, "disaggregation.attention_gpus"),
    ({"micro_batches": 1}, "disaggregation.micro_batches"),
    ({"model_gpus": 3, "micro_batches": 3}, "disaggregation.micro_batches"),
    ({"baseline_gpus": 4, "baseline_tp": 3}, "disaggregation.baseline_tp"),
    ({"model_gpu": "H999"}, "disaggregation.model_gpu"),
    ({"attention_split": "rows"}, "disaggregation.attention_split"),
    ({"model_gpus": "2"}, "disaggregation.model_gpus"),
    ({"early_q": 1}, "disaggregation.early_q"),
    ({"micro_batch": 3}, "disaggregation.micro_batch"),
])
def test_bad_section_names_the_field(raw, field):
    with pytest.raises(UserError, match=f"lamina.toml: field '{field}'"):
        validate_disaggregation(raw, "lamina.toml")


def test_a_section_at_its_lower_bounds_or_left_out_is_valid():
    assert validate_disaggregation(None) == DisaggregationSpec()
    low = {"model_gpus": 1, "attention_gpus": 1, "micro_batches": 2, "baseline_gpus": 1,
           "baseline_tp": 1, "max_batch": 0, "baseline_max_batch": 0, "early_q": False}
    assert validate_disaggregation(low, "x.toml") == DisaggregationSpec(**low)


@pytest.mark.parametrize("baseline", [False, True])
def test_weights_may_fill_a_model_slice_but_must_leave_a_baseline_replica_room_for_kv(baseline):
    """A replica (a model slice of 2 H100s, or a baseline TP-2 group) keeps 10 % of each
    GPU's HBM free (activations, workspace). A model slice holds no KV (the attention pool
    does), so its weights may fill the other 90 %; a baseline replica's KV shares its GPUs, so
    weights that fill them are refused there."""
    usable = 2 * gpu("H100").hbm_bytes * 0.9
    spec = DisaggregationSpec(model_gpus=2, micro_batches=2, baseline_gpus=2, baseline_tp=2)
    kinds = ["H100"] * 4 + ["H20"] * 4
    key = "baseline_tp" if baseline else "model_gpus"
    for weights in (usable * (1 - 1e-9), usable, usable * 1.01):
        arch = dataclasses.replace(model("llama-3-70b"), weight_bytes=weights)
        if weights < usable or (weights == usable and not baseline):
            check_against(spec, arch, kinds, 0.1, "x.toml", baseline=baseline)
        else:
            with pytest.raises(UserError, match=f"'disaggregation.{key}'.*does not fit 2 × "
                                                f"H100 \\({usable / 1e9:.1f} GB usable\\)"):
                check_against(spec, arch, kinds, 0.1, "x.toml", baseline=baseline)


@pytest.mark.parametrize("spec, reserve, baseline, want", [
    # one slice of one H100 keeping half its HBM free: 40 GB usable, about 137.5 / 40 → 4 GPUs
    (DisaggregationSpec(model_gpus=1, micro_batches=2), 0.5, False,
     "field 'disaggregation.model_gpus': model 'llama-3-70b' (137.5 GB of weights) does not "
     "fit 1 × H100 (40.0 GB usable); raise model_gpus to about 4 or more"),
    # two slices of one H100 each, 10 % kept free: 72 GB usable, about 2 GPUs a slice
    (DisaggregationSpec(model_gpus=2, micro_batches=3), 0.1, False,
     "field 'disaggregation.micro_batches': model 'llama-3-70b' (137.5 GB of weights) does not "
     "fit 1 × H100 (72.0 GB usable); raise each slice's GPUs, model_gpus / (n − 1), to about 2 "
     "or more"),
    (DisaggregationSpec(baseline_tp=1), 0.5, True,
     "field 'disaggregation.baseline_tp': model 'llama-3-70b' (137.5 GB of weights) does not "
     "fit 1 × H100 (40.0 GB usable); raise baseline_tp to about 4 or more"),
])
def test_a_model_too_large_for_a_replica_is_told_how_many_gpus_it_needs(spec, reserve,
                                                                          baseline, want):
    with pytest.raises(UserError) as err:
        check_against(spec, model("llama-3-70b"), ["H100"] * 4 + ["H20"] * 4, reserve,
                      "x.toml", baseline=baseline)
    assert str(err.value) == "x.toml: " + want


def test_model_that_does_not_fit_the_model_pool_is_refused():
    kinds = ["H100"] * 4 + ["H20"] * 4
    arch = model("llama-3-70b")  # 137.5 GB: one 80 GB H100 cannot hold it
    with pytest.raises(UserError, match=r"x.toml: field 'disaggregation.model_gpus'.*raise"):
        check_against(DisaggregationSpec(model_gpus=1, micro_batches=2), arch, kinds, 0.1,
                      "x.toml")
    with pytest.raises(UserError, match="'disaggregation.attention_gpus'.*topology has 4"):
        check_against(DisaggregationSpec(attention_gpus=8), arch, kinds, 0.1, "x.toml")
    with pytest.raises(UserError, match="'disaggregation.baseline_tp'"):
        check_against(DisaggregationSpec(baseline_tp=1), arch, kinds, 0.1, "x.toml",
                      baseline=True)
    with pytest.raises(UserError, match="'disaggregation.model_gpus'"):
        simulate(scenario(), "disaggregated", spec=DisaggregationSpec(model_gpus=1,
                                                                      micro_batches=2),
                 trace=trace([100], [2]))


def test_a_model_pool_and_an_attention_pool_of_one_kind_share_no_gpu():
    # Llama-3-70B on 2 H100 model workers and 4 H100 attention workers: 6 H100s, not 4
    arch = model("llama-3-70b")
    spec = DisaggregationSpec(model_gpus=2, attention_gpus=4, micro_batches=2,
                              attention_gpu="H100")
    with pytest.raises(UserError, match=r"'disaggregation.attention_gpus': 4 H100 GPUs asked, "
                                        r"2 of the topology's 4 are left after the model pool's "
                                        r"2 \(the pools share no GPU\)"):
        check_against(spec, arch, ["H100"] * 4 + ["H20"] * 4, 0.1, "x.toml")
    check_against(spec, arch, ["H100"] * 6, 0.1, "x.toml")
    # laid out: the model workers first, the attention workers on the next H100s
    sc = dataclasses.replace(scenario(), topology=dataclasses.replace(
        scenario().topology, spec="lamina_h100_h20:h100_nodes=2,h20_nodes=1,gpus_per_node=4"))
    run_ = _Lamina(sc, spec, 0, trace([100], [2]), None, None)
    assert run_.model_names == ["n0/gpu0", "n0/gpu1"]
    assert run_.att_names == ["n0/gpu2", "n0/gpu3", "n1/gpu0", "n1/gpu1"]


def test_policies_name_their_loop_and_are_never_asked_per_round():
    assert (Disaggregated.loop, Homogeneous.loop) == ("disaggregated", "homogeneous")
    with pytest.raises(UserError, match="own decode loop"):
        Disaggregated().choose(None, None)
    with pytest.raises(UserError, match="unknown disaggregation loop"):
        simulate(scenario(), "route")


# -- shipped scenarios -------------------------------------------------------------------------------

def test_scenarios_cover_the_reference_configurations():
    names = {p.stem for p in SCENARIOS}
    assert {"lamina_llama3_70b", "lamina_llama_65b", "lamina_llama_33b"} <= names
    specs = {p.stem: load_scenario(p) for p in SCENARIOS}
    assert any(sc.model.name == "deepseek-v3.2" for sc, _ in specs.values())
    for sc, spec in specs.values():
        assert sc.policies == ("disaggregated", "homogeneous")
        ratio = spec.disaggregated_cost_per_hour() / spec.baseline_cost_per_hour()
        assert 0.9 < ratio <= 1.0  # about equal cost, as REFERENCE.md's setups
    assert specs["lamina_llama_33b"][1].model_gpus == 1
    assert specs["lamina_llama_33b"][1].attention_gpus == 2


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_each_scenario_runs_both_policies(path):
    sc, spec = load_scenario(path)
    sc = sc.with_changes(engine=dataclasses.replace(sc.engine, max_requests=12, layer_groups=2,
                                                    duration=None),
                         workload=dataclasses.replace(sc.workload, concurrency=4))
    res = compare(sc, spec=spec)
    # $/hour from the file's GPU counts at the catalog prices (REFERENCE.md, Lamina Table 1)
    usd = {"H100": 11.06, "H20": 4.63}
    d = tomllib.loads(path.read_text())["disaggregation"]
    cost = {"disaggregated": d["model_gpus"] * usd[d.get("model_gpu", "H100")]
            + d["attention_gpus"] * usd[d.get("attention_gpu", "H20")],
            "homogeneous": d["baseline_gpus"] * usd[d.get("baseline_gpu", "H100")]}
    for name, r in res.items():
        s = r.summary
        assert s["requests"] == s["completed"] == 12 and len(r.requests) == 12
        assert s["decode_tokens"] == r.requests["output_tokens"].sum() > 0
        assert s["throughput_tokens_per_s"] == pytest.approx(s["decode_tokens"] / s["sim_time"])
        assert s["cost_per_hour"] == pytest.approx(cost[name])
        assert 0 < s["ttft_p50"] <= s["ttft_p99"] and 0 < s["tbt_p50"] <= s["tbt_p99"]
        assert 0 < s["mean_batch"] <= 4  # the closed loop keeps 4 requests outstanding
        assert 0 <= s["model_pool_idle"] <= 1 and 0 <= s["attention_pool_idle"] <= 1
        assert 0 < s["kv_peak_bytes"] <= s["kv_capacity_bytes"]
        assert s["bytes_moved"] > 0 and 0 <= s["closed_form_error_p50"] <= s[
            "closed_form_error_p99"]
        # a closed loop is priced at its steady capacity (a window past warm-up, before drain)
        start, end = s["capacity_window"]
        assert 0 < start < end and s["capacity_tokens_per_s"] > 0
        assert s["tokens_per_s_per_dollar_hour"] == pytest.approx(
            s["capacity_tokens_per_s"] / s["cost_per_hour"])
    df = comparison_frame(res)
    assert list(df.index) == ["disaggregated", "homogeneous",
                              "ratio (disaggregated/homogeneous)"]
    assert df.iloc[2]["mean_batch"] == pytest.approx(df.iloc[0]["mean_batch"]
                                                     / df.iloc[1]["mean_batch"])
    assert comparison_table(res).row_count == 3


@pytest.mark.parametrize("name", ["azure_llm_2023_code", "azure_llm_2023_conv",
                                  "mooncake_conversation"])
def test_the_70b_scenario_runs_on_every_shipped_trace(name):
    sc, spec = load_scenario(ROOT / "scenarios" / "lamina_llama3_70b.toml")
    sc = sc.with_changes(
        workload=dataclasses.replace(sc.workload, trace=name, concurrency=4),
        engine=dataclasses.replace(sc.engine, max_requests=10, layer_groups=2, duration=1.0))
    res = simulate(sc, "disaggregated", spec=spec)
    assert res.summary["requests"] == 10 and res.summary["decode_tokens"] > 0


def test_a_request_too_large_for_any_pool_is_reported_not_run():
    arch = small("llama-65b", 8)  # 256 KB of KV per token over 8 layers
    tr = trace([2000, 2_000_000, 3000], [4, 4, 4])  # 2M tokens: 0.5 TB of KV
    for res in compare(scenario(), trace=tr, arch=arch).values():
        r = res.requests.set_index("request_id")
        assert r["completed"].tolist() == [True, False, True]
        assert "does not fit" in r.loc[1, "reason"]
        assert r.loc[1, "tokens_generated"] == 0


@pytest.mark.parametrize("simulate", [simulate_homogeneous, simulate_disaggregated])
def test_the_pool_loops_records_have_the_engines_column_types(simulate):
    # one request at 0 s with its first token from the prefill: the loop's only step starts at
    # 0, a whole number. Its records still say float seconds and int32 counts, the dtypes the
    # decode-loop engine's iterations have — one schema for every run (sweeps concatenate and
    # write them to one Parquet dataset). Until stop 67 such a table inferred int64 seconds,
    # and the loop's empty rounds table had no types at all (object columns)
    from simulator.engine.records import (
        ITERATION_COLUMNS,
        ITERATION_DTYPES,
        ROUND_COLUMNS,
        ROUND_DTYPES,
    )

    res = simulate(scenario(), trace=trace([1], [1], [0.0]), arch=small("llama-65b", 4),
                   spec=DisaggregationSpec(micro_batches=2, attention_gpus=2))
    it = res.iterations
    assert it["started_at"].tolist() == [0.0]
    want = dict(zip(ITERATION_COLUMNS, ITERATION_DTYPES, strict=True))
    del want["gpu"]  # a GPU's (or micro-batch's) name
    assert {c: str(it[c].dtype) for c in want} == want
    rd = res.rounds
    assert not len(rd)
    want = {c: t for c, t in zip(ROUND_COLUMNS, ROUND_DTYPES, strict=True)
            if c not in ("src", "owner", "option")}  # names (categories)
    assert {c: str(rd[c].dtype) for c in want} == want


@settings(max_examples=examples(8))
@given(requests, st.sampled_from(["heads", "requests"]), st.integers(2, 3), st.booleans(),
       st.sampled_from([None, 0.3]), st.sampled_from(["exact", "fast"]), st.booleans())
def test_the_pool_loops_keep_every_invariant_and_are_causal(reqs, split, n, early_q, duration,
                                                            mode, lamina):
    # check_run's checks on both pool loops, cut or not, either mode; and without the last
    # arrival, nothing that ended before it changes (no step, no request)
    reqs = sorted(reqs, key=lambda x: x[2])  # trace() sorts the arrivals only
    inp, out, at = (np.array(x) for x in zip(*reqs, strict=True))
    engine = {"mode": mode} if duration is None else {"mode": mode, "duration": duration}
    sc = scenario(**engine)
    sc = sc.with_changes(placement=dataclasses.replace(sc.placement, reserve_fraction=0.9))
    spec = DisaggregationSpec(micro_batches=n, attention_split=split, early_q=early_q,
                              attention_gpus=2)
    simulate = simulate_disaggregated if lamina else simulate_homogeneous
    arch = small("llama-65b", 4)
    res = simulate(sc, trace=trace(inp, out, at), spec=spec, arch=arch)
    check_run(res, trace(inp, out, at))
    if len(at) >= 2 and at[-1] > at[-2]:
        part = simulate(sc, trace=trace(inp[:-1], out[:-1], at[:-1]), spec=spec, arch=arch)
        a, b = ended_before(res, float(at[-1])), ended_before(part, float(at[-1]))
        pd.testing.assert_frame_equal(a[0], b[0], check_exact=True)
        pd.testing.assert_frame_equal(a[1], b[1], check_exact=True)
