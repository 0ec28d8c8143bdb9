"""One expert-parallel rank's kernel times, from a kernel profile at the rank's own token count:
projections, dense FFN or router, shared experts, the combine's add, the LM head, and the routed
experts at the rows the rank received (:class:`RankKernels`)."""

from __future__ import annotations

import dataclasses

from simulator.gpu.layers import decode_ops

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

    def _sum(self, key, tokens: float, logits: float | None, keep,
             decode: float | None = None) -> float:
        got = self._cache.get(key)
        if got is None:
            if tokens <= 0:
                got = 0.0
            else:
                ops = decode_ops(self.profile, self.arch, float(tokens), 1, logits, decode)
                sel = [o for o in ops if keep(o)]
                got = self._launched(sum(o.time * o.count for o in sel),
                                     sum(o.count for o in sel))
            self._cache[key] = got
        return got

    def pre_time(self, tokens: int, decode: int | None = None) -> float:
        """One layer's projections, norms, rotary and indexer projections (no FFN) for
        ``tokens`` tokens of which ``decode`` decode (default all: the rows of MLA's absorbed
        products) [s]."""
        return self._sum(("pre", tokens, decode), tokens, None, lambda o: o.per == "layer",
                         decode)

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
                t = p.gemm_seconds(rows, 2 * ie, d, dt, active)[0]
                t += p.elementwise_seconds("activation", rows, ie)[0]
                t += p.gemm_seconds(rows, d, ie, dt, active)[0]
                got = self._launched(t, 3.0)
            self._cache[key] = got
        return got


def expert_layers(arch, dense_layers: int | None = None) -> int:
    """MoE layers of ``arch`` (its layers less the dense ones)."""
    dense = arch.dense_layers if dense_layers is None else dense_layers
    return int(arch.layers - dense) if arch.experts else 0
