"""Prefill→decode KV transfer in the exact engine: the transfer engine and the hand-off.

:class:`TransferEngine` is a FIFO pacer per source GPU's NIC, as
:mod:`simulator.costmodel.transfer` describes: a posted message is released ``overhead`` after
the engine is free, keeps it busy for ``bytes / bandwidth``, and then travels on the Fabric
(tagged ``pd_transfer``) sharing links with everything else.

:class:`Handoff` follows each request of a prefill/decode deployment: on arrival it picks the
request's decode GPU (the decode pool's least loaded, counting requests still on their way) and
its prefill GPU (the prefill pool's least loaded); while the prefill instance computes the
prompt, each computed chunk's KV is posted slot by slot as its layers finish (layer-wise: a
folded slot's first layers when its first layer ends — they travel while the others compute —
and its last layer's when the slot's last layer ends, so the last layer's transfer is exposed as
on a real layer-wise transfer) or all at once when the prompt is done; when the prompt is done, the request's new blocks are placed on
its decode GPU (in the block directory: a later turn reuses them there, and nothing held
elsewhere is recomputed); and once its last message has arrived, the prefill GPU releases its KV
and the request joins the decode GPU's queue — a decode instance admits a request only when its
KV is there. Its first token comes with the decode step that admits it, so time to first token
includes the transfer. One record per request: bytes, messages, when the first was posted and
the last arrived, and the closed form of its transfer alone.
"""

from __future__ import annotations

import numpy as np

from simulator.costmodel.transfer import transfer_time
from simulator.network.traffic import PD_TRANSFER

#: Columns of the ``kv_transfers`` records: ``transfer_time`` runs from the first message posted
#: to the last arrived [s] (layer-wise, it spans the prefill that posts them); ``arrived_at −
#: prefilled_at`` is what the transfer adds to the request's time to first token.
TRANSFER_COLUMNS = ("request_id", "prefill_gpu", "decode_gpu", "bytes", "messages", "posted_at",
                    "prefilled_at", "arrived_at", "transfer_time", "cf_transfer_time")


class TransferEngine:
    """FIFO pacing of KV messages per source GPU (see the module docstring).

    Args:
        env: the run's environment.
        fabric: the run's Fabric.
        bandwidth: the engine's rate per NIC [B/s].
        overhead_time: posting cost per message [s].
    """

    def __init__(self, env, fabric, bandwidth: float, overhead_time: float) -> None:
        self.env, self.fabric = env, fabric
        self.bandwidth, self.overhead_time = bandwidth, overhead_time
        self.free_at: dict[str, float] = {}

    def send(self, src: str, dst: str, nbytes: float, then) -> None:
        """Post ``nbytes`` [B] from ``src`` to ``dst``; ``then(record)`` at the last byte."""
        now = self.env.now
        free = self.free_at.get(src, 0.0)
        release = (free if free > now else now) + self.overhead_time
        self.free_at[src] = release + nbytes / self.bandwidth
        self.fabric.transfer(src, dst, nbytes, then, delay_time=release - now, tag=PD_TRANSFER)


class Handoff:
    """Requests' way from the prefill pool to the decode pool (see the module docstring).

    Args:
        run: the engine's run (its ``env``, ``req``, ``names``, ``cm``, ``arch``).
        prefill_gpus: GPU indices of the prefill pool.
        engine: the :class:`TransferEngine`.
        layerwise: post each slot's KV as its layers finish.
    """

    def __init__(self, run, prefill_gpus: list[int], engine: TransferEngine,
                 layerwise: bool) -> None:
        self.run = run
        self.prefill_gpus = list(prefill_gpus)
        self.engine = engine
        self.layerwise = layerwise
        n = run.req.n
        self.prefill_of = np.full(n, -1, np.int64)
        self.sent = np.zeros(n)  # bytes posted so far
        self.sizes: dict[int, list[float]] = {}  # message sizes, in posting order
        self.pending = np.zeros(n, np.int64)  # messages not yet arrived
        self.posted_at = np.full(n, np.nan)
        self.prefilled_at = np.full(n, np.nan)
        self.records: list[tuple] = []

    def deliver(self, r: int) -> None:
        """Request ``r`` enters the run: its decode GPU, then the prefill GPU's queue."""
        req = self.run.req
        home = req.choose_home(r)
        req.home[r] = home
        req.inbound[home] += 1
        load = [len(req.queue[g]) + len(req.sched[g]) for g in self.prefill_gpus]
        g = self.prefill_gpus[int(np.argmin(load))]
        self.prefill_of[r] = g
        req.queue[g].append(r)
        req.wake_up(g)

    def computed(self, g: int, chunks: list[tuple[int, int]], layers: int) -> None:
        """Prefill GPU ``g``'s step computed ``chunks`` ((request, tokens)) for ``layers`` layers
        (of a layer slot): post their KV (layer-wise only)."""
        if not self.layerwise:
            return
        for r, tokens in chunks:
            self._post(g, r, tokens * self.run.arch.kv_bytes_per_token * layers)

    def _post(self, g: int, r: int, nbytes: float) -> None:
        if nbytes <= 0:
            return
        run = self.run
        if np.isnan(self.posted_at[r]):
            self.posted_at[r] = run.env.now
        self.sent[r] += nbytes
        self.sizes.setdefault(r, []).append(nbytes)
        self.pending[r] += 1
        self.engine.send(run.names[g], run.names[int(run.req.home[r])], nbytes,
                         lambda _rec, r=r: self._arrived(r))

    def prefilled(self, g: int, r: int, tokens: int) -> None:
        """``r``'s prompt is computed on prefill GPU ``g`` (``tokens`` computed in all): its new
        blocks are placed on its decode GPU and it leaves the prefill scheduler, keeping its
        KV until the transfer is done; without layer-wise posting its KV is posted now."""
        run = self.run
        req = run.req
        req.place_computed(int(req.home[r]), r)
        req.sched[g].detach(r)
        self.prefilled_at[r] = run.env.now
        if not self.layerwise:
            self._post(g, r, tokens * run.arch.kv_bytes_per_token * run.arch.layers)
        if self.pending[r] == 0:
            self._handoff(r)

    def _arrived(self, r: int) -> None:
        self.pending[r] -= 1
        if self.pending[r] == 0 and not np.isnan(self.prefilled_at[r]):
            self._handoff(r)

    def _handoff(self, r: int) -> None:
        """All of ``r``'s KV is on its decode GPU: release it on the prefill GPU and queue it."""
        run = self.run
        req = run.req
        g = int(self.prefill_of[r])
        home = int(req.home[r])
        req.sched[g].kv.release(r)
        req.inbound[home] -= 1
        now = run.env.now
        sizes = self.sizes.pop(r, [])
        src, dst = run.names[g], run.names[home]
        cf = transfer_time(sizes, self.engine.bandwidth, self.engine.overhead_time,
                           lambda b: run.cm.message_time(src, dst, b)) if sizes else 0.0
        start = self.posted_at[r] if sizes else now
        self.records.append((int(req.rid[r]), src, dst, float(self.sent[r]), len(sizes),
                             float(start), float(self.prefilled_at[r]), now,
                             now - float(start), cf))
        req.queue[home].append(r)
        req.wake_up(home)  # a request to take
        req.wake_up(g)  # room again, for a prompt that did not fit there
