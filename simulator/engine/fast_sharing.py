"""Max-min fair sharing among a phase's own flows, in closed form: when each flow ends.

The fast engine (:mod:`simulator.engine.fast_links`) and Lamina's fast loop
(:mod:`simulator.disaggregation.lamina_fast`) time the flows of one phase — messages sent at the
same stage of a layer slot — without SimPy events. Where those flows share links they share them
as the :class:`~simulator.network.Fabric` would, and these pure functions say when each ends
[s], given its start, bytes, per-flow cap and links (indices into the links' line rates):

- :func:`max_min_finish` — exact: rates re-filled at every start and completion by progressive
  filling (the common level of the unfrozen flows rises to the next saturating link or cap), as
  the Fabric fills them; its cost grows as the square of the flows;
- :func:`batched_max_min_finish` — for phases of hundreds of flows: rates re-filled only after a
  ``tolerance`` share of the active flows has completed, an error of the order of ``tolerance`` ×
  a message's duration (docs/performance.md);
- :func:`shared_finish` — for phases of many µs-scale messages: each link an egalitarian
  processor-sharing server timed alone, a flow ending at its worst link's answer (errs late
  where other links hold a flow back).

Nothing here knows routes, calendars or records; :class:`~simulator.engine.fast_links.Links`
chooses which to call (and memoizes by the phase's shape).
"""

from __future__ import annotations

from heapq import heappop, heappush

import numpy as np

from simulator.engine.sharing_kernels import max_min_kernel

_INF = float("inf")


def _admit(times: list[float], order: list[int], k: int, t: float, active: list[int]) -> int:
    """Move the flows of ``order`` from index ``k`` whose time has come by ``t`` [s] into
    ``active``; returns the next one's index."""
    n = len(order)
    while k < n and times[order[k]] <= t:
        active.append(order[k])
        k += 1
    return k


def max_min_finish(starts: list[float], nbytes: list[float], caps: list[float],
                   links: list[tuple[int, ...]], line) -> list[float]:
    """When each of a few flows ends [s] under max-min fair sharing with per-flow caps.

    Flow ``i`` starts at ``starts[i]`` [s] with ``nbytes[i]`` [B], at most ``caps[i]`` [B/s],
    over ``links[i]`` (indices into ``line``, line rates [B/s]: a float array, or a list).
    Rates are re-filled at every start and completion (progressive filling: the common level of
    the unfrozen flows rises to the next saturating link or cap), as the Fabric does — in the
    compiled :func:`~simulator.engine.sharing_kernels.max_min_kernel`, the same floats as the
    Python it replaced (:mod:`simulator.testing.sharing_reference`).
    """
    if not len(starts):
        return []
    paths: list[int] = []  # each flow's number of links, then its links
    for p in links:
        paths.append(len(p))
        paths += p
    return max_min_kernel(np.array([*starts, *nbytes, *caps], float),
                          np.array(paths, np.int64), np.asarray(line, float)).tolist()


def batched_max_min_finish(starts: list[float], nbytes: list[float], caps: list[float],
                           links: list[tuple[int, ...]], line: list[float],
                           tolerance: float = 0.05) -> list[float]:
    """:func:`max_min_finish` with fewer fillings, for phases of hundreds of flows [s].

    Rates are re-filled (progressive filling, as the Fabric does) only after a ``tolerance``
    share of the active flows has completed — those complete at their own times under the
    rates of the last filling — and a flow starting within ``tolerance`` × its lone time of the
    present joins now (it never ends before its start plus its lone time). Between fillings the
    rates max-min would move as flows leave (mostly up) stay where they were, and an early joiner
    takes its share a little early; the error in a message's time is of the order of
    ``tolerance`` × its duration (measured in docs/performance.md) for far fewer fillings."""
    n = len(starts)
    # in start order, a flow joins once the present is within ``tolerance`` × its lone time of
    # its start
    join = [s - tolerance * b / c for s, b, c in zip(starts, nbytes, caps, strict=True)]
    order = sorted(range(n), key=lambda i: (starts[i], i))
    left, finish = list(nbytes), [0.0] * n
    active: list[int] = []
    t, k = (starts[order[0]] if n else 0.0), 0
    while k < n or active:
        k = _admit(join, order, k, t, active)
        if not active:  # idle until the next flow starts
            t = starts[order[k]]
            continue
        rate = _fill(active, caps, links, line)
        due = sorted(left[i] / rate[i] for i in active)
        step = due[max(1, int(len(active) * tolerance)) - 1]  # a batch of completions
        if k < n and starts[order[k]] - t < step:
            step = starts[order[k]] - t
        still = []
        for i in active:
            d = left[i] / rate[i]
            if d <= step * (1.0 + 1e-12):
                lone = starts[i] + nbytes[i] / caps[i]
                finish[i] = t + d if t + d > lone else lone
            else:
                left[i] -= rate[i] * step
                still.append(i)
        active = still
        t += step
    return finish


