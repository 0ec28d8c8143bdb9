"""Mixture-of-experts layers under expert parallelism: where the tokens go, what the all-to-all
carries between every pair of ranks, what every rank computes, and the closed form of one layer
alone.

An *EP group* is one instance's ranks (GPUs); each holds ``slots`` routed experts of every MoE
layer (replicas included) and the shared experts. One MoE layer of one step, in the engine's
order (:mod:`simulator.engine.instances` replays it; the plan needs no SimPy):

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
one by one. Row counts still sum to tokens × k. (The picks are drawn with replacement: where
nearly every token picks the same expert — a popularity table of top-k experts, say — a rank
may receive a little more of that expert's rows than the layer has tokens: 19,345 for
19,200 in ``tests/test_records_moe.py``'s eight hot experts, whose rows are exact token by
token.)

**The all-to-all on the fabric** (which links the pairs cross, their loads, and one exchange's
closed form): :mod:`simulator.costmodel.alltoall`, whose :class:`~simulator.costmodel.alltoall.
AllToAll` each group holds; its links, rates and closed form read as the group's own
(``ep.loads``, ``ep.exchange_time`` …).

DeepEP's kernel overheads and wire formats: :mod:`simulator.costmodel.deepep`; popularity,
EPLB placement and top-k sampling: :mod:`simulator.costmodel.experts`; each rank's kernels:
:mod:`simulator.costmodel.rank_kernels`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.costmodel.alltoall import AllToAll
from simulator.costmodel.deepep import MODES, combine_bytes_per_token, dispatch_bytes_per_token
from simulator.costmodel.experts import place_experts, sample_topk
from simulator.costmodel.rank_kernels import RankKernels
from simulator.network.paths import PathInfo

#: Layers of more tokens than this are routed in aggregate (see the module docstring).
PER_TOKEN_LIMIT = 16_384
#: Tokens routed one by one to estimate the inclusion probabilities of aggregate routing.
ESTIMATE_TOKENS = 20_000


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
        probs: each expert's popularity (:func:`~simulator.costmodel.experts.popularity`).
        slots: expert slots per rank (replicas included).
        mode: DeepEP kernel mode (:data:`MODES`).
        kernels: per-rank kernel times (:class:`~simulator.costmodel.rank_kernels.RankKernels`, one
            per rank).
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
        if np.count_nonzero(self.probs > 0) < self.k:  # top-k sampling would never end
            raise ValueError(f"{np.count_nonzero(self.probs > 0)} experts of popularity > 0: "
                             f"fewer than top-{self.k}")
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
        # the exchanges on the fabric; their links, rates and closed form read as the group's
        # own (bound to the AllToAll's, no call between: the engines ask them every layer)
        a2a = self.alltoall = AllToAll(self.ranks, graph, paths, mode)
        self.overheads, self.stack = a2a.overheads, a2a.stack
        self.links, self.rate, self.efficiency = a2a.links, a2a.rate, a2a.efficiency
        self.latency, self.inter = a2a.latency, a2a.inter
        self.loads, self.fixed_time = a2a.loads, a2a.fixed_time
        self.exchange_time = a2a.exchange_time

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
