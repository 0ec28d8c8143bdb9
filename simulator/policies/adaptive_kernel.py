"""``adaptive``'s price of a round, compiled: the same floats as the Python it stands for.

:meth:`Adaptive.choose <simulator.policies.adaptive.Adaptive.choose>` is asked every round. On
``cluster_1024`` it was a fifth of the run (stop 86's profile), most of it a dozen small Python
calls per round: the copies' expected reuse (:func:`~simulator.policies.adaptive.
expected_reuse`), the new blocks per round (:func:`~simulator.policies.adaptive.new_per_round`),
the owner's stall (:func:`~simulator.policies.adaptive.owner_stall`) and route's and fetch's
step times (:meth:`LoadedCosts.route_fetch <simulator.costmodel.loaded.LoadedCosts.
route_fetch>`). :func:`route_fetch_kernel` is those four on the observed arrays, operation for
operation: the same sums, products, quotients and comparisons on the same values in the same
order, so the same floats (IEEE arithmetic, no reassociation; ``expm1``, ``log1p`` and ``**``
from the same C library). Python's ``max(a, b)`` and ``min(a, b)`` are written as the
comparisons they make (``b if b > a else a``), so a NaN or a signed zero goes the same way.
The Python stays the reference: ``Adaptive(compiled=False)`` runs it, and
``tests/test_policies_adaptive_kernel.py`` holds the two equal, float for float.

What the kernel does not do stays in Python, in the reference's order: the blocks the home's
last step selected (it reads them before the links), the streams' backlogs and the links' load
(the engine's calendars), and the recompute check (``local``, which is seldom priced).

**The closed form's phases** of a round shape are memoized by :class:`~simulator.costmodel.
loaded.LoadedCosts` in dicts. The kernel reads them from :class:`PhaseTable`: the same tuples
copied into a float array, found by an int key — (home, owner, batch, blocks in all, option)
packed in 60 bits — in an open-addressing hash table (two int arrays, linear probing). A shape
the table lacks is a *miss*: the kernel returns its key, Python asks ``LoadedCosts`` for it
(its dict, or the closed form), adds it, and asks again. A round whose batch or blocks fall
outside the key's fields, or a reuse the reference would refuse (below 1), is left to the
reference (status :data:`REFERENCE`); so is every round of a run of more than
:data:`MAX_GPUS` GPUs (``PhaseTable.usable``, decided once per run).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from simulator.costmodel.closed_form import OPTIONS

#: Status of :func:`route_fetch_kernel`: the times are in the tuple.
DONE = 0
#: Status: a phase shape is missing from the table (its key, blocks and option are returned).
MISS = 1
#: Status: left to the Python reference (a field out of the key's range, or reuse below 1).
REFERENCE = 2

#: Bits of the key's fields: batch (queries), blocks in all; home and owner take 12 each.
BATCH_BITS = 12
TOTAL_BITS = 22
#: Runs of more GPUs than this price rounds in Python (a pair's number needs 24 bits).
MAX_GPUS = 1 << 12

_ROUTE = OPTIONS.index("route")
_FETCH = OPTIONS.index("fetch")
_EMPTY = -1


@numba.njit(cache=True, nogil=True)
def _slot(keys, key):
    """Where ``key`` (0 ≤ key < 2^60) is in the table ``keys`` (a power of two long), or the
    empty place where it would go: a hash of its bits (two products by odd constants, summed
    below 2^61: no overflow, compiled or not), then the next places in turn."""
    mask = len(keys) - 1
    mixed = (key & 0x7FFFFFF) * 0x9E3779B1 + (key >> 27) * 0x5BD1E99
    i = (mixed ^ (mixed >> 29)) & mask
    while keys[i] != key and keys[i] != _EMPTY:
        i = (i + 1) & mask
    return i


@numba.njit(cache=True, nogil=True)
def _insert(keys, rows, key, row):
    """Put ``key`` → ``row`` in the table (``key`` not yet in it; a free place left)."""
    i = _slot(keys, key)
    keys[i] = key
    rows[i] = row


@numba.njit(cache=True, nogil=True)
def _rehash(keys, rows, new_keys, new_rows):
    """Every entry of one table into another, larger and empty."""
    for i in range(len(keys)):
        if keys[i] != _EMPTY:
            _insert(new_keys, new_rows, keys[i], rows[i])


@numba.njit(cache=True, nogil=True)
def _row(keys, rows, key):
    """The row of ``key``'s phases, or -1."""
    i = _slot(keys, key)
    return rows[i] if keys[i] == key else -1


@numba.njit(cache=True, nogil=True)
def _key(base, total, code):
    """A phase shape's key: ``base`` (home, owner and batch in their fields), then its blocks in
    all and its option's code."""
    return (base * (1 << TOTAL_BITS) + total) * 4 + code


@numba.njit(cache=True, nogil=True)
def _round_probability(selected, reuse):
    """:func:`simulator.costmodel.loaded.round_probability` (reuse ≥ 1 checked before)."""
    if reuse == 1.0 or selected <= 0:
        return 1.0 if selected > 0 else 0.0
    return -math.expm1(selected * math.log1p(-1.0 / reuse))


