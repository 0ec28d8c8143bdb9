"""Prefill→decode KV transfer (``simulator/engine/kvtransfer.py``) against known answers: FIFO
pacing per source NIC, the bytes a prompt's KV takes, where a request is prefilled and decoded,
and the prefill GPU's KV freed at the hand-off. (Both engines share this module, so comparing
them cannot catch its mistakes; these answers are worked out by hand.)"""

from __future__ import annotations

import pytest
import simpy
from test_engine_instances import ARCH, scenario, trace

from simulator import run
from simulator.engine.kvtransfer import TransferEngine
from simulator.network.traffic import PD_TRANSFER
from workloads.schema import make_trace

PD = """
[deployment.prefill]
attention_dp = 16
[deployment.transfer]
layerwise = {layerwise}
"""
PREFILL = {f"n{i}/gpu{j}" for i in (0, 1) for j in range(8)}
DECODE = [f"n{i}/gpu{j}" for i in (2, 3) for j in range(8)]


class _Fabric:
    """Records what is posted: (src, dst, bytes, delay [s], tag)."""

    def __init__(self) -> None:
        self.posted: list[tuple] = []

    def transfer(self, src, dst, nbytes, then, delay_time=0.0, tag=0) -> None:
        self.posted.append((src, dst, nbytes, delay_time, tag))


def test_the_transfer_engine_paces_each_source_nic_fifo():
    env, fabric = simpy.Environment(), _Fabric()
    bw, over = 1e9, 1e-5
    eng = TransferEngine(env, fabric, bandwidth=bw, overhead_time=over)
    eng.send("a", "b", 1e6, None)  # the NIC is free: released after its posting cost
    eng.send("a", "c", 2e6, None)  # behind the first message's bytes at the engine's rate
    eng.send("d", "b", 3e6, None)  # another NIC: not behind a's messages
    env.run(until=0.01)  # every message has left a's NIC: the next waits for nothing
    eng.send("a", "b", 5e5, None)
    eng.send("a", "b", 5e5, None)
    delays = [p[3] for p in fabric.posted]
    assert delays == pytest.approx([over, over + 1e6 / bw + over, over, over,
                                    over + 5e5 / bw + over], rel=1e-12)
    assert [p[:3] for p in fabric.posted] == [("a", "b", 1e6), ("a", "c", 2e6), ("d", "b", 3e6),
                                              ("a", "b", 5e5), ("a", "b", 5e5)]
    assert {p[4] for p in fabric.posted} == {PD_TRANSFER}


def pd_scenario(layerwise: str = "false", placement: str = "", groups: int = 4):
    """Four DGX nodes: a prefill instance of 16 ranks on n0–n1, a decode instance on n2–n3."""
    return scenario(nodes=4, extra=PD.format(layerwise=layerwise) + placement, groups=groups)


def pd_run(layerwise: str = "false", n: int = 4, gap: float = 0.0, placement: str = "",
           groups: int = 4, engine: str = "exact"):
    return run(pd_scenario(layerwise, placement, groups), "route",
               trace=trace(n, inp=1500, out=3, gap=gap), engine=engine)


@pytest.mark.parametrize("engine", ["exact", "fast"])
@pytest.mark.parametrize(("layerwise", "groups", "messages"),
                         [("false", 4, 1), ("true", 4, 8), ("true", 40, 60)])
def test_a_prompts_kv_is_its_tokens_times_the_bytes_per_token_and_layer(layerwise, groups,
                                                                        messages, engine):
    # 40 groups: the three dense layers' slot, then MoE slots of one and two layers in turn
    # (20 of each): two messages for a folded slot, one for a slot of one layer. The fast
    # engine posts the same messages (its own composition of the slots)
    res = pd_run(layerwise, groups=groups, engine=engine)
    kv = res.extras["kv_transfers"]
    assert res.summary["completed"] == 4 == len(kv)
    # nothing reused: every prompt token's KV in every layer moves once
    assert (kv["bytes"] == 1500 * ARCH.kv_bytes_per_token * ARCH.layers).all()
    # layer-wise: per simulated slot, its first layers' KV and then its last layer's (one
    # message for a one-layer slot)
    assert (kv["messages"] == messages).all()
    assert res.extras["bytes_by_class"]["pd_transfer"] == pytest.approx(kv["bytes"].sum(),
                                                                       rel=1e-12)
    if layerwise == "false":  # one message, alone on its path: posting cost + the message
        spec = pd_scenario().deployment.transfer
        one = kv.iloc[0]
        assert one["cf_transfer_time"] > spec.message_overhead_time + one["bytes"] / 400e9
        assert one["transfer_time"] == pytest.approx(one["cf_transfer_time"], rel=1e-9)


