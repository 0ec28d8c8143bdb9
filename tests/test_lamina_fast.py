"""The Lamina loop's fast mode against its exact loop.

Its contract (simulator/disaggregation/lamina_fast.py): a micro-batch alone is composed to the
exact loop's every time (to float rounding); micro-batches that interleave are composed one slot
at a time in the order they reach it, exact while nothing is pushed back and no two micro-batches'
bulk flows overlap on a link, else within the engine contract on summary metrics (5 % at p50,
10 % at p99). Each test runs both loops on the same input and compares what they record.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import simpy

from simulator.disaggregation import spec_of
from simulator.disaggregation.lamina import _Lamina
from simulator.disaggregation.lamina_fast import CalendarStream, PhaseLinks
from simulator.runner import load_trace, run
from simulator.scenario import Scenario
from simulator.sweep.spec import set_dotted
from simulator.testing.invariants import check_ordering, check_steps
from workloads import make_trace

ROOT = Path(__file__).resolve().parents[1]
EIGHT = "lamina_h100_h20:h100_nodes=1,h20_nodes=1,gpus_per_node=8"


def scenario(name: str = "lamina_llama3_70b", **dotted) -> Scenario:
    """A shipped Lamina scenario with dotted fields changed."""
    data = tomllib.loads((ROOT / "scenarios" / f"{name}.toml").read_text())
    for key, value in dotted.items():
        set_dotted(data, key.replace("__", "."), value)
    return Scenario.from_dict(data, source=name, base=ROOT / "scenarios")


def trace(n: int, seed: int = 0, span: float = 1.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    inp = rng.integers(200, 6000, n)
    out = rng.integers(2, 40, n)
    arrival = np.sort(rng.uniform(0.0, span, n))
    blocks = [np.arange(-(-int(x) // 512), dtype=np.int64) + 10_000 * i
              for i, x in enumerate(inp)]
    return make_trace(arrival_at=arrival, input_tokens=inp, output_tokens=out, block_ids=blocks)


def both(sc: Scenario, tr: pd.DataFrame):
    return (run(sc, "disaggregated", trace=tr, engine="exact"),
            run(sc, "disaggregated", trace=tr, engine="fast"))


def assert_same(exact, fast, rtol: float = 1e-9, busy_rtol: float | None = None) -> None:
    """Every record of the two runs equal (times to ``rtol`` relative), a link's busy time too
    where messages of one phase cross it at once (the union of their times, since stop 74) —
    to ``busy_rtol`` (default ``rtol``): a sum of many short spans, each a difference of two
    times, it keeps their absolute errors."""
    assert exact.summary["engine"] == "exact" and fast.summary["engine"] == "fast"
    assert "engine_fallback" not in fast.summary
    pd.testing.assert_frame_equal(exact.requests, fast.requests, rtol=rtol, atol=0)
    pd.testing.assert_frame_equal(exact.iterations.drop(columns=["engine"], errors="ignore"),
                                  fast.iterations.drop(columns=["engine"], errors="ignore"),
                                  rtol=rtol, atol=1e-15)
    pd.testing.assert_frame_equal(exact.links.drop(columns="busy_time"),
                                  fast.links.drop(columns="busy_time"), rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(fast.links["busy_time"], exact.links["busy_time"],
                               rtol=rtol if busy_rtol is None else busy_rtol, atol=1e-12)
    pd.testing.assert_frame_equal(exact.gpus, fast.gpus, rtol=rtol, atol=1e-15)
    assert fast.extras["bytes_by_class"] == pytest.approx(exact.extras["bytes_by_class"],
                                                          rel=1e-12)
    for key in ("bytes_moved", "tbt_p50", "tbt_p99", "ttft_p50", "ttft_p99",
                "throughput_tokens_per_s", "sim_time", "preemptions", "model_pool_idle",
                "attention_pool_idle", "completed"):
        assert fast.summary[key] == pytest.approx(exact.summary[key], rel=rtol, abs=0), key
    check_ordering(fast)
    check_steps(exact)
    check_steps(fast)


@pytest.mark.parametrize(("name", "split", "early_q", "dotted"), [
    ("lamina_llama3_70b", "heads", True, {}),     # GQA: 8 KV heads over 4 H20, TP-2 slice
    ("lamina_llama3_70b", "heads", False, {}),
    ("lamina_llama3_70b", "requests", True, {}),
    # slots of two folded layers: one more hop each way per slot
    ("lamina_llama3_70b", "heads", True, {"engine__layer_groups": 40}),
    # three slices under 80 layers: the last slot's outputs go to the first slice, where the
    # other slots of its slice send them to the next
    ("lamina_llama3_70b", "heads", True, {"topology__spec": EIGHT,
                                          "disaggregation__model_gpus": 6,
                                          "disaggregation__micro_batches": 4}),
    ("lamina_deepseek_v32", "requests", True, {}),  # MLA + DSA: data-parallel attention
    ("lamina_deepseek_v32", "requests", False, {}),
])
def test_one_request_alone_equals_the_exact_loop_in_one_event_per_iteration(name, split,
                                                                            early_q, dotted):
    sc = scenario(name, disaggregation__attention_split=split,
                  disaggregation__early_q=early_q, **{"engine__layer_groups": 0, **dotted})
    exact, fast = both(sc, trace(1, seed=2))
    assert exact.summary["completed"] == 1
    assert_same(exact, fast, rtol=1e-9)
    # alone, an iteration is composed whole: one timeout each (plus the arrivals' and each
    # micro-batch's start and wake-up)
    assert fast.summary["events"] <= len(fast.iterations) + 4 + 2 * spec_of(sc).micro_batches
    assert exact.summary["events"] > 50 * len(exact.iterations)


@pytest.mark.parametrize("dotted", [
    # two micro-batches on one TP-2 slice, every layer simulated
    {"engine__layer_groups": 0},
    # three micro-batches over two slices, K/V with the query, split by requests
    {"topology__spec": EIGHT, "disaggregation__model_gpus": 4,
     "disaggregation__micro_batches": 3, "disaggregation__early_q": False,
     "disaggregation__attention_split": "requests"},
    # prompts prefilled on the model slices in chunks (their KV shipped to the attention pool)
    {"disaggregation__prefill": "local", "serving__max_num_batched_tokens": 2048},
])
def test_interleaved_micro_batches_with_a_few_requests_equal_the_exact_loop(dotted):
    # 40 requests over 1.5 s: the micro-batches run together and alternate on the slice and the
    # attention GPUs every layer; here nothing is pushed back and their flows do not meet on a
    # link, so the stage-by-stage composition is the exact loop's schedule
    sc = scenario(**dotted)
    exact, fast = both(sc, trace(40, seed=3))
    assert exact.summary["completed"] == 40
    it = exact.iterations
    assert it["gpu"].value_counts().min() > 5
    # the micro-batches' iterations overlap most of the run (they interleave)
    busy = (it["finished_at"] - it["started_at"]).sum()
    assert busy > 1.5 * (it["finished_at"].max() - it["started_at"].min())
    assert_same(exact, fast, rtol=1e-9)
    assert fast.summary["events"] < exact.summary["events"] / 10


def test_a_run_cut_by_its_duration_keeps_what_the_exact_loop_kept():
    sc = scenario(engine__layer_groups=0, engine__duration=0.61)
    exact, fast = both(sc, trace(30, seed=4))
    assert exact.summary["sim_time"] == 0.61 and exact.summary["completed"] < 30
    assert_same(exact, fast, rtol=1e-9)
    assert fast.summary["bytes_moved"] == pytest.approx(exact.summary["bytes_moved"], rel=1e-12)


def test_preemptions_when_the_attention_pool_runs_out_are_the_exact_loops():
    # ten prompts of 24k-32k tokens on one H20 (~270k tokens of KV): the admitted requests'
    # decodes outgrow the pool and the newest are preempted (recomputed), in both loops alike.
    # The recomputes are prefill chunks (prompts that arrived prefilled were taken back at no
    # cost until the fix: 2 preemptions, no chunk), over which the loops agree to 1.3e-8 here,
    # as they do with prefill = "local" on this trace (measured): times to 1e-7. A link's
    # busy time sums 69,344 spans of ~0.3 ms at ~140 s, each end off by up to ~1e-7 × 140 s:
    # 0.011 of 20.33 s (measured), so to 1e-3
    rng = np.random.default_rng(2)
    inp, out = rng.integers(24_000, 32_000, 10), rng.integers(2_500, 3_500, 10)
    tr = make_trace(arrival_at=np.sort(rng.uniform(0.0, 0.5, 10)), input_tokens=inp,
                    output_tokens=out,
                    block_ids=[np.arange(-(-int(x) // 512), dtype=np.int64) + 10_000 * i
                               for i, x in enumerate(inp)])
    exact, fast = both(scenario(disaggregation__attention_gpus=1), tr)
    assert exact.summary["preemptions"] >= 2 and exact.summary["completed"] == 10
    assert exact.iterations["prefill_tokens"].sum() > 0  # the preempted computed again
    assert_same(exact, fast, rtol=1e-7, busy_rtol=1e-3)


def test_every_request_is_accounted_for_and_the_same_seed_gives_the_same_run():
    sc = scenario("lamina_deepseek_v32", engine__layer_groups=0)
    tr = trace(30, seed=6)
    a = run(sc, "disaggregated", trace=tr, engine="fast")
    b = run(sc, "disaggregated", trace=tr, engine="fast")
    pd.testing.assert_frame_equal(a.requests, b.requests, rtol=0, atol=0)
    pd.testing.assert_frame_equal(a.iterations, b.iterations, rtol=0, atol=0)
    assert a.summary["bytes_moved"] == b.summary["bytes_moved"]
    r = a.requests
    assert len(r) == 30 and (r["completed"] | (r["reason"] != "")).all()
    assert (r.loc[r["completed"], "tokens_generated"]
            == r.loc[r["completed"], "output_tokens"]).all()


def test_a_loaded_closed_loop_with_shared_links_holds_the_engine_contract():
    # four micro-batches over three one-GPU slices of LLaMA-33B and two H20s behind 100 GbE, 80
    # requests at once, every layer: the slices send to the same attention NICs at once, so
    # phases are timed together with other micro-batches' flows in flight and composed slots
    # are pushed back (both checked) — within the contract (5 % at p50 and on throughput,
    # 10 % at p99; measured ≤ 0.03 %), the same traffic, every request within 0.1 %
    sc = scenario("lamina_llama_33b", engine__max_requests=80, workload__concurrency=80,
                  engine__layer_groups=0, disaggregation__model_gpus=3,
                  disaggregation__micro_batches=4, disaggregation__attention_gpus=2,
                  topology__spec="lamina_h100_h20:h100_nodes=1,h20_nodes=1,gpus_per_node=4,"
                                 "nic=eth100")
    tr = load_trace(sc, sc.seed)
    exact = run(sc, "disaggregated", trace=tr, engine="exact")
    loop = _Lamina(sc, spec_of(sc), sc.seed, tr, None, None, None, fast=True)
    fast = loop.execute()
    assert loop.composer.links.shared > 100  # phases timed with others' flows
    assert loop.composer.pushed > 100  # composed slots pushed back, waited out
    for key, tol in (("ttft_p50", 0.05), ("tbt_p50", 0.05), ("throughput_tokens_per_s", 0.05),
                     ("ttft_p99", 0.10), ("tbt_p99", 0.10)):
        e, f = exact.summary[key], fast.summary[key]
        assert abs(f - e) <= tol * abs(e), (key, e, f)
    assert fast.summary["completed"] == exact.summary["completed"] == 80
    assert fast.summary["bytes_moved"] == pytest.approx(exact.summary["bytes_moved"], rel=1e-12)
    cols = ["admitted_at", "first_token_at", "finished_at"]
    x, y = exact.requests[cols].to_numpy(float), fast.requests[cols].to_numpy(float)
    assert np.nanmax(np.abs(y - x) / np.maximum(np.abs(x), 1e-30)) < 1e-3  # measured 2.5e-4


A, B, FAR2 = "n0/gpu0", "n0/gpu1", "n1/gpu1"


def unstarted() -> _Lamina:
    """A Lamina run's fabric and clock (ibgda), not started."""
    sc = scenario(stack="ibgda")
    return _Lamina(sc, spec_of(sc), sc.seed, trace(1), None, None, None)


