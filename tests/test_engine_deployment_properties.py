"""A ``[deployment]``'s runs keep every invariant of ``check_run`` and are causal, on both
engines: DeepSeek's EP decode unit alone, and with an EP prefill unit handing KV over (whole or
layer by layer), with KV room to spare or tight enough that prompts wait on their prefill rank,
with or without chunked prefill. Hypothesis over small traces with shared prefixes."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine_causality import ended_before
from test_engine_instances import scenario
from test_engine_instances_edges import TIGHT_ROOM
from test_engine_instances_edges import prefill_unit as pd_unit

from simulator import run
from simulator.testing.invariants import check_run
from simulator.testing.profiles import examples
from simulator.testing.traces import request_traces


@settings(max_examples=examples(8))
@given(trace=request_traces(max_requests=6, max_blocks=30, vocab=40, block_tokens=st.just(64)),
       prefill_unit=st.booleans(), layerwise=st.booleans(), tight=st.booleans(),
       chunk=st.sampled_from([None, 256]), policy=st.sampled_from(["route", "fetch", "adaptive"]),
       engine=st.sampled_from(["exact", "fast"]))
def test_a_deployments_run_keeps_every_invariant_and_is_causal(trace, prefill_unit, layerwise,
                                                              tight, chunk, policy, engine):
    extra = pd_unit(layerwise) if prefill_unit else ""
    extra += TIGHT_ROOM if tight else ""
    extra += f"[serving]\nmax_num_batched_tokens = {chunk}\n" if chunk else ""
    sc = scenario(nodes=4 if prefill_unit else 2, selection="dense", extra=extra)
    res = run(sc, policy, trace=trace, engine=engine)
    check_run(res, trace)
    t = float(trace["arrival_at"].iloc[-1])
    if len(trace) >= 2 and t > float(trace["arrival_at"].iloc[-2]):
        part = run(sc, policy, trace=trace.iloc[:-1].reset_index(drop=True), engine=engine)
        a, b = ended_before(res, t), ended_before(part, t)
        pd.testing.assert_frame_equal(a[0], b[0], check_exact=True)
        pd.testing.assert_frame_equal(a[1], b[1], check_exact=True)
        np.testing.assert_array_equal(a[2], b[2])