@numba.njit(cache=True, nogil=True)
def _repicks(stability, share, steps):
    """:func:`simulator.policies.adaptive.repicks`."""
    m = steps if steps > 0.0 else 0.0  # max(0.0, steps)
    pi = 0.0 if share < 0.0 else share  # max(share, 0.0)
    pi = 1.0 if pi > 1.0 else pi  # min(·, 1.0)
    if pi >= 1.0:
        return m
    lam = (stability - pi) / (1.0 - pi)
    lam = 0.0 if lam < 0.0 else lam  # max(·, 0.0)
    burst = m if lam >= 1.0 else lam * (1.0 - lam**m) / (1.0 - lam)
    return m * pi + (1.0 - pi) * burst


@numba.njit(cache=True, nogil=True)
def route_fetch_kernel(h, o, n_gpus, batch, blocks, need, remaining, share, room, held,
                       copies, hits, rounds, queries, lockstep, picked, picked_again,
                       owner_wait, home_wait, slow_route, slow_fetch, prior_copies,
                       prior_rounds, keys, rows, phases):
    """Route's and fetch's step times for a round of home ``h``, owner ``o`` (module
    docstring): ``(status, key, blocks in all, option code, route's step [s], fetch's step [s],
    fetch's whole round [s], expected reuse, new blocks per round or NaN)``.

    ``blocks``: per query, the larger of the round's and the home's last step's; ``need``: the
    round's distinct blocks; the arrays are :class:`~simulator.policies.observed.Observed`'s;
    ``owner_wait``, ``home_wait``, ``slow_route``, ``slow_fetch`` [s] as the reference takes
    them; ``prior_copies``, ``prior_rounds``: the priors' weights (arguments, not constants:
    the compiled cache would not see a change to them); ``keys``, ``rows``, ``phases``: a
    :class:`PhaseTable`'s."""
    nan = np.nan
    # -- expected_reuse
    left = remaining[h] - 1.0
    m = left if left > 0.0 else 0.0  # max(0.0, ·)
    stability = picked_again / picked if picked > 0 else 0.0
    again = _repicks(stability, share[h], m)
    r, held_h = room[h], held[h]
    if r <= 0:
        survival = 0.0
    elif r - held_h >= need:
        survival = 1.0
    else:
        x = r / (held_h + need)
        survival = x if x < 1.0 else 1.0  # min(1.0, ·)
    prior = 1.0 + again * survival
    c = copies[h, o]
    if c <= 0:
        reuse = prior
    else:
        seen = 1.0 + hits[h, o] / c
        reuse = (c * seen + prior_copies * prior) / (c + prior_copies)
    if not reuse >= 1.0:  # the reference refuses it (UserError)
        return REFERENCE, 0, 0, 0, nan, nan, nan, reuse, nan
    # -- new_per_round over the step's K·B selections
    made = rounds[h, o]
    per = nan
    if made > 0:
        selected = blocks * batch
        p0 = _round_probability(selected, reuse)
        guess = selected / (reuse * p0) if p0 > 0 else 1.0
        x = (made * (copies[h, o] / made) + prior_rounds * guess) / (made + prior_rounds)
        per = x if x > 1.0 else 1.0  # max(1.0, ·)
    # -- owner_stall
    if lockstep[o]:
        stall = 1.0
    else:
        mine = queries[o]
        if mine > 0:
            home_q = queries[h]
            stall = mine / (home_q if home_q > 0 else 1)  # / max(home_q, 1) (ints)
        else:
            stall = 0.0
    # -- LoadedCosts.round_blocks
    n = batch * blocks
    chance = _round_probability(n, reuse)
    if made > 0 and chance > 0:
        new = batch * blocks / reuse
        most = n if n < per else per  # min(per_round, n)
        y = new / (most if most > 1.0 else 1.0)  # / max(1.0, ·)
        chance = y if y < 1.0 else 1.0  # min(1.0, ·)
    k = blocks / (reuse * chance) if chance > 0 else 0.0
    # -- the phases: fetch at k, route at blocks (LoadedCosts._at), fetch's one-block round
    if batch >= (1 << BATCH_BITS):
        return REFERENCE, 0, 0, 0, nan, nan, nan, reuse, per
    base = (h * n_gpus + o) * (1 << BATCH_BITS) + batch
    xs = (k * batch, blocks * batch)
    codes = (_FETCH, _ROUTE)
    lerped = np.empty((2, 5))
    for j in range(2):
        x = xs[j]
        if x < 1.0:
            x = 1.0
        if not x < (1 << TOTAL_BITS) - 1:
            return REFERENCE, 0, 0, 0, nan, nan, nan, reuse, per
        lo = math.floor(x)
        key = _key(base, lo, codes[j])
        a = _row(keys, rows, key)
        if a < 0:
            return MISS, key, lo, codes[j], nan, nan, nan, reuse, per
        w = x - lo
        if w <= 0:
            for i in range(5):
                lerped[j, i] = phases[a, i]
            continue
        key = _key(base, lo + 1, codes[j])
        b = _row(keys, rows, key)
        if b < 0:
            return MISS, key, lo + 1, codes[j], nan, nan, nan, reuse, per
        for i in range(5):
            lerped[j, i] = phases[a, i] + w * (phases[b, i] - phases[a, i])
    key = _key(base, 1, _FETCH)
    one = _row(keys, rows, key)
    if one < 0:
        return MISS, key, 1, _FETCH, nan, nan, nan, reuse, per
    f = lerped[0]
    p = lerped[1]
    q = phases[one]
    # -- LoadedCosts._copy_time (fetch's step)
    total = f[0] + f[1] + f[2] + f[3] + f[4]
    if chance <= 0:
        t_fetch = 0.0
    else:
        moved = k / blocks
        slow = slow_fetch * moved if moved < 1.0 else slow_fetch  # (× 1.0: the same float)
        wait = home_wait - (f[0] + f[1] + slow)
        t_fetch = chance * (total + slow + (wait if wait > 0.0 else 0.0))
    # -- LoadedCosts._route_time + _deferred (route's step)
    sent = p[0] + p[1]
    ow = owner_wait - sent
    ow = ow if ow > 0.0 else 0.0
    issued = sent + ow + p[2] + p[3] + slow_route
    hw = home_wait - issued
    t_route = (sent + p[2] + p[3] + p[4] + ow + slow_route + (hw if hw > 0.0 else 0.0)
               + p[2] * stall)
    more = total - (q[0] + q[1] + q[2] + q[3] + q[4])
    t_route = t_route + (1.0 - 1.0 / reuse) * chance * (more if more > 0.0 else 0.0)
    return DONE, 0, 0, 0, t_route, t_fetch, total, reuse, per


