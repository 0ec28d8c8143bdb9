"""Requests' life in the engine: arrival, home choice, admission, prefill, growth, retirement.

:class:`Admission` is a part the engine's run holds (:mod:`simulator.engine.exact`): it owns the
per-request arrays (numpy, indexed by the request's row in the trace) and the per-GPU queues and
batches. A request arrives on its session's *home* GPU (the session's first choice: least loaded,
or the GPU owning its repository under ``repo_affinity``), waits in that GPU's queue until the
batch has room and the KV it will own fits (HBM − weights − reserve), is prefilled at home reusing
the blocks the directory already holds (leading known blocks under ``prefix`` reuse, also known
blocks of commutative spans after a rotary pass under ``span``, nothing under ``none``:
:mod:`simulator.engine.reuse`), then decodes until its output length; its blocks are then
unpinned. A request that can never fit, even alone, is finished with :data:`TOO_LARGE`.
"""

from __future__ import annotations

import numpy as np
import simpy

from simulator import kvcache
from simulator.engine import reuse as reuse_rules

#: Reasons a request did not complete.
NOT_FINISHED = "not finished when the run stopped (duration limit)"
TOO_LARGE = "its KV does not fit the home GPU's free HBM"


def init_request_arrays(state, trace) -> None:
    """Set a run's per-request arrays on ``state`` from ``trace`` (one row per request): ``n``,
    the trace's ids, arrival [s] and token counts, and the times (NaN until they happen),
    generated tokens and reasons the run fills in. Shared by the engine and the
    disaggregated loops."""
    n = state.n = len(trace)
    state.rid = trace["request_id"].to_numpy(np.int64)
    state.sid = trace["session_id"].to_numpy(np.int64)
    state.arrival = trace["arrival_at"].to_numpy(float)
    state.inp = trace["input_tokens"].to_numpy(np.int64)
    state.out = trace["output_tokens"].to_numpy(np.int64)
    state.admitted_at = np.full(n, np.nan)
    state.first_at = np.full(n, np.nan)
    state.finish_at = np.full(n, np.nan)
    state.gen = np.zeros(n, np.int64)
    state.reason = [""] * n


