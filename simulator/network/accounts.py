"""Traffic accounts: the Fabric's run counters, and the messages an engine timed itself.

The :class:`~simulator.network.fabric.Fabric` counts what it carries in an :class:`Accounts` it
holds: ``bytes_sent`` (at ``transfer``), ``bytes_delivered`` and ``flows_completed`` (at the last
byte), and the same bytes per traffic class (:mod:`simulator.network.traffic`) in
``sent_by_class`` and ``delivered_by_class`` (lists indexed by tag) [B]. The Fabric shows them as
its own attributes (:class:`AccountField`: ``fabric.bytes_sent`` reads and writes the account),
and adds to them one message at a time as it sends and delivers (:meth:`Accounts.record_sent`,
:meth:`Accounts.delivered`).

Engines that time messages themselves (the fast engine, the pool loops) account them here
instead: :meth:`Accounts.record_messages` moves the same counters by the same additions, in the
same order, as so many transfers would — a batch of one traffic class at once, one addition
after another in a compiled loop (:func:`fold_sum`) — and leaves one lone-flow record per
message with the link statistics (:meth:`~simulator.network.linkstats.LinkStats.intervals`);
:meth:`Accounts.record_sent` counts bytes sent whose delivery lies beyond the run. Nothing here
schedules an event.
"""

from __future__ import annotations

from functools import reduce
from operator import add

import numpy as np

from simulator.network.kernels import fold_add
from simulator.network.linkstats import LinkStats
from simulator.network.traffic import OTHER, TRAFFIC_CLASSES


def fold_sum(start: float, values) -> float:
    """``start + v₀ + v₁ + …`` added left to right in float64 (as ``+=`` in a loop would): an
    array's values by a compiled loop (:func:`~simulator.network.kernels.fold_add`: the same
    additions, -0.0 kept where they keep it), a sequence's one Python addition after another."""
    if isinstance(values, np.ndarray) and values.size:
        return fold_add(float(start), np.ascontiguousarray(values, np.float64).ravel())
    return reduce(add, values.tolist() if isinstance(values, np.ndarray) else values, start)


class Accounts:
    """A Fabric's counters [B, flows], and the link records of messages timed elsewhere.

    Args:
        stats: the fabric's link statistics (where :meth:`record_messages` leaves its records).
    """

    __slots__ = ("stats", "bytes_sent", "bytes_delivered", "flows_completed", "sent_by_class",
                 "delivered_by_class")

    def __init__(self, stats: LinkStats) -> None:
        self.stats = stats
        self.bytes_sent = 0.0
        self.bytes_delivered = 0.0
        self.flows_completed = 0
        self.sent_by_class = [0.0] * len(TRAFFIC_CLASSES)
        self.delivered_by_class = [0.0] * len(TRAFFIC_CLASSES)

    def record_messages(self, route_ids, started_at, finished_at, nbytes, tags=None,
                        counted=None, totals=None) -> None:
        """Account messages whose timing an engine computed itself (sequences of equal length):
        each carried ``nbytes`` [B] of traffic class ``tags`` (:mod:`simulator.network.traffic`;
        None: ``other``) over the links of its route id
        (:meth:`~simulator.network.fabric.Fabric.message_route`,
        :meth:`~simulator.network.fabric.Fabric.link_route`) from ``started_at`` to
        ``finished_at`` [s] — one lone-flow record each (counters, per class, link totals and
        timeline). ``counted`` [B] is what each adds to the per-class counters (None:
        ``nbytes``; an aggregate on one link counts its share of the payload, as
        :meth:`~simulator.network.fabric.Fabric.transfer_link`'s ``counted``). ``totals`` [B]:
        when the messages are several calls' worth, put end to end, each call's byte total (the
        run's totals grow by each in turn, as so many calls would add them; None: one call).
        Schedules nothing. Numpy arrays may be kept as they are (a long batch is held, not
        copied: :meth:`LinkStats.intervals`): the caller does not change them afterwards."""
        n = len(route_ids)
        if tags is None:
            tags = [OTHER] * n
        if counted is None:
            counted = nbytes
        if not (len(started_at) == len(finished_at) == len(nbytes) == len(tags)
                == len(counted) == n):
            # before any counter moves: a refused call leaves the accounting as it was
            raise ValueError("record_messages: route_ids, started_at, finished_at, nbytes, "
                             "tags and counted need one entry per message")
        if totals is None:  # sums in message order (an array's values as Python floats: the
            # same additions)
            totals = (float(sum(nbytes.tolist() if isinstance(nbytes, np.ndarray) else nbytes)),)
        for total in totals:
            self.bytes_sent += total
            self.bytes_delivered += total
        self.flows_completed += n
        if isinstance(tags, np.ndarray):
            one = n > 0 and bool((tags == tags[0]).all())
        else:  # a list or tuple
            one = n > 0 and tags.count(tags[0]) == n
        if one:  # one class: the same additions in the same order, at once
            tag = int(tags[0])
            sent, delivered = self.sent_by_class[tag], self.delivered_by_class[tag]
            self.sent_by_class[tag] = fold_sum(sent, counted)
            self.delivered_by_class[tag] = self.sent_by_class[tag] if delivered == sent and \
                type(delivered) is type(sent) else fold_sum(delivered, counted)
        else:
            for tag, b in zip(tags, counted, strict=True):
                self.sent_by_class[tag] += b
                self.delivered_by_class[tag] += b
        self.stats.intervals(route_ids, started_at, finished_at, nbytes, tags)

    def record_sent(self, nbytes: float, tag: int = OTHER, counted: float | None = None) -> None:
        """Account ``nbytes`` [B] of class ``tag`` sent: by the Fabric as a transfer starts, or by
        an engine that timed them itself and whose delivery lies beyond the run's end (counted
        as sent, not delivered). ``counted`` [B]: what the per-class counter adds instead
        (:meth:`record_messages`' ``counted``; None: ``nbytes``)."""
        self.bytes_sent += nbytes
        self.sent_by_class[tag] += nbytes if counted is None else counted

    def delivered(self, nbytes: float, tag: int) -> None:
        """Account a flow of ``nbytes`` [B] of class ``tag`` delivered by the Fabric."""
        self.bytes_delivered += nbytes
        self.delivered_by_class[tag] += nbytes
        self.flows_completed += 1


class AccountField:
    """A Fabric attribute kept in its :class:`Accounts` (``fabric._accounts``): reading it reads
    the account, assigning it assigns the account."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, fabric, owner: type | None = None):
        return self if fabric is None else getattr(fabric._accounts, self.name)

    def __set__(self, fabric, value) -> None:
        setattr(fabric._accounts, self.name, value)