def fabric_ends(messages, until: float = float("inf")) -> tuple[_Lamina, dict[str, float]]:
    """Each message ``(name, src, dst, bytes, issued at [s])`` sent as events on an
    :func:`unstarted` run's Fabric until ``until`` [s]: that run, and when each arrived [s]."""
    oracle = unstarted()
    env, ends = oracle.env, {}

    def send(name, src, dst, nbytes, t):
        yield env.timeout(t)
        yield oracle.fabric.transfer(src, dst, nbytes)
        ends[name] = env.now

    for args in messages:
        env.process(send(*args))
    env.run(until=None if until == float("inf") else until)
    return oracle, ends


def test_a_phase_shares_a_link_with_one_that_ends_before_its_later_messages_start():
    """Micro-batch 0 sends 20 MB over the NVLink n0/gpu0 → n0/gpu1; micro-batch 1 then 2 MB
    over the same NVLink and 2 MB over RDMA to n1/gpu0, issued so that the first message ends
    after its NVLink message starts (3 µs after the issue) and before its RDMA message does
    (16.5 µs after): the two NVLink messages share the link while both are in flight, as on
    the Fabric."""
    run = unstarted()
    fab, far = run.fabric, "n1/gpu0"
    alone = fab.message_time(A, B, 20e6)
    at = alone - (fab.message_time(A, B, 0) + fab.message_time(A, far, 0)) / 2
    links = PhaseLinks(run.env, fab, [0.0, 0.0], float("inf"))
    links.phase(links.shape([(A, B, 20e6)]), 0.0, 0)
    links.phase(links.shape([(A, B, 2e6), (A, far, 2e6)]), at, 1)
    _, ends = fabric_ends([("A", A, B, 20e6, 0.0), ("B0", A, B, 2e6, at),
                           ("B1", A, far, 2e6, at)])
    first, second = links.open
    assert first.ends == pytest.approx([ends["A"]], rel=1e-12) and ends["A"] > alone
    assert second.ends == pytest.approx([ends["B0"], ends["B1"]], rel=1e-12)
    assert links.debts == pytest.approx([ends["A"] - alone, 0.0], rel=1e-12)


