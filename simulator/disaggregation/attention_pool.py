"""The Lamina attention workers' HBM as one KV pool: where each request's KV bytes live.

Lamina's attention pool (:mod:`simulator.disaggregation.lamina`) holds every running request's
KV cache; its model workers hold none. :class:`AttentionPool` is the
:class:`~simulator.disaggregation.byte_pool.BytePool` the run's schedulers admit, grow, preempt and
release requests against (:class:`~simulator.engine.scheduler.Scheduler`, one per micro-batch),
with the attention GPUs' capacities kept apart:

- **split by KV heads** (``attention_split = "heads"``): every request's bytes are spread over
  every attention GPU in proportion to its heads (``share``); a request fits when every GPU has
  room for its share;
- **split by requests** (``"requests"``, data-parallel attention, as MLA needs): a request's
  bytes all go to the GPU with the most free memory when it is admitted (``att_of``, which the
  run's plans read to give each GPU its own requests' attention), and stay there while it holds
  them. A request that gives them all back (preempted, or its first chunk did not fit) is placed
  anew when it is admitted again: its KV is gone, and a recompute may land on any GPU.

Per-GPU use and peak are kept for the run's records (``kv_peak_bytes``). Growth is placed one
request at a time (``grow_each = None``), since each may land on another GPU.
"""

from __future__ import annotations

import numpy as np

from simulator.disaggregation.byte_pool import BytePool


class AttentionPool(BytePool):
    """The attention workers' HBM as one KV pool: each request's bytes split by KV heads over
    every attention GPU (``share``), or (``requests`` split) all on the GPU with the most free
    memory when it is admitted (again after a release)."""

    def __init__(self, reqs, per_token: float, cap: np.ndarray, reserve: bool, prefill_tokens,
                 share: np.ndarray, by_heads: bool) -> None:
        super().__init__(reqs, per_token, float(cap.sum()), reserve, prefill_tokens)
        self.cap = cap
        self.used = np.zeros(len(cap))
        self.peak = np.zeros(len(cap))
        self.share = share
        self.by_heads = by_heads
        self.att_of = np.full(reqs.n, -1, np.int64)

    # bytes placed per attention GPU (can_fit / take below): the scheduler grows one by one
    grow_each = None

    def _where(self, r: int) -> int:
        w = int(self.att_of[r])
        return int(np.argmax(self.cap - self.used)) if w < 0 else w

    def can_fit(self, r: int, nbytes: float) -> bool:
        if self.by_heads:
            return bool(np.all(self.used + nbytes * self.share <= self.cap))
        w = self._where(r)
        return bool(self.cap[w] - self.used[w] >= nbytes)

    def fits_alone(self, r: int, nbytes: float) -> bool:
        if self.by_heads:
            return bool(np.all(nbytes * self.share <= self.cap))
        return bool(nbytes <= self.cap.max())

    def take(self, r: int, nbytes: float) -> None:
        if self.by_heads:
            self.used += nbytes * self.share
        else:
            w = self._where(r)
            self.att_of[r] = w
            self.used[w] += nbytes
        np.maximum(self.peak, self.used, out=self.peak)

    def give(self, r: int, nbytes: float) -> None:
        if self.by_heads:
            self.used -= nbytes * self.share
        else:
            self.used[self.att_of[r]] -= nbytes
        np.maximum(self.used, 0.0, out=self.used)

    def release(self, r: int) -> None:
        super().release(r)
        self.att_of[r] = -1  # nothing of r is held: its next admission places it anew
