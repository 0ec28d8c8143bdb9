"""Requests' life in the engine: arrival, home choice, admission, prefill, growth, retirement.

:class:`Admission` is a part the engine's run holds (:mod:`simulator.engine.exact`): it owns the
per-request arrays (numpy, indexed by the request's row in the trace), the per-GPU queues and one
:class:`~simulator.engine.scheduler.Scheduler` per GPU. A request arrives on its session's *home*
GPU (the session's first choice: least loaded, or the GPU owning its repository under
``repo_affinity``), waits in that GPU's queue until the scheduler takes it (a free sequence slot,
token budget and room for its KV), is prefilled at home — in chunks under the step's token budget
— reusing the blocks the directory already holds (leading known blocks under ``prefix`` reuse,
also known blocks of commutative spans after a rotary pass under ``span``, nothing under
``none``: :mod:`simulator.engine.reuse`), then decodes until its output length; its blocks are
then unpinned. A request preempted when KV runs out goes back to the queue's front and later
recomputes its context (what the directory still holds is reused — a prompt preempted part-way
leaves the whole blocks its chunks filled, as vLLM's prefix cache keeps them:
:meth:`Admission.keep_computed`). A request that cannot fit an
empty GPU is finished with :data:`TOO_LARGE`.

Two parts it holds keep their own state:

- each scheduler's KV pool, :class:`~simulator.engine.gpu_blocks.GPUBlocks` — the blocks each
  running request owns on that GPU, out of its capacity;
- ``prefixes``, a :class:`~simulator.engine.prefix_cache.PrefixCache` — which prefix each held
  block's KV was computed after: a context's directory indices (versions of blocks computed after
  another prefix), its reuse plan, and the placement of the blocks an admission computed.

This module keeps what happens to a request over time and the counts its records report.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import simpy

from simulator import kvcache
from simulator.engine import reuse as reuse_rules
from simulator.engine.arrivals import Arrivals
from simulator.engine.gpu_blocks import GPUBlocks
from simulator.engine.prefix_cache import PrefixCache
from simulator.engine.requests import init_request_arrays
from simulator.engine.scheduler import Scheduler, ServingSpec

#: Why a request did not complete: it cannot fit its home even alone.
TOO_LARGE = "its KV does not fit the home GPU's free HBM"


class Admission:
    """Request bookkeeping of one exact-engine run (see the module docstring).

    Args:
        env: the run's environment.
        trace: the requests (one row each, as :func:`simulator.engine.trace.load_trace` gives).
        directory: the run's KV block directory.
        n_gpus: GPUs of the run (homes are their indices).
        placement: the scenario's ``[placement]`` (``home``, ``reuse``, ``block_tokens``).
        serving: the scenario's ``[serving]``.
        max_num_seqs: most requests running at once per GPU.
        concurrency: requests kept outstanding (a closed loop), or None (trace arrival times).
        prefill_time: ``prefill_time(g, tokens)``, a whole prefill of ``tokens`` on GPU ``g`` [s].
        region_blocks: the sparse selector's region size in blocks (focus sets).
        focus_rng: the random stream of focus sets.
        progress: called as ``progress(finished_requests, total_requests)``.
        rotary_time: ``rotary_time(g, tokens)``, the rotary pass over ``tokens`` reused
            position-free tokens on GPU ``g`` [s] (``span`` reuse; None = free).
        homes: the GPUs requests may decode on (default all; a ``[deployment]``'s decode pool).
    """

    def __init__(self, env: simpy.Environment, trace, directory, *, n_gpus: int, placement,
                 serving: ServingSpec, max_num_seqs: int, prefill_time, region_blocks: int,
                 focus_rng, progress, concurrency: int | None = None,
                 rotary_time=None, homes: list[int] | None = None) -> None:
        self.env = env
        self.dir = directory
        self.G = n_gpus
        self.home_rule = placement.home
        self.reuse_rule = placement.reuse
        self.bt = placement.block_tokens
        self.prefill_time = prefill_time
        self.rotary_time = rotary_time
        self.region_blocks = region_blocks
        self.focus_rng = focus_rng
        self.progress = progress
        t = trace
        init_request_arrays(self, t)
        n = self.n
        self.repo = t["repo_id"].to_numpy(dtype=np.int64, na_value=-1)
        self.prompt = t["block_ids"].tolist()
        self.spans = t["spans"].tolist()
        self.home = np.full(n, -1, np.int64)
        self.reused = np.zeros(n, np.int64)
        self.prefilled = np.zeros(n, np.int64)
        self.counted = np.zeros(n, np.int64)  # prefilled blocks its running admission counted
        self.counted_tokens = np.zeros(n, np.int64)  # computed_tokens it counted, likewise
        self.computed_tokens = np.zeros(n, np.int64)  # prompt tokens its admissions computed
        self.held = np.zeros(n, np.int64)  # KV blocks a running request owns on its home
        self.own_tokens = np.zeros(n, np.int64)  # tokens computed or decoded (on-demand)
        # empty slots of the context's last page that its next tokens fill before a new page:
        # a partial last block it did not compute (reused), GPUBlocks.admit
        self.slack = np.zeros(n, np.int64)
        self.admissions = np.zeros(n, np.int64)  # 1 + times preempted and re-admitted
        # (reused, missing, rotary) blocks at admission
        self.start_blocks: dict[int, tuple[int, int, int]] = {}
        self.rotary = np.zeros(n, np.int64)  # reused span blocks awaiting their rotary pass
        # whose KV arrived computed elsewhere (a PD hand-off, external prefill): its next
        # admission gives its first token without computing (reuse.plan's gives_token)
        self.arrived_computed = np.zeros(n, bool)
        self.pinned = np.zeros(n, bool)  # its context is pinned (admitted, not yet released)
        self.ctx_idx: list[np.ndarray | None] = [None] * n
        # the prefixes its held blocks were computed after, their versions, their placement
        self.prefixes = PrefixCache(env, directory, self.reuse_rule, self.prompt, self.spans,
                                    self.repo, self.ctx_idx, self.pinned)
        self.sel_cache: list[tuple | None] = [None] * n
        self.focus: list[np.ndarray | None] = [None] * n
        self.popular = np.zeros(n, np.int64)
        self.session_home: dict[int, int] = {}
        self.session_focus: dict[int, np.ndarray] = {}
        self.finished = 0
        self.queue: list[deque[int]] = [deque() for _ in range(self.G)]
        reserve = serving.kv_allocation == "reserve"
        self.sched = [Scheduler(serving, GPUBlocks(self, g, reserve), max_num_seqs)
                      for g in range(self.G)]
        self.wake: list[simpy.Event | None] = [None] * self.G
        self.homes = list(range(self.G)) if homes is None else list(homes)
        self._homes = np.array(self.homes, np.int64)
        self._decodes = np.zeros(self.G, bool)  # GPUs that give tokens (not a prefill pool's)
        self._decodes[self._homes] = True
        self._running = [s.running for s in self.sched]  # each scheduler's list, kept
        self.inbound = np.zeros(self.G, np.int64)  # requests on their way to a home (PD)
        self.entry = Arrivals(env, self.arrival, concurrency, self._deliver, self.follows)

    def choose_home(self, r: int) -> int:
        """The home GPU of request ``r``: its session's, or least loaded / repository owner."""
        s = int(self.sid[r])
        if s in self.session_home:
            return self.session_home[s]
        homes = self.homes
        if self.home_rule == "repo_affinity" and self.repo[r] >= 0:
            h = homes[int(kvcache.stable_hash(np.array([self.repo[r]]))[0]
                          % np.uint64(len(homes)))]
        else:  # queued + running + on their way, per home; the first least loaded
            load = np.fromiter(map(len, self.queue), np.int64, self.G)
            load += np.fromiter(map(len, self._running), np.int64, self.G)
            load += self.inbound
            h = homes[int(np.argmin(load[self._homes]))]
        self.session_home[s] = h
        return h

    def arrivals(self):
        """The arrival process (:class:`~simulator.engine.arrivals.Arrivals`)."""
        return self.entry.process()

    def _deliver(self, r: int) -> None:
        """Request ``r`` enters: it joins its home's queue and wakes that GPU's loop."""
        g = self.choose_home(r)
        self.home[r] = g
        self.queue[g].append(r)
        self.wake_up(g)

    def wake_up(self, g: int) -> None:
        """Wake GPU ``g``'s loop if it sleeps (a request joined its queue, or KV room came free)."""
        w = self.wake[g]
        if w is not None and not w.triggered:
            w.succeed()

    def need_blocks(self, r: int) -> int:
        """KV blocks request ``r``'s context holds when done: its prompt and output tokens."""
        return -(-(int(self.inp[r]) + int(self.out[r])) // self.bt)

    def admitted(self, r: int) -> None:
        """The scheduler took ``r``: count its reused and prefilled blocks (its first admission
        sets ``admitted_at`` and ``reused_blocks``; a recompute adds to ``prefilled_blocks``)."""
        n_reused, missing, rotary, compute = self.start_blocks.pop(r)
        if self.admissions[r] == 0:
            self.admitted_at[r] = self.env.now
            self.reused[r] = n_reused
        self.prefilled[r] += missing
        self.counted[r] = missing
        self.counted_tokens[r] = compute
        self.computed_tokens[r] += compute
        self.rotary[r] = rotary
        self.admissions[r] += 1
        self.arrived_computed[r] = False  # a recompute after preemption gives its own token

    def context(self, r: int) -> np.ndarray:
        """Request ``r``'s prompt blocks as directory indices (its first admission), a held
        block computed after another prefix as a version of its own where the prompt recomputes
        it (:meth:`~simulator.engine.prefix_cache.PrefixCache.context`)."""
        return self.prefixes.context(r)

    def reuse_plan(self, r: int, idx: np.ndarray,
                   gives_token: bool = False) -> reuse_rules.ReusePlan:
        """Which of request ``r``'s context blocks (directory indices ``idx``: its prompt, and
        after a preemption the blocks it generated) are reused (:mod:`simulator.engine.reuse`,
        :meth:`~simulator.engine.prefix_cache.PrefixCache.plan`); ``gives_token``: the
        admission samples a token (:meth:`gives_token`)."""
        return self.prefixes.plan(r, idx, gives_token)

    def gives_token(self, g: int, r: int) -> bool:
        """Whether admitting ``r`` on GPU ``g`` samples its next token, and so computes at least
        its context's last block (:func:`simulator.engine.reuse.plan`): not on a prefill pool's
        GPU, nor where ``r``'s KV arrived computed (a hand-off, ``external_prefill``)."""
        return bool(self._decodes[g]) and not self.arrived_computed[r]

    def take_rotary(self, g: int, r: int) -> float:
        """The rotary pass [s] over ``r``'s reused span blocks, due once with its first prefill
        chunk (0 once paid, or without span reuse)."""
        blocks = int(self.rotary[r])
        if not blocks or self.rotary_time is None:
            return 0.0
        self.rotary[r] = 0
        return self.rotary_time(g, blocks * self.bt)

    def prefill_plan(self, g: int, r: int, tokens: int) -> float:
        """Kernel time [s] of a whole prefill of ``tokens`` of ``r`` on GPU ``g``, with the
        rotary pass over its reused span blocks."""
        return self.prefill_time(g, tokens) + self.take_rotary(g, r)

    def prompt_done(self, g: int, r: int) -> None:
        """``r``'s context is computed: place its new blocks, produce its next token (the
        first, or after a preemption the next), and draw (or drift) its session's focus set."""
        idx = self.ctx_idx[r]
        self.prefixes.place_prompt(g, r)
        if self.gen[r] == 0:
            self.first_at[r] = self.env.now
        self.gen[r] += 1
        if self.focus[r] is not None:
            return  # a recompute after preemption: the focus set stays
        # the query's focus set (the files its agent works on), drifting between turns
        from workloads.focus import draw_focus, drift_focus
        from workloads.selections import popular_extent

        pop = popular_extent(self.spans[r], len(idx))
        s = int(self.sid[r])
        f = self.session_focus.get(s)
        rb = self.region_blocks
        f = (draw_focus(self.focus_rng, pop, 4, rb) if f is None
             else drift_focus(self.focus_rng, f, pop, 0.25, rb))
        self.session_focus[s] = f
        self.focus[r] = f
        self.popular[r] = pop

    def keep_computed(self, g: int, r: int) -> None:
        """``r`` leaves GPU ``g`` before its context is all computed (preempted): place the
        whole blocks its chunks filled, as vLLM's prefix cache keeps them, so that its next
        admission reuses them unless evicted meanwhile (not recomputing from its first token).
        Its ``prefilled_blocks`` keep only the blocks the chunks computed (a partial one too),
        and its ``computed_tokens`` (what a prefill instance hands over) only their tokens."""
        done_tokens = int(self.own_tokens[r])
        touched = -(-done_tokens // self.bt)
        self.prefilled[r] -= max(int(self.counted[r]) - touched, 0)
        self.computed_tokens[r] -= max(int(self.counted_tokens[r]) - done_tokens, 0)
        self.counted[r] = self.counted_tokens[r] = 0
        full = done_tokens // self.bt  # the chunks' whole blocks, in prompt order
        self.prefixes.place_chunks(g, r, full)

    def place_computed(self, g: int, r: int) -> None:
        """``r``'s context was computed elsewhere (a prefill instance) for GPU ``g``: place its
        new blocks on ``g`` (as their first writer), without producing a token — the decode
        instance that admits ``r`` does (:mod:`simulator.engine.kvtransfer`)."""
        self.prefixes.place_arrived(g, r)
        self.arrived_computed[r] = True

    def grow_context(self, g: int, r: int) -> None:
        """Add a home-owned block when the generated tokens spill past the context's last one."""
        idx = self.ctx_idx[r]
        need = -(-(int(self.inp[r]) + int(self.gen[r])) // self.bt)
        if need > len(idx):
            from workloads.selections import generated_block_id

            keys = generated_block_id(self.rid[r], np.arange(len(idx), need))
            new = self.prefixes.append(g, r, keys)
            self.dir.pin(new)
            self.ctx_idx[r] = np.concatenate([idx, new])

    def retire(self, g: int, r: int) -> None:
        """Request ``r`` generated its last token: it leaves the scheduler and its KV is freed."""
        self.sched[g].finish(r)
        self.finish(r)

    def reject(self, r: int) -> None:
        """Request ``r`` cannot fit its home even alone."""
        self.reason[r] = TOO_LARGE
        self.finish(r)

    def finish(self, r: int) -> None:
        """Request ``r`` is done (completed or not) now."""
        self.finish_at[r] = self.env.now
        self.finished += 1
        self.entry.finished(r)
        if self.progress is not None:
            self.progress(self.finished, self.n)
