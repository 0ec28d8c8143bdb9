"""The engine's GPU compute streams: FIFO kernels with known ends, quiet layers and chains with
their idle spans, busy time read mid-way, and the SimPy-resource stream giving the same times.

Every expected time is worked out by hand from the FIFO rule: a kernel issued at ``t`` ends at
``max(t, free_at) + duration``.
"""

import numpy as np
import pytest
import simpy

from simulator.gpu import GPU
from simulator.gpu.streams import GPUStream, Stream
from simulator.hardware import gpu


def test_kernels_queue_behind_each_other_and_start_now_on_an_idle_stream():
    env = simpy.Environment()
    s = Stream(env)
    assert s.issue(2.0) == 2.0 and s.issue(1.0) == 3.0  # the second waits for the first
    env.run(until=5.0)
    assert s.issue(1.0) == 6.0  # idle since 3: starts now
    assert (s.kernels_run, s.busy) == (3, 4.0)


def test_a_quiet_layer_idles_until_its_start_and_folds_its_layers():
    env = simpy.Environment()
    s = Stream(env)
    s.issue(1.0)  # busy until 1
    # a layer at 3: attention 0.5, then the rest 1.5 → ends at 5; three layers' worth: 5 + 2·2
    assert s.quiet_layer(3.0, 0.5, 1.5, 3) == 9.0
    assert (s.free_at, s.kernels_run, s.busy) == (5.0, 3, 3.0)
    # no attention kernel: one kernel, starting when the stream is free (5 > 4)
    assert s.quiet_layer(4.0, 0.0, 1.0, 1) == 6.0
    assert s.kernels_run == 4
    # busy time read in the idle span 1–3 and in the layer
    env.run(until=2.0)
    assert s.busy_time == pytest.approx(1.0)  # the span 1–3 is idle, not busy
    env.run(until=4.0)
    assert s.busy_time == pytest.approx(2.0)  # 1 + the layer's first second
    env.run(until=7.0)
    assert s.busy_time == pytest.approx(4.0)  # everything, nothing ahead


def test_a_chain_returns_its_cumulative_times_and_its_waits_are_idle():
    env = simpy.Environment()
    s = Stream(env)
    s.issue(0.5)  # busy until 0.5
    kernels, waits = np.array([1.0, 2.0, 0.5]), np.array([0.25, 0.0, 1.0])
    times = s.chain(1.0, kernels, waits)
    assert times.tolist() == [1.0, 2.0, 2.25, 4.25, 4.25, 4.75, 5.75]
    assert (s.free_at, s.kernels_run, s.busy) == (4.75, 4, 4.0)
    for t, busy in ((0.75, 0.5), (1.5, 1.0), (2.1, 1.5), (2.5, 1.75), (4.5, 3.75)):
        env.run(until=t)
        assert s.busy_time == pytest.approx(busy), t
    # an empty chain is its start alone and changes nothing
    assert s.chain(6.0, np.array([]), np.array([])).tolist() == [6.0]
    assert (s.free_at, s.kernels_run) == (4.75, 4)


def test_many_chains_and_layers_keep_busy_time_exact():
    # each round: a chain at t (0.25 run, 0.25 idle, 0.25 run), then a quiet layer at t + 1
    # (idle from t + 0.75, 0.25 run); spans long past are dropped as time goes on, and busy
    # time stays what a kernel-by-kernel count gives
    env = simpy.Environment()
    s = Stream(env)
    ran = 0.0
    for i in range(6):
        start = 2.0 * i + 0.5
        s.chain(start, np.array([0.25, 0.25]), np.array([0.25, 0.0]))
        s.quiet_layer(start + 1.0, 0.0, 0.25, 1)
        ran += 0.75
        env.run(until=start + 1.25)
        assert s.busy_time == pytest.approx(ran), i
    assert len(s.gaps) <= 2  # not one per chain and layer ever issued