def three_phases(late_dst: str, until: float = float("inf")):
    """Three micro-batches' phases on a node of 4 H100s and one of 4 H20s (rail-optimized),
    timed by :class:`PhaseLinks` (ibgda): micro-batch 2 sends 4 MB n0/gpu1 → n1/gpu1,
    micro-batch 0 then 20 MB over the NVLink n0/gpu0 → n0/gpu1 and 4 MB n0/gpu0 → n1/gpu1
    (by its own NIC n0/nic0 and the spine, meeting micro-batch 2's message at n1/nic1 — a GPU
    is not a relay: before, it went over n0/gpu1's NIC), and micro-batch 1, later, 2 MB over
    the same NVLink and 2 MB to ``late_dst``, issued so that micro-batch 0's NVLink message
    ends after micro-batch 1's starts (3 µs after its issue) and before its RDMA message does
    (16.5 µs after). Returns the phase links, their phases (2, 0, 1), micro-batch 0's and 2's
    ends before micro-batch 1's phase, its issue time [s], and the same messages sent as
    events on a second run's Fabric until ``until`` (that run, and each message's end)."""
    run = unstarted()
    fab = run.fabric
    links = PhaseLinks(run.env, fab, [0.0, 0.0, 0.0], until)
    links.phase(links.shape([(B, FAR2, 4e6)]), 0.0, 2)
    links.phase(links.shape([(A, B, 20e6), (A, FAR2, 4e6)]), 0.0, 0)
    before = [*links.open[1].ends, *links.open[0].ends]
    at = links.open[1].ends[0] - (fab.message_time(A, B, 0)
                                  + fab.message_time(A, late_dst, 0)) / 2
    links.phase(links.shape([(A, B, 2e6), (A, late_dst, 2e6)]), at, 1)
    oracle, ends = fabric_ends([("C", B, FAR2, 4e6, 0.0), ("A0", A, B, 20e6, 0.0),
                                ("A1", A, FAR2, 4e6, 0.0), ("B0", A, B, 2e6, at),
                                ("B1", A, late_dst, 2e6, at)], until)
    return links, run, list(links.open), before, oracle, ends


