"""Edges of a deployment's instance loops (``instance_loop.py``, ``fast_instances.py``) held to
answers worked out apart: the LM head's rows of a step that decodes and ends a prompt; a prompt
that waits on its prefill rank for the KV there to be handed off (and, marked, the hand-off
that does not wake it); a rank whose only prompt was preempted; a recompute's chunk attention;
the LRU mark of a decode step's blocks; a decode rank's recompute, which posts no KV; the SimPy
events of a step that only ends prompts."""

from __future__ import annotations

import numpy as np
import pytest
from test_engine_instances import moe_ends, scenario

from simulator import hardware, run
from simulator.costmodel.rank_kernels import RankKernels
from simulator.gpu.profiled import default_kernels
from simulator.models import model
from simulator.testing.invariants import check_steps
from workloads.schema import make_trace

ARCH = model("deepseek-v3.2")
RK = RankKernels(default_kernels(), hardware.gpu("H100"), ARCH)


def last_layer_end(res, iteration: int) -> float:
    """When a step's last simulated MoE layer ends (the later micro-batch's) [s]."""
    m = res.extras["moe"]
    m = m[(m["iteration"] == iteration) & (m["layer"] == m["layer"].max())]
    return float(moe_ends(m).max())


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_step_that_decodes_and_ends_a_prompt_runs_the_lm_head_over_both(engine):
    # one session (one rank): a 64-token prompt decodes; a second prompt of 640 tokens arrives
    # during its first step and is computed in one chunk beside that decode. The step's final
    # norm and LM head run over 641 tokens and two rows of logits (the decode's and the
    # finished prompt's), after its last MoE layer (40 groups: the last slot is one layer)
    sc = scenario(groups=40)
    tr = make_trace(arrival_at=[0.0, 1e-3], input_tokens=[64, 640], output_tokens=[5, 2],
                    block_tokens=64, block_ids=[[1], list(range(100, 110))],
                    session_id=[0, 0])
    res = run(sc, "route", trace=tr, engine=engine)
    assert res.requests["home"].nunique() == 1
    it = res.iterations
    step = it[(it["prefill_tokens"] == 640)]
    assert len(step) == 1 and step["batch"].iloc[0] == 1
    i = int(step["iteration"].iloc[0])
    lm_head = RK.step_time(641, 2)
    assert lm_head > 20 * RK.step_time(641, 0)  # no rows: the final norm alone
    assert float(step["finished_at"].iloc[0]) == pytest.approx(
        last_layer_end(res, i) + lm_head, rel=1e-12)


def prefill_unit(layerwise: bool) -> str:
    """A ``[deployment]``'s EP prefill unit of 16 ranks, handing KV over whole or by layer."""
    return ("\n[deployment.prefill]\nattention_dp = 16\n[deployment.transfer]\n"
            f"layerwise = {str(layerwise).lower()}\n")


#: every GPU holds 30 KV blocks of DeepSeek-V3.2 (weights_per_gpu leaves 30.5 blocks of the
#: 72 GB after the reserve)
TIGHT_ROOM = f"[placement]\nweights_per_gpu = {72e9 - 30.5 * 64 * 1152 * 61}\n"

#: a 4-node PD deployment (16 prefill ranks on n0–n1, 16 decode ranks on n2–n3) whose every GPU
#: holds 30 KV blocks
TIGHT = prefill_unit(False) + TIGHT_ROOM


