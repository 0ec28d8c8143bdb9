"""Mixture-of-experts layers under expert parallelism: where the tokens go, what the all-to-all
puts on every link, what every rank computes, and the closed form of one layer alone.

An *EP group* is one instance's ranks (GPUs); each holds ``slots`` routed experts of every MoE
layer (replicas included) and the shared experts. One MoE layer of one step, in the engine's
order (:mod:`simulator.engine.instances` replays it; the fast engine can ask for the same plan):

1. **routing** (:meth:`ExpertParallel.route`): each of a rank's tokens picks ``k`` distinct of
   the ``E`` experts, with probability proportional to the experts' *popularity* (uniform, Zipf
   with a random order of the experts, or a table) — Gumbel top-k sampling, which draws ``k``
   without replacement in proportion to the weights (the Plackett–Luce model) from the run's own
   random stream; a pick of a replicated expert goes to one of its replicas in turn (by token);
2. **dispatch**: the tokens travel to their experts' ranks (:meth:`ExpertParallel.plan` turns
   the picks into bytes per (source, destination) pair); in DeepEP's ``low_latency`` kernels a
   token goes once per picked expert, straight to its rank (NVLink in a node, RDMA across); in
   ``normal`` kernels once per destination rank, and across nodes once per destination node —
   over RDMA to the GPU of the same rail there, which forwards it over NVLink (DeepEP's
   NVLink/RDMA forwarding);
3. **experts**: each rank runs its routed experts as grouped GEMMs at its *own* received rows
   (gate/up, activation, down; only experts with rows stream their weights) — measured kernel
   profiles (:mod:`simulator.gpu.profile`); the shared experts run at the rank's own tokens,
   during the dispatch;
4. **combine**: the results travel back the same way (bf16), and each rank adds them up.

**Large steps** (prefill chunks: hundreds of thousands of tokens per layer) are not routed token
by token: above :data:`PER_TOKEN_LIMIT` tokens, :meth:`ExpertParallel.layer` draws each source
rank's picks per expert slot from a multinomial over the slots' *inclusion* probabilities (the
chance a token's top-k includes the expert, shared among its replicas), and — normal mode —
the tokens that reach each rank and each node from binomials over the chance a token reaches
them; those chances are estimated once per group from :data:`ESTIMATE_TOKENS` tokens routed
one by one. Row counts still sum to tokens × k.

**The all-to-all on the fabric: link loads.** Simulating every pair as its own max-min flow is
out of reach for a 144-rank group (20,592 flows per layer and direction, all on one connected
component). Instead the exchange puts, on every directed link it crosses, one flow carrying the
bytes all its pairs put there (:meth:`ExpertParallel.loads`; paths as the Fabric chooses them),
capped at the GPU-initiated stack's efficiency × the line rate (``ibgda``: DeepEP is
NVSHMEM/IBGDA whatever stack the KV traffic uses). Those flows share links max-min with
everything else on the fabric; the exchange is done when the last of them is. Alone it takes::

    time = overhead(mode) + stack overhead + longest path latency + max over links (load / rate)

— the fluid bound of the pattern, which per-pair max-min fair flows also reach when the bottleneck
links (the NICs) are saturated throughout, as in a balanced all-to-all. The exchange starts when
the last rank is ready (a synchronizing collective: every rank waits for every rank's tokens),
and the next phase when the slowest rank is done, so load imbalance shows as stragglers.

**DeepEP calibration** (deepseek-ai/DeepEP, ``docs/legacy.md`` — the V1 README tables, H800 with
one CX7 400 Gb/s NIC per GPU, ~160 GB/s NVLink): low-latency kernels, 128 tokens per rank,
hidden 7,168, top-8, FP8 dispatch, BF16 combine — dispatch 77 / 118 / 155 / 173 / 192 / 194 µs
and combine 114 / 195 / 273 / 314 / 369 / 360 µs at EP 8 / 16 / 32 / 64 / 128 / 256. The
kernel overhead of each direction (:func:`low_latency_overheads`) is the mean, over the
internode rows (EP ≥ 16), of the measured time less this module's model of the same setting
(expected NIC load of uniform routing at the ``ibgda`` rate, plus its fixed costs): 17.0 µs
dispatch and 27.3 µs combine; the model then reproduces those rows within 7% (EP 8, all NVLink,
is 22% low: DeepEP's intranode path there is slower than the NVLink rate assumed). Normal
kernels: the same tables give 153 / 158 GB/s (NVLink, EP 8) and 43–58 GB/s (RDMA, EP 16–64)
per rank at 4,096 tokens; the ``ibgda`` rate (45.7 GB/s of 50) lies in that range. Normal mode's
overhead is not published; assumed: the low-latency figures plus
:data:`NORMAL_SYNC_OVERHEAD` for the host synchronization its dispatch needs (DeepEP: "the CPU
will wait for GPU's signal to arrive"). docs/accuracy.md lists these.

**EPLB placement** (:func:`place_experts`, after deepseek-ai/eplb: "replicate heavy-loaded
experts and heuristically pack the duplicated experts to GPUs"): each redundant slot goes to the
expert with the highest expected load per replica; replicas are then packed heaviest first onto
the rank with the least expected load that still has a free slot.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from simulator import hardware
from simulator.gpu.layers import decode_ops
from simulator.network.paths import PathInfo
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
#: Layers of more tokens than this are routed in aggregate (see the module docstring).
PER_TOKEN_LIMIT = 16_384
#: Tokens routed one by one to estimate the inclusion probabilities of aggregate routing.
ESTIMATE_TOKENS = 20_000


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


# -- popularity and placement ---------------------------------------------------------------

def popularity(kind, experts: int, rng: np.random.Generator,
               zipf_exponent: float = 1.0) -> np.ndarray:
    """Each expert's probability of being picked (sums to 1): ``"uniform"``, ``"zipf"`` (the
    expert of popularity rank ``i`` ∝ ``1 / i^s``, ranks given to the experts in a random order
    drawn from ``rng``) or a table of weights."""
    if isinstance(kind, str) and kind == "uniform":
        return np.full(experts, 1.0 / experts)
    if isinstance(kind, str) and kind == "zipf":
        w = 1.0 / np.arange(1, experts + 1, dtype=float) ** zipf_exponent
        w = w[rng.permutation(experts).argsort()]  # expert e has popularity rank perm⁻¹(e)
        return w / w.sum()
    w = np.asarray(kind, float)
    return w / w.sum()


def place_experts(probs: np.ndarray, ranks: int, slots: int) -> np.ndarray:
    """EPLB-style placement (see the module docstring): the expert in each of the ``ranks ×
    slots`` slots, shape ``(ranks, slots)``; ``ranks × slots − E`` slots hold replicas."""
    e = len(probs)
    total = ranks * slots
    count = np.ones(e, np.int64)
    for _ in range(total - e):  # each redundant slot to the heaviest expert per replica
        count[int(np.argmax(probs / count))] += 1
    items = np.repeat(np.arange(e), count)
    load = probs[items] / count[items]
    order = np.lexsort((items, -load))  # heaviest first, then by expert id
    out = np.full((ranks, slots), -1, np.int64)
    fill = np.zeros(ranks, np.int64)
    rank_load = np.zeros(ranks)
    for i in order.tolist():
        open_ = fill < slots
        cand = np.flatnonzero(open_)
        r = int(cand[np.argmin(rank_load[cand])])  # least loaded, lowest index on ties
        out[r, fill[r]] = items[i]
        fill[r] += 1
        rank_load[r] += load[i]
    return out


def sample_topk(rng: np.random.Generator, cdf: np.ndarray, tokens: int, k: int) -> np.ndarray:
    """``k`` distinct experts for each of ``tokens`` tokens, (tokens, k): draws in proportion to
    the popularity (cumulative ``cdf``) with the repeats skipped, which is sampling without
    replacement in proportion to the weights (Plackett–Luce); ``2k`` draws per token at a time,
    the few tokens short of ``k`` distinct drawn again."""
    E = len(cdf)
    if k > E:
        raise ValueError(f"top-{k} of {E} experts")
    m = max(2 * k, k + 4)
    out = np.empty((tokens, k), np.int64)
    todo = np.arange(tokens)
    while len(todo):
        u = rng.random((len(todo), m)) * cdf[-1]
        draws = np.minimum(np.searchsorted(cdf, u, side="right"), E - 1)
        order = np.argsort(draws, axis=1, kind="stable")
        sd = np.take_along_axis(draws, order, axis=1)
        first_sorted = np.ones(sd.shape, bool)
        first_sorted[:, 1:] = sd[:, 1:] != sd[:, :-1]
        first = np.zeros(sd.shape, bool)
        np.put_along_axis(first, order, first_sorted, axis=1)
        count = np.cumsum(first, axis=1)
        ok = count[:, -1] >= k
        rows = np.flatnonzero(ok)
        take = first[rows] & (count[rows] <= k)
        out[todo[rows]] = draws[rows][take].reshape(-1, k)
        todo = todo[~ok]
    return out


# -- a layer's plan ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Routing:
    """One MoE layer's routing decisions for one step of an EP group.

    Attributes:
        tokens: tokens of each rank (R,).
        src: the rank of each token (T,).
        expert: the experts each token picked (T, k).
        slot: the expert slot (rank × slots + j) each pick goes to (T, k).
    """

    tokens: np.ndarray
    src: np.ndarray
    expert: np.ndarray
    slot: np.ndarray


@dataclass(frozen=True)
class LayerPlan:
    """What one MoE layer of one step does (see the module docstring).

    Attributes:
        tokens: tokens of each rank (R,).
        rows: (token, expert) rows each rank's experts receive (R,); sums to tokens × k.
        active: experts of each rank that receive rows (R,).
        dispatch: bytes per (source, destination) rank pair, dispatch (R, R).
        combine: bytes per (source, destination) rank pair, combine (R, R).
        expert_time: each rank's routed-expert kernels [s] (R,).
    """

    tokens: np.ndarray
    rows: np.ndarray
    active: np.ndarray
    dispatch: np.ndarray
    combine: np.ndarray
    expert_time: np.ndarray

    @property
    def dispatch_bytes(self) -> float:
        """Bytes the dispatch puts on the fabric [B]."""
        return float(self.dispatch.sum())

    @property
    def combine_bytes(self) -> float:
        """Bytes the combine puts on the fabric [B]."""
        return float(self.combine.sum())


@dataclass(frozen=True)
class MoEPhases:
    """One MoE layer's phases [s]: dispatch, experts (shared experts overlap the dispatch),
    combine, and the combine's add; ``total`` their sum."""

    dispatch: float
    experts: float
    combine: float
    post: float

    @property
    def total(self) -> float:
        """Sum of the phases [s]."""
        return self.dispatch + self.experts + self.combine + self.post


