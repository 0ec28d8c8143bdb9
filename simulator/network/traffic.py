"""Traffic classes: what each flow on the Fabric is for, so link records can say who used a link.

Every :meth:`~simulator.network.Fabric.transfer` carries a small integer *tag* naming its class
(default :data:`OTHER`). The tag costs one attribute on the flow and one list addition when the
flow is sent and when it is delivered — nothing in the max-min filling looks at it — so the
Fabric's hot path stays as fast as untagged (``benchmarks/bench_fabric.py``).

The classes (issue 16):

- ``kv_route`` — a routed query and its partial result (:mod:`simulator.engine.rounds`);
- ``kv_fetch`` — a fetch request and the fetched KV blocks;
- ``moe_dispatch`` / ``moe_combine`` — expert-parallel all-to-all of an MoE layer, tokens out to
  their experts and results back (:mod:`simulator.engine.exchange`);
- ``pd_transfer`` — a request's KV moving from its prefill instance to its decode instance
  (:mod:`simulator.engine.kvtransfer`);
- ``tp_collective`` — tensor-parallel all-reduces on a ring (the pool loops);
- ``other`` — anything untagged (a user's own transfers, the Lamina pools' activations).

How bytes are counted per class: sent (at ``transfer``) and delivered (at the last byte), per
class, in :attr:`Fabric.sent_by_class` / :attr:`Fabric.delivered_by_class`; per link and class
exactly (a flow's bytes cross every link of its route), and over time by spreading each flow's
bytes over the time it moved them (exact for a flow alone on its links; for flows that shared
links, evenly over their shared life — see :mod:`simulator.network.linkstats`).
"""

from __future__ import annotations

from simulator.errors import UserError

#: Traffic classes in tag order (a flow's tag is its index here).
TRAFFIC_CLASSES: tuple[str, ...] = ("other", "kv_route", "kv_fetch", "moe_dispatch",
                                    "moe_combine", "pd_transfer", "tp_collective")
OTHER, KV_ROUTE, KV_FETCH, MOE_DISPATCH, MOE_COMBINE, PD_TRANSFER, TP_COLLECTIVE = range(7)


def tag(name: str) -> int:
    """The tag of traffic class ``name`` (one of :data:`TRAFFIC_CLASSES`)."""
    try:
        return TRAFFIC_CLASSES.index(name)
    except ValueError:
        raise UserError(f"traffic class {name!r}: give one of "
                        f"{', '.join(TRAFFIC_CLASSES)}") from None


def by_class(values) -> dict[str, float]:
    """``{class name: value}`` for the classes with a non-zero value (per-tag list in)."""
    return {TRAFFIC_CLASSES[i]: float(v) for i, v in enumerate(values) if v}
