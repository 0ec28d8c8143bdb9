"""A deployment's shape and what the engine makes of it: the layers folded into simulated slots,
the layout as a user reads it, the weights and KV room of each GPU (idle ones included), which
ranks step in lockstep, prefilled prompts' homes, the engine's own check of the section, and the
deployment's summary worked out by hand."""

from __future__ import annotations

import dataclasses
import tomllib
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from test_engine_instances import scenario, trace

from simulator import Scenario, run
from simulator.deployment import PoolSpec, build_layout, validate_deployment, weights_per_gpu
from simulator.engine.exact import _Run, simulate
from simulator.engine.instances import Deployed, fold_slots
from simulator.errors import UserError
from simulator.models import model
from simulator.policies import get as get_policy

V32 = model("deepseek-v3.2")
LLAMA = model("llama-3-70b")


@pytest.mark.parametrize("layers, dense", [(61, 3), (61, 1), (61, 0), (10, 3), (5, 4), (4, 0),
                                           (5, 5)])
def test_slots_cover_the_layers_each_of_one_layer_or_more_the_dense_ones_apart(layers, dense):
    for groups in range(-1, layers + 3):
        b = fold_slots(layers, dense, groups)
        sizes = np.diff(b)
        assert b[0] == 0 and b[-1] == layers and (sizes >= 1).all(), (groups, b)
        if groups <= 0 or groups >= layers:  # every layer simulated
            assert list(b) == list(range(layers + 1))
        elif 0 < dense < layers:  # a slot of the dense layers, then the MoE layers
            assert b[1] == dense
            assert len(sizes) == min(max(groups, 2), 1 + layers - dense)
            assert sizes[1:].max() - sizes[1:].min() <= 1
        else:  # no MoE layer: near-equal slots
            assert len(sizes) == groups and sizes.max() - sizes.min() <= 1


def test_sixty_groups_of_deepseeks_61_layers_leave_no_slot_empty():
    # 3 dense layers and 58 MoE layers cannot fill 59 MoE slots: 58 of one layer each
    b = fold_slots(61, 3, 60)
    assert list(b) == [0, *range(3, 62)]


def test_the_layout_reads_as_pools_instances_experts_and_idle_gpus():
    names = [f"n{i // 8}/gpu{i % 8}" for i in range(40)]
    spec = validate_deployment({"attention_dp": 16, "redundant_experts": 32,
                                "two_batch_overlap": True,
                                "prefill": {"attention_dp": 8, "experts_per_rank": 36,
                                            "redundant_experts": 32}})
    lay = build_layout(spec, names, ["H100"] * 40)
    text = lay.describe(V32)
    assert text == [
        "prefill instance 0: 8 GPUs n0/gpu0 … n0/gpu7, attention DP8 × TP1, EP8: 36 routed "
        "experts per rank (32 redundant) + 1 shared, normal kernels",
        "decode instance 0: 16 GPUs n1/gpu0 … n2/gpu7, attention DP16 × TP1, EP16: 18 routed "
        "experts per rank (32 redundant) + 1 shared, low-latency kernels, two-batch overlap",
        "idle: 16 GPUs (n3/gpu0 … n4/gpu7)"]
    # without a model, or with one without experts: the GPUs and ranks alone
    plain = "decode instance 0: 16 GPUs n1/gpu0 … n2/gpu7, attention DP16 × TP1"
    assert lay.describe()[1] == plain and lay.describe(LLAMA)[1] == plain
    assert len(build_layout(spec, names[:24], ["H100"] * 24).describe()) == 2  # none idle


