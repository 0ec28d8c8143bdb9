"""Where route and fetch cost the same: the cost model's crossover search (a part that
:class:`~simulator.costmodel.closed_form.CostModel` holds; ``cm.crossover(...)`` asks it).

Crossovers in closed form, of ``D = fetch.total − route.total`` (notation of
:mod:`simulator.costmodel.closed_form`):

- *blocks*: every term is affine in K except the two attention rooflines
  ``λ + max(m0 + m1·K, c1·K)`` whose kinks sit at ``K = m0 / (c1 − m1)`` (the kernel model's
  ``attention_breakpoints``). Between consecutive kinks D is affine, ``D = d0 + d1·K``, so the
  crossover is ``K* = −d0/d1`` in the piece that contains it (d0, d1 read off the piece exactly).
  A kernel model whose attention time curves between its breakpoints (a measured profile) gets
  secant steps from that guess until D vanishes. The answer is a root (``|D|`` at most
  :data:`ROUNDING` of the larger total) or None: a piece where D is flat to that rounding has
  none (at the home's own GPU route and fetch are the same local work), nor has a sign change
  by a jump the kernel model does not report as a breakpoint. With R = 1, the same GPU model
  at both ends (the attention terms cancel) and scattered blocks, ``D = 0`` gives::

      K* = (B·(q + r)/(η·W) − λ) / (B·(8 + bt·kv)/(η·W) + 2·B·bt·kv/(β·c))

  with ``λ`` the gather's launch time, ``β`` the HBM bandwidth, ``c`` the copy efficiency. The
  fixed message times cancel (two messages each); e.g. DeepSeek-V3.2 across two DGX H100 nodes
  with ``ibgda``: (6.106 µs − 3 µs) / 1.663 µs = 1.87 blocks.
- *bandwidth* (every path's line rate set to ``W``): ``total = A + X/W`` with ``X = Σ bytes/η``
  over the option's messages and ``A`` the rest, so ``W* = (X_f − X_r) / (A_r − A_f)``.
- *probe latency* (every message's ``o + L`` set to ``p``): route sends 2 messages, fetch
  ``2/R``, so ``D = D₀ + (2/R − 2)·p`` and ``p* = D₀ / (2 − 2/R)`` (none when ``R = 1``: both pay
  the latency twice, and only bandwidth and compute decide).
"""

from __future__ import annotations

import math

from simulator.errors import UserError

CROSSOVER_VARIABLES: tuple[str, ...] = ("blocks", "bandwidth", "probe")
ROUNDING = 1e-9
"""A difference of route's and fetch's totals at most this fraction of the larger is rounding
noise: zero, for the block search's flat pieces and for its roots."""


