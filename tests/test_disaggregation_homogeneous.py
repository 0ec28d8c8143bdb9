"""The homogeneous baseline's step (simulator/disaggregation/homogeneous.py) worked out by hand from
the kernel model: a tensor-parallel replica's projections and FFN with the LM head's rows, the
prefill chunks' attention after what came before (or whole prompts), the decodes' attention on
the slowest shard of KV heads or, for MLA, data-parallel over the group with the DSA indexer; the
KV a replica holds; its request cap; its ring all-reduce's bytes, steps and measured time."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from simulator.disaggregation import spec_of
from simulator.disaggregation.homogeneous import _Homogeneous
from simulator.disaggregation.shards import head_shard
from tests.test_disaggregation_plan import shipped, step


def baseline(name: str = "lamina_llama3_70b", **dotted) -> _Homogeneous:
    """A shipped Lamina scenario's baseline run over six requests of 800-5,800 prompt tokens
    (prompts computed here), built and not started."""
    sc, tr = shipped(name, disaggregation__prefill="local", **dotted)
    return _Homogeneous(sc, spec_of(sc), sc.seed, tr, None, None, None)


def free_per_gpu(run) -> float:
    """HBM left on one GPU of the replica for KV [B]: usable memory less its weights' share."""
    reserve = run.sc.placement.reserve_fraction
    return run.gspec.hbm_bytes * (1 - reserve) - run.arch.weight_bytes / run.t


@pytest.mark.parametrize("chunked", [True, False])
def test_a_tp4_step_by_kv_heads(chunked):
    # Llama-3-70B on 4 H100s (2 KV heads each): decodes 0 and 1 (5 and 7 tokens generated)
    # with request 2's prompt of 2,800 tokens, its last 500 in this step when chunked
    run = baseline(serving__chunked_prefill=chunked)
    arch, km, g, L = run.arch, run.kernels, run.gspec, run.arch.layers
    run.req.gen[:2] = [5, 7]
    chunk = 500 if chunked else 2800
    k, pre, x, dec, same = run._layer_plan(0, SimpleNamespace(prefill_left={}),
                                           step([0, 1], [(2, chunk)], [2]))
    attention = km.attention_time(g, head_shard(arch, 2), 2, (805 + 1807) / 2)
    if chunked:  # the chunk attends the 2,300 tokens before it; 3 rows of logits
        assert pre == 0.0
        assert k == pytest.approx(
            (km.non_attention_time(g, arch, 502, gpus=4, logits=3)
             + km.prefill_attention_time(g, arch, 500, 2300, gpus=4)) / L + attention, rel=1e-12)
        assert x == 502 * arch.bytes_per_element * arch.hidden_size
    else:  # the whole prompt's prefill apart; the decodes' step as without it
        assert pre == pytest.approx(km.prefill_time(g, arch, 2800, 1.0, gpus=4), rel=1e-12)
        assert k == pytest.approx(km.non_attention_time(g, arch, 2, gpus=4) / L + attention,
                                  rel=1e-12)
        assert x == 2802 * arch.bytes_per_element * arch.hidden_size
    assert dec.tolist() == [0, 1] and not same  # the replica's first step
    # each GPU holds a quarter of every request's KV: a replica holds four GPUs' room
    assert run.cap == pytest.approx(4 * free_per_gpu(run), rel=1e-12)



def test_a_step_of_the_last_steps_decodes_is_a_token_further_for_each():
    # the same two decodes three steps running (a token each after every step): each step's
    # kernel time is that of a fresh run asked about the same contexts — the kept sum grows
    # by the batch, 2 tokens a step; another batch is not the same
    run = baseline()
    idle = SimpleNamespace(prefill_left={})
    run.req.gen[:3] = [5, 7, 2]
    for i in range(3):
        k, _, _, dec, same = run._layer_plan(0, idle, step([0, 1], [], []))
        fresh = baseline()
        fresh.req.gen[:3] = run.req.gen[:3]
        assert k == fresh._layer_plan(0, idle, step([0, 1], [], []))[0]
        assert same == (i > 0) and dec.tolist() == [0, 1]
        run.req.gen[dec] += 1
    assert not run._layer_plan(0, idle, step([0, 2], [], []))[4]

def test_uneven_kv_heads_wait_for_the_gpu_with_the_most():
    # 8 KV heads over TP 3: 3, 3 and 2 — a step waits for a 3-head shard, and a replica holds
    # what fills a GPU with 3/8 of every request
    run = baseline(disaggregation__baseline_gpus=3, disaggregation__baseline_tp=3)
    arch, km, g = run.arch, run.kernels, run.gspec
    run.req.gen[:1] = [9]
    k, *_ = run._layer_plan(0, SimpleNamespace(prefill_left={}), step([0], [], []))
    slow = km.attention_time(g, head_shard(arch, 3), 1, 809)
    assert slow > km.attention_time(g, head_shard(arch, 2), 1, 809)
    assert k == pytest.approx(km.non_attention_time(g, arch, 1, gpus=3) / arch.layers + slow,
                              rel=1e-12)
    assert run.cap == pytest.approx(free_per_gpu(run) / (3 / 8), rel=1e-12)