def test_a_gpu_holds_its_pools_weights_in_the_checkpoints_precision():
    # a bf16 checkpoint of the same model: every parameter twice the bytes
    bf16 = dataclasses.replace(V32, weight_bytes=2 * V32.weight_bytes,
                               weight_bytes_per_param=2.0)
    pool = PoolSpec(attention_dp=16, redundant_experts=16)
    assert weights_per_gpu(bf16, pool) == pytest.approx(2 * weights_per_gpu(V32, pool))
    # a checkpoint smaller than its routed experts (an inconsistent catalog entry) counts no
    # other weights: the rank's experts alone
    small = dataclasses.replace(V32, weight_bytes=1e9)
    expert = 3 * 7168 * 2048
    assert weights_per_gpu(small, pool) == 17 * 58 * expert
    # a dense model over tensor-parallel attention ranks: each GPU a share
    assert weights_per_gpu(LLAMA, PoolSpec(attention_tp=2)) == LLAMA.weight_bytes / 2


def test_idle_gpus_hold_no_kv_and_the_others_their_pools_room():
    # 3 × DGX H100 under one EP16 instance: the third node's 8 GPUs idle (no weights, no KV)
    res = run(scenario(nodes=3), "route", trace=trace(1))
    caps = res.gpus["capacity_blocks"].to_numpy()
    assert len(caps) == 24
    assert (caps[16:] == 0).all() and (caps[:16] == 2_553).all()  # 2,553: see test_engine_instances


def moe_row(started_at: float, phases: tuple, closed_form: tuple) -> tuple:
    """A ``moe`` record (MOE_COLUMNS) with the given start and four simulated and four
    closed-form phase times [s]; the other columns do not enter the summary."""
    return ("decode", 0, 0, 1, 1, 1, 16, 16, 1, 0.0, 0.0, started_at, *phases, *closed_form)


def deployed(rows, records=None, duration=None) -> Deployed:
    d = object.__new__(Deployed)  # the summary reads its records, its homes and the cut only
    d.run = SimpleNamespace(sc=SimpleNamespace(engine=SimpleNamespace(duration=duration)))
    d.moe_rows, d.homes = rows, [0, 1, 2]
    d.handoff = None if records is None else SimpleNamespace(records=records)
    return d


def test_the_deployment_summary_by_hand():
    # three MoE layers: off their closed form by 0, 10 % and 50 % (over the four phases); a
    # fourth with an empty closed form (no exchange: no relative error)
    rows = [moe_row(0.0, (1e-4, 2e-4, 1e-4, 0.0), (1e-4, 2e-4, 1e-4, 0.0)),
            moe_row(1.0, (1e-4, 2e-4, 1e-4, 0.4e-4), (1e-4, 2e-4, 1e-4, 0.0)),
            moe_row(2.0, (1e-4, 2e-4, 1e-4, 2e-4), (1e-4, 2e-4, 1e-4, 0.0)),
            moe_row(3.0, (1e-6, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0))]
    # two transfers: 2 ms and 4 ms from first post to last arrival; their prompts ended 1 ms
    # and 3 ms before the last arrival
    records = [(0, 0, 1, 1e6, 4, 0.0, 1e-3, 2e-3, 2e-3, 2e-3),
               (1, 0, 1, 1e6, 4, 0.0, 1e-3, 4e-3, 4e-3, 4e-3)]
    with warnings.catch_warnings():  # no division by a zero closed form
        warnings.simplefilter("error")
        s = deployed(rows, records).summary()
    assert s["decode_gpus"] == 3 and s["moe_layers"] == 4
    assert s["moe_closed_form_error_p50"] == pytest.approx(0.1)
    assert s["moe_closed_form_error_p99"] == pytest.approx(0.1 + 0.98 * 0.4)
    assert s["moe_time_mean"] == pytest.approx((4e-4 + 4.4e-4 + 6e-4 + 1e-6) / 4)
    assert s["kv_transfers"] == 2
    assert s["kv_transfer_time_p50"] == pytest.approx(3e-3)
    assert s["kv_transfer_time_p99"] == pytest.approx(2e-3 + 0.99 * 2e-3)
    assert s["kv_transfer_wait_p50"] == pytest.approx(2e-3)
    assert s["kv_transfer_wait_p99"] == pytest.approx(1e-3 + 0.99 * 2e-3)
    # a run cut at 2.00045 s: the third layer (2.0 s + 0.5 ms) had not ended, the fourth had
    # not started
    cut = deployed(rows, duration=2.00045).summary()
    assert cut["moe_layers"] == 2 and "kv_transfers" not in cut
    assert deployed([], duration=1.0).summary() == {"decode_gpus": 3}
    # a layer that ends at the cut itself had not ended when the clock stopped
    at_cut = [moe_row(4.0, (0.25, 0.25, 0.0, 0.0), (0.25, 0.25, 0.0, 0.0))]  # ends at 4.5
    assert "moe_layers" not in deployed(at_cut, duration=4.5).summary()
    assert deployed(at_cut, duration=np.nextafter(4.5, 5)).summary()["moe_layers"] == 1
    # layers without any exchange (closed forms of 0): no relative error, reported as 0
    lone = deployed([moe_row(0.0, (1e-6, 0.0, 0.0, 0.0), (0.0,) * 4)]).summary()
    assert lone["moe_closed_form_error_p50"] == lone["moe_closed_form_error_p99"] == 0.0