class CrossoverSearch:
    """Crossover search over one :class:`~simulator.costmodel.closed_form.CostModel` (uses its
    ``route``, ``fetch``, ``kernels.attention_breakpoints``, ``replace``, ``path``, ``stack`` and
    payload sizes).

    Args:
        cm: the cost model searched.
    """

    __slots__ = ("cm",)

    def __init__(self, cm) -> None:
        self.cm = cm

    def find(self, src: str, dst: str, over: str = "blocks", *, blocks: float | None = None,
             batch: float = 1, heads: int | None = None, reuse: float = 1.0) -> float | None:
        """Where route and fetch cost the same, in closed form; None if nowhere: when one
        option wins at every value.

        ``over="blocks"``: the number of selected blocks per query (> 0); ``"bandwidth"``: the
        line rate [B/s] of every path (``blocks`` required); ``"probe"``: every message's
        overhead + latency [s] (``blocks`` required). Formulas in the module docstring.
        """
        if over == "blocks":
            return self._crossover_blocks(src, dst, batch, heads, reuse)
        if over not in CROSSOVER_VARIABLES:
            raise UserError(f"crossover over {over!r}: give one of "
                            f"{', '.join(CROSSOVER_VARIABLES)}")
        if blocks is None:
            raise UserError(f"crossover over {over}: give blocks=K")
        if over == "bandwidth":
            return self._crossover_bandwidth(src, dst, blocks, batch, heads, reuse)
        return self._crossover_probe(src, dst, blocks, batch, heads, reuse)

    @staticmethod
    def _gap(cm, src, dst, blocks, batch, heads, reuse) -> tuple[float, float]:
        """(``fetch.total − route.total``, the larger of the two) of one round under ``cm``
        [s]: the difference, and the size rounding errors in it are measured against."""
        f = cm.fetch(src, dst, blocks, batch, heads, reuse).total
        r = cm.route(src, dst, blocks, batch, heads, reuse).total
        return f - r, max(f, r)

    def _kinks(self, nodes: tuple[str, ...], batch: float, heads: int | None) -> list[float]:
        """Block counts > 0 where an attention time changes slope (the kernel model's
        ``attention_breakpoints``, in tokens, over the tokens per block)."""
        out = []
        cm = self.cm
        for node in nodes:
            for tokens in cm.kernels.attention_breakpoints(cm.gpu_spec(node), cm.model, batch,
                                                           heads):
                k = tokens / cm.block_tokens
                if k > 0 and math.isfinite(k):
                    out.append(k)
        return out

    def _crossover_blocks(self, src, dst, batch, heads, reuse) -> float | None:
        check_round(1.0, batch, reuse)
        kinks = sorted(set(self._kinks((src, dst), batch, heads)))
        edges = [0.0, *kinks]
        for i, lo in enumerate(edges):
            hi = edges[i + 1] if i + 1 < len(edges) else math.inf
            # D is affine on (lo, hi): two interior points determine it exactly.
            span = (hi - lo) if math.isfinite(hi) else max(1.0, lo)
            x1, x2 = lo + span / 3.0, lo + 2.0 * span / 3.0
            d1, size1 = self._gap(self.cm, src, dst, x1, batch, heads, reuse)
            d2, size2 = self._gap(self.cm, src, dst, x2, batch, heads, reuse)
            if abs(d2 - d1) <= ROUNDING * max(size1, size2):
                # flat to rounding (at the home's own GPU route and fetch are the same
                # local work, and D is a constant or zero): no block count flips the choice
                continue
            slope = (d2 - d1) / (x2 - x1)
            k = x1 - d1 / slope
            # a root within rounding of 0 blocks is no crossover: where both options cost the
            # same at 0 blocks (D(0) = 0) and D keeps one sign past it, rounding puts k a
            # hair above 0 (a launch-free kernel model at the home's own GPU)
            if lo < k <= hi and k > ROUNDING * span:
                k = self._refine(src, dst, batch, heads, reuse, k, x1, d1, hi)
                if k is not None:
                    return k
        return None

    def _refine(self, src, dst, batch, heads, reuse, k, x_prev, d_prev, hi) -> float | None:
        """``k`` if ``D(k)`` is zero to rounding (an affine piece, as with a roofline), else
        secant steps from it — kernel models with curved attention times (measured profiles)
        make D bend between breakpoints; None if they do not reach a root."""
        d, size = self._gap(self.cm, src, dst, k, batch, heads, reuse)
        for _ in range(60):
            if abs(d) <= ROUNDING * size or d == d_prev:
                break
            k, x_prev, d_prev = k - d * (k - x_prev) / (d - d_prev), k, d
            k = min(max(k, 1e-12), hi)
            d, size = self._gap(self.cm, src, dst, k, batch, heads, reuse)
        return k if abs(d) <= ROUNDING * size else None

    def _wire_split(self, option: str, src, dst, blocks, batch, heads, reuse) -> tuple[float, int]:
        """(Σ bytes/η over the option's messages [B], number of messages) for one round."""
        if src == dst:
            return 0.0, 0
        cm = self.cm
        eff_out = cm.stack.efficiency(cm.path(src, dst).inter_node)
        eff_back = cm.stack.efficiency(cm.path(dst, src).inter_node)
        if option == "route":
            q, r = cm.route_payload(batch, heads)
            return q / eff_out + r / eff_back, 2
        x = (cm.request_bytes(blocks, batch) / eff_out
             + cm.fetch_bytes(blocks, batch) / eff_back) / reuse
        return x, 2 if blocks > 0 else 0

    def _crossover_bandwidth(self, src, dst, blocks, batch, heads, reuse) -> float | None:
        check_round(blocks, batch, reuse)
        base = self.cm.replace(bandwidth=math.inf)
        a_r = base.route(src, dst, blocks, batch, heads, reuse).total
        a_f = base.fetch(src, dst, blocks, batch, heads, reuse).total
        x_r, _ = self._wire_split("route", src, dst, blocks, batch, heads, reuse)
        x_f, _ = self._wire_split("fetch", src, dst, blocks, batch, heads, reuse)
        if a_r == a_f:
            return None
        w = (x_f - x_r) / (a_r - a_f)
        return w if w > 0 and math.isfinite(w) else None

    def _crossover_probe(self, src, dst, blocks, batch, heads, reuse) -> float | None:
        check_round(blocks, batch, reuse)
        base = self.cm.replace(message_fixed_time=0.0)
        d0, _ = self._gap(base, src, dst, blocks, batch, heads, reuse)
        _, n_r = self._wire_split("route", src, dst, blocks, batch, heads, reuse)
        _, n_f = self._wire_split("fetch", src, dst, blocks, batch, heads, reuse)
        slope = n_f / reuse - n_r
        if slope == 0:
            return None
        p = -d0 / slope
        return p if p >= 0 and math.isfinite(p) else None


def check_round(blocks: float, batch: float, reuse: float) -> None:
    """Reject a round's inputs that no formula covers, with what to give instead."""
    if not blocks >= 0:
        raise UserError(f"blocks={blocks}: give a number of blocks >= 0")
    if not batch > 0:
        raise UserError(f"batch={batch}: give a batch of at least 1 query")
    if not reuse >= 1:
        raise UserError(f"reuse={reuse}: a fetched block is used at least once (reuse >= 1)")
