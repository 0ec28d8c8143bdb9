"""DeepEP's all-to-all kernels as kvfabric charges them: bytes on the wire per token, the kernel
overheads of the low-latency and normal modes, and their calibration against DeepEP's tables
(:mod:`simulator.costmodel.alltoall` puts the exchanges on the links).

**DeepEP calibration** (deepseek-ai/DeepEP, ``docs/legacy.md`` — the V1 README tables, H800 with
one CX7 400 Gb/s NIC per GPU, ~160 GB/s NVLink): low-latency kernels, 128 tokens per rank,
hidden 7,168, top-8, FP8 dispatch, BF16 combine — dispatch 77 / 118 / 155 / 173 / 192 / 194 µs
and combine 114 / 195 / 273 / 314 / 369 / 360 µs at EP 8 / 16 / 32 / 64 / 128 / 256. The
kernel overhead of each direction (:func:`low_latency_overheads`) is the mean, over the
internode rows (EP ≥ 16), of the measured time less kvfabric's model of the same setting
(expected NIC load of uniform routing at the ``ibgda`` rate, plus its fixed costs): 17.0 µs
dispatch and 27.3 µs combine; the model then reproduces those rows within 7% (EP 8, all NVLink,
is 22% low: DeepEP's intranode path there is slower than the NVLink rate assumed). Normal
kernels: the same tables give 153 / 158 GB/s (NVLink, EP 8) and 43–58 GB/s (RDMA, EP 16–64)
per rank at 4,096 tokens; the ``ibgda`` rate (45.7 GB/s of 50) lies in that range. Normal mode's
overhead is not published; assumed: the low-latency figures plus
:data:`NORMAL_SYNC_OVERHEAD` for the host synchronization its dispatch needs (DeepEP: "the CPU
will wait for GPU's signal to arrive"). docs/accuracy.md lists these.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from simulator import hardware
from simulator.units import GBps, us

MODES: tuple[str, ...] = ("low_latency", "normal")

#: DeepEP V1 low-latency kernels (deepseek-ai/DeepEP docs/legacy.md, "Low-latency kernels with
#: pure RDMA"): (EP, dispatch latency, combine latency) at 128 tokens per rank, hidden 7168,
#: top-8, FP8 dispatch, BF16 combine, H800 + CX7 400 Gb/s.
DEEPEP_LOW_LATENCY: tuple[tuple[int, float, float], ...] = (
    (8, us(77), us(114)), (16, us(118), us(195)), (32, us(155), us(273)),
    (64, us(173), us(314)), (128, us(192), us(369)), (256, us(194), us(360)))
#: DeepEP V1 normal kernels (same file, "Normal kernels with NVLink and RDMA forwarding"):
#: (kind, EP, dispatch, combine bottleneck bandwidth) at 4096 tokens per batch.
DEEPEP_NORMAL: tuple[tuple[str, int, float, float], ...] = (
    ("nvlink", 8, GBps(153), GBps(158)), ("rdma", 16, GBps(43), GBps(43)),
    ("rdma", 32, GBps(58), GBps(57)), ("rdma", 64, GBps(51), GBps(50)))
DEEPEP_TOKENS = 128
DEEPEP_HIDDEN = 7168
DEEPEP_TOPK = 8
DEEPEP_EXPERTS = 256
#: Normal kernels' host synchronization per dispatch — assumed (not published): 20 µs.
NORMAL_SYNC_OVERHEAD = us(20)
#: Bytes of one fp8-dispatched hidden element plus its share of the per-128-channel fp32 scale.
FP8_BYTES_PER_ELEMENT = 1.0 + 4.0 / 128.0
#: The stack every MoE exchange uses (GPU-initiated: NVSHMEM IBGDA).
EP_STACK = "ibgda"


def dispatch_bytes_per_token(hidden: int, dtype: str = "fp8") -> float:
    """Bytes of one dispatched token: fp8 with a fp32 scale per 128 channels, or bf16 [B]."""
    return hidden * (FP8_BYTES_PER_ELEMENT if dtype == "fp8" else 2.0)


def combine_bytes_per_token(hidden: int, dtype: str = "bf16") -> float:
    """Bytes of one combined result row [B]."""
    return hidden * (1.0 if dtype == "fp8" else 2.0)


@lru_cache(maxsize=1)
def low_latency_overheads() -> tuple[float, float]:
    """(dispatch, combine) kernel overheads of DeepEP's low-latency kernels [s], fitted to
    :data:`DEEPEP_LOW_LATENCY`'s internode rows (see the module docstring)."""
    res = [[], []]
    for ep, disp, comb in DEEPEP_LOW_LATENCY:
        if ep <= 8:
            continue
        for i, (measured, bpt) in enumerate(((disp, dispatch_bytes_per_token(DEEPEP_HIDDEN)),
                                             (comb, combine_bytes_per_token(DEEPEP_HIDDEN)))):
            res[i].append(measured - deepep_model_time(ep, bpt))
    return float(np.mean(res[0])), float(np.mean(res[1]))


def deepep_model_time(ep: int, bytes_per_pick: float, tokens: int = DEEPEP_TOKENS,
                      overhead: float = 0.0) -> float:
    """This module's time for DeepEP's benchmark setting, without the kernel overhead unless
    given: ``ep`` ranks, 8 per node (one 400 Gb/s NIC each, H800 NVLink), ``tokens`` per rank
    picking top-8 of 256 experts uniformly, ``bytes_per_pick`` per (token, expert) — expected
    link loads, ``ibgda`` rates and fixed costs on a DGX-like path [s]."""
    stack = hardware.stack(EP_STACK)
    picks = tokens * DEEPEP_TOPK
    nvl = hardware.LINKS["nvlink_h800"].bandwidth * stack.efficiency(False)
    nic = hardware.LINKS["ib_ndr"].bandwidth * stack.efficiency(True)
    local = min(ep, 8)
    nvl_load = picks * (local - 1) / ep * bytes_per_pick
    nic_load = picks * (ep - local) / ep * bytes_per_pick
    if ep > local:
        lat = 4 * hardware.LINKS["pcie5"].latency + 2 * hardware.LINKS["ib_ndr"].latency
        fixed = stack.overhead_time(True) + lat
    else:
        fixed = stack.overhead_time(False) + 2 * hardware.LINKS["nvlink_h800"].latency
    return overhead + fixed + max(nvl_load / nvl, nic_load / nic)


def mode_overheads(mode: str) -> tuple[float, float]:
    """(dispatch, combine) kernel overheads of DeepEP ``mode`` [s] (see the module docstring)."""
    d, c = low_latency_overheads()
    return (d, c) if mode == "low_latency" else (d + NORMAL_SYNC_OVERHEAD, c)
