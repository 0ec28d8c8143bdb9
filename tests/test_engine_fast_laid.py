"""Quiet slots laid at once on a stream other GPUs may route to, taken back when something reaches
them first (simulator/engine/fast_laid.py): the slot-by-slot loop's records bit for bit, with
fewer events; each of the three things that reach laid slots taken back as the loop would have
them."""

from __future__ import annotations

import pytest
from simpy import Interrupt

from simulator import run
from simulator.engine.clock import GpuTimeout
from simulator.engine.fast import FastRun
from simulator.policies import get
from simulator.policies.base import Policy
from simulator.testing.invariants import repo_on, small_scenario
from tests.test_engine_fast import alone, same_steps
from tests.test_engine_fast_prefill import prompts, same_records
from workloads.schema import make_trace


class RouteByChoice(Policy):
    """Routes every round, but may choose otherwise (every option declared)."""

    name = "route_by_choice"

    def choose(self, ctx, rnd) -> str:
        return "route"


def both(monkeypatch, sc, policy, trace):
    """``(slot by slot, laid)``: the fast engine's run without and with quiet slots laid."""
    got = []
    for lay in (False, True):
        monkeypatch.setattr(FastRun, "chain_unrouted", lay)
        got.append(run(sc, get(policy) if isinstance(policy, str) else type(policy)(), 0,
                       trace=trace, engine="fast"))
    return got


def counting(monkeypatch) -> dict[str, int]:
    """Count the laid items taken back (``Calendar.take_back`` calls)."""
    from simulator.engine.fast_streams import Calendar
    seen = {"take_back": 0}
    take_back = Calendar.take_back

    def spy(self, *args):
        seen["take_back"] += 1
        return take_back(self, *args)

    monkeypatch.setattr(Calendar, "take_back", spy)
    return seen


@pytest.mark.parametrize("policy, fewer", [
    ("adaptive", 2.0),  # fetches only here: neither GPU is reached, each lays every step
    ("route", 1.1),  # both GPUs routed to from their first steps: laid only until then
])
def test_quiet_slots_laid_at_once_keep_the_slot_by_slot_records(monkeypatch, policy, fewer):
    # two GPUs fetching or routing to each other, every layer simulated (61 slots)
    sc = small_scenario("single_node:gpus=2", layer_groups=0)
    one_by_one, laid = both(monkeypatch, sc, policy, prompts())
    same_records(one_by_one, laid)
    assert laid.summary["events"] * fewer < one_by_one.summary["events"]


def routed_onto_gpu0(longer: int = 0):
    """``(scenario, trace)``: GPU 0 decodes a request whose repository it owns, GPU 1 one that
    reads it (30 output tokens each, GPU 0's ``longer`` more; every layer simulated)."""
    sc = small_scenario("single_node:gpus=2", scheme="repo_affinity", layer_groups=0)
    repo = repo_on(0, 2)
    trace = make_trace(arrival_at=[0.0, 0.001], input_tokens=[40 * 64] * 2,
                       output_tokens=[30 + longer, 30], block_ids=[list(range(40))] * 2,
                       block_tokens=64, repo_id=[repo] * 2)
    return sc, trace


def test_a_routed_kernel_takes_back_what_its_owner_laid(monkeypatch):
    # GPU 0 decodes a request whose repository it owns (every slot quiet: laid at once), GPU 1
    # one that reads it and routes every layer's query onto GPU 0's stream, by choice (so GPU
    # 0 lays). Each query must wait for the GPU 0 kernels the exact engine has issued by its
    # arrival (caught, with the take-back left out: the first query ran 0.015 ms where the
    # exact engine's ran 0.289 ms, behind a slot the loop had composed and laying had not)
    taken = counting(monkeypatch)
    sc, trace = routed_onto_gpu0()
    one_by_one, laid = both(monkeypatch, sc, RouteByChoice(), trace)
    assert taken["take_back"] >= 1
    same_records(one_by_one, laid)
    same_steps(run(sc, RouteByChoice(), 0, trace=trace), laid)


