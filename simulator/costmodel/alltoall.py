"""The all-to-all of one EP group on the fabric: which links its pairs cross, the load each
link carries, and the closed form of one exchange alone.

Simulating every pair as its own max-min flow is out of reach for a 144-rank group (20,592
flows per layer and direction, all on one connected component). Instead the exchange puts, on
every directed link it crosses, one flow carrying the bytes all its pairs put there
(:meth:`AllToAll.loads`; paths as the Fabric chooses them), capped at the GPU-initiated stack's
efficiency × the line rate (``ibgda``: DeepEP is NVSHMEM/IBGDA whatever stack the KV traffic
uses). Those flows share links max-min with everything else on the fabric; the exchange is done
when the last of them is. Alone it takes::

    time = overhead(mode) + stack overhead + longest path latency + max over links (load / rate)

— the fluid bound of the pattern, which per-pair max-min fair flows also reach when the bottleneck
links (the NICs) are saturated throughout, as in a balanced all-to-all. A link whose pairs all
cross a slower link too (a GPU's PCIe hop to its NIC) can never be the bottleneck and is left
out. The exchange starts when the last rank is ready (a synchronizing collective: every rank
waits for every rank's tokens), and the next phase when the slowest rank is done, so load
imbalance shows as stragglers.

:class:`~simulator.costmodel.moe.ExpertParallel` builds one per group (what travels is its
plan's traffic matrices); DeepEP's kernel overheads: :mod:`simulator.costmodel.deepep`.
"""

from __future__ import annotations

import numpy as np

from simulator import hardware
from simulator.costmodel.deepep import EP_STACK, mode_overheads
from simulator.network.paths import PathInfo


class AllToAll:
    """The links of one EP group's exchanges, their rates, and the closed form of one exchange.

    Args:
        ranks: GPU node names of the ranks, in rank order.
        graph: the topology (its links' bandwidths).
        paths: paths between the ranks (:func:`simulator.network.paths.paths_among`).
        mode: DeepEP kernel mode (:data:`~simulator.costmodel.deepep.MODES`).

    Attributes:
        links: the directed links that can bottleneck an exchange, in first-crossed order.
        rate: each link's rate for the exchange (efficiency × bandwidth) [B/s].
        efficiency: each link's stack efficiency (RDMA where an internode pair crosses it).
        latency: path latency of each (source, destination) rank pair [s] (R, R).
        inter: whether each pair's path leaves its node (R, R).
    """

    def __init__(self, ranks: list[str], graph, paths: dict[tuple[str, str], PathInfo],
                 mode: str) -> None:
        self.ranks = ranks
        self.R = R = len(ranks)
        self.mode = mode
        self.overheads = mode_overheads(mode)
        self.stack = hardware.stack(EP_STACK)
        links: dict[tuple[str, str], int] = {}
        pair_of, link_of = [], []
        lat = np.zeros((R, R))
        inter = np.zeros((R, R), bool)
        for a in range(R):
            for b in range(R):
                if a == b:
                    continue
                info = paths[(self.ranks[a], self.ranks[b])]
                lat[a, b] = info.latency_time
                inter[a, b] = info.inter_node
                for e in info.edges:
                    i = links.setdefault(e, len(links))
                    pair_of.append(a * R + b)
                    link_of.append(i)
        pair_of = np.asarray(pair_of, np.int64)
        link_of = np.asarray(link_of, np.int64)
        all_links = list(links)
        bw_all = np.array([float(graph.edges[e]["bandwidth"]) for e in all_links])
        # a link whose pairs all cross a slower link too (a GPU's PCIe hops to its NIC) can
        # never be the bottleneck: leave it out (the closed form's maximum is unchanged)
        by_link = np.argsort(link_of, kind="stable")  # each link's pairs, in pair order
        lk, pr = link_of[by_link], pair_of[by_link]
        cuts = np.flatnonzero(np.diff(lk)) + 1
        keys: dict[bytes, int] = {}
        keep = np.zeros(len(all_links), bool)
        if len(lk):  # a one-rank group has no pairs, so no links
            for i, members in zip(lk[np.r_[0, cuts]].tolist(), np.split(pr, cuts), strict=True):
                j = keys.get(members.tobytes())
                if j is None:
                    keys[members.tobytes()] = i
                    keep[i] = True
                elif bw_all[i] < bw_all[j]:
                    keep[j], keep[i] = False, True
                    keys[members.tobytes()] = i
        index = np.full(len(all_links), -1, np.int64)
        index[keep] = np.arange(int(keep.sum()))
        sel = keep[link_of]
        self.links = [e for e, k in zip(all_links, keep, strict=True) if k]
        self.pair_of = pair_of[sel]
        self.link_of = index[link_of[sel]]
        self.latency = lat
        self.inter = inter
        bw = bw_all[keep]
        # links of internode pairs run at the RDMA efficiency, NVLink ones at NVLink's
        crosses = np.zeros(len(self.links), bool)
        np.logical_or.at(crosses, self.link_of, inter.ravel()[self.pair_of])
        self.efficiency = np.where(crosses, self.stack.efficiency(True),
                                   self.stack.efficiency(False))
        self.rate = self.efficiency * bw

    def loads(self, pairs: np.ndarray) -> np.ndarray:
        """Bytes each of :attr:`links` carries for a traffic matrix ``pairs`` (R, R) [B]."""
        flat = np.asarray(pairs, float).ravel()
        return np.bincount(self.link_of, weights=flat[self.pair_of], minlength=len(self.links))

    def fixed_time(self, pairs: np.ndarray, direction: str) -> float:
        """The exchange's size-independent part: kernel overhead (``direction`` ``"dispatch"``
        or ``"combine"``), stack overhead and the longest path latency among pairs that carry
        bytes; normal mode adds the NVLink forwarding hop's overhead [s]."""
        used = np.asarray(pairs) > 0
        over = self.overheads[0 if direction == "dispatch" else 1]
        if not used.any():
            return over
        inter = bool(self.inter[used].any())
        t = over + self.stack.overhead_time(inter) + float(self.latency[used].max())
        if self.mode == "normal" and inter:
            t += self.stack.overhead_time(False)
        return t

    def exchange_time(self, pairs: np.ndarray, direction: str) -> float:
        """The closed form of one exchange alone: fixed part + max over links (load / rate) [s]."""
        loads = self.loads(pairs)
        wire = float((loads / self.rate).max()) if len(loads) else 0.0
        return self.fixed_time(pairs, direction) + wire


__all__ = ["AllToAll"]