def test_requests_on_their_way_count_toward_a_decode_gpus_load():
    # four requests at once: none has reached its decode GPU when the next is placed, so each
    # is counted where it is going and the four spread over the pool
    kv = pd_run(n=4).extras["kv_transfers"]
    assert sorted(kv["decode_gpu"]) == DECODE[:4]
    assert set(kv["prefill_gpu"]) <= PREFILL and kv["prefill_gpu"].nunique() == 4


def test_a_finished_request_no_longer_counts_toward_its_decode_gpus_load():
    # one request every 2 s, each finished long before the next: the pool is idle each time,
    # so every request goes to its first GPU (least loaded, lowest index)
    res = pd_run(n=4, gap=2.0)
    kv = res.extras["kv_transfers"]
    assert (res.requests["finished_at"].iloc[:-1].to_numpy()
            < res.requests["arrival_at"].iloc[1:].to_numpy()).all()
    assert (kv["decode_gpu"] == DECODE[0]).all()
    assert (kv["prefill_gpu"] == "n0/gpu0").all()


def test_a_request_goes_to_a_prefill_gpu_that_is_not_already_prefilling():
    # the second request arrives while the first is being prefilled on n0/gpu0 (out of the
    # queue, in the scheduler): it goes to the next prefill GPU
    kv = pd_run(n=2, gap=0.01).extras["kv_transfers"]
    assert list(kv["prefill_gpu"]) == ["n0/gpu0", "n0/gpu1"]
    assert kv["prefilled_at"].iloc[1] > 0.01


def test_the_prefill_gpu_frees_a_requests_kv_at_the_hand_off():
    # every GPU has KV room for one 24-block prompt, not two; one request every 2 s, each
    # prefilled on the idle pool's first GPU: each fits only once the one before it left
    block = 64 * ARCH.kv_bytes_per_token * ARCH.layers
    room = 30 * block
    res = pd_run(n=4, gap=2.0, placement=f"[placement]\nweights_per_gpu = {80e9 * 0.9 - room}\n")
    kv = res.extras["kv_transfers"]
    assert res.summary["completed"] == 4 == len(kv)
    assert (kv["prefill_gpu"] == "n0/gpu0").all()
    assert (res.gpus["capacity_blocks"] < 48).all()  # the room is as small as meant


def test_a_request_decoding_on_a_gpu_counts_toward_its_load_after_the_hand_off():
    # A and B decode for over a second on the pool's first two GPUs; C arrives while they do
    # and goes to the third (its KV on its way no longer counts for A's and B's GPUs, the
    # requests themselves do)
    sc = pd_scenario()
    tr = make_trace(arrival_at=[0.0, 0.0, 0.25], input_tokens=[1500] * 3,
                    output_tokens=[60, 60, 3], block_ids=[list(range(24)),
                                                         list(range(100, 124)),
                                                         list(range(200, 224))],
                    block_tokens=64)
    res = run(sc, "route", trace=tr)
    kv = res.extras["kv_transfers"]
    assert list(kv["decode_gpu"]) == DECODE[:3]
    assert kv["arrived_at"].iloc[:2].max() < 0.25 < res.requests["finished_at"].iloc[:2].min()


def test_a_prompt_held_whole_on_its_decode_gpu_moves_nothing():
    # the same 24-block prompt again after the first finished: its KV is on the decode GPU
    # already, so no message is posted and the transfer takes no time, alone or not
    sc = pd_scenario()
    tr = make_trace(arrival_at=[0.0, 2.0], input_tokens=[1536] * 2, output_tokens=[3, 3],
                    block_ids=[list(range(24))] * 2, block_tokens=64)
    res = run(sc, "route", trace=tr)
    kv = res.extras["kv_transfers"]
    assert res.requests["reused_blocks"].tolist() == [0, 24]
    again = kv.iloc[1]
    assert (again["bytes"], again["messages"]) == (0.0, 0)
    assert again["transfer_time"] == 0.0 == again["cf_transfer_time"]
    assert kv["bytes"].iloc[0] == 1536 * ARCH.kv_bytes_per_token * ARCH.layers
