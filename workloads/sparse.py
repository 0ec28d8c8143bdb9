"""Sparse attention selection: which of a query's context blocks each layer reads.

This is the engine's hot path, so it is vectorized over (queries × layers × candidates) with
numpy and returns arrays of block *indices* into each query's context (the engine maps indices to
block ids, and ids to owners). Three kinds:

- ``dense``: every block of the context.
- ``dsa`` (DeepSeek-V3.2 sparse attention): an indexer picks the top-k *tokens* per query per
  layer (k = 2048, HF config ``index_topk``); at ``block_tokens`` per KV page that touches
  ``ceil(k / block_tokens)`` blocks (32 at 64-token pages), plus the recent window.
- ``nsa`` (Native Sparse Attention, arXiv 2502.11089 §4: selection blocks of 64 tokens, 16
  selected blocks, sliding window 512 tokens): ``ceil(16 · 64 / block_tokens)`` selected blocks
  plus the window's ``ceil(512 / block_tokens)`` blocks.

Counts are capped at the context: a query whose context is smaller than the selection reads it
all. Which blocks are picked is a model of locality with four knobs (defaults are modelling
choices, not measurements):

1. **Recent window** — the last ``ceil(recent_tokens / block_tokens)`` blocks (for NSA the larger
   of that and the sliding window) are always selected; the rest are sampled from the older
   blocks without replacement.
2. **Popular regions** — with probability ``popular_fraction`` a draw picks a region of
   ``region_blocks`` blocks (a file) by a Zipf(``zipf_s``) law over the first ``popular_blocks``
   blocks of the context (the shared repository), then a block in it uniformly. Which regions are
   hot is a fixed pseudo-random bijection of ranks to regions, ``(rank · P + salt) mod R`` with
   the prime P = 2654435761 > R, so every query over the same repository (same ``salt`` and
   size) agrees on the hot files.
3. **Focus** — with probability ``focus_fraction`` a draw picks one of the query's focus set's
   entries that is an older block, uniformly (the files its agent is working on;
   :func:`workloads.focus.draw_focus` / :func:`~workloads.focus.drift_focus` make one and let
   it drift between turns); a query whose focus set has no such entry draws uniformly instead.
   Otherwise a draw is uniform over the older blocks.
4. **Layer correlation** — each candidate slot keeps its previous layer's draw with probability
   ``layer_correlation`` (else draws afresh), so adjacent layers overlap, as indexer picks do.

Sampling: candidates are drawn with replacement (``oversample × k`` slots), duplicates dropped in
draw order, the first k kept. When the older blocks are few (≤ 4k) or a row finds fewer than k
distinct candidates, the row instead takes the top k of ``log(weight) + Gumbel`` noise over all
its older blocks (exact weighted sampling without replacement), with the same mixture weights and
the same slot-copy correlation. Rows come back sorted ascending.

The random numbers are drawn here with numpy; the work between them runs in numba kernels
(:mod:`workloads.sparse_kernels`), which compute what the array code did to the bit (the tests
hold them to it: :mod:`simulator.testing.sparse_reference`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from workloads.sparse_kernels import NO_MASK, PRIME, gumbel_keys, oversampled_picks

KINDS = ("dense", "dsa", "nsa")


@dataclass(frozen=True)
class Selection:
    """Selected block indices for a batch of queries.

    Attributes:
        indices: int64 ``(queries, layers, width)``; row ``[q, l, :counts[q]]`` holds query q's
            selected block indices at layer l, sorted ascending; the rest is ``-1``.
        counts: int64 ``(queries,)`` blocks selected per layer for each query.
    """

    indices: np.ndarray
    counts: np.ndarray

    def query(self, q: int) -> np.ndarray:
        """Query ``q``'s selections, ``(layers, counts[q])``, without padding."""
        return self.indices[q, :, : self.counts[q]]

    @property
    def total_blocks(self) -> int:
        """Selected blocks over all queries and layers."""
        return int(self.counts.sum()) * self.indices.shape[1]


