"""Prefill→decode KV transfer through a transfer engine (Mooncake Transfer Engine): closed form.

A request prefilled on a prefill instance hands its KV to its decode instance over RDMA. The
transfer engine posts one message per simulated layer group (layer-wise: as each group's KV is
computed) or one for the whole request; on each source NIC it is a FIFO *pacer*: a message is
released ``overhead`` after the previous one left the engine (or after it is posted, if the
engine is idle), and the engine then stays busy for ``bytes / bandwidth`` — the rate the engine
sustains per NIC, which Mooncake publishes (190 GB/s over 8 × 400 Gb/s NICs: 23.75 GB/s per
NIC; :mod:`simulator.deployment.spec`). Released messages travel on the Fabric like any other
(stack overhead, path latency, max-min share of the links), tagged ``pd_transfer``.

Alone — ``n`` messages of ``b_1 … b_n`` bytes posted at once on an idle engine and idle links —
the last byte arrives at::

    t = Σ_{i<n} (o + b_i / β) + o + msg(b_n)        msg(b) = stack overhead + latency + b / rate

exactly, as long as the engine's rate β is at most the path's (consecutive messages then never
overlap on the wire); :func:`transfer_time`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def transfer_time(sizes: Sequence[float], bandwidth: float, overhead_time: float,
                  message_time: Callable[[float], float]) -> float:
    """Time from posting ``sizes`` [B] at once to the last byte's arrival, alone [s].

    Args:
        sizes: the messages' bytes, in posting order.
        bandwidth: the engine's rate per NIC [B/s].
        overhead_time: its posting cost per message [s].
        message_time: one message's time on the path, ``message_time(bytes)`` [s] (e.g.
            ``CostModel.message_time(src, dst, ·)``).
    """
    sizes = [float(b) for b in sizes]
    if not sizes:
        return 0.0
    paced = sum(overhead_time + b / bandwidth for b in sizes[:-1])
    return paced + overhead_time + message_time(sizes[-1])


def kv_bytes(arch, tokens: float, layers: float = 1.0) -> float:
    """KV bytes of ``tokens`` tokens over ``layers`` layers in ``arch``'s cache layout [B]."""
    return float(tokens) * arch.kv_bytes_per_token * float(layers)