def test_events_fire_at_the_kernels_end_and_after_the_folded_layers():
    env = simpy.Environment()
    s = Stream(env)
    fired = {}

    def wait(name, event):
        value = yield event
        fired[name] = (env.now, value)

    env.run(until=10.0)  # issued at 10, not at 0: the delays count from now
    env.process(wait("run", s.run(2.0)))  # ends at 12
    env.process(wait("after", s.after(1.0, 10.5, 3)))  # ends at 13; + (13 − 10.5)·2 = 18
    pending = env.event()
    env.process(wait("then", pending))
    s.after_then(pending, 1.0, 13.0, 2)  # ends at 14; + (14 − 13)·1 = 15
    env.run()
    assert fired == {"run": (12.0, None), "after": (18.0, None), "then": (15.0, None)}


def test_spans_are_dropped_only_once_they_have_ended():
    # a chain of 3 kernels, idle 2–3 between the second and the third: at 2.5 a quiet layer
    # issued after it must not drop the chain's span (its last ends at 3, not at 2)
    env = simpy.Environment()
    s = Stream(env)
    s.chain(0.0, np.array([1.0, 1.0, 1.0]), np.array([0.0, 1.0, 0.0]))
    env.run(until=2.5)
    s.quiet_layer(5.0, 0.0, 0.5, 1)
    assert s.busy_time == pytest.approx(2.0)  # kernels 0–1 and 1–2 ran; 2–2.5 is idle
    assert len(s.gaps) == 2


@pytest.mark.parametrize("kind", ["layers", "chains"])
def test_spans_long_past_do_not_pile_up(kind):
    env = simpy.Environment()
    s = Stream(env)
    for i in range(8):
        start = 2.0 * i + 0.5
        if kind == "layers":
            s.quiet_layer(start, 0.0, 0.5, 1)
        else:
            s.chain(start, np.array([0.25, 0.25]), np.array([0.25, 0.0]))
        env.run(until=start + 1.0)
        assert s.busy_time == pytest.approx(0.5 * (i + 1))
    assert len(s.gaps) == 1  # the last one only


def test_the_simpy_resource_stream_gives_the_same_times():
    fired = {}
    for kind in ("fast", "exact"):
        env = simpy.Environment()
        s = Stream(env) if kind == "fast" else GPUStream(GPU(env, "g", gpu("H100")))

        def wait(name, event, env=env, kind=kind):
            yield event
            fired[kind, name] = env.now

        s.issue(1.0)
        env.process(wait("run", s.run(2.0)))  # 1 + 2 = 3
        env.process(wait("after", s.after(1.0, 0.0, 2)))  # 4; + 4·1 = 8
        pending = env.event()
        env.process(wait("then", pending))
        s.after_then(pending, 0.5, 4.0, 3)  # 4.5; + 0.5·2 = 5.5
        assert s.free_at == 4.5
        env.run(until=4.25)
        assert s.busy_time == pytest.approx(4.25)
        assert s.kernels_run == (4 if kind == "fast" else 3)  # the resource counts ended ones
        env.run()
        assert s.kernels_run == 4 and s.busy_time == pytest.approx(4.5)
    assert {k: v for (kind, k), v in fired.items() if kind == "fast"} == \
        {k: v for (kind, k), v in fired.items() if kind == "exact"} == \
        {"run": 3.0, "after": 8.0, "then": 5.5}


def test_a_prune_keeps_the_spans_still_ahead_and_drops_the_rest():
    env = simpy.Environment()
    s = Stream(env)
    s.quiet_layer(1.0, 0.0, 0.5, 1)  # idle 0–1, runs 1–1.5
    s.quiet_layer(3.0, 0.0, 0.5, 1)  # idle 1.5–3, runs 3–3.5
    env.run(until=2.0)
    s.quiet_layer(5.0, 0.0, 0.5, 1)  # at 2: the span 0–1 has ended, 1.5–3 has not
    assert s.gaps == [(1.5, 3.0), (3.5, 5.0)]
    assert s.busy_time == pytest.approx(0.5)