def tight_pd(arrivals: list[float], engine: str):
    """Prompts of 20, 20 and 10 blocks arriving at ``arrivals`` on ``TIGHT``."""
    sc = scenario(nodes=4, selection="dense", extra=TIGHT)
    n = len(arrivals)
    tr = make_trace(arrival_at=arrivals, input_tokens=[1280, 1280, 640][:n],
                    output_tokens=[3] * n, block_tokens=64,
                    block_ids=[np.arange(20) + 1, np.arange(20) + 100, np.arange(10) + 200][:n])
    res = run(sc, "route", trace=tr, engine=engine)
    assert (res.gpus["capacity_blocks"] == 30).all()
    return res


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_prompt_waits_on_its_prefill_rank_until_the_kv_there_is_handed_off(engine):
    # the first prompt (20 of the rank's 30 blocks) is computed on n0/gpu0 by 0.1288 s and
    # keeps its KV there until its transfer has arrived (0.1308 s); the second arrives at
    # 0.1298 s, goes to the same (least loaded) rank, and does not fit: nothing fits on the
    # instance, which sleeps (it neither steps empty nor spins) until something changes. A
    # third prompt at 0.3 s (on n0/gpu1) wakes it at the latest. Every prompt is computed,
    # the second on n0/gpu0 after the first's KV left, and the prefill instance numbers its
    # steps without a gap
    res = tight_pd([0.0, 0.1298, 0.3], engine)
    req = res.requests
    assert req["completed"].all() and (req["tokens_generated"] == 3).all()
    kv = res.extras["kv_transfers"].set_index("request_id")
    assert kv.loc[0, "prefill_gpu"] == kv.loc[1, "prefill_gpu"] == "n0/gpu0"
    assert kv.loc[0, "prefilled_at"] < 0.1298 < kv.loc[0, "arrived_at"]
    it = res.iterations
    pre = it[it["gpu"].astype(str).str.startswith(("n0/", "n1/"))]
    second = pre[(pre["gpu"].astype(str) == "n0/gpu0") & (pre["started_at"] > 0.0)
                 & (pre["prefill_tokens"] == 1280)]
    assert len(second) == 1
    assert second["started_at"].iloc[0] >= kv.loc[0, "arrived_at"]
    steps = sorted(set(pre["iteration"]))
    assert steps == list(range(len(steps))) and len(steps) in (2, 3)


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_prompt_waiting_for_room_on_its_prefill_rank_is_woken_by_the_hand_off(engine):
    # as above without the third prompt: the second waits on n0/gpu0 for the first's KV to
    # leave (0.1308 s) and its step starts that instant. Until stop 66 the hand-off woke only
    # the decode rank: the prefill instance slept on, and with no later arrival the second
    # prompt was never computed
    res = tight_pd([0.0, 0.1298], engine)
    assert res.requests["completed"].tolist() == [True, True]
    check_steps(res)  # the ranks' steps one at a time, every token accounted for
    kv = res.extras["kv_transfers"].set_index("request_id")
    it = res.iterations
    second = it[(it["gpu"].astype(str) == kv.loc[1, "prefill_gpu"])
                & (it["prefill_tokens"] == 1280) & (it["started_at"] > 0.0)]
    assert second["started_at"].tolist() == [kv.loc[0, "arrived_at"]]