@dataclass(frozen=True)
class SparseSelector:
    """Samples each layer's selected blocks; see the module docstring for the model.

    Attributes:
        kind: ``"dense"``, ``"dsa"`` or ``"nsa"``.
        top_k_tokens: DSA tokens selected per query per layer (DeepSeek-V3.2 ``index_topk``
            = 2048, HF config.json).
        block_tokens: tokens per engine KV block (64: FlashMLA's page size).
        recent_tokens: trailing tokens always selected (128: the page being written and its
            predecessor — a modelling choice).
        nsa_selected_blocks, nsa_selection_tokens, nsa_window_tokens: NSA's 16 selected blocks
            of 64 tokens and 512-token sliding window (arXiv 2502.11089 §4).
        region_blocks: blocks per popularity region, ~ a source file (16 × 64 = 1,024 tokens).
        zipf_s: Zipf exponent of region popularity (1.1: a few hot files — modelling choice).
        popular_fraction: share of draws from popular regions.
        focus_fraction: share of draws from the query's focus set (when one is given).
        layer_correlation: probability a candidate persists to the next layer.
        salt: which regions are hot (same salt → same hot regions).
        oversample: candidate slots per selected block in the fast path.
    """

    kind: str = "dsa"
    top_k_tokens: int = 2048
    block_tokens: int = 64
    recent_tokens: int = 128
    nsa_selected_blocks: int = 16
    nsa_selection_tokens: int = 64
    nsa_window_tokens: int = 512
    region_blocks: int = 16
    zipf_s: float = 1.1
    popular_fraction: float = 0.5
    focus_fraction: float = 0.3
    layer_correlation: float = 0.7
    salt: int = 0
    oversample: float = 1.6

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {KINDS}")
        for name in ("top_k_tokens", "block_tokens", "nsa_selected_blocks",
                     "nsa_selection_tokens", "region_blocks"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("recent_tokens", "nsa_window_tokens", "zipf_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("popular_fraction", "focus_fraction", "layer_correlation"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.popular_fraction + self.focus_fraction > 1.0:
            raise ValueError("popular_fraction + focus_fraction must be <= 1")
        if self.layer_correlation >= 1.0:
            raise ValueError("layer_correlation must be < 1 (1 would never draw afresh)")
        if self.oversample < 1.0:
            raise ValueError("oversample must be >= 1")

    # -- counts ------------------------------------------------------------------------------

    @property
    def sampled_per_layer(self) -> int:
        """Blocks sampled (beyond the recent window) per layer when the context is large."""
        if self.kind == "nsa":
            return -(-self.nsa_selected_blocks * self.nsa_selection_tokens // self.block_tokens)
        return -(-self.top_k_tokens // self.block_tokens)

    @property
    def window_blocks(self) -> int:
        """Trailing blocks always selected (the recent window)."""
        tokens = self.recent_tokens
        if self.kind == "nsa":
            tokens = max(tokens, self.nsa_window_tokens)
        return -(-tokens // self.block_tokens)

    def counts(self, context_blocks) -> np.ndarray:
        """Blocks selected per layer for contexts of ``context_blocks`` blocks (int64 array)."""
        n = np.asarray(context_blocks, dtype=np.int64)
        if self.kind == "dense":
            return n.copy()
        return np.minimum(n, self.window_blocks + self.sampled_per_layer)

    def always_picked(self, context_blocks) -> np.ndarray:
        """Trailing blocks every layer selects for contexts of ``context_blocks`` blocks (int64
        array): all of a context no larger than a selection (any context, dense), else the
        recent window."""
        n = np.asarray(context_blocks, dtype=np.int64)
        if self.kind == "dense":
            return n.copy()
        r = np.minimum(n, self.window_blocks)
        return np.where(n - r <= self.sampled_per_layer, n, r)

    # -- sampling ----------------------------------------------------------------------------

    def select(self, rng: np.random.Generator, context_blocks: int, n_layers: int,
               focus: np.ndarray | None = None, popular_blocks: int | None = None) -> np.ndarray:
        """One query's selections, ``(n_layers, count)`` int64 block indices, rows sorted."""
        sel = self.select_batch(
            rng, np.array([context_blocks]), n_layers,
            focus=None if focus is None else np.asarray(focus, dtype=np.int64)[None, :],
            popular_blocks=None if popular_blocks is None else np.array([popular_blocks]),
        )
        return sel.query(0)

    def select_batch(self, rng: np.random.Generator, context_blocks, n_layers: int,
                     focus: np.ndarray | None = None, popular_blocks=None) -> Selection:
        """Selections for a batch of queries.

        Args:
            rng: the random stream (the only source of randomness).
            context_blocks: ``(Q,)`` context length of each query [blocks], ≥ 1.
            n_layers: layers to select for (≥ 1).
            focus: optional ``(Q, F)`` int64 block indices of each query's focus set; entries
                that are negative or not older than the recent window are ignored.
            popular_blocks: optional ``(Q,)`` length of the leading region (the repository)
                whose files have Zipf popularity [blocks]; default: all older blocks.
        """
        n = np.asarray(context_blocks, dtype=np.int64).reshape(-1)
        if (n < 1).any():
            raise ValueError("context_blocks must be >= 1")
        if n_layers < 1:
            raise ValueError("n_layers must be >= 1")
        q_count = len(n)
        counts = self.counts(n)
        width = int(counts.max()) if q_count else 0
        out = np.full((q_count, n_layers, width), -1, dtype=np.int64)
        if self.kind == "dense":
            full = np.ones(q_count, dtype=bool)
        else:
            r = np.minimum(n, self.window_blocks)
            avail = n - r
            k = self.sampled_per_layer
            full = avail <= k
        for q in np.flatnonzero(full):  # the whole context; same for every layer
            out[q, :, : n[q]] = np.arange(n[q], dtype=np.int64)
        sampled = np.flatnonzero(~full)
        if len(sampled) == 0:
            return Selection(out, counts)
        avail_s = avail[sampled]
        pop = avail_s if popular_blocks is None else np.minimum(
            np.asarray(popular_blocks, dtype=np.int64).reshape(-1)[sampled], avail_s)
        foc = None
        if focus is not None and self.focus_fraction > 0:
            foc = np.asarray(focus, dtype=np.int64)
            if foc.ndim != 2 or foc.shape[0] != q_count:
                raise ValueError("focus must be a (queries, F) array")
            foc = foc[sampled]
            foc = np.where((foc >= 0) & (foc < avail_s[:, None]), foc, -1)
        small = avail_s <= 4 * k
        picks = np.empty((len(sampled), n_layers, k), dtype=np.int64)
        if (~small).any():
            idx = np.flatnonzero(~small)
            got, ok = self._oversampled(rng, avail_s[idx], pop[idx],
                                        None if foc is None else foc[idx], n_layers, k)
            picks[idx] = got
            small[idx[~ok]] = True  # rows that found too few distinct candidates
        if small.any():
            idx = np.flatnonzero(small)
            picks[idx] = self._gumbel(rng, avail_s[idx], pop[idx],
                                      None if foc is None else foc[idx], n_layers, k)
        picks.sort(axis=2)
        w = int(r[sampled].max())
        recent = avail_s[:, None] + np.arange(w, dtype=np.int64)[None, :]
        recent = np.where(np.arange(w)[None, :] < r[sampled][:, None], recent, -1)
        out[sampled, :, :k] = picks
        out[sampled, :, k : k + w] = recent[:, None, :]
        return Selection(out, counts)

    def _oversampled(self, rng, avail, pop, foc, n_layers: int, k: int):
        """Fast path: draw with replacement, dedupe in draw order, keep the first k
        (:func:`workloads.sparse_kernels.oversampled_picks` after the draws)."""
        qn = len(avail)
        m = int(np.ceil(k * self.oversample)) + 4
        shape = (qn, n_layers, m)
        # which slots draw afresh (the rest keep the previous layer's draw): draw only those
        renew = self._renew_mask(rng, shape)
        if renew is None:
            renew = np.ones(shape, dtype=bool)
        u = rng.random((3, np.count_nonzero(renew)))
        p_pop = self.popular_fraction
        regions = -(-pop // self.region_blocks)
        cdf = _zipf(self.zipf_s, max(int(regions.max()), 1))[0]
        foc, nf = focus_entries(qn, foc)
        return oversampled_picks(renew, u, avail, pop, foc, nf, cdf, p_pop,
                                 p_pop + self.focus_fraction, self.region_blocks, self.salt, k)

    def _gumbel(self, rng, avail, pop, foc, n_layers: int, k: int) -> np.ndarray:
        """Exact path: top k of log(weight) + Gumbel noise over each query's older blocks."""
        logw, valid = self._log_weights(avail, pop, foc)
        return self._gumbel_top(rng, logw, valid, n_layers, k)

    def _log_weights(self, avail, pop, foc) -> tuple[np.ndarray, np.ndarray]:
        """Each query's log mixture weight per older block, ``(Q, max avail)`` (−inf: none),
        and which entries are older blocks of the query."""
        qn = len(avail)
        amax = int(avail.max())
        pos = np.arange(amax, dtype=np.int64)[None, :]
        valid = pos < avail[:, None]
        p_pop = self.popular_fraction
        p_foc = self.focus_fraction if foc is not None else 0.0
        weight = np.where(valid, (1.0 - p_pop - p_foc) / np.maximum(avail, 1)[:, None], 0.0)
        if p_pop > 0:
            rb = self.region_blocks
            regions = -(-pop // rb)
            rmax = max(int(regions.max()), 1)
            cdf, pmf = _zipf(self.zipf_s, rmax)
            rank = np.arange(rmax, dtype=np.int64)[None, :]
            rmod = np.maximum(regions, 1)[:, None]
            region_of_rank = (rank * (PRIME % rmod) + self.salt % rmod) % rmod
            mass = np.where(rank < regions[:, None],
                            pmf[None, :] / cdf[np.maximum(regions, 1) - 1][:, None], 0.0)
            region_mass = np.zeros((qn, rmax + 1))  # + a column for ranks past a query's own
            blk_region = np.minimum(pos // rb, rmax - 1)
            if qn == 1:  # the same fancy assignment and gather, without the along-axis setup
                region_mass[0, region_of_rank[0]] = mass[0]  # (its ranks are its regions)
                blk_mass = region_mass[0][blk_region]
            else:
                # a query with fewer regions than the batch's most: its ranks past its own
                # (mass 0) would wrap onto its regions and overwrite their mass
                np.put_along_axis(region_mass,
                                  np.where(rank < regions[:, None], region_of_rank, rmax), mass,
                                  axis=1)
                blk_mass = np.take_along_axis(
                    region_mass, np.broadcast_to(blk_region, (qn, amax)), axis=1)
            length = np.minimum(rb, pop[:, None] - blk_region * rb)
            in_pop = pos < pop[:, None]
            per_block = np.where(in_pop, blk_mass / np.maximum(length, 1), 0.0)
            no_pop = regions == 0
            weight += p_pop * np.where(no_pop[:, None], valid / np.maximum(avail, 1)[:, None],
                                       per_block)
        if p_foc > 0:
            fmass = np.zeros((qn, amax + 1))
            f_ok = foc >= 0
            nf = f_ok.sum(axis=1)
            contrib = np.where(f_ok, p_foc / np.maximum(nf, 1)[:, None], 0.0)
            np.add.at(fmass, (np.arange(qn)[:, None], np.where(f_ok, foc, amax)), contrib)
            fm = fmass[:, :amax]
            weight += np.where((nf == 0)[:, None], p_foc * valid / np.maximum(avail, 1)[:, None],
                               fm)
        positive = valid & (weight > 0)
        logw = np.where(positive, np.log(np.where(positive, weight, 1.0)), -np.inf)
        return logw, valid

    def _gumbel_top(self, rng, logw: np.ndarray, valid: np.ndarray, n_layers: int,
                    k: int) -> np.ndarray:
        """The top k of ``logw`` + Gumbel noise per layer (noise persisting across layers with
        the layer correlation), ``(Q, n_layers, k)`` older-block indices, unsorted."""
        qn, amax = logw.shape
        # the doubles rng.gumbel would draw, turned into noise only where the mask keeps them
        uniforms = rng.random((qn, n_layers, amax))
        renew = self._renew_mask(rng, uniforms.shape)
        # negated keys; a row with fewer than k positive weights is filled with the remaining
        # valid blocks
        keys = gumbel_keys(logw, valid, uniforms, NO_MASK if renew is None else renew)
        top = np.argpartition(keys, k - 1, axis=2)[:, :, :k]
        return top.astype(np.int64)

    def _renew_mask(self, rng, shape) -> np.ndarray | None:
        """Slots that draw afresh at each layer (all of layer 0; else with prob. 1 − ρ), or
        ``None`` when every slot is fresh (ρ = 0 or one layer)."""
        rho = self.layer_correlation
        if rho <= 0 or shape[1] < 2:
            return None
        renew = rng.random(shape) >= rho
        renew[:, 0, :] = True
        return renew


def focus_entries(qn: int, foc: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Each query's valid focus entries (≥ 0) moved to the front of its row, in order, and
    their count per query: a focus draw picks one of a query's *own* entries, whatever padding
    its row carries (a batch pads every row to its widest focus set) — as the exact path's
    weights spread the focus share over the valid entries alone."""
    if foc is None:
        return np.empty((qn, 0), dtype=np.int64), np.zeros(qn, dtype=np.int64)
    ok = foc >= 0
    nf = np.count_nonzero(ok, axis=1).astype(np.int64)
    if nf.sum() < foc.size:  # padding or ignored entries: valid ones first (a stable sort)
        foc = np.take_along_axis(foc, np.argsort(~ok, axis=1, kind="stable"), axis=1)
    return foc, nf


@functools.lru_cache(maxsize=256, typed=True)
def _zipf(s: float, regions: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative Zipf(s) weights of ranks 1..regions and their differences (cached, read-only)."""
    cdf = np.cumsum(np.arange(1, regions + 1, dtype=np.float64) ** -s)
    pmf = np.diff(cdf, prepend=0.0)
    cdf.flags.writeable = pmf.flags.writeable = False
    return cdf, pmf