class Admission:
    """Request bookkeeping of one exact-engine run (see the module docstring).

    Args:
        env: the run's environment.
        trace: the requests (one row each, as :func:`simulator.engine.trace.load_trace` gives).
        directory: the run's KV block directory.
        n_gpus: GPUs of the run (homes are their indices).
        placement: the scenario's ``[placement]`` (``home``, ``reuse``, ``block_tokens``).
        max_batch: most requests decoding at once per GPU.
        prefill_time: ``prefill_time(g, tokens)``, a prefill of ``tokens`` on GPU ``g`` [s].
        region_blocks: the sparse selector's region size in blocks (focus sets).
        focus_rng: the random stream of focus sets.
        progress: called as ``progress(finished_requests, total_requests)``.
        rotary_time: ``rotary_time(g, tokens)``, the rotary pass over ``tokens`` reused
            position-free tokens on GPU ``g`` [s] (``span`` reuse; None = free).
    """

    def __init__(self, env: simpy.Environment, trace, directory, *, n_gpus: int, placement,
                 max_batch: int, prefill_time, region_blocks: int, focus_rng,
                 progress, rotary_time=None) -> None:
        self.env = env
        self.dir = directory
        self.G = n_gpus
        self.home_rule = placement.home
        self.reuse_rule = placement.reuse
        self.bt = placement.block_tokens
        self.max_batch = max_batch
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
        self.rotary = np.zeros(n, np.int64)  # reused span blocks that take the rotary pass
        # per directory block: the prefix hash its held KV was computed after (0: none yet);
        # per request: its prompt's prefix hashes (admission to placement), its context's last
        self.computed_after = np.zeros(0, np.uint64)
        self.prompt_hash: dict[int, np.ndarray] = {}
        self.last_hash = np.zeros(n, np.uint64)
        self.ctx_idx: list[np.ndarray | None] = [None] * n
        self.sel_cache: list[tuple | None] = [None] * n
        self.focus: list[np.ndarray | None] = [None] * n
        self.popular = np.zeros(n, np.int64)
        self.session_home: dict[int, int] = {}
        self.session_focus: dict[int, np.ndarray] = {}
        self.finished = 0
        self.queue: list[list[int]] = [[] for _ in range(self.G)]
        self.batch: list[list[int]] = [[] for _ in range(self.G)]
        self.reserved = np.zeros(self.G, np.int64)
        self.wake: list[simpy.Event | None] = [None] * self.G

    def choose_home(self, r: int) -> int:
        """The home GPU of request ``r``: its session's, or least loaded / repository owner."""
        s = int(self.sid[r])
        if s in self.session_home:
            return self.session_home[s]
        if self.home_rule == "repo_affinity" and self.repo[r] >= 0:
            h = int(kvcache.stable_hash(np.array([self.repo[r]]))[0] % np.uint64(self.G))
        else:
            load = [len(self.queue[g]) + len(self.batch[g]) for g in range(self.G)]
            h = int(np.argmin(load))
        self.session_home[s] = h
        return h

    def arrivals(self):
        """The arrival process: each request joins its home's queue at its arrival time."""
        env = self.env
        for r in range(self.n):
            dt = self.arrival[r] - env.now
            if dt > 0:
                yield env.timeout(dt)
            g = self.choose_home(r)
            self.home[r] = g
            self.queue[g].append(r)
            w = self.wake[g]
            if w is not None and not w.triggered:
                w.succeed()

    def need_blocks(self, r: int) -> int:
        """KV blocks request ``r`` owns when done: its prompt and output tokens."""
        return -(-(int(self.inp[r]) + int(self.out[r])) // self.bt)

    def admit(self, g: int) -> list[int]:
        """Take queued requests into GPU ``g``'s batch while it has room and their KV fits."""
        admitted = []
        q = self.queue[g]
        cap = int(self.dir.capacity[g])
        while q and len(self.batch[g]) < self.max_batch:
            r = q[0]
            idx = self.dir.intern(self.prompt[r])
            plan = self.reuse_plan(r, idx)
            reuse = plan.reused
            need = self.need_blocks(r) - int(reuse.sum())
            if self.reserved[g] + need > cap:
                if not self.batch[g] and not admitted:
                    q.pop(0)  # can never fit, even alone
                    self.reason[r] = TOO_LARGE
                    self.finish(r)
                    continue
                break
            q.pop(0)
            self.ctx_idx[r] = idx
            self.reused[r] = int(reuse.sum())
            self.prefilled[r] = len(idx) - self.reused[r]
            self.rotary[r] = int(plan.rotary.sum())
            self.reserved[g] += need
            self.admitted_at[r] = self.env.now
            self.dir.pin(idx)
            self.batch[g].append(r)
            admitted.append(r)
        return admitted

    def reuse_plan(self, r: int, idx: np.ndarray) -> reuse_rules.ReusePlan:
        """Which of request ``r``'s prompt blocks (directory indices ``idx``) are reused."""
        from workloads.spans import row_prefix_hashes

        h = self.prompt_hash.get(r)
        if h is None:
            h = self.prompt_hash[r] = row_prefix_hashes(self.prompt[r])
        self._hash_room()
        in_span = (reuse_rules.span_mask(self.spans[r], len(idx))
                   if self.reuse_rule == "span" else None)
        return reuse_rules.plan(self.dir.known(idx), idx, in_span, self.reuse_rule,
                                same_prefix=self.computed_after[idx] == h)

    def _hash_room(self) -> None:
        """Grow ``computed_after`` to cover every directory block."""
        if len(self.computed_after) < self.dir.n:
            grown = np.zeros(max(self.dir.n, 2 * len(self.computed_after)), np.uint64)
            grown[: len(self.computed_after)] = self.computed_after
            self.computed_after = grown

    def prefill_plan(self, g: int, r: int) -> float:
        """Prefill kernel time [s] for request ``r``'s recomputed blocks (whole pages), plus the
        rotary pass over its reused span blocks."""
        missing = int(self.prefilled[r])
        tokens = min(missing * self.bt, int(self.inp[r]))
        time = self.prefill_time(g, tokens)
        if self.rotary[r] and self.rotary_time is not None:
            time += self.rotary_time(g, int(self.rotary[r]) * self.bt)
        return time

    def place_prompt(self, g: int, r: int) -> None:
        """Place ``r``'s prefilled blocks, and draw (or drift) its session's focus set."""
        idx = self.ctx_idx[r]
        missing = np.flatnonzero(~self.dir.known(idx))
        self.dir.place(idx[missing], g, self.env.now, repo=int(self.repo[r]),
                       positions=missing, n_context=len(idx))
        h = self.prompt_hash.pop(r)
        self.computed_after[idx[missing][::-1]] = h[missing][::-1]  # a repeat: the first wins
        self.last_hash[r] = h[-1] if len(h) else 0
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

    def grow_context(self, g: int, r: int) -> None:
        """Add a home-owned block when the generated tokens spill past the context's last one."""
        from workloads.selections import generated_block_id

        idx = self.ctx_idx[r]
        need = -(-(int(self.inp[r]) + int(self.gen[r])) // self.bt)
        if need > len(idx):
            from workloads.spans import extend_prefix_hash

            keys = generated_block_id(self.rid[r], np.arange(len(idx), need))
            new = self.dir.intern(keys)
            fresh = ~self.dir.known(new)
            self.dir.place(new, g, self.env.now, scheme="first_writer")
            h = extend_prefix_hash(int(self.last_hash[r]), keys)
            self._hash_room()
            self.computed_after[new[fresh]] = h[fresh]
            self.last_hash[r] = h[-1]
            self.dir.pin(new)
            self.ctx_idx[r] = np.concatenate([idx, new])

    def retire(self, g: int, r: int) -> None:
        """Request ``r`` generated its last token: leave the batch, free its reservation."""
        self.batch[g].remove(r)
        self.reserved[g] -= self.need_blocks(r) - int(self.reused[r])
        self.dir.unpin(self.ctx_idx[r])
        self.sel_cache[r] = None
        self.finish(r)

    def finish(self, r: int) -> None:
        """Request ``r`` is done (completed or not) now."""
        self.finish_at[r] = self.env.now
        self.finished += 1
        if self.progress is not None:
            self.progress(self.finished, self.n)
