"""The ``[deployment]`` section: validation, the layout of pools on the GPUs, the weights each
GPU holds, and the commands that print the layout (`topology show --deployment`, `run`)."""

from __future__ import annotations

import json

import pytest
from clitools import DEPLOYED, colour_terminal, run_main

from simulator.deployment import (
    DeploymentSpec,
    PoolSpec,
    build_layout,
    check_against,
    validate_deployment,
    weights_per_gpu,
)
from simulator.deployment.spec import MOONCAKE_MESSAGE_OVERHEAD, MOONCAKE_NIC_BANDWIDTH
from simulator.errors import UserError
from simulator.models import model
from workloads.schema import make_trace, write_trace

V32 = model("deepseek-v3.2")


def test_defaults_and_a_full_section():
    assert validate_deployment(None) == DeploymentSpec()
    spec = validate_deployment({
        "attention_dp": 144, "redundant_experts": 32, "two_batch_overlap": True,
        "popularity": "zipf", "zipf_exponent": 0.8,
        "prefill": {"attention_dp": 32, "redundant_experts": 32, "gpu": "h100"},
        "transfer": {"bandwidth": 2e10, "layerwise": False}}, "x.toml")
    assert spec.decode.ep_degree == 144 and spec.decode.moe_kernels == "low_latency"
    assert spec.prefill.moe_kernels == "normal" and spec.prefill.gpu == "H100"
    assert spec.transfer.bandwidth == 2e10 and not spec.transfer.layerwise
    assert spec.transfer.message_overhead_time == MOONCAKE_MESSAGE_OVERHEAD
    assert [n for n, _ in spec.pools()] == ["prefill", "decode"]
    # Mooncake: 190 GB/s over 8 × 400 Gb/s NICs
    assert pytest.approx(23.75e9) == MOONCAKE_NIC_BANDWIDTH
    check_against(spec, V32, ["H100"] * 176, "x.toml")  # 22 nodes: 4 prefill + 18 decode


@pytest.mark.parametrize("raw, field", [
    ({"instances": 0}, "deployment.instances"),
    ({"attention_dp": "8"}, "deployment.attention_dp"),
    ({"two_batch_overlap": 1}, "deployment.two_batch_overlap"),
    ({"popularity": []}, "deployment.popularity"),
    ({"popularity": [0, 0]}, "deployment.popularity"),
    ({"dispatch_dtype": "int4"}, "deployment.dispatch_dtype"),
    ({"prefill": 3}, "deployment.prefill"),
    ({"prefill": {"moe_kernel": "normal"}}, "deployment.prefill.moe_kernel"),
    ({"prefill": {}, "transfer": {"layerwise": "yes"}}, "deployment.transfer.layerwise"),
    ({"prefill": {}, "transfer": {"message_overhead_time": -1}},
     "deployment.transfer.message_overhead_time"),
    ({"dense_layers": -1}, "deployment.dense_layers"),
    ({"moe_on_fabric": "no"}, "deployment.moe_on_fabric"),
])
def test_bad_fields_are_named(raw, field):
    with pytest.raises(UserError, match=f"x.toml: field '{field}'"):
        validate_deployment(raw, "x.toml")


@pytest.mark.parametrize("raw, field, kinds", [
    ({"attention_dp": 16, "redundant_experts": 3}, "deployment.redundant_experts", ["H100"] * 16),
    ({"attention_dp": 16, "popularity": [1.0, 2.0]}, "deployment.popularity", ["H100"] * 16),
    ({"attention_dp": 16, "dense_layers": 61}, "deployment.dense_layers", ["H100"] * 16),
    ({"attention_dp": 8}, "deployment.attention_dp", ["H100"] * 8),  # 82 GB per GPU
    ({"attention_dp": 16, "prefill": {"attention_dp": 16, "gpu": "H20"}},
     "deployment.prefill.instances", ["H100"] * 32),
])
def test_what_needs_the_model_and_topology_is_checked_before_the_run(raw, field, kinds):
    with pytest.raises(UserError, match=f"x.toml: field '{field}'"):
        check_against(validate_deployment(raw, "x.toml"), V32, kinds, "x.toml")


def test_pools_take_the_topologys_gpus_in_order_prefill_first_by_kind():
    names = [f"n{i // 8}/gpu{i % 8}" for i in range(40)]
    kinds = ["H20"] * 8 + ["H100"] * 32
    spec = validate_deployment({"attention_dp": 8, "instances": 2, "gpu": "H100",
                                "prefill": {"attention_dp": 8, "gpu": "H20"}})
    lay = build_layout(spec, names, kinds)
    pre = lay.pool("prefill")
    dec = lay.pool("decode")
    assert [i.gpus for i in pre] == [tuple(range(8))]
    assert [i.gpus for i in dec] == [tuple(range(8, 16)), tuple(range(16, 24))]
    assert lay.idle == tuple(range(24, 40)) and lay.disaggregated
    assert lay.gpus_of("decode") == list(range(8, 24))
    text = lay.describe(V32)
    assert text[0].startswith("prefill instance 0: 8 GPUs n0/gpu0 … n0/gpu7")
    assert "EP8: 32 routed experts per rank" in text[1] and text[-1].startswith("idle: 16")
    assert lay.as_dict()["pools"]["decode"][1]["gpus"][0] == "n2/gpu0"


