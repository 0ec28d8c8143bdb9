"""The pool loops' records (simulator/disaggregation/): what each table and summary key says,
held to what the loops did, with the answers worked out independently of the code under test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_lamina_fast import scenario
from test_lamina_fast import trace as fast_trace

from simulator.disaggregation import spec_of
from simulator.disaggregation.lamina import _Lamina
from simulator.runner import run
from workloads import make_trace


def trace(inp, out, arrival=None):
    """Requests of ``inp`` prompt and ``out`` output tokens, arriving at ``arrival`` [s]."""
    inp = np.asarray(inp, np.int64)
    arrival = np.zeros(len(inp)) if arrival is None else np.asarray(arrival, float)
    blocks = [np.arange(-(-int(x) // 512), dtype=np.int64) + 10_000 * i
              for i, x in enumerate(inp)]
    return make_trace(arrival_at=arrival, input_tokens=inp, output_tokens=np.asarray(out),
                      block_ids=blocks)


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_micro_batch_preempting_its_only_request_records_the_preemption(engine):
    # two prompts of just under half of one H20's KV, one per micro-batch: their decodes fill
    # the pool after ~260 tokens each, and the micro-batch that next finds no room has nothing
    # to preempt but its own request — a step that runs nothing; its preemption belongs to the
    # micro-batch's next record (as the engines' loops count it), so Σ iterations.preempted is
    # the summary's count (docs/records.md). Its prompt arrived prefilled, but preempted it
    # computes its context again (131,835 tokens in chunks of 8,192) while the other request
    # still grows: at its 17th chunk the pool is full and it preempts itself once more
    sc = scenario(disaggregation__attention_gpus=1)
    per_token = _Lamina(sc, spec_of(sc), 0, trace([1000], [2]), None, None).pool.per_token
    cap = 0.9 * 96e9  # H20: 96 GB, the placement's 10 % reserve kept
    prompt = int(0.499 * cap / per_token)
    res = run(sc, "disaggregated", trace=trace([prompt, prompt], [300, 300]), engine=engine)
    assert res.summary["completed"] == 2
    assert res.summary["preemptions"] == 2
    assert int(res.iterations["preempted"].sum()) == 2


@pytest.mark.parametrize(("policy", "duration"), [
    ("homogeneous", 0.1364),  # inside a ring's all-reduce of a 5,700-token prefill chunk
    ("disaggregated", 0.25785),  # inside a slot's sending of three prompts' KV
])
def test_a_run_cut_while_a_message_is_on_the_wire_counts_its_bytes_so_far_on_both_modes(
        policy, duration):
    # the exact loop's Fabric, stopped with a flow under way, records on its links the bytes
    # moved by then (links.bytes, busy_time, the timelines); the fast modes, which time their
    # messages themselves, recorded only those delivered, so a message on the wire at the cut
    # was missing from every link record (26.4 GB of 26.4 GB of the homogeneous run's link
    # bytes; 2.68 of 2.68 GB of the Lamina run's)
    sc = scenario(disaggregation__prefill="local", engine__duration=duration)
    tr = fast_trace(3, seed=5, span=0.01)
    exact = run(sc, policy, trace=tr, engine="exact")
    fast = run(sc, policy, trace=tr, engine="fast")
    assert exact.summary["sim_time"] == fast.summary["sim_time"] == duration
    # a message was on the wire: sent, not delivered, and its bytes so far on the links
    sent, delivered = sum(exact.extras["bytes_by_class"].values()), exact.summary["bytes_moved"]
    assert sent > delivered
    assert exact.links["bytes"].sum() > delivered
    # a message on the wire at the cut is counted at its mean rate over its whole time (its
    # start to its end): exact while it is alone on its links, as the homogeneous run's are; the
    # Lamina run's messages out of n0/gpu0 share its NIC with one that ends first (each GPU
    # reaches the other machine by its own NIC since stop 73), so their rate was not constant
    # and the fast mode's bytes so far are 7e-5 off the Fabric's on the busiest links; their
    # busy time is the union of the messages' times (test_fast_lamina_busy_time_is_the_union)
    tol = 1e-9 if policy == "homogeneous" else 5e-4
    pd.testing.assert_frame_equal(exact.links, fast.links, rtol=tol, atol=1e-12)
    pd.testing.assert_frame_equal(exact.link_timeline, fast.link_timeline, rtol=tol,
                                  atol=1e-3)
    pd.testing.assert_frame_equal(exact.extras["link_classes"], fast.extras["link_classes"],
                                  rtol=tol, atol=1e-3)
    assert fast.extras["bytes_by_class"] == pytest.approx(exact.extras["bytes_by_class"],
                                                          rel=1e-12)
    assert fast.summary["bytes_moved"] == pytest.approx(delivered, rel=1e-12)
    # the same run uncut: every link's bytes agree to float rounding
    sc = scenario(disaggregation__prefill="local")
    whole = [run(sc, policy, trace=tr, engine=e).links for e in ("exact", "fast")]
    pd.testing.assert_frame_equal(*whole, rtol=1e-9, atol=1e-12)


def test_fast_lamina_busy_time_is_the_union():
    """A link is busy while anything crosses it: messages of one slot sharing n0/gpu0's NIC
    (docs/disaggregation.md, *Fast mode*) count their common time once (until stop 74 the
    fast mode summed them: up to 1.98x the exact loop's busy time on n0/gpu0's links)."""
    sc = scenario(disaggregation__prefill="local")
    tr = fast_trace(3, seed=5, span=0.01)
    exact, fast = (run(sc, "disaggregated", trace=tr, engine=e).links for e in ("exact", "fast"))
    np.testing.assert_allclose(fast["busy_time"], exact["busy_time"], rtol=1e-9, atol=1e-12)