@pytest.mark.parametrize("late_dst", ["n1/gpu0", "n1/gpu1"])
def test_phases_in_flight_together_end_when_the_fabric_says(late_dst):
    """:func:`three_phases`: the NVLink messages of micro-batches 0 and 1 share the link while
    both are in flight. To n1/gpu0 micro-batch 1's RDMA message shares no link with micro-batch
    2's, which still belongs to the group through micro-batch 0's; to n1/gpu1 it shares micro-
    batch 0's and 2's path and pushes both back. Every message ends when the Fabric, sending the
    same messages as events, says; a phase pushed back charges its micro-batch; the links carry
    the Fabric's bytes."""
    links, run, (c, first, second), before, oracle, ends = three_phases(late_dst)
    assert c.ends == pytest.approx([ends["C"]], rel=1e-12)
    assert first.ends == pytest.approx([ends["A0"], ends["A1"]], rel=1e-12)
    assert second.ends == pytest.approx([ends["B0"], ends["B1"]], rel=1e-12)
    assert ends["A0"] > before[0]  # micro-batch 1's NVLink message slowed micro-batch 0's
    assert [c.last, first.last] == [max(c.ends), max(first.ends)]
    assert links.debts[1] == 0.0 and links.debts[2] > 0.0  # 0's phase pushed 2's back
    if late_dst == "n1/gpu1":  # and 1's pushed both back (the last message of each)
        assert ends["A1"] > before[1] and ends["C"] > before[2]
        assert links.debts[0] == pytest.approx(ends["A1"] - before[1], rel=1e-12)
    else:  # B1 shares n0/nic0 with A1 (which n1/nic1 holds to half a NIC), slowing nothing:
        # the same ends, to rounding (the Fabric's group is filled again when B1 joins)
        assert (ends["A1"], ends["C"]) == pytest.approx((before[1], before[2]), rel=1e-12)
        assert links.debts[0] == 0.0
    assert links.shared == 2
    links.close()
    assert links.open == []
    got, want = run.fabric.links_frame(), oracle.fabric.links_frame()
    assert got[["src", "dst"]].values.tolist() == want[["src", "dst"]].values.tolist()
    np.testing.assert_allclose(got["bytes"], want["bytes"], rtol=1e-12, atol=1e-6)
    assert list(run.fabric.delivered_by_class) == list(oracle.fabric.delivered_by_class)
    assert run.fabric.delivered_by_class[0] == 32e6