def laying_run() -> FastRun:
    """A fast-engine run under ``adaptive`` (which may route: GPUs lay), built, not run."""
    return FastRun(small_scenario("single_node:gpus=2", layer_groups=0), get("adaptive"), 0,
                   alone(), None)


def lay_three(r: FastRun, log: list, g: int = 0, laid_at: float = 0.0):
    """GPU ``g``'s process: at ``laid_at`` [s], lays slots 0–2 from 1.0 s, 0.5 s each (so
    planned at 1.0, 1.5 and 2.0 s), and waits for their end, noting an interrupt's cause."""
    yield r.env.timeout(laid_at)
    at, _ = r.laid.lay(g, 0, 3, [0.0] * 3, 0.5, 1.0, float("inf"))  # no attention: 1 kernel
    try:
        yield GpuTimeout(r.env, at - r.env.now, g)
        log.append(("reached", r.env.now))
    except Interrupt as back:
        log.append(("taken back", r.env.now, back.cause))


@pytest.mark.parametrize("reader, laid, seen, cause", [
    # a plain timeout at 1.5 s, pending when the slots are laid (at 0 s): the loop composes
    # slot 0 (1.0 s) at once, waits for slot 1 (planned at the very instant the timeout is
    # due), and its timeout comes after the plain one: slots 1 and 2 are taken back
    ("timeout", 0, 1.5, (1, 1.5)),
    # so does a read from an event's callback, outside any process
    ("callback", 0, 1.5, (1, 1.5)),
    # GPU 1's timeout comes after GPU 0's: slot 1 (issued at 1.5 s) is composed; slot 2 not
    ("gpu 1", 0, 2.0, (2, 2.0)),
    # GPU 0's comes before GPU 1's: slot 1 of GPU 1 is not composed yet
    ("gpu 0", 1, 1.5, (1, 1.5)),
])
def test_a_read_of_a_laid_stream_sees_what_the_slot_by_slot_loop_has_composed(reader, laid,
                                                                               seen, cause):
    r = laying_run()
    env, log = r.env, []

    def read():
        if reader.startswith("gpu"):
            yield GpuTimeout(env, 1.5, int(reader[-1]))
        elif reader == "callback":
            done = env.event()
            env.timeout(1.5).callbacks.append(
                lambda _: (log.append(("free_at", r._free_at(laid, 1.5))), done.succeed()))
            yield done
            return
        else:
            yield env.timeout(1.5)
        log.append(("free_at", r._free_at(laid, 1.5)))

    env.process(lay_three(r, log, laid))
    env.process(read())
    env.run()
    assert log == [("free_at", seen), ("taken back", 1.5, cause)]
    assert r.cal[laid].items == cause[0]  # the items taken back are off the calendar
    assert r.cal[laid].last_end == pytest.approx(1.0 + 0.5 * cause[0])


def test_a_slot_laid_at_its_own_start_is_never_taken_back():
    # laid at 1.0 s from 1.0 s: the loop composes slot 0 at once (its start is now), so a read
    # at that same instant sees it, and only slots 1 and 2 are taken back
    r = laying_run()
    env, log = r.env, []

    def read():
        yield env.timeout(1.0)
        log.append(("free_at", r._free_at(0, 1.0)))

    env.process(lay_three(r, log, 0, laid_at=1.0))
    env.process(read())
    env.run()
    assert log == [("free_at", 1.5), ("taken back", 1.0, (1, 1.5))]


def test_a_push_that_raises_a_laid_gpus_debt_takes_back_its_later_slots():
    # GPU 0 lays three slots from 1.0 s; at 1.2 s an item of GPU 0 on a link is pushed back
    # by another GPU's: the loop would start every slot after 1.2 s later by the debt, so
    # slots 1 and 2 (planned at 1.5 and 2.0 s) are taken back, slot 0 (1.0 s) kept
    r = laying_run()
    env, log = r.env, []
    link = r.links.cal[0]

    def push():
        link.reserve(1.1, 0.3, 0)  # GPU 0's message on the link: 1.1–1.4 s
        yield env.timeout(1.2)
        link.reserve(1.05, 0.15, 1)  # GPU 1's, issued earlier: GPU 0's pushed 0.1 s
        log.append(("debt", r.debt[0]))

    env.process(lay_three(r, log))
    env.process(push())
    env.run()
    assert log[0] == ("debt", pytest.approx(0.1))
    assert log[1] == ("taken back", 1.2, (1, 1.5))


