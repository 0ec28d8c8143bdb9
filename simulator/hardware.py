"""Hardware catalog: GPUs, links and endpoint network stacks as small frozen spec dataclasses.

Every number carries its source (see ../shared/REFERENCE.md). Specs are pure data in SI units;
models that *use* them (kernel times in ``gpu.py``, flows in ``network.py``, the closed form in
``costmodel.py``) live elsewhere.

Per-hop latencies of links are not published by vendors in a comparable way; the values here are
assumptions of the right order (hundreds of nanoseconds per hop) and are kept small on purpose.
What users can check — the end-to-end small-message time of a stack — is fitted exactly: a stack's
per-message overhead is the measured one-way time minus the latency of the path it was measured on
(see :data:`STACKS`).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.errors import UserError
from simulator.units import GB, PFLOPS, TFLOPS, GBps, Gbps, TBps, us


class UnknownSpecError(UserError):
    """A GPU, link or stack name that is not in the catalog."""


@dataclass(frozen=True)
class GPUSpec:
    """One GPU model.

    Attributes:
        name: catalog name, e.g. ``"H100"``.
        hbm_bytes: HBM capacity [B].
        hbm_bandwidth: peak HBM bandwidth [B/s].
        peak_flops: dense BF16 tensor throughput [FLOP/s].
        nvlink_bandwidth: NVLink bandwidth per GPU, each way [B/s].
        price_per_hour: rental price used for equal-cost comparisons [$/h], or None if unknown.
    """

    name: str
    hbm_bytes: float
    hbm_bandwidth: float
    peak_flops: float
    nvlink_bandwidth: float
    price_per_hour: float | None = None

    def __post_init__(self) -> None:
        for field in ("hbm_bytes", "hbm_bandwidth", "peak_flops", "nvlink_bandwidth"):
            if not getattr(self, field) > 0:
                raise ValueError(f"GPUSpec {self.name!r}: {field} must be > 0")


@dataclass(frozen=True)
class LinkSpec:
    """One kind of link (one direction of a full-duplex link).

    Attributes:
        name: catalog name, e.g. ``"nvlink4"``.
        kind: one of :data:`LINK_KINDS`.
        bandwidth: line rate each way [B/s].
        latency: per-hop latency [s] (assumed; see the module docstring).
    """

    name: str
    kind: str
    bandwidth: float
    latency: float

    def __post_init__(self) -> None:
        if self.kind not in LINK_KINDS:
            raise ValueError(f"LinkSpec {self.name!r}: kind {self.kind!r} not in {LINK_KINDS}")
        if not self.bandwidth > 0:
            raise ValueError(f"LinkSpec {self.name!r}: bandwidth must be > 0")
        if self.latency < 0:
            raise ValueError(f"LinkSpec {self.name!r}: latency must be >= 0")


@dataclass(frozen=True)
class StackSpec:
    """Endpoint network software: what a message pays besides the wire.

    A message between two GPUs costs ``overhead + path latency + bytes / rate`` where ``rate`` is
    at most ``efficiency × bottleneck line rate`` (and its max-min fair share under contention).
    Messages whose path crosses a NIC use the ``inter_node_*`` fields, others the
    ``intra_node_*`` fields.

    Attributes:
        name: preset name.
        inter_node_overhead_time: per-message endpoint overhead across nodes [s].
        intra_node_overhead_time: per-message endpoint overhead within a node [s].
        inter_node_efficiency: achievable fraction of the line rate across nodes (0, 1].
        intra_node_efficiency: achievable fraction of the line rate within a node (0, 1].
    """

    name: str
    inter_node_overhead_time: float = 0.0
    intra_node_overhead_time: float = 0.0
    inter_node_efficiency: float = 1.0
    intra_node_efficiency: float = 1.0

    def __post_init__(self) -> None:
        for field in ("inter_node_overhead_time", "intra_node_overhead_time"):
            if getattr(self, field) < 0:
                raise ValueError(f"StackSpec {self.name!r}: {field} must be >= 0")
        for field in ("inter_node_efficiency", "intra_node_efficiency"):
            if not 0 < getattr(self, field) <= 1:
                raise ValueError(f"StackSpec {self.name!r}: {field} must be in (0, 1]")

    def overhead_time(self, inter_node: bool) -> float:
        """Per-message endpoint overhead [s] for a path that does (not) cross a NIC."""
        return self.inter_node_overhead_time if inter_node else self.intra_node_overhead_time

    def efficiency(self, inter_node: bool) -> float:
        """Achievable fraction of the bottleneck line rate for such a path."""
        return self.inter_node_efficiency if inter_node else self.intra_node_efficiency


# -- GPUs ------------------------------------------------------------------------------------
# Lamina (arXiv 2405.01814) Table 1 and NVIDIA datasheets, as collected in REFERENCE.md.
GPUS: dict[str, GPUSpec] = {
    # H100 SXM: 80 GB HBM3, 3.35 TB/s, 989 TFLOP/s dense BF16, NVLink4 450 GB/s each way;
    # $11.06/h as priced by Lamina Table 1.
    "H100": GPUSpec("H100", GB(80), TBps(3.35), TFLOPS(989), GBps(450), 11.06),
    # H20: 96 GB, 4.0 TB/s, 148 TFLOP/s, 450 GB/s NVLink; $4.63/h (Lamina's estimate, Table 1).
    "H20": GPUSpec("H20", GB(96), TBps(4.0), TFLOPS(148), GBps(450), 4.63),
    # H200: 141 GB HBM3e, 4.8 TB/s, 989 TFLOP/s, 450 GB/s (NVIDIA datasheet). No price used.
    "H200": GPUSpec("H200", GB(141), TBps(4.8), TFLOPS(989), GBps(450)),
    # A100 SXM 80GB: 2.04 TB/s, 312 TFLOP/s, NVLink3 300 GB/s (NVIDIA datasheet).
    "A100": GPUSpec("A100", GB(80), TBps(2.04), TFLOPS(312), GBps(300)),
    # B200: 192 GB, 8 TB/s, 2.25 PFLOP/s dense BF16, NVLink5 900 GB/s (NVIDIA datasheet).
    "B200": GPUSpec("B200", GB(192), TBps(8.0), PFLOPS(2.25), GBps(900)),
}

# -- links -----------------------------------------------------------------------------------
LINK_KINDS: tuple[str, ...] = ("nvlink", "pcie", "ib", "roce", "ethernet")

#: The lowest rate a topology file's link or a ``[deployment.transfer]`` table may give [B/s].
#: No link moves less than a byte per second, and a rate far below it (1e-300, a denormal) makes
#: a message's time overflow to inf (a 68 MB transfer at 1e-300 B/s: 7e307 s, and inf once
#: plotted in µs); at >= 1 B/s any message under 1e300 B keeps a finite time.
MIN_BANDWIDTH = 1.0

# Per-hop latencies (assumed, see module docstring): NVLink port to NVSwitch 0.25 µs; a PCIe hop
# 0.3 µs; an InfiniBand hop (cable + switch port, NDR switches are ~0.1–0.2 µs) 0.2 µs; a RoCE hop
# 0.5 µs. A GPU→PCIe switch→NIC→switch→NIC→PCIe switch→GPU path then totals 1.6 µs (IB), below
# the ≤ 2.5 µs raw RDMA threshold of Mellanox ngc_multinode_perf (REFERENCE.md).
LINKS: dict[str, LinkSpec] = {
    "nvlink3": LinkSpec("nvlink3", "nvlink", GBps(300), us(0.25)),  # A100, NVIDIA datasheet
    "nvlink4": LinkSpec("nvlink4", "nvlink", GBps(450), us(0.25)),  # H100/H200/H20 datasheets
    "nvlink5": LinkSpec("nvlink5", "nvlink", GBps(900), us(0.25)),  # B200 datasheet
    # H800 SXM (the H100 with NVLink cut to 400 GB/s both ways, NVIDIA H800 datasheet): 200 GB/s
    # each way; DeepEP measures "~160 GB/s NVLink maximum bandwidth" on it (DeepEP README).
    "nvlink_h800": LinkSpec("nvlink_h800", "nvlink", GBps(200), us(0.25)),
    "pcie4": LinkSpec("pcie4", "pcie", GBps(32), us(0.3)),  # PCIe Gen4 x16 ~32 GB/s (PCI-SIG)
    "pcie5": LinkSpec("pcie5", "pcie", GBps(64), us(0.3)),  # PCIe Gen5 x16 ~64 GB/s (PCI-SIG)
    "ib_hdr": LinkSpec("ib_hdr", "ib", Gbps(200), us(0.2)),  # 200 Gb/s = 25 GB/s (SuperPOD docs)
    "ib_ndr": LinkSpec("ib_ndr", "ib", Gbps(400), us(0.2)),  # 400 Gb/s = 50 GB/s
    "ib_xdr": LinkSpec("ib_xdr", "ib", Gbps(800), us(0.2)),  # 800 Gb/s = 100 GB/s
    "roce400": LinkSpec("roce400", "roce", Gbps(400), us(0.5)),  # ConnectX-7 400G (Lamina §6)
    "eth100": LinkSpec("eth100", "ethernet", Gbps(100), us(1.0)),  # generic 100 GbE
}

# -- stacks ----------------------------------------------------------------------------------
# How a measured round trip becomes a per-message overhead. Lamina §6.3 measured GPU↔GPU small
# message round trips across nodes over 400G RoCE (GPU → PCIe switch → NIC → switch → NIC → PCIe
# switch → GPU): 33.0 µs with GPU-initiated RDMA (IBGDA-like), 66.6 µs with NCCL. One message is
# half a round trip; the overhead is that minus the modelled path latency, so that the simulated
# one-way time of a small message on that path equals the measurement:
#     overhead = RTT / 2 − L_ref,   L_ref = 4 × 0.3 µs (PCIe) + 2 × 0.5 µs (RoCE) = 2.2 µs.
# Achieved peak rates 45.7 GB/s (IBGDA) and 35.5 GB/s (NCCL) of the 50 GB/s line give the
# efficiencies. Within a node, NCCL send/recv over NVLink costs ~3 µs one way (NVIDIA nccl issue
# #1487); the GPU→NVSwitch→GPU path is 0.5 µs, so the overhead is 2.5 µs. No intra-node figure is
# published for GPU-initiated puts; we assume the same 3 µs (conservative). P2P copies reach
# ~371–377 GB/s of NVLink4's 450 GB/s line (nccl issue #1264): efficiency 374 / 450.
_L_REF_INTER = 4 * LINKS["pcie5"].latency + 2 * LINKS["roce400"].latency
_L_REF_INTRA = 2 * LINKS["nvlink4"].latency
_NVLINK_EFF = 374.0 / 450.0

STACKS: dict[str, StackSpec] = {
    "ideal": StackSpec("ideal"),
    "nccl": StackSpec(
        "nccl",
        inter_node_overhead_time=us(66.6) / 2 - _L_REF_INTER,
        intra_node_overhead_time=us(3.0) - _L_REF_INTRA,
        inter_node_efficiency=35.5 / 50.0,
        intra_node_efficiency=_NVLINK_EFF,
    ),
    "ibgda": StackSpec(
        "ibgda",
        inter_node_overhead_time=us(33.0) / 2 - _L_REF_INTER,
        intra_node_overhead_time=us(3.0) - _L_REF_INTRA,
        inter_node_efficiency=45.7 / 50.0,
        intra_node_efficiency=_NVLINK_EFF,
    ),
}


def _lookup(catalog: dict, name: str, what: str):
    try:
        return catalog[name]
    except KeyError:
        known = ", ".join(sorted(catalog))
        raise UnknownSpecError(f"unknown {what} {name!r}; known: {known}") from None


def gpu(name: str) -> GPUSpec:
    """The catalog GPU called ``name`` (case-insensitive); a clear error if unknown."""
    upper = {k.upper(): v for k, v in GPUS.items()}
    if name.upper() in upper:
        return upper[name.upper()]
    return _lookup(GPUS, name, "GPU")


def link(name: str) -> LinkSpec:
    """The catalog link called ``name``; a clear error if unknown."""
    return _lookup(LINKS, name, "link")


def stack(spec: str | StackSpec) -> StackSpec:
    """A stack preset by name, or ``spec`` itself if it already is a :class:`StackSpec`."""
    if isinstance(spec, StackSpec):
        return spec
    return _lookup(STACKS, spec, "network stack")
