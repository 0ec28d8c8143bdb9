"""A round's phases: the record of one option's cost, and each option's formula.

Each option is a chain of five phases, replayed in this order by the engine (messages on the
fabric, kernels on a GPU's compute stream)::

    Phases(probe, transfer, compute, ret, merge);   total = probe + transfer + compute + ret + merge

:func:`route_phases`, :func:`fetch_phases` and :func:`local_phases` compose them from the
building blocks a :class:`~simulator.costmodel.closed_form.CostModel` prices (messages on a
path, kernels on a GPU kind; notation of :mod:`simulator.costmodel.closed_form`), which asks
them for ``cm.route``, ``cm.fetch`` and ``cm.local``:

**route** (query travels to the cache):

- probe    = fixed(home→owner)                      — the query message's overhead + latency
- transfer = wire(home→owner, B·q)                  — its bytes (probe + transfer = one message)
- compute  = attention(owner; B queries × n tokens, H heads)
- ret      = msg(owner→home, B·r)                   — the partial results, one message
- merge    = LSE merge at home of P = 2 partials (home's own + the owner's)

**fetch** (cache travels to the query):

- probe    = msg(home→owner, 8·B·K) / R             — the request naming the blocks (8 B ids)
- transfer = msg(owner→home, B·n·kv) / R            — the blocks, one message
- compute  = attention(home; B × n, H) + gather(home; B·n·kv)/R   (scattered layout), or
             + B·splice_time/layers / R (contiguous layout: one chunk per query)
- ret      = 0
- merge    = LSE merge at home of P = 2 partials

From a machine's host DRAM (the KV host tier) a fetch is no message but one host→device copy on
the home's copy engine: probe = 0, transfer = copy(B·n·kv) / R, the measured pinned copy time
over PCIe (:mod:`simulator.gpu.copyengines`).

**local** (no fabric; recompute the missing KV at home):

- probe = transfer = ret = 0
- compute  = prefill(home; n tokens × B sequences) / layers / R + attention(home; B × n, H),
             the home's share of its ``instance_gpus``-GPU instance's prefill when every GPU
             of it recomputes as much (B · instance_gpus sequences over instance_gpus GPUs:
             the home's own tokens through the attention side, its experts' share of the
             rows; the engines' rule, :mod:`simulator.engine.stepcosts`)
- merge    = LSE merge at home of P = 2 partials

:class:`Comparison` holds all three options of one round and the predicate's answer
(``cm.compare``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

from simulator.costmodel.crossover import check_round


@dataclass(frozen=True)
class Phases:
    """The five phases of one round [s], in the order they happen."""

    probe: float
    transfer: float
    compute: float
    ret: float
    merge: float

    @functools.cached_property
    def total(self) -> float:
        """Sum of the phases [s] (computed once: the fast engine records it with every round of
        a memoized closed form)."""
        return self.probe + self.transfer + self.compute + self.ret + self.merge

    def scale(self, factor: float) -> Phases:
        """Every phase multiplied by ``factor`` (e.g. the layer count)."""
        return Phases(*(getattr(self, f.name) * factor for f in fields(self)))

    def as_dict(self) -> dict[str, float]:
        """JSON-ready phases in seconds, ``ret`` spelled ``return``, plus ``total``."""
        return {"probe": self.probe, "transfer": self.transfer, "compute": self.compute,
                "return": self.ret, "merge": self.merge, "total": self.total}


@dataclass(frozen=True)
class Comparison:
    """All three options for one round, the cheapest, and its margin over the runner-up [s]."""

    route: Phases
    fetch: Phases
    local: Phases
    decision: str
    margin_time: float

    def option(self, name: str) -> Phases:
        """The phases of option ``name``."""
        return getattr(self, name)


def route_phases(cm, src: str, dst: str, blocks: float, batch: float = 1,
                 heads: int | None = None, reuse: float = 1.0) -> Phases:
    """``cm``'s route of ``batch`` queries from home ``src`` to owner ``dst`` holding ``blocks``
    blocks each (``reuse`` checked only: routed results are not reusable)."""
    check_round(blocks, batch, reuse)
    q, r = cm.route_payload(batch, heads)
    return Phases(
        probe=cm.message_fixed_time(src, dst),
        transfer=cm.wire_time(src, dst, q),
        compute=cm.attention_time(dst, blocks, batch, heads),
        ret=cm.message_time(dst, src, r),
        merge=cm.merge_time(src, batch, heads),
    )


def fetch_phases(cm, src: str, dst: str, blocks: float, batch: float = 1,
                 heads: int | None = None, reuse: float = 1.0) -> Phases:
    """``cm``'s fetch of ``blocks`` blocks per query from owner ``dst`` to home ``src``, each
    used ``reuse``×."""
    check_round(blocks, batch, reuse)
    if blocks == 0:
        return Phases(0.0, 0.0, 0.0, 0.0, cm.merge_time(src, batch, heads))
    if cm.is_host(dst):  # host DRAM: one host→device copy on the home's copy engine
        return Phases(
            probe=0.0,
            transfer=cm.host_copy_time(src, dst, cm.fetch_bytes(blocks, batch)) / reuse,
            compute=cm.attention_time(src, blocks, batch, heads)
            + cm.install_time(src, blocks, batch) / reuse,
            ret=0.0,
            merge=cm.merge_time(src, batch, heads),
        )
    return Phases(
        probe=cm.message_time(src, dst, cm.request_bytes(blocks, batch)) / reuse,
        transfer=cm.message_time(dst, src, cm.fetch_bytes(blocks, batch)) / reuse,
        compute=cm.attention_time(src, blocks, batch, heads)
        + cm.install_time(src, blocks, batch) / reuse,
        ret=0.0,
        merge=cm.merge_time(src, batch, heads),
    )


def local_phases(cm, src: str, dst: str, blocks: float, batch: float = 1,
                 heads: int | None = None, reuse: float = 1.0) -> Phases:
    """``cm``'s recompute of the ``blocks`` blocks per query on home ``src`` (``dst`` is not
    contacted, but must exist)."""
    check_round(blocks, batch, reuse)
    cm.gpu_spec(dst)  # the owner must exist, as for the other options
    return Phases(
        probe=0.0, transfer=0.0,
        compute=cm.recompute_time(src, blocks, batch) / reuse
        + cm.attention_time(src, blocks, batch, heads),
        ret=0.0,
        merge=cm.merge_time(src, batch, heads),
    )