@pytest.mark.parametrize("reuse", ["prefix", "none"])
def test_prefilled_prompts_decode_on_the_decode_pools_ranks_whatever_the_reuse_rule(reuse):
    # external_prefill: each request lands on a decode rank with its prompt's KV, which is
    # placed there (its prefix hashes computed, under every reuse rule) and decodes there
    sc = scenario(extra="external_prefill = true")
    sc = dataclasses.replace(sc, placement=dataclasses.replace(sc.placement, reuse=reuse))
    res = run(sc, "route", trace=trace(4, inp=640, out=2))
    req = res.requests
    assert res.summary["completed"] == 4
    assert req["home"].nunique() == 4  # four ranks, least loaded first (the records say so)


def test_the_engine_checks_a_deployment_itself_when_called_without_the_runner():
    sc = scenario(nodes=1)  # an EP16 instance on 8 GPUs
    with pytest.raises(UserError, match="field 'deployment.instances'"):
        simulate(sc, get_policy("route"), 0, trace(1))


DENSE = """
name = "dense"
seed = 1
stack = "ibgda"
policies = ["route"]
[topology]
spec = "dgx_h100:nodes=1"
[model]
name = "llama-3.1-8b"
[workload]
kind = "trace"
trace = "unused.parquet"
[engine]
max_batch = 8
layer_groups = 4
[placement]
scheme = "hash"
[deployment]
attention_dp = {dp}
instances = {instances}
"""


def dense_scenario(dp: int = 8, instances: int = 1):
    return Scenario.from_dict(tomllib.loads(DENSE.format(dp=dp, instances=instances)),
                              source="dense.toml")


def test_a_dense_model_deployed_folds_its_layers_evenly():
    # Llama-3.1-8B's 32 layers, all dense, in 4 groups of 8 (no slot of "dense layers" apart:
    # that is for the first layers of a mixture of experts); its rounds say so
    res = run(dense_scenario(), "route", trace=trace(2, inp=640, out=3))
    assert res.summary["completed"] == 2 and len(res.rounds)
    assert set(res.rounds["layers"]) == {8}


@pytest.mark.parametrize("dp, instances, lockstep", [(1, 8, False), (2, 4, True), (8, 1, True)])
def test_ranks_of_one_instance_step_in_lockstep_and_a_lone_rank_does_not(dp, instances,
                                                                          lockstep):
    # what adaptive reads of an owner's load: a rank stepping with others is paced by its
    # instance (Observed.lockstep), a one-GPU instance by its own batch
    r = _Run(dense_scenario(dp, instances), get_policy("adaptive"), 0, trace(1), None)
    assert r.observed.lockstep.tolist() == [lockstep] * 8


def test_idle_gpus_do_not_step_in_lockstep():
    r = _Run(scenario(nodes=3), get_policy("adaptive"), 0, trace(1), None)
    assert r.observed.lockstep.tolist() == [True] * 16 + [False] * 8
