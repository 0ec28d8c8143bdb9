"""Which KV each directory block holds: the prefix it was computed after, and its versions.

The block directory (:mod:`simulator.kvcache`) keys a block by its content; vLLM keys a cached
block by its whole prefix, so a block computed after another prefix is other KV. The
:class:`PrefixCache` of an exact-engine run (the run's
:class:`~simulator.engine.admission.Admission` holds it: ``prefixes``) keeps the difference:

- per directory block, the prefix hash its held KV was computed after (``computed_after``, 0
  while none is held);
- per admitted request, its context's prefix hashes from admission until its blocks are placed
  (``prompt_hash``), the context positions its admission computes (``computing``), and its last
  prefix hash, which the blocks it generates extend (``last_hash``).

With these it gives a request's context as directory indices (:meth:`PrefixCache.context`: a
held block computed after another prefix, where the prompt recomputes it, gets a version of its
own, :func:`~simulator.engine.reuse.version_keys`), its reuse plan
(:meth:`PrefixCache.plan`, the rules of :mod:`simulator.engine.reuse`), and places the blocks an
admission computed (:meth:`PrefixCache.place`), versioning there what two requests admitted
before either wrote it, or one prompt's repeats, computed after different prefixes.
``reuse = "none"`` keeps no versions; inside a span (``span`` reuse) KV is position-free and
gets none either. The run's per-request context indices and pin flags are shared with
:class:`~simulator.engine.admission.Admission` (``ctx_idx``, ``pinned``): a version moves a
running request's context and its pins.
"""

from __future__ import annotations

import numpy as np

from simulator.engine import reuse as reuse_rules


