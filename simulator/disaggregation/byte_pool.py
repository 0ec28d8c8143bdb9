"""A KV pool counted in bytes, as the pool loops' schedulers ask about it.

:class:`BytePool` is the :class:`~simulator.engine.scheduler.KVPool` of the pool loops: the
engine's :class:`~simulator.engine.scheduler.Scheduler` admits, grows and releases requests
against it as against the exact engine's block pool, but the loops count KV in bytes per token
(a head shard's bytes, :mod:`simulator.disaggregation.shards`), with no block directory and no
prefix reuse. Where the bytes go is one overridable decision (``can_fit``, ``fits_alone``,
``take``, ``give``): one replica's budget by default, each attention GPU's share in Lamina's
:class:`~simulator.disaggregation.attention_pool.AttentionPool`. :meth:`BytePool.grow_each`
grows a whole decode batch at once with the same comparisons and additions as one call each.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from itertools import accumulate, repeat

from simulator.disaggregation.pools import Requests


class BytePool:
    """A KV pool counted in bytes (a :class:`~simulator.engine.scheduler.KVPool`) for the pool
    loops: per request ``per_token`` bytes for each token of its context, out of ``capacity``.

    With ``reserve`` a request takes its whole prompt + output at admission; otherwise it takes
    its prompt at admission when the prompt arrives prefilled (``prefill_tokens`` returns 0:
    another cluster wrote it) and grows as tokens are computed. ``can_fit(r, nbytes)`` and
    ``take(r, nbytes)`` / ``give(r, nbytes)`` let a loop place the bytes (one replica's budget,
    or an attention GPU's) — the defaults count one pool.
    """

    def __init__(self, reqs: Requests, per_token: float, capacity: float, reserve: bool,
                 prefill_tokens: Callable[[int], int]) -> None:
        self.req = reqs
        self.per_token = per_token
        self.capacity = capacity
        self.reserve = reserve
        self.prefill_tokens = prefill_tokens
        self.used = 0.0
        self.peak = 0.0
        self.held: dict[int, float] = {}

    # where the bytes go (overridden by a loop that places them on several GPUs)
    def can_fit(self, r: int, nbytes: float) -> bool:
        """Room for ``nbytes`` more of request ``r``'s KV now."""
        return self.used + nbytes <= self.capacity

    def fits_alone(self, r: int, nbytes: float) -> bool:
        """Would ``nbytes`` of ``r`` fit an empty pool."""
        return nbytes <= self.capacity

    def take(self, r: int, nbytes: float) -> None:
        """Count ``nbytes`` more of ``r``."""
        self.used += nbytes
        self.peak = max(self.peak, self.used)

    def give(self, r: int, nbytes: float) -> None:
        """Uncount ``nbytes`` of ``r``."""
        self.used = max(0.0, self.used - nbytes)

    # the KVPool interface
    def admit(self, r: int) -> int | None:
        req = self.req
        full = float(req.inp[r] + req.out[r]) * self.per_token
        if not self.fits_alone(r, full):
            return None
        compute = self.prefill_tokens(r)
        context = float(req.inp[r] + req.gen[r])
        start = full if self.reserve else (context - compute) * self.per_token
        if not self.can_fit(r, start):
            return -1
        self.take(r, start)
        self.held[r] = start
        return compute

    def grow(self, r: int, tokens: int) -> bool:
        if self.reserve:
            return True
        nbytes = tokens * self.per_token
        if not self.can_fit(r, nbytes):
            return False
        self.take(r, nbytes)
        self.held[r] += nbytes
        return True

    def release(self, r: int) -> None:
        self.give(r, self.held.pop(r, 0.0))

    def grow_each(self, rs: list[int]) -> int:
        """:meth:`grow` by one token for each of ``rs`` in order, to the first that does not fit
        (the same comparisons and additions, without a call each); how many grew. A pool that
        places the bytes itself (its own ``can_fit`` / ``take``) sets ``grow_each = None``."""
        if self.reserve:
            return len(rs)
        nbytes, held = 1 * self.per_token, self.held
        # the pool's use after each growth, added one after another (in C); r grows while its
        # addition keeps the use within capacity (non-decreasing: the first that does not, stops)
        after = list(accumulate(repeat(nbytes, len(rs)), initial=self.used))[1:]
        k = bisect_right(after, self.capacity)
        if k:
            self.used = after[k - 1]
            if self.used > self.peak:
                self.peak = self.used
            for r in rs[:k]:
                held[r] += nbytes
        return k
