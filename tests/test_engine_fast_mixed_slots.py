"""The fast engine's mixed decode steps — some layer slots with rounds, the slots between them
quiet (every selected block local) — held to the exact engine, step by step.

A request alone (``tests/test_engine_fast.py``) reads a prompt held wholly by one owner: its
slots all have rounds, or (once fetched copies make the context local) none. The cases here make
a context mostly local with a few remote blocks: GPU 1 writes a short prefix (its request gives
one token at its prefill and never decodes), then requests on GPU 0 read that prefix and many
blocks of their own. A sparse (DSA) selection picks the few remote blocks in some slots only, so
a step's quiet slots come in runs before, between and after the slots with rounds — the path
:meth:`~simulator.engine.fast_quiet.QuietSlots.run_slots` (a policy that never routes, fewer
than ``VECTOR_SLOTS`` slots), the per-slot loop in ``FastRun._decode`` (a routing policy),
or :meth:`~simulator.engine.fast_quiet.QuietSlots.stretches` (``VECTOR_SLOTS`` slots or more).

The oracle is the exact engine, which the fast one must match to 1e-6 on every step where
nothing contends. Here only GPU 0 decodes (GPU 1 runs only the kernels GPU 0's rounds put on
it), so nothing contends and the two agree to float rounding: within 1e-12 on every step (the
fast engine multiplies a folded slot's span by its layers where the exact engine adds them
layer by layer, and sums a step's slots in another order). The tests hold them to
:data:`REL` = 1e-9, tighter than the contract (a quiet slot's attention sized for one query
where it holds two moves a step by ~3e-5). Each test also asserts, with a spy, that the run
took the path it is meant to cover, so that a change of the cases cannot silently leave it.

Selections agree draw for draw because every query's selections are sampled once (no more than
``SELECTION_STEPS`` steps, and no context gains a block); a query the fast engine finds wholly
local is not drawn (:mod:`simulator.engine.locate`), which changes no step's time as long as the
others were sampled first. The prefix's writer never decodes: were it to, its local context's
estimated counters (not drawn) would steer ``adaptive`` to other choices than on the exact
engine — the documented estimate (a step off by 0.55 % in the one case probed, 61 slots), not
an error of the slots' times.

Each test names the wrong lines it catches (hand mutants, checked to fail it).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import pandas as pd
import pytest
from test_engine_fast import same_gpus, same_steps, same_traffic, unstarted

from simulator import run
from simulator.engine.fast import VECTOR_SLOTS, FastRun
from simulator.engine.fast_quiet import QuietSlots
from simulator.engine.fast_slots import SlotComposer
from simulator.engine.locate import SELECTION_STEPS, StepData
from simulator.testing.invariants import repo_on, small_scenario
from workloads.schema import make_trace

#: Blocks of the prefix GPU 1 writes, which the requests on GPU 0 read (remote to them).
PREFIX = 2
#: Tokens left free in a prompt's last block: no context gains a block while it decodes.
ROOM = 20
#: Step times, round phases and busy times agree to this, relative (the module docstring).
REL = 1e-9


@dataclass
class Probe:
    """What the fast engine's decode steps did (filled by the spies of :func:`probe`)."""

    #: per ``QuietSlots.run_slots`` call: (first, stop, slots S, queries drawn, queries not)
    runs: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    #: per ``QuietSlots.stretches`` call: (slots with rounds, slots S)
    stretches: list[tuple[int, int]] = field(default_factory=list)
    #: per (GPU, iteration): the slots a ``SlotComposer`` composed with rounds
    composed: dict[tuple[int, int], list[int]] = field(default_factory=lambda: defaultdict(list))
    #: per step with drawn queries: (queries drawn, queries not drawn)
    split: list[tuple[int, int]] = field(default_factory=list)
    #: per (GPU, iteration) whose quiet slots went on the calendar one by one (a routing
    #: policy): the queries in each slot
    queries: dict[tuple[int, int], list[int]] = field(default_factory=dict)

    def clear(self) -> None:
        """Forget every call seen so far."""
        self.runs.clear()
        self.stretches.clear()
        self.composed.clear()
        self.split.clear()
        self.queries.clear()

    def shapes(self) -> set[str]:
        """Where the quiet runs ``run_slots`` was given lay in their steps."""
        return {("whole" if stop == S else "head") if first == 0 else
                ("tail" if stop == S else "middle") for first, stop, S, *_ in self.runs}

    def mixed_steps(self, S: int) -> int:
        """Steps whose slots were partly composed with rounds, partly quiet."""
        return sum(0 < len(set(v)) < S for v in self.composed.values())

    def quiet_queries(self) -> list[int]:
        """The queries in each quiet slot of a step with rounds, one by one on the calendar."""
        return [q for key, qs in self.queries.items() if key in self.composed
                for s, q in enumerate(qs) if s not in self.composed[key]]


