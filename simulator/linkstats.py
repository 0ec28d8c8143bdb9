"""Link accounting for the Fabric: per-link bytes, busy time, and the load timeline.

The Fabric tells :class:`LinkStats` a link's new summed rate (its *load* [B/s]) whenever a
re-filling changes it. Between two changes a link's load is constant, so its bytes are load × time
and it is busy while the load is positive; totals are brought up to date lazily (at the next
change, or when asked). Every change point (link, time, load) is also kept, compactly (three
``array`` columns), so :meth:`LinkStats.timeline` can bin utilization over time exactly at any
bin width after the run.
"""

from __future__ import annotations

from array import array

import numpy as np
import pandas as pd

from simulator.errors import UserError


class LinkStats:
    """Accounting of the directed links ``edges`` (with ``kinds`` and line rates ``cap`` [B/s])."""

    def __init__(self, edges: list[tuple[str, str]], kinds: list[str], cap: list[float]) -> None:
        n = len(edges)
        self.edges, self.kinds, self.cap = edges, kinds, cap
        self.load = [0.0] * n  # current summed rate per link [B/s]
        self.acc_at = [0.0] * n  # when each link's bytes/busy were last brought up to date [s]
        self.nbytes = [0.0] * n  # [B] up to acc_at
        self.busy = [0.0] * n  # [s] up to acc_at
        # change points of the link loads (link, at [s], new load [B/s]), compact for long runs
        self.tl_link, self.tl_at, self.tl_load = array("q"), array("d"), array("d")

    def update(self, links, res: list[float], now: float) -> None:
        """At ``now`` [s], each of ``links`` has unused capacity ``res[link]`` [B/s]: its load is
        ``cap − res``. Records the links whose load changed."""
        cap, load, acc = self.cap, self.load, self.acc_at
        add_link, add_at, add_load = self.tl_link.append, self.tl_at.append, self.tl_load.append
        for link in links:
            x = cap[link] - res[link]
            old = load[link]
            if x != old:
                if old > 0.0:
                    dt = now - acc[link]
                    if dt > 0.0:
                        self.nbytes[link] += old * dt
                        self.busy[link] += dt
                acc[link] = now
                load[link] = x
                add_link(link)
                add_at(now)
                add_load(x)

    def frame(self, now: float) -> pd.DataFrame:
        """Per directed link: src, dst, kind, bandwidth [B/s], bytes [B], busy_time [s] and
        utilization (time-weighted mean of load / bandwidth over [0, now])."""
        rows = []
        for i, (u, v) in enumerate(self.edges):
            dt = now - self.acc_at[i]
            x = self.load[i]
            nbytes = self.nbytes[i] + x * dt
            busy = self.busy[i] + (dt if x > 0.0 else 0.0)
            bw = self.cap[i]
            util = nbytes / (bw * now) if now > 0 else 0.0
            rows.append((u, v, self.kinds[i], bw, nbytes, busy, util))
        return pd.DataFrame(rows, columns=["src", "dst", "kind", "bandwidth", "bytes",
                                           "busy_time", "utilization"])

    def timeline(self, bin_time: float, now: float) -> pd.DataFrame:
        """Utilization per link per time bin of ``bin_time`` [s] over [0, now] (long format).

        Columns: src, dst, kind, start_at, end_at [s], bytes [B], utilization (bytes /
        (bandwidth × bin length)); the last bin ends at ``now``.
        """
        if not bin_time > 0:
            raise UserError(f"link_timeline: bin_time must be > 0 s, got {bin_time!r}")
        now = float(now)
        nbins = max(int(np.ceil(now / bin_time - 1e-9)), 1)
        edges_at = np.minimum(np.arange(nbins + 1) * float(bin_time), now)
        edges_at[-1] = now
        nl = len(self.edges)
        cum = np.zeros((nl, nbins + 1))
        if len(self.tl_link):
            order = np.argsort(np.frombuffer(self.tl_link, dtype=np.int64), kind="stable")
            tl_link = np.frombuffer(self.tl_link, dtype=np.int64)[order]
            tl_at = np.frombuffer(self.tl_at)[order]
            tl_load = np.frombuffer(self.tl_load)[order]
            links, starts = np.unique(tl_link, return_index=True)
            for link, a, b in zip(links, starts, [*starts[1:], len(tl_link)], strict=True):
                at = np.concatenate(([0.0], tl_at[a:b], [now]))
                x = np.concatenate(([0.0], tl_load[a:b]))
                b_at = np.concatenate(([0.0], np.cumsum(x * np.diff(at))))
                cum[link] = np.interp(edges_at, at, b_at)  # bytes carried by each bin edge
        nbytes = np.diff(cum, axis=1)
        length = np.diff(edges_at)
        bw = np.array(self.cap)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            util = np.where(length > 0, nbytes / (bw * length), 0.0)
        return pd.DataFrame({
            "src": np.repeat([u for u, _ in self.edges], nbins),
            "dst": np.repeat([v for _, v in self.edges], nbins),
            "kind": np.repeat(self.kinds, nbins),
            "start_at": np.tile(edges_at[:-1], nl),
            "end_at": np.tile(edges_at[1:], nl),
            "bytes": nbytes.ravel(),
            "utilization": util.ravel(),
        })