def test_a_prefill_rank_whose_only_prompt_was_preempted_steps_again_at_once():
    # 256-token chunks on TIGHT ranks whose transfer engine paces a NIC at 0.1 GB/s: the
    # first prompt's message (10 blocks) keeps n0/gpu0's engine busy for ~0.45 s, so the
    # second prompt's KV (20 blocks) waits there, held, until ~0.599 s. A third prompt of 20
    # blocks arrives at 0.48 s on the same rank: two chunks fit (28 blocks), the third does
    # not, and the rank preempts it, its only request — a step that computes nothing. The
    # instance steps again at once (it does not sleep: nothing else would wake it): the
    # prompt is admitted anew (its 8 computed blocks cached) and computed, its steps back to
    # back with the ones before
    extra = TIGHT.replace("layerwise = false", "layerwise = false\nbandwidth = 1e8") + (
        "[serving]\nmax_num_batched_tokens = 256\n")
    sc = scenario(nodes=4, selection="dense", extra=extra)
    tr = make_trace(arrival_at=[0.0, 0.2, 0.48], input_tokens=[640, 1280, 1280],
                    output_tokens=[2, 2, 2], block_tokens=64,
                    block_ids=[np.arange(10) + 1, np.arange(20) + 100, np.arange(20) + 200])
    res = run(sc, "route", trace=tr)
    assert res.requests["completed"].tolist() == [True, True, True]
    kv = res.extras["kv_transfers"].set_index("request_id")
    assert (kv["prefill_gpu"] == "n0/gpu0").all()
    assert kv.loc[1, "prefilled_at"] < 0.48 < kv.loc[1, "arrived_at"] < kv.loc[2, "prefilled_at"]
    it = res.iterations
    mine = it[(it["gpu"].astype(str) == "n0/gpu0") & (it["started_at"] >= 0.48)]
    # two chunks, the preemption, then the 12 blocks not cached: five steps without a gap
    assert mine["prefill_tokens"].tolist() == [256] * 5
    # the plan that only preempted has no row: its preemption is counted in the rank's next
    assert mine["preempted"].tolist() == [0, 0, 1, 0, 0]
    assert res.summary["preemptions"] == it["preempted"].sum() == 1
    assert mine["started_at"].iloc[0] == 0.48
    assert mine["started_at"].iloc[1:].tolist() == mine["finished_at"].iloc[:-1].tolist()
    assert mine["finished_at"].iloc[-1] == kv.loc[2, "prefilled_at"]


def test_a_recompute_after_a_preemption_attends_the_tokens_generated_before_it():
    # one rank holding 8 KV blocks; two 128-token prompts (2 blocks each) decode in lockstep:
    # after decode step j each holds 128 + j tokens of KV, 4 blocks each at j = 128. At step
    # 129 the first needs a fifth block and the second (the newest) is preempted, having made
    # 1 + 128 = 129 tokens. It comes back the step after, its prompt and those 129 tokens to
    # recompute, mostly cached: its chunk of c tokens is their last, and attends the
    # 128 + 129 - c tokens before it (the kernel model's, worked out here)
    extra = f"[placement]\nweights_per_gpu = {72e9 - 8.5 * 64 * 1152 * 61}\n"
    sc = scenario(nodes=2, selection="dense", extra=extra, groups=1)
    tr = make_trace(arrival_at=[0.0, 0.0], input_tokens=[128, 128], output_tokens=[140, 140],
                    block_tokens=64, block_ids=[[1, 2], [3, 4]], session_id=[0, 0])
    res = run(sc, "route", trace=tr)
    assert res.requests["tokens_generated"].tolist() == [140, 140]
    assert (res.gpus["capacity_blocks"] == 8).all()
    it = res.iterations.set_index("iteration")
    assert it.loc[128, "batch"] == 2 and it.loc[129, "batch"] == 1
    c = int(it.loc[130, "prefill_tokens"])
    assert 0 < c < 128 and it.loc[130, "batch"] == 1  # the first decodes beside it
    km, h100 = default_kernels(), hardware.gpu("H100")
    want = km.prefill_attention_time(h100, ARCH, c, 128 + 129 - c)
    assert it.loc[130, "prefill_time"] == pytest.approx(want, rel=1e-12)
    assert it.loc[0, "prefill_time"] == pytest.approx(
        2 * km.prefill_attention_time(h100, ARCH, 128, 0), rel=1e-12)


