"""The closed-form cost of one round: route the query, fetch the cache, or recompute locally.

A **round** is one layer's exchange of ``B`` queries living on a *home* GPU with the ``K`` selected
blocks (``block_tokens`` tokens each, ``n = K·block_tokens`` tokens per query) that live on an
*owner* GPU. Every option is a chain of five phases (probe, transfer, compute, ret, merge):
:mod:`simulator.costmodel.phases` holds the record (:class:`Phases`) and each option's formula;
:class:`CostModel` prices the building blocks they are composed of and answers the questions
asked of them (an option's phases, the cheapest, the crossovers).

Notation. ``msg(a→b, x) = o + L + x / (η·W)`` is one message of ``x`` bytes from ``a`` to ``b``:
``o`` the stack's per-message overhead (``StackSpec.overhead_time(inter_node)``), ``L`` the path's
summed latency, ``W`` its bottleneck line rate, ``η`` the stack's efficiency
(``StackSpec.efficiency(inter_node)``) — the same pieces as ``Fabric.message_time``; the path is
the deterministic one of :mod:`simulator.network.paths`. ``fixed(a→b) = o + L``; ``wire(a→b, x) =
x/(η·W)``. A message from a GPU to itself costs 0. ``q``, ``r``: query and return (output + LSE)
bytes per query for ``H`` heads; ``kv``: KV bytes per token per layer; ``R`` ≥ 1 the uses of a
fetched block (reuse amortizes a fetch). Kernel times are :class:`simulator.gpu.KernelModel`'s on
the GPU named by the node's ``gpu`` attribute.

**route** sends the query to the owner and its partial results back; **fetch** pulls the blocks
(or copies them from the host tier) and gathers or splices them at home; **local** recomputes
them at home by prefill. Each merges two partials at home by their LSE. The phase-by-phase
formulas: :mod:`simulator.costmodel.phases`.

Batched: the B queries share one message each way (route pays ``fixed`` once per direction).
Every term is affine in B with a non-negative intercept, or a roofline ``λ + max(αB, βB)``, so a
batch never costs more per query than B single rounds. A per-token figure across all layers —
what a decode step pays layer after layer — is ``total × layers`` (:meth:`CostModel.per_token`).

**Crossovers** — where route and fetch cost the same over blocks, bandwidth or probe latency —
are solved in closed form by :meth:`CostModel.crossover` (:mod:`simulator.costmodel.crossover`).

What the formula leaves out: contention and fair sharing of links (the Fabric simulates them),
queueing for a busy compute stream, overlap of phases across layers or with other work, the
indexer of sparse models (the same for all options), and the home's own partial attention (the
same for all options).
"""

from __future__ import annotations

import networkx as nx

from simulator import hardware
from simulator.costmodel.crossover import CrossoverSearch
from simulator.costmodel.phases import (
    Comparison,
    Phases,
    fetch_phases,
    local_phases,
    route_phases,
)
from simulator.errors import UserError
from simulator.gpu.copyengines import host_copy_time
from simulator.gpu.kernels import KernelModel, Roofline
from simulator.gpu.profiled import default_kernels
from simulator.hardware import GPUSpec, StackSpec
from simulator.models import Architecture
from simulator.models import model as lookup_model
from simulator.network.paths import PathCache, PathInfo

OPTIONS: tuple[str, ...] = ("route", "fetch", "local")
LAYOUTS: tuple[str, ...] = ("scattered", "contiguous")

#: Bytes naming one block in a fetch request (a 64-bit block id).
REQUEST_BYTES_PER_BLOCK = 8.0
#: Partial results merged at home: home's own partial and the owner's.
PARTIALS = 2


