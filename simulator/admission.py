"""Requests' life in the engine: arrival, home choice, admission, prefill, growth, retirement.

:class:`Admission` is a mixin of the engine's run (:mod:`simulator.engine`): it owns the
per-request arrays (numpy, indexed by the request's row in the trace) and the per-GPU queues and
batches. A request arrives on its session's *home* GPU (the session's first choice: least loaded,
or the GPU owning its repository under ``repo_affinity``), waits in that GPU's queue until the
batch has room and the KV it will own fits (HBM − weights − reserve), is prefilled at home reusing
the blocks the directory already holds (leading known blocks under ``prefix`` reuse, any known
block under ``span``), then decodes until its output length; its blocks are then unpinned. A
request that can never fit, even alone, is finished with :data:`TOO_LARGE`.
"""

from __future__ import annotations

import numpy as np
import simpy

from simulator import kvcache

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
    """Request bookkeeping of a run (a mixin: the run provides ``env``, ``sc``, ``dir``, ``G``,
    ``bt``, ``kernels``, ``gpus``, ``arch``, ``selector``, ``focus_rng`` and ``progress``)."""

    def _init_requests(self) -> None:
        t = self.trace
        init_request_arrays(self, t)
        n = self.n
        self.repo = t["repo_id"].to_numpy(dtype=np.int64, na_value=-1)
        self.prompt = t["block_ids"].tolist()
        self.spans = t["spans"].tolist()
        self.home = np.full(n, -1, np.int64)
        self.reused = np.zeros(n, np.int64)
        self.prefilled = np.zeros(n, np.int64)
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

    def _choose_home(self, r: int) -> int:
        s = int(self.sid[r])
        if s in self.session_home:
            return self.session_home[s]
        if self.sc.placement.home == "repo_affinity" and self.repo[r] >= 0:
            h = int(kvcache.stable_hash(np.array([self.repo[r]]))[0] % np.uint64(self.G))
        else:
            load = [len(self.queue[g]) + len(self.batch[g]) for g in range(self.G)]
            h = int(np.argmin(load))
        self.session_home[s] = h
        return h

    def _arrivals(self):
        env = self.env
        for r in range(self.n):
            dt = self.arrival[r] - env.now
            if dt > 0:
                yield env.timeout(dt)
            g = self._choose_home(r)
            self.home[r] = g
            self.queue[g].append(r)
            w = self.wake[g]
            if w is not None and not w.triggered:
                w.succeed()


    def _need_blocks(self, r: int) -> int:
        return -(-(int(self.inp[r]) + int(self.out[r])) // self.bt)

    def _admit(self, g: int) -> list[int]:
        admitted = []
        q = self.queue[g]
        cap = int(self.dir.capacity[g])
        while q and len(self.batch[g]) < self.sc.engine.max_batch:
            r = q[0]
            idx = self.dir.intern(self.prompt[r])
            known = self.dir.known(idx)
            reuse = self._reuse_mask(known, r)
            need = self._need_blocks(r) - int(reuse.sum())
            if self.reserved[g] + need > cap:
                if not self.batch[g] and not admitted:
                    q.pop(0)  # can never fit, even alone
                    self.reason[r] = TOO_LARGE
                    self._finish(r)
                    continue
                break
            q.pop(0)
            self.ctx_idx[r] = idx
            self.reused[r] = int(reuse.sum())
            self.prefilled[r] = len(idx) - self.reused[r]
            self.reserved[g] += need
            self.admitted_at[r] = self.env.now
            self.dir.pin(idx)
            self.batch[g].append(r)
            admitted.append(r)
        return admitted

    def _reuse_mask(self, known: np.ndarray, r: int) -> np.ndarray:
        if self.sc.placement.reuse == "span":
            return known
        lead = int(np.argmin(known)) if not known.all() else len(known)
        mask = np.zeros(len(known), bool)
        mask[:lead] = True
        return mask

    def _prefill_plan(self, g: int, r: int) -> float:
        """Prefill kernel time [s] for request ``r``'s blocks the directory does not hold."""
        missing = int(self.prefilled[r])
        tokens = min(missing * self.bt, int(self.inp[r]))
        return self.kernels.prefill_time(self.gpus[g].spec, self.arch, tokens, 1.0, gpus=self.G)

    def _place_prompt(self, g: int, r: int) -> None:
        idx = self.ctx_idx[r]
        missing = np.flatnonzero(~self.dir.known(idx))
        self.dir.place(idx[missing], g, self.env.now, repo=int(self.repo[r]),
                       positions=missing, n_context=len(idx))
        # the query's focus set (the files its agent works on), drifting between turns
        from workloads.focus import draw_focus, drift_focus
        from workloads.selections import popular_extent

        pop = popular_extent(self.spans[r], len(idx))
        s = int(self.sid[r])
        f = self.session_focus.get(s)
        rb = self.selector.region_blocks
        f = (draw_focus(self.focus_rng, pop, 4, rb) if f is None
             else drift_focus(self.focus_rng, f, pop, 0.25, rb))
        self.session_focus[s] = f
        self.focus[r] = f
        self.popular[r] = pop

    def _grow_context(self, g: int, r: int) -> None:
        """Add a home-owned block when the generated tokens spill past the context's last one."""
        from workloads.selections import generated_block_id

        idx = self.ctx_idx[r]
        need = -(-(int(self.inp[r]) + int(self.gen[r])) // self.bt)
        if need > len(idx):
            keys = generated_block_id(self.rid[r], np.arange(len(idx), need))
            new = self.dir.intern(keys)
            self.dir.place(new, g, self.env.now, scheme="first_writer")
            self.dir.pin(new)
            self.ctx_idx[r] = np.concatenate([idx, new])

    def _retire(self, g: int, r: int) -> None:
        self.batch[g].remove(r)
        self.reserved[g] -= self._need_blocks(r) - int(self.reused[r])
        self.dir.unpin(self.ctx_idx[r])
        self.sel_cache[r] = None
        self._finish(r)

    def _finish(self, r: int) -> None:
        self.finish_at[r] = self.env.now
        self.finished += 1
        if self.progress is not None:
            self.progress(self.finished, self.n)
