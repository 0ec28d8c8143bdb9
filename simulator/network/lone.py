"""Lone flows: the Fabric's shortcut for a message alone on idle links.

In the engine almost every message (99.7 % on the Mooncake replay) starts on links that carry no
other flow. Such a message's life is known when it is sent: it starts after overhead + latency, runs
at ``min(cap, bottleneck)`` — what max-min gives a flow alone on its links — and ends ``nbytes /
rate`` later. :class:`LoneFlows` (a part the :class:`~simulator.network.fabric.Fabric` holds)
*reserves* its links for it and schedules one SimPy event, at its end: no start event, no filling,
no timer. The reservation is exact as long as nothing else uses those links, so whatever would share
one — a flow starting on it, a :meth:`fair_share` probe, an inspection — first *materializes* the
reservation: a lone flow already under way joins its class with the bytes it has left (``nbytes −
rate × elapsed``), one not yet started gets an ordinary start event; its reserved end event then
does nothing. Invariant: a link carries either classes or one lone flow, never both. Link accounting
of a lone flow is one record per flow (:meth:`~simulator.network.linkstats.LinkStats.interval`),
written when it ends or materializes."""

from __future__ import annotations


class LoneFlows:
    """The reservations of idle links by lone flows, held by a Fabric.

    Args:
        fabric: the owner; finished flows, and materialized ones still in their latency, go
            back to it (``_complete``, ``_start``).
        env: the simulation's environment.
        shared: the fabric's shared flows (:class:`~simulator.network.shared.SharedFlows`):
            materialized flows under way join them (``join``, ``reallocate``), and their flow
            classes per link are read (a link with one is not idle).
        stats: the fabric's link statistics (a lone flow's one record).
    """

    __slots__ = ("fabric", "env", "shared", "link_classes", "stats", "by_link")

    def __init__(self, fabric, env, shared, stats) -> None:
        self.fabric = fabric
        self.env = env
        self.shared = shared
        self.link_classes = link_classes = shared.link_classes
        self.stats = stats
        self.by_link: list = [None] * len(link_classes)  # the lone flow reserving each link

    def idle(self, links) -> bool:
        """No class and no lone flow on any of ``links``."""
        lc, lone = self.link_classes, self.by_link
        for link in links:  # noqa: SIM110 (hot path: a loop beats all() over a generator)
            if lc[link] or lone[link] is not None:
                return False
        return True

    def reserve(self, flow, now: float) -> None:
        """Run ``flow`` (``started_at`` set, ``nbytes`` > 0) alone on its idle links."""
        route = flow.route
        rate = route.cap if route.cap <= route.bneck else route.bneck
        flow.rate = rate
        flow.lone = True
        lone = self.by_link
        for link in route.links:
            lone[link] = flow
        end = flow.started_at + flow.nbytes / rate
        self.env.timeout(end - now).callbacks.append(lambda _e: self._done(flow))

    def _release(self, flow) -> None:
        flow.lone = False
        lone = self.by_link
        for link in flow.route.links:
            lone[link] = None

    def _done(self, flow) -> None:
        if not flow.lone:
            return  # it was materialized: its class finishes it
        self._release(flow)
        now = self.env._now
        self.stats.interval(flow.route.sid, flow.started_at, now, flow.nbytes, flow.tag)
        self.fabric._complete(flow, now, False)

    def materialize(self, links, now: float) -> bool:
        """Turn the lone flows on ``links`` into ordinary ones; True if one now shares bandwidth
        (the caller re-fills the links)."""
        lone = self.by_link
        shared = False
        for link in links:
            f = lone[link]
            if f is None:
                continue
            self._release(f)
            if f.started_at > now:  # still in its latency: an ordinary start
                self.env.timeout(f.started_at - now).callbacks.append(
                    lambda _e, f=f: self.fabric._start(f))
                continue
            done = f.rate * (now - f.started_at)
            self.stats.interval(f.route.sid, f.started_at, now, done, f.tag)
            self.shared.join(f, f.nbytes - done if done < f.nbytes else 0.0, now)
            shared = True
        return shared

    def settle(self) -> None:
        """Materialize every lone flow under way (for inspection: rates, bytes so far)."""
        now = self.env._now
        links = [i for i, f in enumerate(self.by_link) if f is not None and f.started_at <= now]
        if self.materialize(links, now):
            self.shared.reallocate(links)