class CostModel:
    """Closed-form route / fetch / local costs on a topology (see the module docstring).

    Args:
        model: an :class:`Architecture` or a catalog name (``"deepseek-v3.2"`` …).
        topology: the cluster graph (GPU nodes carry a ``gpu`` catalog name).
        stack: network stack preset name or :class:`StackSpec`.
        kernels: kernel-time coefficients (defaults if None).
        block_tokens: tokens per KV block.
        layout: ``"scattered"`` (gather) or ``"contiguous"`` (splice) fetched blocks; default
            scattered for sparse-selection models, contiguous otherwise.
        kv_dtype: override the model's KV layout (``"bf16"`` or ``"fp8"``).
        instance_gpus: GPUs of the model-parallel instance the home is a rank of (the
            experts, or a dense model's weights, spread over them); ``local``'s recompute is
            the home's share of the instance's prefill with every GPU recomputing as much.
        default_gpu: catalog GPU for nodes without a ``gpu`` attribute.
        ecmp: spread equal-cost paths by hash (as the Fabric may).
        bandwidth: if set, every path's line rate [B/s] (for what-if and crossovers).
        message_fixed_time: if set, every message's overhead + latency [s].
    """

    def __init__(self, model: str | Architecture, topology: nx.DiGraph,
                 stack: str | StackSpec = "ideal", *, kernels: KernelModel | None = None,
                 block_tokens: int = 64, layout: str | None = None, kv_dtype: str | None = None,
                 instance_gpus: int = 8, default_gpu: str = "H100", ecmp: bool = False,
                 bandwidth: float | None = None,
                 message_fixed_time: float | None = None) -> None:
        arch = lookup_model(model)
        self.model: Architecture = arch.with_kv_dtype(kv_dtype) if kv_dtype else arch
        self.topology = topology
        self.stack: StackSpec = hardware.stack(stack)
        self.kernels = kernels if kernels is not None else default_kernels()
        self.host_copies = host_copy_time()
        if not block_tokens >= 1:
            raise UserError(f"block_tokens={block_tokens}: give a positive number of tokens")
        self.block_tokens = block_tokens
        if layout is None:
            layout = "scattered" if self.model.sparse else "contiguous"
        if layout not in LAYOUTS:
            raise UserError(f"layout {layout!r}: give one of {', '.join(LAYOUTS)}")
        self.layout = layout
        if not instance_gpus >= 1:
            raise UserError(f"instance_gpus={instance_gpus}: give at least 1")
        self.instance_gpus = int(instance_gpus)
        self.default_gpu = default_gpu
        self.ecmp = ecmp
        if bandwidth is not None and not bandwidth > 0:
            raise UserError(f"bandwidth={bandwidth}: give a positive rate in B/s")
        if message_fixed_time is not None and message_fixed_time < 0:
            raise UserError(f"message_fixed_time={message_fixed_time}: give seconds >= 0")
        self.bandwidth = bandwidth
        self.message_fixed_time_override = message_fixed_time
        self._paths = PathCache(topology, ecmp=ecmp)
        self._specs: dict[str, GPUSpec] = {}
        self._decisions: dict[tuple, str] = {}  # decide() memo: a model's answers never change
        # kernel times per (GPU kind, shape): the kernel model is a pure function of the spec,
        # the model and the shape, and every node of one catalog GPU shares its spec object
        # (kept alive in _specs, so its id names it); a round's closed form on one of 64
        # GPUs of a kind then costs one kernel evaluation instead of 64
        self._attention_memo: dict[tuple, float] = {}
        self._merge_memo: dict[tuple, float] = {}
        self._gather_memo: dict[tuple, float] = {}
        self._crossovers = CrossoverSearch(self)

    def replace(self, **changes) -> CostModel:
        """A copy with some constructor arguments changed (e.g. ``bandwidth=…``)."""
        args = dict(model=self.model, topology=self.topology, stack=self.stack,
                    kernels=self.kernels, block_tokens=self.block_tokens, layout=self.layout,
                    instance_gpus=self.instance_gpus, default_gpu=self.default_gpu,
                    ecmp=self.ecmp, bandwidth=self.bandwidth,
                    message_fixed_time=self.message_fixed_time_override)
        args.update(changes)
        return CostModel(args.pop("model"), args.pop("topology"), **args)

    # -- building blocks (public: the engine replays these) ------------------------------------

    def path(self, src: str, dst: str) -> PathInfo:
        """The deterministic path a message from ``src`` to ``dst`` follows."""
        return self._paths(src, dst)

    @property
    def path_cache(self) -> PathCache:
        """The memoized paths this model reads (:class:`~simulator.network.paths.PathCache`),
        for a :class:`~simulator.network.Fabric` on the same graph to share."""
        return self._paths

    def gpu_spec(self, node: str) -> GPUSpec:
        """The catalog spec of the GPU at topology node ``node``."""
        spec = self._specs.get(node)
        if spec is None:
            if node not in self.topology:
                raise UserError(f"GPU {node!r} is not in the topology")
            spec = hardware.gpu(self.topology.nodes[node].get("gpu", self.default_gpu))
            self._specs[node] = spec
        return spec

    def is_host(self, node: str) -> bool:
        """True if ``node`` is a machine's host DRAM (the KV host tier), not a GPU."""
        return self.topology.nodes[node].get("kind") == "host" if node in self.topology else False

    def host_copy_time(self, gpu: str, host: str, nbytes: float, direction: str = "h2d") -> float:
        """One pinned copy of ``nbytes`` between ``gpu`` and its machine's ``host`` over PCIe
        (:mod:`simulator.gpu.copyengines`: measured, scaled to the path's bottleneck rate) [s]."""
        link = self.path(gpu, host).bottleneck_bandwidth
        return self.host_copies.time(direction, nbytes, link)

    def message_fixed_time(self, src: str, dst: str) -> float:
        """A message's size-independent part, stack overhead + path latency [s] (0 if src==dst)."""
        if src == dst:
            return 0.0
        if self.message_fixed_time_override is not None:
            return self.message_fixed_time_override
        info = self.path(src, dst)
        return self.stack.overhead_time(info.inter_node) + info.latency_time

    def rate(self, src: str, dst: str) -> float:
        """A lone message's rate from ``src`` to ``dst``: efficiency × bottleneck [B/s]."""
        info = self.path(src, dst)
        line = self.bandwidth if self.bandwidth is not None else info.bottleneck_bandwidth
        return self.stack.efficiency(info.inter_node) * line

    def path_rate(self, src: str, dst: str) -> float:
        """Alias of :meth:`rate`: the static (uncontended) rate of a message [B/s]."""
        return self.rate(src, dst)

    def wire_time(self, src: str, dst: str, nbytes: float) -> float:
        """Time the bytes of a lone message occupy the path [s] (0 if src==dst or no bytes)."""
        if src == dst or nbytes <= 0:
            return 0.0
        return nbytes / self.rate(src, dst)

    def message_time(self, src: str, dst: str, nbytes: float) -> float:
        """A lone message: overhead + latency + bytes / (efficiency × bottleneck) [s]."""
        return self.message_fixed_time(src, dst) + self.wire_time(src, dst, nbytes)

    def tokens(self, blocks: float) -> float:
        """Tokens in ``blocks`` blocks."""
        return blocks * self.block_tokens

    def route_payload(self, batch: float = 1, heads: int | None = None) -> tuple[float, float]:
        """(query bytes, return bytes) of a routed round of ``batch`` queries, one layer [B]."""
        return batch * self.model.query_bytes(heads), batch * self.model.return_bytes(heads)

    def fetch_bytes(self, blocks: float, batch: float = 1) -> float:
        """KV bytes a fetch of ``blocks`` blocks per query moves for ``batch`` queries [B]."""
        return batch * self.tokens(blocks) * self.model.kv_bytes_per_token

    def request_bytes(self, blocks: float, batch: float = 1) -> float:
        """Bytes of the fetch request naming ``blocks`` blocks for each of ``batch`` queries."""
        return REQUEST_BYTES_PER_BLOCK * blocks * batch

    def attention_roofline(self, node: str, blocks: float, batch: float = 1,
                           heads: int | None = None) -> Roofline:
        """The attention kernel's roofline parts on ``node`` over ``blocks`` blocks per query."""
        return self.kernels.attention_roofline(self.gpu_spec(node), self.model, batch,
                                               self.tokens(blocks), heads)

    def _per_kind(self, memo: dict, node: str, shape: tuple, kernel) -> float:
        """``kernel(spec)`` [s] for ``node``'s GPU spec, memoized in ``memo`` per (GPU kind,
        ``shape``): the kernel model is a pure function of the spec, the model and the shape."""
        spec = self.gpu_spec(node)
        key = (id(spec), *shape)
        t = memo.get(key)
        if t is None:
            t = memo[key] = kernel(spec)
        return t

    def attention_time(self, node: str, blocks: float, batch: float = 1,
                       heads: int | None = None) -> float:
        """Attention of ``batch`` queries over ``blocks`` blocks each, on ``node``, one layer [s]
        (memoized per GPU kind)."""
        return self._per_kind(self._attention_memo, node, (blocks, batch, heads),
                              lambda spec: self.kernels.attention_time(
                                  spec, self.model, batch, self.tokens(blocks), heads))

    def merge_time(self, node: str, batch: float = 1, heads: int | None = None) -> float:
        """LSE merge of the 2 partials of ``batch`` queries on ``node``, one layer [s]
        (memoized per GPU kind)."""
        return self._per_kind(self._merge_memo, node, (batch, heads),
                              lambda spec: self.kernels.merge_time(spec, self.model, batch,
                                                                   PARTIALS, heads))

    def install_time(self, node: str, blocks: float, batch: float = 1) -> float:
        """Gather (scattered) or splice (contiguous) of fetched blocks on ``node``, one layer [s]
        (a gather memoized per GPU kind)."""
        if blocks <= 0 or batch <= 0:
            return 0.0
        if self.layout == "scattered":
            return self._per_kind(self._gather_memo, node, (blocks, batch),
                                  lambda spec: self.kernels.gather_time(
                                      spec, self.fetch_bytes(blocks, batch)))
        return self.kernels.splice_time_per_layer(self.model, batch)

    def recompute_time(self, node: str, blocks: float, batch: float = 1) -> float:
        """One layer's share of recomputing ``blocks`` blocks per query by prefill on ``node``."""
        g = self.instance_gpus  # every GPU of the instance recomputes as much as this one
        total = self.kernels.prefill_time(self.gpu_spec(node), self.model, self.tokens(blocks),
                                          batch * g, gpus=g)
        return total / self.model.layers

    def bulk_messages(self, option: str, src: str, dst: str, blocks: float, batch: float = 1,
                      heads: int | None = None,
                      reuse: float = 1.0) -> list[tuple[str, str, float]]:
        """The messages ``(from, to, bytes)`` of one round of ``option``, in order.

        Bytes of a fetch are divided by ``reuse``, as its phases are (so re-pricing them at a
        live fair share stays consistent with the closed form); ``local`` sends none.
        """
        if option == "route":
            q, r = self.route_payload(batch, heads)
            return [(src, dst, q), (dst, src, r)]
        if option == "fetch":
            if blocks <= 0 or self.is_host(dst):  # a host read is a DMA copy, no message
                return []
            return [(src, dst, self.request_bytes(blocks, batch) / reuse),
                    (dst, src, self.fetch_bytes(blocks, batch) / reuse)]
        if option == "local":
            return []
        raise UserError(f"option {option!r}: give one of {', '.join(OPTIONS)}")

    # -- the three options (their formulas: simulator/costmodel/phases.py) -----------------

    def route(self, src: str, dst: str, blocks: float, batch: float = 1,
              heads: int | None = None, reuse: float = 1.0) -> Phases:
        """Send ``batch`` queries from home ``src`` to owner ``dst`` holding ``blocks`` blocks each.

        ``reuse`` is accepted for a uniform signature; routed results are not reusable.
        """
        return route_phases(self, src, dst, blocks, batch, heads, reuse)

    def fetch(self, src: str, dst: str, blocks: float, batch: float = 1,
              heads: int | None = None, reuse: float = 1.0) -> Phases:
        """Pull ``blocks`` blocks per query from owner ``dst`` to home ``src``; each used ``reuse``×."""
        return fetch_phases(self, src, dst, blocks, batch, heads, reuse)

    def local(self, src: str, dst: str, blocks: float, batch: float = 1,
              heads: int | None = None, reuse: float = 1.0) -> Phases:
        """Recompute the ``blocks`` blocks per query on home ``src`` (``dst`` is not contacted)."""
        return local_phases(self, src, dst, blocks, batch, heads, reuse)

    def option(self, name: str, src: str, dst: str, blocks: float, batch: float = 1,
               heads: int | None = None, reuse: float = 1.0) -> Phases:
        """The phases of option ``name`` (one of :data:`OPTIONS`)."""
        if name not in OPTIONS:
            raise UserError(f"option {name!r}: give one of {', '.join(OPTIONS)}")
        return getattr(self, name)(src, dst, blocks, batch, heads, reuse)

    def compare(self, src: str, dst: str, blocks: float, batch: float = 1,
                heads: int | None = None, reuse: float = 1.0,
                options: tuple[str, ...] = OPTIONS) -> Comparison:
        """All three options, the cheapest among ``options`` (ties: the earlier in
        :data:`OPTIONS`) and its margin over the next-cheapest of ``options`` [s]."""
        phases = {name: self.option(name, src, dst, blocks, batch, heads, reuse)
                  for name in OPTIONS}
        ranked = sorted((n for n in OPTIONS if n in options),
                        key=lambda n: (phases[n].total, OPTIONS.index(n)))
        if not ranked:
            raise UserError(f"options {options!r}: give at least one of {', '.join(OPTIONS)}")
        margin = phases[ranked[1]].total - phases[ranked[0]].total if len(ranked) > 1 else 0.0
        return Comparison(phases["route"], phases["fetch"], phases["local"], ranked[0], margin)

    def decide(self, src: str, dst: str, blocks: float, batch: float = 1,
               heads: int | None = None, reuse: float = 1.0,
               options: tuple[str, ...] = OPTIONS) -> str:
        """The cheapest option: ``"route"``, ``"fetch"`` or ``"local"`` (memoized)."""
        key = (src, dst, blocks, batch, heads, reuse, options)
        got = self._decisions.get(key)
        if got is None:
            got = self._decisions[key] = self.compare(src, dst, blocks, batch, heads, reuse,
                                                      options).decision
        return got

    def crossover(self, src: str, dst: str, over: str = "blocks", *,
                  blocks: float | None = None, batch: float = 1, heads: int | None = None,
                  reuse: float = 1.0) -> float | None:
        """Where route and fetch cost the same, in closed form; None if nowhere: when one
        option wins at every value (route at every block count, say — DeepSeek-V3.2 across two
        DGX H100 nodes with the measured H100 profile and ``reuse=1``).

        ``over="blocks"``: the number of selected blocks per query (> 0); ``"bandwidth"``: the
        line rate [B/s] of every path (``blocks`` required); ``"probe"``: every message's
        overhead + latency [s] (``blocks`` required). Formulas in
        :mod:`simulator.costmodel.crossover`.
        """
        return self._crossovers.find(src, dst, over, blocks=blocks, batch=batch, heads=heads,
                                     reuse=reuse)

    def per_token(self, phases: Phases) -> Phases:
        """A one-layer round's phases across all layers, as a decode step pays them [s]."""
        return phases.scale(self.model.layers)