class PrefixCache:
    """The prefixes a run's held blocks were computed after (see the module docstring).

    Args:
        env: the run's environment (placement times).
        directory: the run's KV block directory.
        reuse_rule: the scenario's ``placement.reuse`` (``prefix``, ``span`` or ``none``).
        prompts: per request, its prompt's block ids.
        spans: per request, its commutative spans (the trace's ``spans``).
        repo: per request, its repository id (-1: none), for placement by repository.
        ctx_idx: per request, its context as directory indices (None before admission; the
            run's list, shared).
        pinned: per request, whether its context is pinned (the run's array, shared).
    """

    def __init__(self, env, directory, reuse_rule: str, prompts: list, spans: list,
                 repo: np.ndarray, ctx_idx: list[np.ndarray | None],
                 pinned: np.ndarray) -> None:
        self.env, self.dir, self.reuse_rule = env, directory, reuse_rule
        self.prompt, self.spans, self.repo = prompts, spans, repo  # per request, read only
        # the run's, shared: a version moves a running request's context and its pins
        self.ctx_idx, self.pinned = ctx_idx, pinned
        # per directory block: the prefix hash its held KV was computed after (0: none yet);
        # per request: its context's prefix hashes (admission to placement), and the last one
        self.computed_after = np.zeros(0, np.uint64)
        self.prompt_hash: dict[int, np.ndarray] = {}
        # per admitted request: the context positions its admission computes, in prompt order
        self.computing: dict[int, np.ndarray] = {}
        self.last_hash = np.zeros(len(pinned), np.uint64)

    def context(self, r: int) -> np.ndarray:
        """Request ``r``'s prompt blocks as directory indices (its first admission). A held
        block computed after another prefix is other KV (vLLM keys cached blocks by their whole
        prefix): where the prompt recomputes it (``prefix``; ``span`` outside its spans) it gets
        a version of its own (:func:`~simulator.engine.reuse.version_keys`) that later turns and
        a recompute after preemption reuse; inside a span, only a version already held."""
        idx = self.dir.intern(self.prompt[r])
        if self.reuse_rule == "none" or not len(idx):
            return idx
        from workloads.spans import row_prefix_hashes

        h = self.prompt_hash[r] = row_prefix_hashes(self.prompt[r])  # plan's too
        self.make_room()
        other = np.flatnonzero(self.dir.known(idx) & (self.computed_after[idx] != h))
        if not len(other):
            return idx
        keys = reuse_rules.version_keys(self.dir.keys[idx[other]], h[other])
        idx = idx.copy()
        if self.reuse_rule == "span":
            inside = reuse_rules.span_mask(self.spans[r], len(idx))[other]
            found = self.dir.find(keys[inside])
            held = found >= 0
            held[held] = self.dir.known(found[held])
            idx[other[inside][held]] = found[held]
            other, keys = other[~inside], keys[~inside]
        idx[other] = self.dir.intern(keys)
        return idx

    def plan(self, r: int, idx: np.ndarray, gives_token: bool = False) -> reuse_rules.ReusePlan:
        """Which of request ``r``'s context blocks (directory indices ``idx``: its prompt, and
        after a preemption the blocks it generated) are reused (:mod:`simulator.engine.reuse`);
        ``gives_token``: the admission samples a token
        (:meth:`~simulator.engine.admission.Admission.gives_token`)."""
        from workloads.spans import extend_prefix_hash, row_prefix_hashes

        h = self.prompt_hash.get(r)
        if h is None or len(h) != len(idx):
            h = row_prefix_hashes(self.prompt[r])
            if len(idx) > len(h):  # a recompute after preemption: the generated blocks follow
                tail = extend_prefix_hash(int(h[-1]) if len(h) else 0,
                                          self.dir.keys[idx[len(h):]])
                h = np.concatenate([h, tail])
            self.prompt_hash[r] = h
        self.make_room()
        in_span = (reuse_rules.span_mask(self.spans[r], len(idx))
                   if self.reuse_rule == "span" else None)
        return reuse_rules.plan(self.dir.known(idx), idx, in_span, self.reuse_rule,
                                same_prefix=self.computed_after[idx] == h,
                                gives_token=gives_token)

    def make_room(self) -> None:
        """Grow ``computed_after`` to cover every directory block."""
        if len(self.computed_after) < self.dir.n:
            grown = np.zeros(max(self.dir.n, 2 * len(self.computed_after)), np.uint64)
            grown[: len(self.computed_after)] = self.computed_after
            self.computed_after = grown

    def place_prompt(self, g: int, r: int) -> None:
        """``r``'s context is computed on GPU ``g``: place the blocks its admission computed,
        and keep its last prefix hash (the blocks it generates extend it)."""
        idx = self.ctx_idx[r]
        h = self.prompt_hash.pop(r)
        self.place(g, r, self.computed(r, idx), h)
        self.last_hash[r] = h[-1] if len(h) else 0

    def place_chunks(self, g: int, r: int, full: int) -> None:
        """``r`` leaves GPU ``g`` part-way through its prompt: place the first ``full`` blocks
        its admission computes (those its chunks filled), keeping its prefix hashes for its
        next admission."""
        todo = self.computed(r, self.ctx_idx[r])
        if full:
            self.place(g, r, todo[:full], self.prompt_hash[r])

    def place_arrived(self, g: int, r: int) -> None:
        """``r``'s context was computed elsewhere for GPU ``g``: place its new blocks on ``g``
        as their first writer."""
        todo = self.computed(r, self.ctx_idx[r])
        self.place(g, r, todo, self.prompt_hash.pop(r), scheme="first_writer")

    def computed(self, r: int, idx: np.ndarray) -> np.ndarray:
        """The positions of ``r``'s context its running admission computes, in prompt order
        (:meth:`~simulator.engine.gpu_blocks.GPUBlocks.admit`'s plan); without one (a context
        that arrives computed), those not held."""
        todo = self.computing.pop(r, None)
        return np.flatnonzero(~self.dir.known(idx)) if todo is None else todo

    def place(self, g: int, r: int, pos: np.ndarray, h: np.ndarray,
              scheme: str | None = None) -> None:
        """Place the blocks at positions ``pos`` of ``r``'s context, computed on GPU ``g``
        after the prefixes whose hashes are ``h`` (``scheme``: as :meth:`BlockDirectory.place`).
        A block held meanwhile after the same prefix is the same KV (not placed again); one
        held after another prefix, or repeated in ``pos`` after another prefix, is other KV
        and gets a version of its own (:meth:`own_versions`)."""
        idx = self.own_versions(r, pos, h)
        pos = pos[~self.dir.known(idx[pos])]
        self.dir.place(idx[pos], g, self.env.now, repo=int(self.repo[r]), positions=pos,
                       n_context=len(idx), scheme=scheme)
        self.make_room()
        self.computed_after[idx[pos][::-1]] = h[pos][::-1]  # a repeat: the first wins

    def own_versions(self, r: int, pos: np.ndarray, h: np.ndarray) -> np.ndarray:
        """``r``'s context with a version of its own (:func:`~simulator.engine.reuse.
        version_keys`) for each block at positions ``pos`` that it computed after another
        prefix than the one its directory entry holds: a request admitted while another held
        the same block after another prefix got one at admission (:meth:`context`), but two
        admitted before either had written it share the entry until then, and so do a block's
        repeats in one prompt. Inside a span (``span`` reuse) KV is position-free: no version.
        A running admission's pins move to the versions
        (:meth:`~simulator.engine.gpu_blocks.GPUBlocks.release` unpins ``ctx_idx``)."""
        idx = self.ctx_idx[r]
        if self.reuse_rule == "none" or not len(pos):
            return idx
        sub, hp = idx[pos], h[pos]  # computed_after covers them (plan made room)
        clash = self.dir.known(sub) & (self.computed_after[sub] != hp)
        _, first, inverse = np.unique(sub, return_index=True, return_inverse=True)
        clash |= hp != hp[first[inverse]]
        if self.reuse_rule == "span":
            clash &= ~reuse_rules.span_mask(self.spans[r], len(idx))[pos]
        if not clash.any():
            return idx
        new = self.dir.intern(reuse_rules.version_keys(self.dir.keys[sub[clash]], hp[clash]))
        idx = idx.copy()  # (place makes room for the new ones' hashes)
        idx[pos[clash]] = new
        if self.pinned[r]:
            self.dir.unpin(sub[clash])
            self.dir.pin(new)
        self.ctx_idx[r] = idx
        return idx

    def append(self, g: int, r: int, keys: np.ndarray) -> np.ndarray:
        """Place the blocks ``r`` generated on GPU ``g`` (their ids ``keys``, as their first
        writer), computed after its context's last prefix; their directory indices."""
        from workloads.spans import extend_prefix_hash

        new = self.dir.intern(keys)
        fresh = ~self.dir.known(new)
        self.dir.place(new, g, self.env.now, scheme="first_writer")
        h = extend_prefix_hash(int(self.last_hash[r]), keys)
        self.make_room()
        self.computed_after[new[fresh]] = h[fresh]
        self.last_hash[r] = h[-1]
        return new