def shared_finish(starts: list[float], nbytes: list[float], caps: list[float],
                  links: list[tuple[int, ...]], line: list[float]) -> list[float]:
    """When each of many flows ends [s] under processor sharing on its most loaded link.

    Flows as in :func:`max_min_finish`. Each link is timed alone as an egalitarian processor
    sharing server (its line rate split equally among the flows on it, flows joining at their
    starts and leaving when done — virtual-time bookkeeping, one heap per link), and a flow ends
    at the latest of its links' answers, never before its lone time ``b_i / cap_i``. On one
    shared link without binding caps this *is* max-min's answer; across links it charges each
    flow its worst link as if that link were shared alone (no rate a flow cannot use on another
    link is handed back), so it errs late for flows whose other links hold them back — by tens
    of % on average for a deployment's bulk fetches (docs/performance.md), which is why it times
    only phases of µs-scale messages. Cost: a heap step per (flow, link) pair, where progressive
    filling costs a filling per completion."""
    n = len(starts)
    by_link: dict[int, list[int]] = {}
    for i, path in enumerate(links):
        for link in path:
            by_link.setdefault(link, []).append(i)
    end = [s + b / c for s, b, c in zip(starts, nbytes, caps, strict=True)]
    for link, flows in by_link.items():
        if len(flows) < 2:
            continue
        rate = line[link]
        flows.sort(key=lambda i: (starts[i], i))
        heap: list[tuple[float, int]] = []
        v = 0.0  # bytes served to every flow present since the link's first start (virtual)
        t = starts[flows[0]]
        k = 0
        j = 0
        m = len(flows)
        while j < m or heap:
            arrive = starts[flows[j]] if j < m else _INF
            leave = t + (heap[0][0] - v) * k / rate if heap else _INF
            if arrive <= leave:
                if k:
                    v += (arrive - t) * rate / k
                t = arrive
                i = flows[j]
                heappush(heap, (v + nbytes[i], i))
                k += 1
                j += 1
            else:
                tag, i = heappop(heap)
                v, t = tag, leave
                k -= 1
                if t > end[i]:
                    end[i] = t
    return end[:n]


def _fill(active: list[int], caps: list[float], links: list[tuple[int, ...]],
          line: list[float]) -> dict[int, float]:
    """Max-min rates [B/s] of the ``active`` flows (progressive filling)."""
    res: dict[int, float] = {}
    cnt: dict[int, int] = {}
    for i in active:
        for link in links[i]:
            res[link] = line[link]
            cnt[link] = cnt.get(link, 0) + 1
    rate = dict.fromkeys(active, 0.0)
    free = set(active)
    while free:
        inc = min(res[link] / c for link, c in cnt.items() if c > 0)
        inc = min(inc, min(caps[i] - rate[i] for i in free))
        frozen = set()
        for i in free:
            rate[i] += inc
            if caps[i] - rate[i] <= 1e-12 * caps[i]:
                frozen.add(i)
        for link, c in cnt.items():
            if c > 0:
                res[link] -= inc * c
        for link, c in cnt.items():
            if c > 0 and res[link] <= 1e-12 * line[link]:
                for i in free:
                    if link in links[i]:
                        frozen.add(i)
        for i in frozen:
            free.discard(i)
            for link in links[i]:
                cnt[link] -= 1
    return rate