@pytest.fixture
def probe(monkeypatch) -> Probe:
    """Spies on the fast engine's quiet-slot paths (the code under test runs unchanged)."""
    p = Probe()
    last: dict[int, tuple[int, int]] = {}  # per GPU: its running step's (drawn, not drawn)
    step: dict[int, int] = {}  # per GPU: its running step's iteration
    run_slots, stretches, slot = QuietSlots.run_slots, QuietSlots.stretches, SlotComposer.slot
    select_split, table, decode = StepData.select_split, QuietSlots.attention_table, FastRun._decode

    def spy_decode(self, g, reqs, iteration, *args):
        step[g] = iteration
        return (yield from decode(self, g, reqs, iteration, *args))

    def spy_table(self, g, n_arr, q_arr):
        p.queries[g, step[g]] = q_arr.tolist()
        return table(self, g, n_arr, q_arr)

    def spy_split(self, g, reqs, colocated=False):
        out = select_split(self, g, reqs, colocated)
        last[g] = (len(out[0]), out[4])
        if out[0]:
            p.split.append(last[g])
        return out

    def spy_run_slots(self, g, first, stop, *args):
        p.runs.append((first, stop, self.run.S, *last[g]))
        return run_slots(self, g, first, stop, *args)

    def spy_stretches(self, g, iteration, groups, *args):
        p.stretches.append((sum(bool(grp) for grp in groups), len(groups)))
        return stretches(self, g, iteration, groups, *args)

    def spy_slot(self, g, s, iteration, *args):
        p.composed[g, iteration].append(s)
        return slot(self, g, s, iteration, *args)

    monkeypatch.setattr(FastRun, "_decode", spy_decode)
    monkeypatch.setattr(QuietSlots, "attention_table", spy_table)
    monkeypatch.setattr(StepData, "select_split", spy_split)
    monkeypatch.setattr(QuietSlots, "run_slots", spy_run_slots)
    monkeypatch.setattr(QuietSlots, "stretches", spy_stretches)
    monkeypatch.setattr(SlotComposer, "slot", spy_slot)
    return p


def prefix_then(*readers: tuple[float, int, int, bool]) -> pd.DataFrame:
    """GPU 1 writes the prefix at 0 s (one token: a prefill, no decode step); then each reader
    ``(arrival [s], own blocks, tokens to generate, reads the prefix)`` on GPU 0 (one session):
    its prompt the prefix, if it reads it, and blocks of its own (written on GPU 0)."""
    prefix = list(range(PREFIX))
    ids, tokens = [prefix], [PREFIX * 64]
    for i, (_, own, _, reads) in enumerate(readers):
        blocks = list(range(1000 * (i + 1), 1000 * (i + 1) + own))
        ids.append([*prefix, *blocks] if reads else blocks)
        tokens.append(len(ids[-1]) * 64 - ROOM)
    for _, _, out, _ in readers:
        assert out <= min(ROOM, SELECTION_STEPS)  # one sample of selections, no block gained
    n = len(readers)
    return make_trace(arrival_at=[0.0, *(r[0] for r in readers)], input_tokens=tokens,
                      output_tokens=[1, *(r[2] for r in readers)], block_ids=ids,
                      block_tokens=64, repo_id=[repo_on(1, 2), *[repo_on(0, 2)] * n],
                      session_id=[0, *[1] * n])


