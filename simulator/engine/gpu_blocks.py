"""One GPU's KV pool in the exact engine: the blocks its running requests own, out of its room.

:class:`GPUBlocks` is the :class:`~simulator.engine.scheduler.KVPool` each GPU's
:class:`~simulator.engine.scheduler.Scheduler` asks whether a request fits, may grow, or lets go.
It counts pages only — one integer per GPU (``reserved``) and one per request (the run's
``held``) — and leaves the rest of a request's life to the run's
:class:`~simulator.engine.admission.Admission`, which it holds (``adm``): which of the context's
blocks are reused (its :class:`~simulator.engine.prefix_cache.PrefixCache`), the counts a started
admission records, the pins. Two ways to count, as vLLM's ``kv_allocation``:

- ``reserve`` takes a request's whole prompt + output at admission, less the blocks it reuses;
  a running request never preempts another.
- ``on_demand`` counts blocks as tokens are computed (:meth:`GPUBlocks.grow`), and admits only
  a request that fits the GPU alone when done, counted the same way, so that a request alone
  never preempts itself.

Its release of a request preempted part-way through its prompt keeps the whole blocks its chunks
filled (:meth:`~simulator.engine.admission.Admission.keep_computed`).
"""

from __future__ import annotations

import numpy as np


class GPUBlocks:
    """The KV pool of one GPU of the exact engine (a :class:`~simulator.engine.scheduler.KVPool`):
    blocks owned by running requests, out of the GPU's capacity (HBM − weights − reserve).

    ``reserve`` counts a request's whole prompt + output at admission (never preempts);
    otherwise blocks are counted as tokens are computed: a page for each block its prefill
    computes (own tokens / block_tokens, rounded up: a partial last block computes only its
    tokens), then a new page only once its new tokens have filled the empty slots of its
    context's last page (a reused one's: ``slack``). Admission asks
    that the request fit alone when done, counted the same way, so a request alone never
    preempts itself.

    Args:
        adm: the run's :class:`~simulator.engine.admission.Admission` (per-request arrays).
        g: the GPU's index.
        reserve: count whole requests at admission (``kv_allocation = "reserve"``).
    """

    def __init__(self, adm, g: int, reserve: bool) -> None:
        self.adm = adm
        self.g = g
        self.reserve = reserve
        self.cap = int(adm.dir.capacity[g])
        self.reserved = 0

    def admit(self, r: int) -> int | None:
        a = self.adm
        idx = a.ctx_idx[r] if a.ctx_idx[r] is not None else a.context(r)
        context = int(a.inp[r]) + int(a.gen[r])
        # a token past the context's blocks: its first token, sampled but not yet in a block
        # (grow_context adds that at its next step), preempted before then. Computing it
        # gives the next token, so the last block need not be computed again
        spill = max(context - len(idx) * a.bt, 0)
        plan = a.reuse_plan(r, idx, a.gives_token(self.g, r) and not spill)
        n_reused = int(plan.reused.sum())
        missing = len(idx) - n_reused
        # tokens to compute: the missing blocks' pages, the context's last only to its end
        compute = plan.computed_tokens(context, a.bt) + spill
        if self.reserve:
            need = a.need_blocks(r) - n_reused
            if self.reserved + need > self.cap:
                return None if self.reserved == 0 else -1  # alone it can never fit
            self.reserved += need
            a.held[r] = need
        else:
            own = -(-(int(a.inp[r]) + int(a.out[r])) // a.bt) - n_reused
            if own > self.cap:
                return None
            a.held[r] = 0
            a.own_tokens[r] = 0
            # what Admission.admitted counts, and a preemption before it takes back
            a.counted[r] = a.counted_tokens[r] = 0
            # once computed it owns the missing blocks' pages (and the spilled token's): its
            # own tokens fill them as they are laid out. Only a partial last block it reused
            # (did not compute) leaves empty slots its next tokens fill before a new page
            reused_last = not spill and not plan.recompute[-1]
            a.slack[r] = (-context) % a.bt if reused_last else 0
        a.ctx_idx[r] = idx
        a.dir.pin(idx)
        a.pinned[r] = True
        # placed when computed (PrefixCache.place)
        a.prefixes.computing[r] = np.flatnonzero(plan.recompute)
        # counted by Admission.admitted if it starts
        a.start_blocks[r] = (n_reused, missing, int(plan.rotary.sum()), compute)
        return compute

    def grow(self, r: int, tokens: int) -> bool:
        if self.reserve:
            return True
        a = self.adm
        total = int(a.own_tokens[r]) + tokens
        delta = -(-max(total - int(a.slack[r]), 0) // a.bt) - int(a.held[r])
        if delta > 0:
            if self.reserved + delta > self.cap:
                return False
            self.reserved += delta
            a.held[r] += delta
        a.own_tokens[r] = total
        return True

    def release(self, r: int) -> None:
        a = self.adm
        self.reserved -= int(a.held[r])
        a.held[r] = 0
        # preempted before its context was done (its prefix hashes are kept until placed)
        if not self.reserve and r in a.prefixes.prompt_hash:
            a.keep_computed(self.g, r)
        a.dir.unpin(a.ctx_idx[r])
        a.pinned[r] = False
        a.sel_cache[r] = None