def test_a_gpu_deciding_whether_to_wait_counts_the_timeouts_a_laid_gpu_would_have():
    r = laying_run()
    env, due = r.env, []

    def probe():
        yield env.timeout(0.5)  # pending at the laying: slot 0 (1.0 s) is not laid ahead of it
        due.append(r.laid.due())  # slot 0 at 1.0 s is the next timeout the loop would have
        yield env.timeout(0.7)  # 1.2 s: slot 0 composed by then, slot 1 next
        due.append(r.laid.due())
        yield env.timeout(0.3)  # 1.5 s: slot 1's timeout is due now
        due.append(r.laid.due())
        yield env.timeout(0.7)  # 2.2 s: past the last one
        due.append(r.laid.due())

    env.process(lay_three(r, []))
    env.process(probe())
    env.run()
    assert due == [1.0, 1.5, 1.5, float("inf")]


def test_a_gpu_routed_to_in_its_last_step_does_not_lay_its_next(monkeypatch):
    # GPU 1 routes every layer of its 30 steps onto GPU 0's stream: GPU 0 lays its first step
    # with queries arriving (taken back at the first one), then not while they keep coming
    # (caught, laying every step: a take-back per step of GPU 0)
    taken = counting(monkeypatch)
    sc, trace = routed_onto_gpu0()
    r = FastRun(sc, RouteByChoice(), 0, trace, None)
    res = r.execute()
    assert (res.iterations["gpu"] == "n0/gpu0").sum() >= 30
    assert taken["take_back"] == 1
    assert all(x is None for x in r.laid.laid)  # nothing left laid at the end


def test_laid_slots_follow_one_another_as_the_slot_by_slot_loop_rounds_them():
    # a folded slot's next one starts at end + (end − issue)·(fold − 1), as the decode loop
    # computes it; the exact engine's clock rounds at + ((end − at) + (end − at)·(fold − 1)),
    # a different float here (issued at 73.6 µs, 6.73 ms of work, four layers folded)
    r = laying_run()
    at0, busy, fold = 7.359726293686326e-05, 0.006730330974258188, 4
    r.slot_layers_list = [fold] * r.S
    at, nxt = r.laid.lay(0, 0, 1, [0.0], busy, at0, float("inf"))
    end = at0 + busy
    assert nxt == 1
    assert at == end + (end - at0) * (fold - 1)
    assert at != at0 + ((end - at0) + (end - at0) * (fold - 1))


def test_a_gpu_no_longer_routed_to_lays_again(monkeypatch):
    # GPU 0 decodes 120 tokens more than GPU 1, which routes onto it every layer (slowed by
    # that, GPU 1 ends after GPU 0's first 60 steps): once the queries stop, GPU 0's steps lay
    # again (caught, a GPU once routed to never laying again: one laying only)
    from simulator.engine.fast_laid import LaidSlots
    lays = []
    lay = LaidSlots.lay

    def spy(self, g, *args):
        lays.append(g)
        return lay(self, g, *args)

    monkeypatch.setattr(LaidSlots, "lay", spy)
    sc, trace = routed_onto_gpu0(longer=120)
    run(sc, RouteByChoice(), 0, trace=trace, engine="fast")
    assert lays.count(0) >= 25


def test_steps_of_few_layer_slots_do_not_lay(monkeypatch):
    # two layer slots a step (fast_laid.MIN_SLOTS): composed one by one, the very events (caught,
    # laying them: 38 events instead of 47)
    sc = small_scenario("single_node:gpus=2", layer_groups=2)
    one_by_one, laid = both(monkeypatch, sc, "adaptive", prompts())
    same_records(one_by_one, laid)
    assert laid.summary["events"] == one_by_one.summary["events"]
