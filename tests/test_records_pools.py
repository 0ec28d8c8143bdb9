"""The pool loops' records (simulator/disaggregation/): what each table and summary key says,
held to what the loops did, with the answers worked out independently of the code under test."""

from __future__ import annotations

import numpy as np
import pytest
from test_lamina_fast import scenario

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
    # the summary's count (docs/records.md)
    sc = scenario(disaggregation__attention_gpus=1)
    per_token = _Lamina(sc, spec_of(sc), 0, trace([1000], [2]), None, None).pool.per_token
    cap = 0.9 * 96e9  # H20: 96 GB, the placement's 10 % reserve kept
    prompt = int(0.499 * cap / per_token)
    res = run(sc, "disaggregated", trace=trace([prompt, prompt], [300, 300]), engine=engine)
    assert res.summary["completed"] == 2
    assert res.summary["preemptions"] == 1
    assert int(res.iterations["preempted"].sum()) == 1
