"""A prefill-only step composed at once under a policy that never routes: the same records as
one event per layer, bit for bit, with far fewer events (the fast engine's own timeouts keep
simultaneous steps in GPU order: tests/test_engine_clock.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from simulator import run
from simulator.engine.fast import FastRun
from simulator.scenario import EngineSpec
from simulator.testing.invariants import small_scenario
from workloads.schema import make_trace

TABLES = ("requests", "rounds", "links", "gpus", "iterations", "link_timeline")


def runs(monkeypatch, sc, trace, policy: str):
    """``(layer by layer, at once)``: the fast engine's run with each prefill layer waiting for
    the events due before it, and with a prefill-only step composed at once where it may."""
    got = []
    for at_once in (False, True):
        monkeypatch.setattr(FastRun, "chain_prefill", at_once)
        got.append(run(sc, policy, 0, trace=trace, engine="fast"))
    return got


def same_records(a, b) -> None:
    """Every table bit for bit, and the summary but for the SimPy event count and wall time."""
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)
    assert a.summary.keys() == b.summary.keys()
    for key, x in a.summary.items():
        y = b.summary[key]
        assert key in ("events", "wall_time") or x == y or (x != x and y != y), key
    assert a.extras["pushed_steps"] == b.extras["pushed_steps"]


def prompts(n: int = 6) -> pd.DataFrame:
    """``n`` requests of 2,048-token prompts (some sharing a prefix), two at a time, fetched
    between two GPUs' steps."""
    blocks = [list(range(32)) if k % 3 == 0 else list(range(100 * k, 100 * k + 32))
              for k in range(n)]
    return make_trace(arrival_at=[0.05 * (k // 2) for k in range(n)], input_tokens=[2048] * n,
                      output_tokens=[4 + k for k in range(n)], block_ids=blocks, block_tokens=64)


@pytest.mark.parametrize("policy", ["fetch", "local"])
def test_a_prefill_only_step_is_composed_at_once_with_the_same_records(monkeypatch, policy):
    # a small token budget: each prompt is prefilled over several prefill-only steps, every
    # layer simulated (61 slots), while the other GPU decodes
    sc = small_scenario("single_node:gpus=2", layer_groups=0,
                        serving={"max_num_batched_tokens": 256, "chunked_prefill": True})
    layered, at_once = runs(monkeypatch, sc, prompts(), policy)
    same_records(layered, at_once)
    assert at_once.summary["events"] < layered.summary["events"] / 4


def test_a_run_cut_at_its_duration_composes_no_layer_past_it(monkeypatch):
    # a layer past the cut would add its kernel to the GPUs' counts
    sc = small_scenario("single_node:gpus=2", layer_groups=0,
                        serving={"max_num_batched_tokens": 256, "chunked_prefill": True})
    sc = sc.with_changes(engine=EngineSpec(max_batch=sc.engine.max_batch, layer_groups=0,
                                           duration=0.2))
    layered, at_once = runs(monkeypatch, sc, prompts(), "fetch")
    same_records(layered, at_once)
    assert at_once.summary["events"] < layered.summary["events"]


def test_a_policy_that_routes_keeps_a_prefill_layer_by_layer(monkeypatch):
    # another GPU's routed query may land between its layers: nothing changes
    sc = small_scenario("single_node:gpus=2", layer_groups=0,
                        serving={"max_num_batched_tokens": 256, "chunked_prefill": True})
    layered, at_once = runs(monkeypatch, sc, prompts(4), "route")
    same_records(layered, at_once)
    assert at_once.summary["events"] == layered.summary["events"]