class PhaseTable:
    """The closed form's phases of round shapes for :func:`route_fetch_kernel` (module
    docstring): ``keys`` and ``rows`` an open-addressing table (-1: empty; at most half full),
    ``phases`` one row ``(probe, transfer, compute, ret, merge)`` [s] per entry.

    Args:
        observed: the run's :class:`~simulator.policies.observed.Observed`, whose GPU indices
            the keys hold (a policy asked by another run starts a table of its own).

    Attributes:
        n_gpus: the run's GPUs; ``usable``: at most :data:`MAX_GPUS` of them (else the keys
            cannot hold a pair, and every round is priced by the Python).
    """

    def __init__(self, observed) -> None:
        self.observed = observed
        self.n_gpus = len(observed.names)
        self.usable = self.n_gpus <= MAX_GPUS
        self.keys = np.full(1 << 12, _EMPTY, np.int64)
        self.rows = np.zeros(1 << 12, np.int64)
        self.phases = np.zeros((1 << 11, 5))
        self.n = 0

    def add(self, key: int, phases: tuple[float, ...]) -> None:
        """Enter ``key`` (not yet in the table) with its ``phases``, growing the arrays
        as needed."""
        if 2 * (self.n + 1) > len(self.keys):
            keys = np.full(2 * len(self.keys), _EMPTY, np.int64)
            rows = np.zeros(2 * len(self.keys), np.int64)
            _rehash(self.keys, self.rows, keys, rows)
            self.keys, self.rows = keys, rows
        if self.n == len(self.phases):
            self.phases = np.concatenate([self.phases, np.zeros_like(self.phases)])
        self.phases[self.n] = phases
        _insert(self.keys, self.rows, key, self.n)
        self.n += 1

    def __len__(self) -> int:
        return self.n


def price(table: PhaseTable, lc, obs, rnd, h: int, o: int, blocks: float, owner_wait: float,
          home_wait: float, slow_route: float, slow_fetch: float, prior_copies: float,
          prior_rounds: float) -> tuple[float, float, float, float, float | None] | None:
    """``(route's step [s], fetch's step [s], fetch's whole round [s], expected reuse, new blocks
    per round or None)`` of round ``rnd`` (home ``h``, owner ``o``; ``blocks`` per query) from
    :func:`route_fetch_kernel`, the phase shapes it misses taken from ``lc`` (a
    :class:`~simulator.costmodel.loaded.LoadedCosts`) into ``table``; None where it leaves the
    round to the Python reference."""
    while True:
        status, key, total, code, t_route, t_fetch, fetch_round, reuse, per = \
            route_fetch_kernel(h, o, table.n_gpus, rnd.batch, blocks, float(rnd.distinct_blocks),
                               obs.remaining_tokens, obs.select_share, obs.copy_room,
                               obs.copies_held, obs.copies, obs.hits, obs.rounds, obs.queries,
                               obs.lockstep, obs.picked, obs.picked_again, owner_wait,
                               home_wait, slow_route, slow_fetch, prior_copies, prior_rounds,
                               table.keys, table.rows, table.phases)
        if status == DONE:
            return t_route, t_fetch, fetch_round, reuse, (None if per != per else per)
        if status != MISS:
            return None
        p = lc.phases(OPTIONS[code], rnd.src, rnd.owner, total, rnd.batch)
        table.add(key, (p.probe, p.transfer, p.compute, p.ret, p.merge))