def test_each_gpu_holds_the_shared_weights_and_its_own_experts():
    # DeepSeek-V3: 58 MoE layers × 256 experts × 3 × 7168 × 2048 = 653.9 B expert parameters
    expert = 3 * 7168 * 2048
    rest = 671e9 - 58 * 256 * expert
    ep144 = weights_per_gpu(V32, PoolSpec(attention_dp=144, redundant_experts=32))
    assert ep144 == pytest.approx(rest + 2 * 58 * expert)  # fp8: one byte per parameter
    ep32 = weights_per_gpu(V32, PoolSpec(attention_dp=32, redundant_experts=32))
    assert ep32 == pytest.approx(rest + 9 * 58 * expert)
    assert 20e9 < ep144 < 25e9 and 40e9 < ep32 < 45e9


SCENARIO = DEPLOYED.format(name="ep", spec="dgx_h100:nodes=2", model="deepseek-v3.2",
                           deployment="attention_dp = 16\nredundant_experts = 16")


def call(argv, capsys):
    return run_main(argv, capsys)


def test_topology_show_and_run_print_the_layout(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ep.toml").write_text(SCENARIO)
    write_trace(make_trace(arrival_at=[0.0, 0.001], input_tokens=[700, 900],
                           output_tokens=[3, 2], block_ids=[list(range(11)), list(range(15))],
                           block_tokens=64), tmp_path / "t.parquet")
    code, out, _ = call(["topology", "show", "dgx_h100:nodes=2", "--deployment", "ep.toml"],
                        capsys)
    assert code == 0 and "decode instance 0: 16 GPUs n0/gpu0 … n1/gpu7" in out
    code, out, _ = call(["topology", "show", "dgx_h100:nodes=3", "--deployment", "ep.toml",
                         "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and len(data["deployment"]["idle"]) == 8
    colour_terminal(monkeypatch)  # run's stderr an 80-column colour terminal
    code, out, err = call(["run", "ep.toml", "--json", "--out", "o"], capsys)
    assert code == 0, err
    assert "deployment: decode instance 0: 16 GPUs" in err
    # one line per instance on stderr, before the results: its GPUs, attention, experts and
    # kernels (DeepSeek-V3.2's 256 routed experts and 16 redundant over EP16: 17 per rank),
    # unwrapped and uncoloured
    told = [line for line in err.splitlines() if line.startswith("deployment: ")]
    assert told == ["deployment: decode instance 0: 16 GPUs n0/gpu0 … n1/gpu7, attention "
                    "DP16 × TP1, EP16: 17 routed experts per rank (16 redundant) + 1 shared, "
                    "low-latency kernels"]
    assert "deployment:" not in out  # stdout holds the results alone
    data = json.loads(out)
    assert data["deployment"]["pools"]["decode"][0]["ep"] == 16
    gpus = [f"n{n}/gpu{i}" for n in range(2) for i in range(8)]
    assert data["deployment"] == {  # the layout as data, without its lines
        "pools": {"decode": [{"gpus": gpus, "attention_dp": 16, "attention_tp": 1, "ep": 16,
                              "moe_kernels": "low_latency", "two_batch_overlap": False}]},
        "idle": []}
    pol = data["policies"]["route"]
    assert pol["completed"] == 2 and pol["decode_gpus"] == 16 and pol["moe_layers"] > 0
    assert {"moe_dispatch", "moe_combine"} <= set(pol["bytes_by_class"])
    assert pol["decode_tokens_per_s_per_gpu"] > 0
    for table in ("moe", "kv_transfers", "link_classes", "class_timeline"):
        assert (tmp_path / "o" / f"{table}.parquet").is_file()


def test_shipped_deepseek_scenarios_are_deepseeks_published_units():
    """deepseek-ai/open-infra-index, day 6: decode units of 18 nodes (EP144, DP144, 2 routed
    experts per GPU, 32 redundant), prefill units of 4 nodes (EP32, DP32, 9 routed experts per
    GPU, 32 redundant); H800 NVLink; DeepEP low-latency kernels to decode, normal to prefill."""
    import topologies
    from simulator import Scenario
    from simulator.runner import check

    ep = Scenario.load("scenarios/deepseek_v32_ep.toml")
    pd_ = Scenario.load("scenarios/deepseek_v32_pd.toml")
    for sc, nodes in ((ep, 18), (pd_, 22)):
        assert "nvlink_h800" in sc.topology.spec
        assert sc.model.name == "deepseek-v3.2" and sc.engine.mode == "exact"
        dec = sc.deployment.decode
        assert (dec.attention_dp, dec.ep_degree, dec.redundant_experts) == (144, 144, 32)
        assert (V32.experts + dec.redundant_experts) // dec.ep_degree == 2
        assert dec.moe_kernels == "low_latency" and dec.two_batch_overlap
        graph = check(sc, sc.policies)  # the weights fit, the pools fit the topology
        names = list(topologies.gpus(graph))
        assert len(names) == 8 * nodes
        lay = build_layout(sc.deployment, names, ["H100"] * len(names))
        assert lay.idle == ()  # every GPU serves
    assert ep.deployment.external_prefill and ep.deployment.prefill is None
    assert ep.workload.concurrency == ep.engine.max_requests == 8 * 144
    pre = pd_.deployment.prefill
    assert not pd_.deployment.external_prefill and pd_.deployment.transfer.layerwise
    assert (pre.attention_dp, pre.ep_degree, pre.redundant_experts) == (32, 32, 32)
    assert (V32.experts + pre.redundant_experts) // pre.ep_degree == 9
    assert pre.moe_kernels == "normal" and pre.two_batch_overlap
    assert pd_.deployment.transfer.bandwidth == MOONCAKE_NIC_BANDWIDTH