def test_as_many_kv_heads_as_gpus_split_by_heads_not_by_requests():
    # 8 KV heads over TP 8: one head each, every GPU attends all three decodes
    run = baseline(disaggregation__baseline_gpus=8, disaggregation__baseline_tp=8,
                   topology__spec="lamina_h100_h20:h100_nodes=1,h20_nodes=1,gpus_per_node=8")
    arch, km, g = run.arch, run.kernels, run.gspec
    assert not run.dp_attention
    run.req.gen[:3] = [1, 2, 3]
    k, *_ = run._layer_plan(0, SimpleNamespace(prefill_left={}), step([0, 1, 2], [], []))
    att = km.attention_time(g, head_shard(arch, 1), 3, (801 + 1802 + 2803) / 3)
    assert k == pytest.approx(km.non_attention_time(g, arch, 3, gpus=8) / arch.layers + att,
                              rel=1e-12)


def test_mla_attends_data_parallel_with_the_dsa_indexer():
    # DeepSeek-V3.2 on TP 16: its one latent head cannot be split, so each GPU attends its own
    # requests (three decodes: one per GPU at most) over top-2,048 tokens, and the indexer
    # scores each whole context; a request's KV fills one GPU
    run = baseline("lamina_deepseek_v32")
    arch, km, g = run.arch, run.kernels, run.gspec
    assert run.t == 16 and run.dp_attention
    run.req.gen[:3] = [10, 300, 2000]
    k, *_ = run._layer_plan(0, SimpleNamespace(prefill_left={}), step([0, 1, 2], [], []))
    context = np.array([810, 2100, 4800])
    expect = (km.non_attention_time(g, arch, 3, gpus=16) / arch.layers
              + km.attention_time(g, arch, 1, np.minimum(context, 2048).mean())
              + km.indexer_time(g, arch, 1, context.mean()))
    assert k == pytest.approx(expect, rel=1e-12)
    assert run.cap == pytest.approx(16 * free_per_gpu(run), rel=1e-12)


@pytest.mark.parametrize("section, serving, cap", [(5, 7, 5), (0, 7, 7), (0, None, 1 << 30)])
def test_requests_per_replica_are_the_sections_cap_else_serving_max_num_seqs(section, serving,
                                                                             cap):
    dotted = {"disaggregation__baseline_max_batch": section}
    if serving is not None:
        dotted["serving__max_num_seqs"] = serving
    assert baseline(**dotted).scheds[0].max_num_seqs == cap


def test_a_replicas_ring_takes_the_measured_all_reduce():
    run = baseline()
    km, g = run.kernels, run.gspec
    for nbytes in (16_384.0, 2.0**20, 3e7):
        assert run.rings[0].measured(nbytes) == km.allreduce_time(g, nbytes, 4, "nvlink")


@pytest.mark.parametrize("layers, nbytes", [(20.0, 3e6), (1.0, 16_384.0), (5.0, 2.0**24)])
def test_a_ring_all_reduce_sends_its_bytes_in_its_steps_at_least_at_the_measured_time(layers,
                                                                                       nbytes):
    # TP 4 on one node over NCCL: 2 all-reduces a layer, each 2 (t - 1) steps sending
    # (t - 1) / t of the buffer per GPU; the wire time is the slowest hop's transfer plus each
    # further step's message time, stretched to the measured all-reduces when they take longer
    run = baseline(stack="nccl")
    ring, fab, t = run.rings[0], run.fabric, 4
    gpus = run.groups[0]
    hops = [(gpus[i], gpus[(i + 1) % t]) for i in range(t)]
    sent = 2 * layers * 2 * (t - 1) / t * nbytes
    steps = 2 * layers * 2 * (t - 1)
    msg0 = max(fab.message_time(a, c, 0) for a, c in hops)
    assert msg0 > 0
    assert ring.plan(layers, nbytes) == pytest.approx((sent, (steps - 1) * msg0), rel=1e-12)
    wire = max(fab.message_time(a, c, sent) for a, c in hops) + (steps - 1) * msg0
    assert ring.wire_time(layers, nbytes) == pytest.approx(wire, rel=1e-12)
    measured = 2 * layers * run.kernels.allreduce_time(run.gspec, nbytes, t, "nvlink")
    assert ring.time(layers, nbytes) == pytest.approx(max(wire, measured), rel=1e-12)
    assert ring.protocol_time(layers, nbytes) == pytest.approx(max(0.0, measured - wire),
                                                              rel=1e-9, abs=1e-15)
    assert ring.wire_time(layers, 0.0) == ring.time(layers, 0.0) == 0.0
    assert ring.fabric_of(run.graph, gpus) == "nvlink"
