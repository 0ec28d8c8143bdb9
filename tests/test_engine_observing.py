"""Observing is not acting: a policy that reads the run's counters (``observes = True``, as
``adaptive`` does) must be simulated on the same random draws as one that does not, so that
its rounds differ from a static policy's only by its choices — the premise of every regret
``kvfabric`` reports. On the fast engine a context found local to its home is not drawn step by
step (:mod:`simulator.engine.locate`); the finding draws more layers for an observing policy's
estimates, from a stream of the policy's own (``StepData.obs_rngs``). Until stop 70 they came
from the run's selection stream, which shifted every later draw on that GPU: on a loaded
``mixed_fleet`` variant ``fetch`` that observed had a 10 % higher TBT p50 than ``fetch``."""

import pandas as pd
import pytest

from simulator import run
from simulator.policies.fetch import Fetch
from simulator.testing.invariants import small_scenario
from workloads.schema import make_trace


class WatchingFetch(Fetch):
    """``fetch`` that asks the engine for the counters ``adaptive`` reads."""

    name = "watching_fetch"
    observes = True


def _trace():
    # two GPUs, hash placement: each request's 48-block context lies on both, so its first
    # steps fetch and its later steps find the context local (copies in every slot), while
    # the other requests on the GPU are still drawn; DSA selects 34 of ~50 blocks a layer
    n = 6
    return make_trace(arrival_at=[0.01 * i for i in range(n)], input_tokens=[48 * 64] * n,
                      output_tokens=[60 + 13 * i for i in range(n)],
                      block_ids=[list(range(100 * i, 100 * i + 48)) for i in range(n)],
                      block_tokens=64)


TABLES = ("requests", "rounds", "iterations")


def assert_same_tables(plain, seen) -> None:
    """The two runs' :data:`TABLES` are equal, but for the policy's name."""
    for table in TABLES:
        a = getattr(plain, table).drop(columns=["policy"], errors="ignore")
        b = getattr(seen, table).drop(columns=["policy"], errors="ignore")
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True),
                                      check_categorical=False)


@pytest.mark.parametrize("engine", ["fast", "exact"])
@pytest.mark.parametrize("groups", [2, 4])
def test_a_fetch_that_observes_makes_the_same_run_as_fetch(engine, groups):
    sc = small_scenario("single_node:gpus=2", scheme="hash", layer_groups=groups, max_batch=3)
    sc = sc.with_changes(model=type(sc.model)(name="deepseek-v3.2", selection="dsa"))
    trace = _trace()
    plain = run(sc, Fetch(), trace=trace, engine=engine)
    seen = run(sc, WatchingFetch(), trace=trace, engine=engine)
    assert seen.summary["engine"] == plain.summary["engine"] == engine
    assert_same_tables(plain, seen)
    for key in ("tbt_p50", "tbt_p99", "throughput_tokens_per_s", "bytes_moved", "rounds",
                "copy_hit_rate"):
        assert seen.summary[key] == plain.summary[key], key


def test_on_a_busy_mixed_fleet_watching_changes_no_round():
    # the shipped mixed_fleet, 10 s of arrivals at the loaded variant's rates: 32 GPUs, many
    # contexts found local between drawn ones (before stop 70 the watching run made 4,960
    # rounds against fetch's 4,950)
    import tomllib

    from simulator.scenario import Scenario, find

    data = tomllib.loads(find("mixed_fleet").read_text())
    data["workload"]["mixed"].update(duration_time=10.0, private_rate=0.5, chat_rate=2.0)
    sc = Scenario.from_dict(data)
    plain = run(sc, Fetch(), engine="fast")
    seen = run(sc, WatchingFetch(), engine="fast")
    assert plain.summary["rounds"] > 1000
    assert_same_tables(plain, seen)
    assert seen.summary["copy_hit_rate"] == plain.summary["copy_hit_rate"]
