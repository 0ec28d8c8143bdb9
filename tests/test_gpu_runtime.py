"""The SimPy GPU runtime: kernels serialize on the stream, busy time, HBM capacity."""

import pytest
import simpy
from hypothesis import given
from hypothesis import strategies as st

from simulator.gpu import GPU, HBMFullError, KernelModel
from simulator.hardware import GPUSpec
from simulator.models import Architecture
from simulator.units import TFLOPS, TBps, ms, us

#: A round-numbered GPU for hand-checked answers: 1 TB/s, 100 TFLOP/s.
TOY = GPUSpec("toy", hbm_bytes=1000.0, hbm_bandwidth=TBps(1), peak_flops=TFLOPS(100),
              nvlink_bandwidth=1e9)
EXACT = KernelModel(launch_time=us(2), memory_efficiency=1.0, compute_efficiency=1.0,
                    sparse_compute_efficiency=0.5, copy_efficiency=0.5, splice_time=ms(6))


# -- the runtime: stories ----------------------------------------------------------------------


def test_kernels_serialize_on_the_stream():
    env = simpy.Environment()
    g = GPU(env, "n0/gpu0", TOY, EXACT)
    log = []

    def launch(name, at, duration):
        yield env.timeout(at)
        yield g.run(duration)
        log.append((name, env.now))

    env.process(launch("a", 0.0, 3.0))
    env.process(launch("b", 1.0, 2.0))
    env.process(launch("c", 1.0, 1.0))
    env.run()
    assert log == [("a", 3.0), ("b", 5.0), ("c", 6.0)]
    assert g.busy_time == 6.0 and g.kernels_run == 3 and g.utilization() == 1.0


def test_busy_time_counts_the_running_kernel_and_idle_gaps():
    env = simpy.Environment()
    g = GPU(env, "n0/gpu0", TOY)

    def proc():
        yield g.run(2.0)
        yield env.timeout(3.0)
        g.run(4.0)

    env.process(proc())
    env.run(until=7.0)
    assert g.busy_time == pytest.approx(4.0)  # 2 s done + 2 s of the kernel still running
    env.run()
    assert g.busy_time == 6.0 and env.now == 9.0


def test_hbm_reserve_and_release():
    g = GPU(simpy.Environment(), "n0/gpu0", TOY)
    assert g.hbm_bytes == 1000.0 and g.free_bytes == 1000.0
    g.reserve(600.0)
    with pytest.raises(HBMFullError, match="n0/gpu0"):
        g.reserve(401.0)
    assert g.free_bytes == 400.0  # a failed reservation reserves nothing
    g.reserve(400.0)
    g.release(1000.0)
    assert g.free_bytes == 1000.0
    with pytest.raises(ValueError):
        g.release(1.0)
    with pytest.raises(ValueError):
        g.run(-1.0)


# -- properties ----------------------------------------------------------------------------------


@given(st.lists(st.tuples(st.floats(0, 10), st.floats(0, 5)), min_size=1, max_size=12),
       st.floats(0.1, 40))
def test_busy_time_never_exceeds_elapsed_time(kernels, stop_at):
    env = simpy.Environment()
    g = GPU(env, "g", TOY)

    def launch(at, duration):
        yield env.timeout(at)
        yield g.run(duration)

    for at, duration in kernels:
        env.process(launch(at, duration))
    env.run(until=stop_at)
    assert g.busy_time <= env.now * (1 + 1e-12)
    env.run()
    assert g.busy_time == pytest.approx(sum(d for _, d in kernels))
    assert g.busy_time <= env.now * (1 + 1e-12)


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 400)), max_size=40))
def test_capacity_is_never_exceeded(ops):
    g = GPU(simpy.Environment(), "g", TOY)
    held = []
    for reserve, nbytes in ops:
        if reserve:
            try:
                g.reserve(nbytes)
                held.append(nbytes)
            except HBMFullError:
                assert g.used_bytes + nbytes > g.hbm_bytes
        elif held:
            g.release(held.pop())
        assert 0 <= g.used_bytes <= g.hbm_bytes
        assert g.free_bytes == pytest.approx(g.hbm_bytes - sum(held))


def test_a_gpus_kernel_times_are_its_kernel_models_on_its_spec():
    arch = Architecture.custom("toy", 10, 500.0, 1000.0, return_bytes=200.0)
    g = GPU(simpy.Environment(), "n0/gpu0", TOY, EXACT)
    # 4 × 250 × 1,000 B + 4 × 500 B at 1 TB/s, after EXACT's 2 µs launch (the default model
    # would add 3 µs and run at 3,000 of 3,350 GB/s)
    assert g.attention_time(arch, 4, 250) == pytest.approx(us(2) + 1.002e6 / 1e12, rel=1e-12)
    assert g.merge_time(arch, 8) == pytest.approx(us(2) + 4800 / 1e12, rel=1e-12)
    assert g.merge_time(arch, 8, partials=3) == EXACT.merge_time(TOY, arch, 8, 3)
    assert GPU(simpy.Environment(), "n0/gpu1", TOY).kernels == KernelModel()


def test_utilization_is_busy_over_elapsed_and_zero_at_the_start():
    env = simpy.Environment()
    g = GPU(env, "n0/gpu0", TOY)
    assert g.utilization() == 0.0
    g.run(0.25)
    env.run(until=0.5)
    assert g.utilization() == pytest.approx(0.5)


def test_releasing_more_than_was_reserved_is_refused():
    g = GPU(simpy.Environment(), "n0/gpu0", TOY)
    g.reserve(100.0)
    with pytest.raises(ValueError, match="cannot release 150.0 B, 100.0 B reserved"):
        g.release(150.0)
    with pytest.raises(ValueError, match="cannot release -1"):
        g.release(-1.0)
    assert g.used_bytes == 100.0


def test_reserving_and_releasing_nothing_is_allowed():
    g = GPU(simpy.Environment(), "n0/gpu0", TOY)
    g.reserve(0.0)
    g.release(0.0)
    assert g.used_bytes == 0.0