#: One request on GPU 0 reading the prefix and 200 blocks of its own, decoding alone.
ALONE = prefix_then((1.0, 200, 14, True))


def both_engines(policy: str, layer_groups: int, trace: pd.DataFrame, probe: Probe):
    """The exact and the fast engine's runs of ``trace`` (first-writer placement, homes by
    repository, 2 GPUs); ``probe`` holds the fast run's paths only."""
    sc = small_scenario("single_node:gpus=2", scheme="first_writer", home="repo_affinity",
                        layer_groups=layer_groups)
    exact = run(sc, policy, trace=trace)
    probe.clear()  # the fast run's calls only
    fast = run(sc, policy, trace=trace, engine="fast")
    assert fast.summary["engine"] == "fast" and exact.summary["engine"] == "exact"
    return exact, fast


def same_run(exact, fast) -> None:
    """Every step, round, GPU's kernels and busy time, and link's bytes as the exact engine's
    (to :data:`REL`)."""
    same_steps(exact, fast, rel=REL)
    same_gpus(exact, fast)  # kernels exactly, busy times to 1e-9
    same_traffic(exact, fast)
    assert fast.extras["pushed_steps"] == 0  # nothing contends


@pytest.mark.parametrize("policy", ["fetch", "local"])
@pytest.mark.parametrize("layer_groups", [8, 12])  # slots of 7 and 8 layers; of 5 and 6
def test_quiet_runs_before_between_and_after_rounds_take_the_exact_engines_times(
        policy: str, layer_groups: int, probe: Probe):
    """A policy that never routes, fewer slots than ``VECTOR_SLOTS``: the quiet runs between
    slots with rounds are counted by ``QuietSlots.run_slots`` — at a step's head, in its middle
    and at its tail, over slots of unequal folding. Catches, in ``run_slots``: the fold factor
    ``slot_layers[q] - 1`` as ``slot_layers[q]`` or read at ``q - first``; the blocks read at
    ``n_local[q - first]``; ``return end`` for ``return at``; ``at`` advanced before the fold;
    and at its call site (``FastRun._decode``): ``first`` = ``prev + 1``, ``stop`` = ``s - 1``,
    the ``at =`` carry dropped, ``prev = s`` for ``prev = s + 1``, the ``own_stream`` branches
    swapped."""
    exact, fast = both_engines(policy, layer_groups, ALONE, probe)
    S = layer_groups
    assert S < VECTOR_SLOTS and {"head", "middle", "tail"} <= probe.shapes()
    assert probe.mixed_steps(S) >= 2 and not probe.stretches
    same_run(exact, fast)


@pytest.mark.parametrize("policy", ["route", "adaptive"])
def test_a_routing_policys_quiet_slots_between_rounds_take_the_exact_engines_times(
        policy: str, probe: Probe):
    """A policy that routes: other GPUs' kernels may join a home's stream, so each quiet slot
    between slots with rounds goes on the calendar, one by one (``_slot_start``, ``reserve``),
    not through ``run_slots``. Catches, in that loop: ``range(prev + 1, s)`` (a quiet slot left
    out), the fold dropped (``at = end``), ``prev = s``."""
    exact, fast = both_engines(policy, 8, ALONE, probe)
    assert not probe.runs and not probe.stretches
    assert probe.mixed_steps(8) >= 2
    same_run(exact, fast)


@pytest.mark.parametrize("layer_groups", [0, 20])  # 61 slots of one layer; 20 of 3 and 4
def test_quiet_stretches_between_rounds_take_the_exact_engines_times(layer_groups: int,
                                                                   probe: Probe):
    """``VECTOR_SLOTS`` slots or more under a policy that never routes: the quiet runs between
    slots with rounds are summed as arrays (``QuietSlots.stretches``). Catches, there: a run's
    first slot left out (``span[prev + 1:s]``), ``prev = s`` (a slot with rounds summed as
    quiet too), the fold dropped."""
    exact, fast = both_engines("fetch", layer_groups, ALONE, probe)
    assert not probe.runs
    assert sum(0 < rounds < S for rounds, S in probe.stretches) >= 3
    same_run(exact, fast)