def test_phases_cut_by_the_runs_end_count_what_was_sent_and_what_arrived():
    """:func:`three_phases` cut at 120 µs: every message was issued by then (32 MB sent), and
    the 20 and 2 MB NVLink messages had arrived (22 MB delivered) — as the Fabric counts."""
    links, run, _, _, oracle, ends = three_phases("n1/gpu1", until=1.2e-4)
    links.close()
    assert sorted(ends) == ["A0", "B0"]
    assert list(run.fabric.sent_by_class) == list(oracle.fabric.sent_by_class)
    assert list(run.fabric.delivered_by_class) == list(oracle.fabric.delivered_by_class)
    assert (run.fabric.sent_by_class[0], run.fabric.delivered_by_class[0]) == (32e6, 22e6)


def test_runner_reports_the_fast_engine_for_lamina():
    sc = scenario()
    sc = sc.with_changes(engine=dataclasses.replace(sc.engine, mode="fast"))
    res = run(sc, "disaggregated", trace=trace(3))
    assert res.summary["engine"] == "fast" and "engine_fallback" not in res.summary


def test_a_calendar_stream_counts_the_kernels_issued_before_the_runs_end():
    env = simpy.Environment()
    stream = CalendarStream(env, [0.0], until=1.0)
    for at in (0.0, 0.5, 1.5):  # 0.2 s each; the last issued after the run's end
        stream.cal.reserve(at, 0.2, owner=0)
    assert stream.kernels_run == 2
    assert stream.busy_time == 0.0  # nothing has run at time 0
    env.run(until=0.6)
    assert stream.busy_time == pytest.approx(0.2 + 0.1, rel=1e-12)  # the second half-run