class ExpertParallel:
    """One EP group: its ranks, expert placement, routing, traffic and closed form.

    Args:
        ranks: GPU node names of the ranks, in rank order.
        graph: the topology (for the paths the Fabric takes).
        arch: the :class:`~simulator.models.Architecture` (experts, top-k, hidden size …).
        probs: each expert's popularity (:func:`popularity`).
        slots: expert slots per rank (replicas included).
        mode: DeepEP kernel mode (:data:`MODES`).
        kernels: per-rank kernel times (:class:`RankKernels`, one per rank).
        dispatch_dtype / combine_dtype: element types on the wire.
        paths: paths between the ranks (:func:`simulator.network.paths.paths_among`).
    """

    def __init__(self, ranks: list[str], graph, arch, probs: np.ndarray, slots: int, mode: str,
                 kernels: list[RankKernels], paths: dict[tuple[str, str], PathInfo],
                 dispatch_dtype: str = "fp8", combine_dtype: str = "bf16") -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} not in {MODES}")
        self.ranks = list(ranks)
        R = self.R = len(ranks)
        self.arch = arch
        self.k = int(arch.experts_per_token)
        self.E = int(arch.experts)
        self.mode = mode
        self.kernels = kernels
        self.probs = np.asarray(probs, float)
        self._cdf = np.cumsum(self.probs)
        self.slots = slots
        self.placement = place_experts(self.probs, R, slots)
        flat = self.placement.ravel()
        order = np.argsort(flat, kind="stable")  # slots grouped by expert
        self.rep_slot = order
        self.rep_count = np.bincount(flat, minlength=self.E)
        self.rep_start = np.concatenate(([0], np.cumsum(self.rep_count)[:-1]))
        self.d_bpt = dispatch_bytes_per_token(arch.hidden_size, dispatch_dtype)
        self.c_bpt = combine_bytes_per_token(arch.hidden_size, combine_dtype)
        self.overheads = mode_overheads(mode)
        self.stack = hardware.stack(EP_STACK)
        # nodes and rails: the relay of a cross-node hop in normal mode is the GPU of the same
        # local index on the destination node
        machine = [n.split("/")[0] for n in ranks]
        nodes = sorted(set(machine), key=machine.index)
        self.node = np.array([nodes.index(m) for m in machine], np.int64)
        local = np.zeros(R, np.int64)
        seen: dict[int, int] = {}
        for r in range(R):
            local[r] = seen.get(int(self.node[r]), 0)
            seen[int(self.node[r])] = local[r] + 1
        self.relay = np.zeros((R, len(nodes)), np.int64)
        for n in range(len(nodes)):
            members = np.flatnonzero(self.node == n)
            for s in range(R):
                self.relay[s, n] = members[min(local[s], len(members) - 1)]
        self._paths(graph, paths)

    # -- paths and link loads -----------------------------------------------------------------

    def _paths(self, graph, paths) -> None:
        R = self.R
        links: dict[tuple[str, str], int] = {}
        pair_of, link_of = [], []
        lat = np.zeros((R, R))
        inter = np.zeros((R, R), bool)
        for a in range(R):
            for b in range(R):
                if a == b:
                    continue
                info = paths[(self.ranks[a], self.ranks[b])]
                lat[a, b] = info.latency_time
                inter[a, b] = info.inter_node
                for e in info.edges:
                    i = links.setdefault(e, len(links))
                    pair_of.append(a * R + b)
                    link_of.append(i)
        pair_of = np.asarray(pair_of, np.int64)
        link_of = np.asarray(link_of, np.int64)
        all_links = list(links)
        bw_all = np.array([float(graph.edges[e]["bandwidth"]) for e in all_links])
        # a link whose pairs all cross a slower link too (a GPU's PCIe hops to its NIC) can
        # never be the bottleneck: leave it out (the closed form's maximum is unchanged)
        by_link = np.argsort(link_of, kind="stable")  # each link's pairs, in pair order
        lk, pr = link_of[by_link], pair_of[by_link]
        cuts = np.flatnonzero(np.diff(lk)) + 1
        keys: dict[bytes, int] = {}
        keep = np.zeros(len(all_links), bool)
        for i, members in zip(lk[np.r_[0, cuts]].tolist(), np.split(pr, cuts), strict=True):
            j = keys.get(members.tobytes())
            if j is None:
                keys[members.tobytes()] = i
                keep[i] = True
            elif bw_all[i] < bw_all[j]:
                keep[j], keep[i] = False, True
                keys[members.tobytes()] = i
        index = np.full(len(all_links), -1, np.int64)
        index[keep] = np.arange(int(keep.sum()))
        sel = keep[link_of]
        self.links = [e for e, k in zip(all_links, keep, strict=True) if k]
        self.pair_of = pair_of[sel]
        self.link_of = index[link_of[sel]]
        self.latency = lat
        self.inter = inter
        bw = bw_all[keep]
        # links of internode pairs run at the RDMA efficiency, NVLink ones at NVLink's
        crosses = np.zeros(len(self.links), bool)
        np.logical_or.at(crosses, self.link_of, inter.ravel()[self.pair_of])
        self.efficiency = np.where(crosses, self.stack.efficiency(True),
                                   self.stack.efficiency(False))
        self.rate = self.efficiency * bw

    def loads(self, pairs: np.ndarray) -> np.ndarray:
        """Bytes each of :attr:`links` carries for a traffic matrix ``pairs`` (R, R) [B]."""
        flat = np.asarray(pairs, float).ravel()
        return np.bincount(self.link_of, weights=flat[self.pair_of], minlength=len(self.links))

    def fixed_time(self, pairs: np.ndarray, direction: str) -> float:
        """The exchange's size-independent part: kernel overhead (``direction`` ``"dispatch"``
        or ``"combine"``), stack overhead and the longest path latency among pairs that carry
        bytes; normal mode adds the NVLink forwarding hop's overhead [s]."""
        used = np.asarray(pairs) > 0
        over = self.overheads[0 if direction == "dispatch" else 1]
        if not used.any():
            return over
        inter = bool(self.inter[used].any())
        t = over + self.stack.overhead_time(inter) + float(self.latency[used].max())
        if self.mode == "normal" and inter:
            t += self.stack.overhead_time(False)
        return t

    def exchange_time(self, pairs: np.ndarray, direction: str) -> float:
        """The closed form of one exchange alone: fixed part + max over links (load / rate) [s]."""
        loads = self.loads(pairs)
        wire = float((loads / self.rate).max()) if len(loads) else 0.0
        return self.fixed_time(pairs, direction) + wire

    # -- routing ------------------------------------------------------------------------------

    def route(self, rng: np.random.Generator, tokens: np.ndarray) -> Routing:
        """Each token of each rank picks ``k`` distinct experts (Gumbel top-k on the
        popularity) and each pick one replica of its expert (see the module docstring)."""
        tokens = np.asarray(tokens, np.int64)
        T, k = int(tokens.sum()), self.k
        src = np.repeat(np.arange(self.R), tokens)
        if T == 0:
            empty = np.zeros((0, k), np.int64)
            return Routing(tokens, src, empty, empty)
        expert = sample_topk(rng, self._cdf, T, k)
        idx = (np.arange(T)[:, None] + np.arange(k)[None, :]) % self.rep_count[expert]
        slot = self.rep_slot[self.rep_start[expert] + idx]
        return Routing(tokens, src, expert.astype(np.int64), slot.astype(np.int64))

    def layer(self, rng: np.random.Generator, tokens: np.ndarray) -> LayerPlan:
        """The plan of one MoE layer for ``tokens`` per rank: routed token by token
        (:meth:`route`, :meth:`plan`) up to :data:`PER_TOKEN_LIMIT` tokens, in aggregate
        above (see the module docstring)."""
        tokens = np.asarray(tokens, np.int64)
        if int(tokens.sum()) <= PER_TOKEN_LIMIT:
            return self.plan(self.route(rng, tokens))
        return self._aggregate(rng, tokens)

    def _inclusion(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(picks per token of each slot, chance a token reaches each rank, … each node),
        estimated from :data:`ESTIMATE_TOKENS` tokens routed one by one (once per group)."""
        got = getattr(self, "_incl", None)
        if got is None:
            n = ESTIMATE_TOKENS
            r = self.route(rng, np.array([n] + [0] * (self.R - 1)))
            R, N = self.R, self.relay.shape[1]
            per_slot = np.bincount(r.slot.ravel(), minlength=R * self.slots) / n
            dst = r.slot // self.slots
            hit = np.zeros((n, R), bool)
            hit[np.arange(n)[:, None], dst] = True
            node_hit = np.zeros((n, N), bool)
            node_hit[np.arange(n)[:, None], self.node[dst]] = True
            got = self._incl = (per_slot, hit.mean(axis=0), node_hit.mean(axis=0))
        return got

    def _aggregate(self, rng: np.random.Generator, tokens: np.ndarray) -> LayerPlan:
        """A layer's plan from per-rank draws (see the module docstring)."""
        R, slots, k = self.R, self.slots, self.k
        per_slot, q_rank, q_node = self._inclusion(rng)
        p = per_slot / per_slot.sum()
        picks = np.stack([rng.multinomial(int(t) * k, p) if t else np.zeros(R * slots, np.int64)
                          for t in tokens])  # (source, slot)
        slot_rows = picks.sum(axis=0).reshape(R, slots)
        rows = slot_rows.sum(axis=1)
        active = (slot_rows > 0).sum(axis=1)
        if self.mode == "low_latency":
            n = picks.reshape(R, R, slots).sum(axis=2)
            np.fill_diagonal(n, 0)
            dispatch, combine = n * self.d_bpt, n.T * self.c_bpt
        else:
            reach = rng.binomial(tokens[:, None], q_rank[None, :])  # tokens s → rank r
            same = self.node[:, None] == self.node[None, :]
            hops = np.where(same, reach, 0).astype(float)
            N = self.relay.shape[1]
            for s in range(R):  # forwarded: relay → r for the tokens crossing to r's node
                far = ~same[s]
                np.add.at(hops, (self.relay[s, self.node[far]], np.flatnonzero(far)), reach[s, far])
            cross = rng.binomial(tokens[:, None], q_node[None, :])  # tokens s → node n
            cross[np.arange(R), self.node] = 0
            for n in range(N):
                np.add.at(hops, (np.arange(R), self.relay[:, n]), cross[:, n])
            np.fill_diagonal(hops, 0.0)
            dispatch, combine = hops * self.d_bpt, hops.T * self.c_bpt
        times = np.array([self.kernels[r].expert_time(int(rows[r]), int(active[r]))
                          for r in range(R)])
        return LayerPlan(tokens, rows, active, dispatch, combine, times)

    def plan(self, routing: Routing) -> LayerPlan:
        """Rows per rank, the dispatch and combine traffic, and the expert kernel times of one
        layer routed as ``routing`` (see the module docstring)."""
        R, slots = self.R, self.slots
        dst = routing.slot // slots
        rows = np.bincount(dst.ravel(), minlength=R)
        per_slot = np.bincount(routing.slot.ravel(), minlength=R * slots).reshape(R, slots)
        active = (per_slot > 0).sum(axis=1)
        src = np.broadcast_to(routing.src[:, None], dst.shape)
        if self.mode == "low_latency":  # one message per (token, expert)
            n = np.bincount((src * R + dst).ravel(), minlength=R * R).reshape(R, R)
            np.fill_diagonal(n, 0)
            dispatch, combine = n * self.d_bpt, n.T * self.c_bpt
        else:
            dispatch, combine = self._normal(routing.src, dst)
        times = np.array([self.kernels[r].expert_time(int(rows[r]), int(active[r]))
                          for r in range(R)])
        return LayerPlan(routing.tokens, rows, active, dispatch, combine, times)

    def _normal(self, src_tok: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normal kernels' traffic: each token once per destination rank; across nodes once
        per destination node over RDMA to the relay, then over NVLink to the ranks."""
        R, N = self.R, self.relay.shape[1]
        T = len(src_tok)
        rows = np.broadcast_to(np.arange(T)[:, None], dst.shape)
        hit = np.zeros((T, R), bool)  # token t goes to rank r (distinct (token, rank) pairs)
        hit[rows, dst] = True
        t, r = np.nonzero(hit)
        s = src_tok[t]
        same = self.node[s] == self.node[r]
        # one hop s → r inside a node; across nodes, the relay forwards to r over NVLink
        first = np.where(same, s, self.relay[s, self.node[r]])
        hops = np.bincount(first * R + r, minlength=R * R).reshape(R, R).astype(float)
        far = np.zeros((T, N), bool)  # token t crosses to node n (once per node)
        far[t[~same], self.node[r[~same]]] = True
        ft, fn = np.nonzero(far)
        fs = src_tok[ft]
        hops += np.bincount(fs * R + self.relay[fs, fn], minlength=R * R).reshape(R, R)
        np.fill_diagonal(hops, 0.0)
        return hops * self.d_bpt, hops.T * self.c_bpt

    # -- the closed form of one layer alone --------------------------------------------------

    def closed_form(self, plan: LayerPlan, shared_time: np.ndarray,
                    post_time: np.ndarray) -> MoEPhases:
        """One MoE layer alone on idle streams and links, from the moment the last rank is
        ready [s]: dispatch; experts (a rank's routed experts start when the dispatch is done
        and its shared experts — queued at the start — are); combine once the slowest rank's
        experts are done; then each rank's add, behind whatever its stream still runs."""
        shared = np.asarray(shared_time, float)
        post = np.asarray(post_time, float)
        d = self.exchange_time(plan.dispatch, "dispatch")
        has = plan.expert_time > 0
        free = np.where(has, np.maximum(shared, d) + plan.expert_time, shared)
        experts = float(free[has].max()) - d if has.any() else 0.0
        experts = max(experts, 0.0)
        c = self.exchange_time(plan.combine, "combine")
        t3 = d + experts + c
        if (post > 0).any():
            ends = np.maximum(free, t3)[post > 0] + post[post > 0]
            tail = float(ends.max()) - t3
        else:
            tail = 0.0
        return MoEPhases(d, experts, c, tail)


# -- per-rank kernels -------------------------------------------------------------------------

_ROUTED = ("experts_gate_up", "experts_activation", "experts_down")
_SHARED = ("shared_gate_up", "shared_activation", "shared_down")
_PRE_MOE = ("router", "topk_select")


class RankKernels:
    """One rank's kernel times under expert parallelism, from a kernel profile (layers composed
    as :mod:`simulator.gpu.layers` does, at the rank's own token count, ``gpus = 1``), with
    their launch costs: per layer the attention-side projections (:meth:`pre_time`), the dense
    FFN or the router (:meth:`ffn_time`), the shared experts (:meth:`shared_time`), the
    combine's add (:meth:`post_time`), per step the final norm and LM head (:meth:`step_time`),
    and the routed experts at received rows (:meth:`expert_time`) [s]. Memoized per count."""

    def __init__(self, kernels, spec, arch, dense_layers: int | None = None) -> None:
        if dense_layers is not None and dense_layers != arch.dense_layers:
            arch = dataclasses.replace(arch, dense_layers=dense_layers)
        self.kernels = kernels
        self.spec = spec
        self.arch = arch
        self.profile = kernels.profile(spec)
        self._cache: dict[tuple, float] = {}

    def _launched(self, gpu_time: float, n: float) -> float:
        if n <= 0:
            return gpu_time
        launch = float(self.profile.launch(n).time)
        return gpu_time + launch if self.profile.cuda_graphs else max(gpu_time, launch)

    def _sum(self, key, tokens: float, logits: float | None, keep) -> float:
        got = self._cache.get(key)
        if got is None:
            if tokens <= 0:
                got = 0.0
            else:
                ops = decode_ops(self.profile, self.arch, float(tokens), 1, logits)
                sel = [o for o in ops if keep(o)]
                got = self._launched(sum(o.time * o.count for o in sel),
                                     sum(o.count for o in sel))
            self._cache[key] = got
        return got

    def pre_time(self, tokens: int) -> float:
        """One layer's projections, norms, rotary and indexer projections (no FFN) [s]."""
        return self._sum(("pre", tokens), tokens, None, lambda o: o.per == "layer")

    def ffn_time(self, tokens: int, moe: bool) -> float:
        """A dense layer's FFN, or an MoE layer's router and top-k [s]."""
        if moe:
            return self._sum(("router", tokens), tokens, None, lambda o: o.name in _PRE_MOE)
        return self._sum(("dense", tokens), tokens, None, lambda o: o.per == "dense_layer")

    def shared_time(self, tokens: int) -> float:
        """The shared experts of one MoE layer [s]."""
        return self._sum(("shared", tokens), tokens, None, lambda o: o.name in _SHARED)

    def post_time(self, tokens: int) -> float:
        """The weighted add of the combined expert outputs, one MoE layer [s]."""
        return self._sum(("post", tokens), tokens, None, lambda o: o.name == "experts_combine")

    def step_time(self, tokens: int, logits: int) -> float:
        """Per step: the final norm and the LM head for ``logits`` rows [s]."""
        return self._sum(("step", tokens, logits), tokens, logits, lambda o: o.per == "step")

    def expert_time(self, rows: int, active: int) -> float:
        """The routed experts of one MoE layer at ``rows`` received rows over ``active``
        experts: gate/up and down grouped GEMMs and the activation [s]."""
        key = ("experts", rows, active)
        got = self._cache.get(key)
        if got is None:
            got = 0.0
            if rows > 0 and active > 0:
                a, p = self.arch, self.profile
                d, ie = float(a.hidden_size), float(a.expert_intermediate_size)
                dt = "fp8" if a.weight_bytes_per_param <= 1.0 else "bf16"
                t = float(p.gemm(rows, 2 * ie, d, dt, active).time)
                t += float(p.elementwise("activation", rows, ie).time)
                t += float(p.gemm(rows, d, ie, dt, active).time)
                got = self._launched(t, 3.0)
            self._cache[key] = got
        return got


def expert_layers(arch, dense_layers: int | None = None) -> int:
    """MoE layers of ``arch`` (its layers less the dense ones)."""
    dense = arch.dense_layers if dense_layers is None else dense_layers
    return int(arch.layers - dense) if arch.experts else 0