#: GPU 0 decodes the prefix's reader with a second request whose context is wholly its own
#: (arriving during the reader's prefill, so that it first decodes once the reader's
#: selections are sampled): the fast engine does not draw it (simulator/engine/locate.py)
WITH_A_LOCAL_NEIGHBOUR = prefix_then((1.0, 100, 14, True), (1.02, 40, 10, False))
#: GPU 0 decodes two requests that both read the prefix: both drawn
TWO_READERS = prefix_then((1.0, 300, 14, True), (1.0, 300, 10, True))


@pytest.mark.parametrize("policy", ["fetch", "route"])
def test_a_drawn_query_beside_one_not_drawn_counts_both_in_its_quiet_slots(policy: str,
                                                                          probe: Probe):
    """A step with a drawn query and one whose context is local (not drawn): every slot holds
    the local query's blocks and query beside the drawn one's, quiet or not — two queries in a
    quiet slot. Catches, in ``FastRun._decode``: ``n_arr + n_quiet`` or ``q_arr + q_quiet``
    dropped (the not-drawn query left out of the slots' blocks or query count); ``run_slots``
    given one query per slot; the per-slot loop's attention sized for one query per slot
    (``attention_table(g, n_arr, np.minimum(q_arr, 1))``)."""
    exact, fast = both_engines(policy, 8, WITH_A_LOCAL_NEIGHBOUR, probe)
    assert (1, 1) in probe.split  # one drawn, one not, in one step
    if policy == "fetch":  # quiet runs beside slots with rounds, counted with both queries
        assert any(first > 0 or stop < S for first, stop, S, drawn, local in probe.runs
                   if drawn and local)
    else:  # quiet slots of both queries between slots with rounds, on the calendar
        assert probe.quiet_queries().count(2) >= 5
    assert probe.mixed_steps(8) >= 2
    same_run(exact, fast)


@pytest.mark.parametrize("policy", ["fetch", "route"])
def test_two_drawn_queries_count_their_local_blocks_and_queries_per_slot(policy: str,
                                                                         probe: Probe):
    """A step of two drawn queries with partly remote contexts: a slot's local blocks are the
    two queries' sum, its query count how many of them have any. Catches, in
    ``FastRun._decode``: ``q_arr`` of several drawn queries taken as one per slot with blocks
    (``(n_arr > 0)``); only the first query's local blocks counted (``local[0].sum(axis=1)``)."""
    exact, fast = both_engines(policy, 8, TWO_READERS, probe)
    assert (2, 0) in probe.split
    assert probe.mixed_steps(8) >= 2
    if policy == "route":
        assert 2 in probe.quiet_queries()
    same_run(exact, fast)


def test_run_slots_reads_the_attention_of_each_slots_own_query_count():
    """``run_slots`` reads the home's attention from the cost model's cache by (blocks,
    queries) of each slot. Catches ``attn.get((name, n, 1))`` (one query's attention, where
    the cache holds it), which the engine runs above cannot tell: a query picks at most 34
    blocks a slot (DSA: 32 + the recent window of 2), so a quiet slot of two queries over
    contexts longer than that holds at least 36 — a size no one-query slot puts in the cache,
    and the wrong key misses and falls back to the right time. The oracle: the closed form,
    not the cache."""
    r = unstarted("fetch", layer_groups=3)
    name, na, t0 = r.names[1], 2e-4, 0.5
    n, q = [40, 40, 40], [1, 2, 3]
    r.costs.attention(name, 40, 1)  # a one-query slot of 40 blocks came first: cached
    want = t0
    for b, k, fold in zip(n, q, r.slot_layers_list, strict=True):
        want += (r.costs.cm.attention_time(name, b / k, k) + na) * fold
    assert r.costs.cm.attention_time(name, 20, 2) != r.costs.attention(name, 40, 1)
    assert r.quiet.run_slots(1, 0, 3, n, q, na, t0) == pytest.approx(want, rel=1e-12)
