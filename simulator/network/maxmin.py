"""Max-min fair rates by progressive filling, for the Fabric's flow classes.

A *class* (see :mod:`simulator.network`) is a set of ``n`` flows with the same links and the
same per-flow cap; it has ``links`` (link indices), ``n``, ``cap`` [B/s] (``inf``: none),
``bneck`` (its least line rate [B/s]), ``cid`` and the scratch fields ``stamp`` and ``new_rate``.
:meth:`MaxMin.fill` recomputes the rates of the connected component of some links (classes linked
through shared links); rates outside it cannot change. Progressive filling raises the common
level of the unfrozen flows to the next saturating link or per-flow cap and freezes those flows,
with scratch arrays indexed by link and a linear scan (components of at most
:data:`_SCAN_LINKS` links) or a heap for the next bottleneck. A class alone on its links skips
the filling: its rate is ``min(cap, bneck / n)``, the same floats the filling computes.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush

_INF = float("inf")
#: Components with at most this many links find the next bottleneck by a scan, else a heap.
_SCAN_LINKS = 128


class MaxMin:
    """Progressive filling over ``link_classes[link]`` (cid → class) with line rates ``cap``."""

    def __init__(self, cap: list[float], link_classes: list[dict]) -> None:
        n = len(cap)
        self.cap, self.link_classes = cap, link_classes
        self.res = [0.0] * n  # residual capacity [B/s] after the last filling
        self.wt = [0] * n  # unfrozen flows per link during a filling
        self.seen = [0] * n  # stamp of the last filling that saw each link
        self.stamp = 0  # marks the classes and links of the component being filled

    def fill(self, links) -> tuple[list, list[int]]:
        """Max-min rates of the component of ``links``: sets each class's ``new_rate`` [B/s].

        The component is every class connected to ``links`` through shared links (found
        breadth-first); rates outside it cannot change. Progressive filling: each round raises
        the common level of the unfrozen flows to the lowest of the level at which some link
        saturates (residual capacity / unfrozen flows on it) and the lowest per-flow cap; the
        flows of that link (or that capped class) freeze at it. Returns the component's classes
        and links; ``self.res[link]`` is then each link's unused capacity [B/s].
        """
        link_classes, cap = self.link_classes, self.cap
        res, wt, seen = self.res, self.wt, self.seen  # scratch, indexed by link
        # Fast path: the links carry at most one class, and it is alone on all of its links —
        # its rate is min(cap, bottleneck / n), the same floats the filling below computes.
        only = None
        for link in links:
            d = link_classes[link]
            if d:
                if len(d) > 1:
                    break
                c = next(iter(d.values()))
                if only is None:
                    only = c
                elif c is not only:
                    break
        else:
            if only is None:
                for link in links:
                    res[link] = cap[link]
                return [], list(links)
            for link in only.links:
                if len(link_classes[link]) != 1:
                    break
            else:
                n = only.n
                lk = only.bneck / n
                level = only.cap if only.cap <= lk else lk
                only.new_rate = level
                x = n * level
                comp_links = list(links)
                for link in links:
                    res[link] = cap[link]
                for link in only.links:
                    if link not in links:
                        comp_links.append(link)
                    res[link] = cap[link] - x
                return [only], comp_links
        self.stamp += 1
        stamp = self.stamp
        todo = []
        for link in links:
            if seen[link] != stamp:
                seen[link] = stamp
                wt[link] = 0
                res[link] = cap[link]
                todo.append(link)
        comp_links = todo[:]
        comp: list = []
        capped = []
        while todo:
            for c in link_classes[todo.pop()].values():
                if c.stamp != stamp:
                    c.stamp = stamp
                    c.new_rate = -1.0
                    comp.append(c)
                    if c.cap < _INF:
                        capped.append((c.cap, c.cid, c))
                    n = c.n
                    for link in c.links:
                        if seen[link] == stamp:
                            wt[link] += n
                        else:
                            seen[link] = stamp
                            wt[link] = n
                            res[link] = cap[link]
                            todo.append(link)
                            comp_links.append(link)
        key = {link: res[link] / wt[link] for link in comp_links if wt[link]}
        use_heap = len(key) > _SCAN_LINKS
        if use_heap:
            heap = [(k, link) for link, k in key.items()]
            heapify(heap)
            touched: set[int] = set()
        if capped:
            capped.sort()
        ncapped = len(capped)
        ci = 0
        level = 0.0
        left = len(comp)
        while left:
            if use_heap:
                while heap[0][0] != key.get(heap[0][1]):
                    heappop(heap)  # stale entry, or a link whose flows are all frozen
                lk = heap[0][0]
            else:
                lk = min(key.values()) if key else _INF
            if ncapped:
                while ci < ncapped and capped[ci][2].new_rate >= 0.0:
                    ci += 1
            if ci < ncapped and capped[ci][0] <= lk:
                if capped[ci][0] > level:
                    level = capped[ci][0]
                frozen = [capped[ci][2]]
            else:
                if lk > level:
                    level = lk
                # every link that saturates at this level, and its unfrozen flows
                if use_heap:
                    sat = []
                    while heap and heap[0][0] == lk:
                        link = heappop(heap)[1]
                        if key.get(link) == lk:
                            del key[link]
                            sat.append(link)
                else:
                    sat = [link for link, k in key.items() if k == lk]
                    for link in sat:
                        del key[link]
                frozen = []
                for link in sat:
                    for c in link_classes[link].values():
                        if c.new_rate < 0.0:
                            c.new_rate = level
                            frozen.append(c)
            left -= len(frozen)
            for c in frozen:
                c.new_rate = level
                n = c.n
                x = n * level
                for link in c.links:
                    w = wt[link] - n
                    wt[link] = w
                    r = res[link] - x
                    res[link] = r
                    if link in key:
                        if w:
                            key[link] = (r if r > 0.0 else 0.0) / w
                            if use_heap:
                                touched.add(link)
                        else:
                            del key[link]
            if use_heap and touched:
                for link in touched:
                    if link in key:
                        heappush(heap, (key[link], link))
                touched.clear()
        return comp, comp_links