def test_a_decode_step_marks_the_blocks_it_reads_as_recently_used():
    # one rank of 8 KV blocks, no host tier: P (blocks 1, 2) decodes 60 tokens, reading its
    # prompt's blocks at every step until 1.32 s; Q (blocks 3, 4) arrives at 0.06 s, after P's
    # were placed, and is done by 0.15 s. At 3 s a 4-block prompt needs room among their
    # cached blocks: the least recently used go, Q's (P's were read last at 1.32 s, not
    # placed last). A prompt on P's prefix then reuses its two blocks; one on Q's, none
    extra = (f"[placement]\nhost_tier = false\n"
             f"weights_per_gpu = {72e9 - 8.5 * 64 * 1152 * 61}\n")
    sc = scenario(nodes=2, selection="dense", extra=extra, groups=1)
    tr = make_trace(arrival_at=[0.0, 0.06, 3.0, 4.0, 5.0],
                    input_tokens=[128, 128, 256, 192, 192], output_tokens=[60, 2, 2, 2, 2],
                    block_tokens=64, session_id=[0] * 5,
                    block_ids=[[1, 2], [3, 4], [100, 101, 102, 103], [1, 2, 200], [3, 4, 300]])
    res = run(sc, "route", trace=tr)
    req = res.requests
    assert req["completed"].all() and req["home"].nunique() == 1
    assert req["finished_at"][1] < 0.2 < 1.3 < req["finished_at"][0] < 3.0
    assert req["reused_blocks"].tolist() == [0, 0, 0, 2, 0]


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_decode_rank_that_recomputes_a_preempted_request_posts_no_kv(engine):
    # PD with layer-wise transfer, every GPU holding 8 KV blocks: two 128-token prompts of one
    # session are computed on two prefill ranks and each sent as 4 messages (2 slots: the
    # first layers and the last one of each) of 128 tokens' KV over 61 layers. On their decode
    # rank each computes its own tokens' KV: at 257 tokens each (5 blocks) they need 10 > 8,
    # so the second is preempted and recomputes its last block there. A decode rank's chunk
    # is not a prefill's to hand off: the PD traffic is the two prompts' KV, nothing more
    extra = (f"[deployment.prefill]\nattention_dp = 16\n[deployment.transfer]\n"
             f"layerwise = true\n[placement]\n"
             f"weights_per_gpu = {72e9 - 8.5 * 64 * 1152 * 61}\n")
    sc = scenario(nodes=4, selection="dense", extra=extra, groups=1)
    tr = make_trace(arrival_at=[0.0, 0.0], input_tokens=[128, 128], output_tokens=[300, 300],
                    block_tokens=64, block_ids=[[1, 2], [3, 4]], session_id=[0, 0])
    res = run(sc, "route", trace=tr, engine=engine)
    req = res.requests
    assert req["tokens_generated"].tolist() == [300, 300]
    assert req["home"].tolist() == ["n2/gpu0"] * 2
    it = res.iterations
    decode = it[it["gpu"].astype(str) == "n2/gpu0"]
    assert decode["prefill_tokens"].sum() > 0  # the recompute, on the decode rank
    kv = res.extras["kv_transfers"]
    one = 128 * ARCH.kv_bytes_per_token * ARCH.layers
    assert kv["request_id"].tolist() == [0, 1]
    assert kv["messages"].tolist() == [4, 4] and kv["bytes"].tolist() == [one, one]
    assert res.extras["bytes_by_class"]["pd_transfer"] == pytest.approx(2 * one, rel=1e-12)


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_step_that_only_ends_prompts_schedules_nothing_after_its_overhead(engine):
    # prompts computed outside the run, each making one token, a second apart: each is one
    # step of its instance that computes nothing (the token comes with the admission). One
    # more such request costs the run three SimPy events — its arrival's timeout, the
    # instance's wake-up, the host overhead — and no wait of zero length at the step's end
    def events(n: int) -> int:
        tr = make_trace(arrival_at=[float(k) for k in range(n)], input_tokens=[640] * n,
                        output_tokens=[1] * n, block_tokens=64,
                        block_ids=[list(range(100 * k + 1, 100 * k + 11)) for k in range(n)])
        res = run(scenario(extra="external_prefill = true"), "route", trace=tr, engine=engine)
        it = res.iterations
        assert len(it) == n and (it["batch"] == 0).all() and (it["prefill_tokens"] == 0).all()
        assert res.requests["completed"].all()
        return res.summary["events"]

    assert events(3) - events(2) == 3