def lone_run(fast: bool, flow_at: float | None = None, nbytes: float = 1e6):
    """One request of 1,000 prompt tokens and 3 output tokens on :func:`scenario` (four slots of
    20 layers: two decode iterations after its first token), run on the exact loop or the fast
    mode, with a ``nbytes`` message n1/gpu0 → n0/gpu0 (an attention GPU to the model slice: the
    path of the outputs' return) issued at ``flow_at`` [s] if given — on the exact loop a
    Fabric transfer, in the fast mode a phase of another micro-batch (1; the request runs on
    micro-batch 0). Returns the executed run, its result and, in the fast mode, micro-batch
    0's phases in issue order (their ends as pushed by the end of the run; empty on the exact
    loop)."""
    sc = scenario()
    tr = make_trace(arrival_at=np.zeros(1), input_tokens=np.array([1000]),
                    output_tokens=np.array([3]), block_ids=[np.arange(2, dtype=np.int64)])
    loop = _Lamina(sc, spec_of(sc), sc.seed, tr, None, None, None, fast=fast)
    env, phases = loop.env, []
    if fast:
        links = loop.composer.links
        timed = links.phase

        def phase(shape, at, owner):  # the phase objects, read after the run (pushed ends)
            end = timed(shape, at, owner)
            phases.append(links.open[-1])
            return end

        links.phase = phase

    def flow():
        yield env.timeout(flow_at)
        if fast:
            links.phase(links.shape([("n1/gpu0", "n0/gpu0", nbytes)]), env.now, 1)
        else:
            yield loop.fabric.transfer("n1/gpu0", "n0/gpu0", nbytes)

    if flow_at is not None:
        env.process(flow())
    return loop, loop.execute(), [p for p in phases if p.owner == 0]


@pytest.mark.parametrize("returning", [5, 11])
def test_a_phase_pushed_back_in_flight_delays_what_follows_as_on_the_fabric(returning):
    """A message issued 3 µs into the outputs' return of the second slot (phase 5: each slot
    sends the query, then K/V, then the outputs back) or of the last slot of the first decode
    iteration (phase 11) shares their link and pushes them back while the micro-batch waits
    for them (for the next slot's start, or for its iteration's end). The next slot's slice
    segment is issued when the pushed outputs arrive (plus the folded layers' hops), and the
    request's times are the exact loop's, with the same message on the Fabric, to rounding."""
    alone_loop, alone, phases = lone_run(True)
    assert len(phases) == 2 * 4 * 3  # two iterations of four slots, three phases each
    back = phases[returning]
    at = back.issued_at + 3e-6
    exact_loop, exact, _ = lone_run(False, at)
    loop, fast, pushed = lone_run(True, at)
    assert loop.composer.pushed == 1 and pushed[returning].last > back.last
    cols = ["first_token_at", "finished_at"]
    np.testing.assert_allclose(fast.requests[cols].to_numpy(float),
                               exact.requests[cols].to_numpy(float), rtol=1e-12)
    assert fast.requests["finished_at"][0] > alone.requests["finished_at"][0]
    np.testing.assert_allclose([row[3] for row in loop.iters],
                               [row[3] for row in exact_loop.iters], rtol=1e-12)
    assert [row[3] for row in loop.iters] != [row[3] for row in alone_loop.iters]
    slot = returning // 3 + 1
    if slot % 4:  # the next slot's segment, issued when the outputs arrived
        starts = loop.composer.slice_streams[0].cal.at[4:]  # past the prompt's four slots
        folded = (20 - 1) * loop.rt0  # a slot of 20 layers pays 19 more round trips' latency
        assert starts[slot] == pytest.approx(pushed[returning].last + folded, rel=1e-12)
