"""One exchange between a home GPU and one owner (a *round*), replayed on the simulated cluster.

A round is a chain of callbacks — no SimPy process: each message (:meth:`Fabric.transfer` with a
callback) or kernel (:class:`~simulator.gpu.streams.Stream`) calls the next step when it ends. A
kernel's end is known when it is queued on a :class:`~simulator.gpu.streams.Stream` (FIFO, known
durations), so a route round needs no event for its kernels: the owner's answer is sent with
``delay_time`` = the attention's end, and the round ends at the merge's known end. The layer's
projections + FFN are queued right behind the last round's merge (a GPU enqueues dependent kernels
on one stream back-to-back, with no host round trip). The steps are the closed form's phases
(:mod:`simulator.costmodel.phases`), in its order and sizes, so a round without contention
takes exactly the closed form's time. When it ends, the round is recorded beside the closed form,
and its layer's :class:`Pending` count goes down."""

from __future__ import annotations

from collections.abc import Callable

from simulator.network.traffic import KV_FETCH, KV_ROUTE


class Pending:
    """The rounds of one (GPU, layer) still in flight; ``then()`` is called when the last has
    queued its final kernel on the home stream."""

    __slots__ = ("then", "left")

    def __init__(self, then: Callable[[], None], left: int) -> None:
        self.then, self.left = then, left


class RoundReplay:
    """One round replayed as a chain of callbacks — the messages and kernels of
    :mod:`simulator.costmodel`'s phases, in order — then recorded beside the closed form.

    route: query message (probe = its overhead + latency, transfer = its bytes) → attention on
    the owner → return message → LSE merge at home. fetch: request message → blocks message →
    one home kernel (attention + gather, then merge); from host DRAM, a host→device copy on the
    home's copy engine (:mod:`simulator.gpu.copyengines`) instead of the two messages. local: one home kernel (recompute +
    attention, then merge), issued at once. Fetched / recomputed KV is kept as copies.
    """

    __slots__ = ("run", "pending", "g", "k", "owner", "code", "option", "batch", "n_blocks",
                 "distinct", "members", "s", "iteration", "cf", "t0", "t1", "probe",
                 "transfer", "compute", "ret", "merge", "nbytes", "ret_bytes")

    def __init__(self, run, pending, g, k, owner, code, option, batch, n_blocks, distinct,
                 members, s, iteration, cf) -> None:
        self.run, self.pending, self.g, self.k = run, pending, g, k
        self.owner, self.code, self.option = owner, code, option
        self.batch, self.n_blocks, self.distinct, self.members = batch, n_blocks, distinct, members
        self.s, self.iteration, self.cf = s, iteration, cf
        self.probe = self.transfer = self.ret = 0.0
        self.nbytes = 0.0

    def start(self) -> None:
        run = self.run
        env = run.env
        self.t0 = env.now
        src = run.names[self.g]
        if self.option == "route":
            q, r = run.costs.route_payload(self.batch)
            self.nbytes = q + r
            self.ret_bytes = r
            run.fabric.transfer(src, self.owner, q, self._route_sent, tag=KV_ROUTE)
        elif self.option == "fetch" and run.G <= self.code < 2 * run.G:
            # from host DRAM: one host→device copy on the home's copy engine, no message
            self.nbytes = run.cm.fetch_bytes(self.n_blocks / self.batch, self.batch)
            self.t1 = env.now
            end = run.copies[self.g].issue("h2d", self.cf.transfer)
            env.timeout(end - env.now).callbacks.append(self._host_copied)
        elif self.option == "fetch":
            req = run.cm.request_bytes(self.n_blocks / self.batch, self.batch)
            self.nbytes = req
            run.fabric.transfer(src, self.owner, req, self._fetch_asked, tag=KV_FETCH)
        else:
            self.t1 = env.now
            cf = self.cf
            run.streams[self.g].run(cf.compute + cf.merge).callbacks.append(self._home_done)

    # route
    def _route_sent(self, rec) -> None:
        run = self.run
        self.probe = rec.started_at - self.t0
        self.transfer = rec.finished_at - rec.started_at
        now = self.t1 = run.env.now
        stream = run.streams[self.k]
        if stream.predicts:  # the kernel's end is known: send the answer then, no event
            wait = stream.issue(self.cf.compute) - now
            self.compute = wait
            run.fabric.transfer(self.owner, run.names[self.g], self.ret_bytes, self._route_back,
                                delay_time=wait, tag=KV_ROUTE)
        else:
            stream.run(self.cf.compute).callbacks.append(self._route_computed)

    def _route_computed(self, ev) -> None:
        run = self.run
        self.compute = run.env.now - self.t1
        run.fabric.transfer(self.owner, run.names[self.g], self.ret_bytes, self._route_back,
                            tag=KV_ROUTE)

    def _route_back(self, rec) -> None:
        run = self.run
        self.ret = rec.finished_at - rec.issued_at
        now = self.t1 = run.env.now
        stream = run.streams[self.g]
        if stream.predicts:  # the merge's end is known: the round is over then
            end = stream.issue(self.cf.merge)
            self.merge = end - now
            self._finish(end)
        else:
            stream.run(self.cf.merge).callbacks.append(self._route_merged)
            self._release()

    def _route_merged(self, ev) -> None:
        self.merge = self.run.env.now - self.t1
        self._record(self.run.env.now)

    # fetch
    def _fetch_asked(self, rec) -> None:
        run = self.run
        self.probe = run.env.now - self.t0
        self.t1 = run.env.now
        kv = run.cm.fetch_bytes(self.n_blocks / self.batch, self.batch)
        self.nbytes += kv
        run.fabric.transfer(self.owner, run.names[self.g], kv, self._fetch_arrived,
                            tag=KV_FETCH)

    def _fetch_arrived(self, rec) -> None:
        run = self.run
        self.transfer = run.env.now - self.t1
        self.t1 = run.env.now
        cf = self.cf
        run.streams[self.g].run(cf.compute + cf.merge).callbacks.append(self._home_done)

    def _host_copied(self, ev) -> None:
        run = self.run
        self.transfer = run.env.now - self.t1
        self.t1 = run.env.now
        cf = self.cf
        run.streams[self.g].run(cf.compute + cf.merge).callbacks.append(self._home_done)

    # fetch and local: the home kernel (attention [+ gather | + recompute], then merge)
    def _home_done(self, ev) -> None:
        run = self.run
        self.merge = self.cf.merge
        self.compute = run.env.now - self.t1 - self.merge
        kept = run.dir.add_copies_kept(self.g, self.members, self.s, run.env.now)[1]
        if run.observed is not None and self.k >= 0:  # copies of a GPU's blocks, by choice,
            run.observed.copied(self.g, self.k, kept)  # per (block, slot)
        self._finish(run.env.now)

    def _finish(self, end: float) -> None:
        """The round ends at ``end`` [s] (now, or the known end of its last kernel)."""
        self._record(end)
        self._release()

    def _record(self, end: float) -> None:
        run = self.run
        cf = self.cf
        sim = end - self.t0
        run.rounds.append((
            self.iteration, self.s, run.slot_layers_list[self.s], self.g, self.code,
            self.option, self.batch, self.n_blocks, self.distinct, self.nbytes, self.t0,
            self.probe, self.transfer, self.compute, self.ret, self.merge, sim,
            cf.probe, cf.transfer, cf.compute, cf.ret, cf.merge, cf.total,
        ))

    def _release(self) -> None:
        """The round's last kernel is queued on the home stream: the layer may queue what
        follows (after the last round, its projections + FFN)."""
        p = self.pending
        p.left -= 1
        if p.left == 0:
            p.then()

