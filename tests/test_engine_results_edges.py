"""A run's result over less than 100 µs: its timelines' bins floor at 1 µs (not now / 100)."""

import numpy as np
import pytest
import simpy

from simulator import run
from simulator.engine.results import fabric_extras
from simulator.network import Fabric
from simulator.network.traffic import KV_FETCH
from simulator.testing.fabric import star_graph
from simulator.testing.invariants import small_scenario
from simulator.units import GBps
from workloads.schema import make_trace

#: 50 µs of simulated time: now / 100 = 0.5 µs is under the 1 µs floor, so 50 bins of 1 µs.
NOW = 5e-5
BINS = np.arange(50) * 1e-6


def test_class_timeline_of_a_50_us_run_has_50_bins_of_1_us():
    env = simpy.Environment()
    f = Fabric(env, star_graph(2, GBps(1), 0.0))
    f.transfer("h0", "h1", 10_000.0, tag=KV_FETCH)  # 10 µs at 1 GB/s on h0 -> sw -> h1
    env.run(until=NOW)
    ct = fabric_extras(f)["class_timeline"]
    assert len(ct) == 50 and set(ct["traffic_class"]) == {"kv_fetch"}
    assert ct["start_at"].to_numpy() == pytest.approx(BINS, rel=0, abs=1e-15)
    assert ct["end_at"].to_numpy() == pytest.approx(BINS + 1e-6, rel=0, abs=1e-15)
    # two links x 1,000 B per µs for the first 10 µs, then nothing
    want = np.r_[np.full(10, 2000.0), np.zeros(40)]
    assert ct["bytes"].to_numpy() == pytest.approx(want, rel=1e-9, abs=1e-9)
    # of the four ethernet links' 4 x 1 GB/s x 1 µs = 4,000 B per bin
    assert ct["utilization"].to_numpy() == pytest.approx(want / 4000.0, rel=1e-9, abs=1e-12)


def test_link_timeline_of_a_50_us_engine_run_has_50_bins_of_1_us_per_link():
    sc = small_scenario("single_node:gpus=2", duration=NOW)
    trace = make_trace(arrival_at=[0.0], input_tokens=[640], output_tokens=[20],
                       block_ids=[list(range(10))], block_tokens=64)
    res = run(sc, "route", trace=trace)
    assert res.summary["sim_time"] == pytest.approx(NOW)
    tl = res.link_timeline
    links = len(res.links)
    assert links > 0 and len(tl) == 50 * links
    for _, one in tl.groupby(["src", "dst"]):
        assert one["start_at"].to_numpy() == pytest.approx(BINS, rel=0, abs=1e-15)
        assert one["end_at"].to_numpy() == pytest.approx(BINS + 1e-6, rel=0, abs=1e-15)
