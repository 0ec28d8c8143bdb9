"""Prefix reuse against a reference prefix cache, whatever order requests are admitted and
finish in.

The oracle is a set of prompt prefixes (tuples of block ids), not the engine's hashes or
directory: a prefix is held once some request whose prompt starts with it has finished its
prefill. With room for everything (no eviction) and no preemption, under the ``prefix`` rule a
request reuses the longest run of its prompt's leading prefixes that are held when it is
admitted — all but the last block when every one is (its prefill gives a token) — and the
directory ends holding exactly one block per distinct prefix: no two prefixes share an entry
(two prompts admitted before either wrote a block, or a block repeated in a prompt after
another prefix, shared one until stop 71) and none is held twice.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_engine_admission import admission


@st.composite
def interleavings(draw):
    """Prompts over a small alphabet (so that blocks repeat, within and across prompts) and an
    order of their admissions and prefill ends, each admission before its end."""
    n = draw(st.integers(2, 6))
    prompts = [draw(st.lists(st.integers(1, 3), min_size=1, max_size=5)) for _ in range(n)]
    order = draw(st.permutations([(r, step) for r in range(n) for step in (0, 1)]))
    seen: set[int] = set()
    events = []
    for r, _ in order:  # each request's first event is its admission, its second its end
        events.append((r, "done" if r in seen else "admit"))
        seen.add(r)
    return prompts, events, draw(st.integers(1, 2))


@settings(max_examples=150, deadline=None)
@given(interleavings())
def test_prefix_reuse_matches_a_reference_cache_in_any_interleaving(case):
    prompts, events, gpus = case
    a = admission(1000, prompts, [64 * len(p) for p in prompts], [1] * len(prompts),
                  "on_demand", gpus=gpus)
    held: set[tuple[int, ...]] = set()
    want = {}
    for r, what in events:
        g = r % gpus
        p = prompts[r]
        if what == "admit":
            run = 0
            while run < len(p) and tuple(p[: run + 1]) in held:
                run += 1
            want[r] = min(run, len(p) - 1)
            assert a.sched[g].kv.admit(r) is not None
            a.admitted(r)
            assert a.reused[r] == want[r], (r, prompts)
        else:
            a.prompt_done(g, r)
            held.update(tuple(p[: i + 1]) for i in range(len(p)))
    assert int(a.dir.known(np.arange(a.dir.n)).sum()) == len(held)
    for r in range(len(prompts)):  # each request's context: its own prefixes' blocks
        assert len(set(a.ctx_idx[r].tolist())) == len(prompts[r])
        a.sched[r % gpus].kv.release(r)
    assert not a.dir.pins.any()
