"""A model's context window: requests that need more are counted and named, not dropped."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from simulator import run
from simulator.cli.main import cli
from simulator.engine.records import run_notes
from simulator.models import MODELS
from simulator.runner import requests_over_context
from simulator.testing.invariants import check_run, small_scenario
from workloads.schema import make_trace


def _trace(inputs, outputs):
    blocks, first = [], 0
    for n in inputs:
        k = -(-n // 64)
        blocks.append(list(range(first, first + k)))
        first += k
    return make_trace(arrival_at=np.arange(len(inputs)) * 0.01, input_tokens=inputs,
                      output_tokens=outputs, block_ids=blocks, block_tokens=64)


def test_windows_are_the_hf_configs_max_position_embeddings():
    assert MODELS["deepseek-v3.2"].max_context_tokens == 163_840
    assert MODELS["deepseek-v3"].max_context_tokens == 163_840
    assert MODELS["llama-2-70b"].max_context_tokens == 4_096
    assert MODELS["llama-3-70b"].max_context_tokens == 8_192
    assert MODELS["glm-5"].max_context_tokens is None  # not checked: no count
    with pytest.raises(ValueError, match="max_context_tokens"):
        dataclasses.replace(MODELS["llama-2-70b"], max_context_tokens=0)


def test_the_count_is_prompt_plus_output_strictly_over_the_window():
    t = pd.DataFrame({"input_tokens": [3_996, 3_997, 100, 5_000], "output_tokens": [100] * 4})
    assert requests_over_context(t, 4_096) == 2  # 4,096 fits; 4,097 and 5,100 do not
    assert requests_over_context(t, None) == 0
    assert requests_over_context(t.iloc[:0], 4_096) == 0


def test_a_run_serves_requests_over_the_window_and_says_how_many():
    trace = _trace([1_000, 3_996, 5_000], [8, 100, 8])  # 1,008 and 4,096 fit; 5,008 does not
    sc = small_scenario("single_node:gpus=2", model="llama-2-70b", weights_per_gpu=40e9)
    res = run(sc, "fetch", trace=trace)
    check_run(res, trace)
    assert res.summary["completed"] == 3  # served, not dropped
    assert res.summary["max_context_tokens"] == 4_096
    assert res.summary["requests_over_context"] == 1
    note = [n for n in run_notes(res.summary) if "context" in n]
    assert note and note[0].startswith("1 of the trace's requests need more than the model's "
                                       "4,096-token context")
    fits = run(sc, "fetch", trace=_trace([1_000, 3_996], [8, 100]))
    assert "requests_over_context" not in fits.summary  # the design's keys, no more
    assert "max_context_tokens" not in fits.summary
    assert not [n for n in run_notes(fits.summary) if "context" in n]


def test_kvfabric_run_json_carries_the_count(tmp_path):
    out = CliRunner().invoke(cli, ["run", "agentic_repo", "--policy", "fetch", "--no-write",
                                   "--json"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout.strip().splitlines()[-1])
    fetch = payload["policies"]["fetch"]
    assert fetch["max_context_tokens"] == 163_840
    assert fetch["requests_over_context"] == fetch["requests"] > 0  # 270k-token repositories
    assert any("context" in n for n in payload["notes"]["fetch"])


def test_a_note_every_policy_has_is_printed_once():
    from simulator.cli.run import note_lines

    trace_note = "233 of the trace's requests need more than the model's window"
    notes = {"route": [trace_note], "fetch": [trace_note, "no round moved a byte"]}
    assert note_lines(notes, ["route", "fetch"]) == [
        f"note: {trace_note}", "note: fetch: no round moved a byte"]
    # one policy, or a note only some policies have: per policy, as before
    assert note_lines({"fetch": [trace_note]}, ["fetch"]) == [f"note: fetch: {trace_note}"]
    assert note_lines({"fetch": [trace_note]}, ["route", "fetch"]) == \
        [f"note: fetch: {trace_note}"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_default_runs_requests_fit_its_models_window(seed):
    """`kvfabric` with no argument serves requests a real server would take: every one of the
    default scenario's requests (128k-token repositories since stop 28) fits DeepSeek-V3.2's
    163,840 tokens, on the shipped seed and the two the docs quote."""
    from simulator.engine.trace import load_trace
    from simulator.scenario import Scenario, shipped_dir

    sc = Scenario.load(shipped_dir() / "agentic_cluster.toml")
    trace = load_trace(sc, seed)
    assert len(trace) >= 1000  # issue 15: a default of at least 1,000 requests
    window = MODELS[sc.model.name].max_context_tokens
    assert window == 163_840
    assert requests_over_context(trace, window) == 0
